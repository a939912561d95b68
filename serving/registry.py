"""State files and locks that let one `brickwork serve` be found and reused by other commands.

`brickwork serve` holds an exclusive lock on `<state>/serve-<port>.lock` for as long as it runs
and writes `<state>/serve-<port>.json` beside it. Other commands list the records whose lock is
still held: a record whose lock can be taken belongs to a dead process and is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from brickwork._settings import state_dir
from brickwork.errors import PortInUseError

__all__ = ["ServeLease", "ServeRecord", "held_cores", "placement_lock", "running_servers"]


@dataclass(frozen=True)
class ServeRecord:
    """What a running `brickwork serve` tells other processes about itself.

    `adapters` are the LoRA adapters the server answers to by name; `merged` maps each
    merged adapter served by its own instance (`brickwork serve --merged NAME`) to that
    instance's base URL; `cores` maps each instance to the CPU cores it holds, so another
    `brickwork serve` places its instances elsewhere. `ready` is False from the moment the
    cores are chosen until the instance answers: a serve that is still starting already holds
    its cores, but nothing is sent to it yet.
    """

    pid: int
    host: str
    port: int
    served_name: str
    adapters: tuple[str, ...]
    model: str
    log: str
    started_at: str
    merged: dict[str, str] = field(default_factory=dict)
    cores: dict[str, list[int]] = field(default_factory=dict)
    ready: bool = True
    max_lora_rank: int | None = None

    @property
    def base_url(self) -> str:
        """OpenAI-compatible base URL of the server."""
        return f"http://{self.host}:{self.port}/v1"

    def to_json(self) -> str:
        """Serialise for the state file."""
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ServeRecord:
        """Parse a state file (raises `ValueError`/`KeyError`/`TypeError` when malformed)."""
        data = json.loads(text)
        data["adapters"] = tuple(data.get("adapters", ()))
        data["merged"] = dict(data.get("merged", {}))
        data["cores"] = {str(k): [int(c) for c in v] for k, v in data.get("cores", {}).items()}
        return cls(**data)


def _paths(port: int, root: Path) -> tuple[Path, Path]:
    return root / f"serve-{port}.lock", root / f"serve-{port}.json"


class ServeLease:
    """The exclusive right to run `brickwork serve` on one port."""

    def __init__(self, port: int, *, root: Path | None = None) -> None:
        self.port = port
        self.root = root or state_dir()
        self.lock_path, self.record_path = _paths(port, self.root)
        self._lock = FileLock(str(self.lock_path))

    def acquire(self) -> None:
        """Take the lease, or explain who holds it.

        Raises:
            PortInUseError: another `brickwork serve` runs on this port.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            holder = ""
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                record = ServeRecord.from_json(self.record_path.read_text())
                holder = f" (pid {record.pid}, serving {record.served_name!r} since "
                holder += f"{record.started_at})"
            raise PortInUseError(
                f"brickwork serve is already running on port {self.port}{holder}; other "
                "commands find and use it by themselves. Stop it first, or pass another --port"
            ) from None

    def publish(self, record: ServeRecord) -> None:
        """Write the state file atomically (write a temp file, then rename)."""
        tmp = self.record_path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(record.to_json())
        tmp.replace(self.record_path)

    def release(self) -> None:
        """Remove the state file and drop the lock."""
        with contextlib.suppress(FileNotFoundError):
            self.record_path.unlink()
        if self._lock.is_locked:
            self._lock.release()


def running_servers(root: Path | None = None, *, starting: bool = False) -> list[ServeRecord]:
    """Records of `brickwork serve` processes that are alive and ready, newest first.

    Records left by processes that died (their lock is free) are deleted on the way.

    Args:
        root: The state folder (default: `state_dir()`).
        starting: Include serves that are still starting (`ready` False): they hold their
            cores already, which placement must see.
    """
    root = root or state_dir()
    if not root.is_dir():
        return []
    records: list[ServeRecord] = []
    for path in root.glob("serve-*.json"):
        lock = FileLock(str(path.with_suffix(".lock")))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                record = ServeRecord.from_json(path.read_text())
                if record.ready or starting:
                    records.append(record)
            continue
        try:
            path.unlink(missing_ok=True)
        finally:
            lock.release()
    return sorted(records, key=lambda r: r.started_at, reverse=True)


def placement_lock(root: Path | None = None) -> FileLock:
    """The lock a `brickwork serve` holds while it chooses its cores and records them.

    Two serves started at the same moment would otherwise both read "no cores held" and
    both take core 0.
    """
    root = root or state_dir()
    root.mkdir(parents=True, exist_ok=True)
    return FileLock(str(root / "placement.lock"))


def held_cores(records: list[ServeRecord]) -> dict[str, list[int]]:
    """Cores held by the instances of running `brickwork serve` processes, for placement."""
    return {
        f"{name} (brickwork serve pid {record.pid})": cores
        for record in records
        for name, cores in record.cores.items()
    }
