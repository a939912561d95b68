"""Launch and supervise vLLM OpenAI-compatible servers as child processes.

Each `VLLMServer` owns one `python -m vllm.entrypoints.openai.api_server` child in its own
process group, started by a monitor thread that also restarts it when it dies unexpectedly, or
when it stays alive but stops answering `/health` (a dead engine behind a live API process).
`stop()` sends SIGTERM to the whole group, then SIGKILL after a grace period, so no engine
process is left behind. The child gets `PR_SET_PDEATHSIG`, so even a parent killed with SIGKILL
takes its servers with it.

Placement: vLLM-CPU binds its worker to core 0 unless told otherwise, so every instance on a
machine would share core 0. `ServerSpec.cores` gives an instance its own cores
(`VLLM_CPU_OMP_THREADS_BIND` from the start, and every thread of the process group once it is
ready, on the CPU; `CUDA_VISIBLE_DEVICES` on a GPU); `plan_placement` hands out cores and
refuses a plan that oversubscribes them. Each instance writes its own log file, named by model
and port, and every restart is reported (why, and when it is back) through `on_event` and the
log.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import dataclasses
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import httpx

from brickwork._settings import cache_dir
from brickwork.errors import (
    MissingDependencyError,
    ModelFolderError,
    PlacementError,
    PortInUseError,
    ServerStartError,
)

__all__ = [
    "Device",
    "PlacementError",
    "RestartPolicy",
    "ServerSpec",
    "ServerStatus",
    "VLLMServer",
    "available_cores",
    "confine_group",
    "free_port",
    "group_members",
    "load_lora_adapter",
    "parse_cores",
    "plan_placement",
    "port_in_use",
    "served_models",
]

ServerStatus = Literal["new", "starting", "ready", "restarting", "stopped", "failed"]
Device = Literal["cpu", "gpu"]

_log = logging.getLogger("brickwork.serving")

_API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
_VLLM_PROBE = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
_LIVE_SERVERS: set[VLLMServer] = set()
_LIVE_LOCK = threading.Lock()


@dataclass(frozen=True)
class ServerSpec:
    """What one vLLM instance serves and how it is started.

    Attributes:
        model: A Hugging Face model folder (config.json, weights, tokenizer).
        served_name: The name clients put in `model` to reach the base model.
        lora_modules: Adapter name -> adapter folder; clients reach each by its name.
        dtype: Weights dtype; float32 is needed for the embedded SmolLM2 on the CPU.
        host: Interface to bind; loopback unless you mean to expose it.
        port: Port to bind, or None to pick a free one.
        max_model_len: Context length to allocate for.
        max_lora_rank: Largest adapter rank the server accepts.
        max_loras: Adapters that may be active in one batch.
        enable_lora: Start with LoRA support even without `lora_modules` (to load adapters
            at runtime later); LoRA is on whenever `lora_modules` is not empty.
        runtime_lora: Allow loading adapters into the running server
            (`VLLM_ALLOW_RUNTIME_LORA_UPDATING`, `POST /v1/load_lora_adapter`).
        enforce_eager: Skip graph compilation (start-up about 25 s instead of 150 s on CPU).
        kv_cache_gib: `VLLM_CPU_KVCACHE_SPACE` for the CPU build.
        extra_args: Appended to the command line as given.
        extra_env: Added to the child's environment.
        python: Interpreter that runs vLLM.
        cores: The CPU cores (or GPU indices) this instance may use, or None for vLLM's own
            choice (which is core 0 for every instance on the CPU).
        device: What `cores` number: CPU cores or GPUs.
        worker_in_engine: On the CPU, run the model worker inside the engine-core process
            (`--distributed-executor-backend uni`): two processes (API server, engine core)
            instead of three. Each imports torch and vLLM on its own, one after the other,
            which is most of a start (and of a restart); on one core they also compete while
            serving. Measured on a busy 2-core machine: ready in 30 and 40 s instead of 57
            and 45 s, same throughput at 32 in flight within the noise. Ignored on a GPU.
        shares_cores_with: Served names of instances that may run on the same cores as this
            one, on purpose: instances of one tier that are rarely busy at once (the small
            model and a specialist merged from it). Any other overlap is refused.
    """

    model: Path
    served_name: str
    lora_modules: Mapping[str, Path] = field(default_factory=dict)
    dtype: str = "float32"
    host: str = "127.0.0.1"
    port: int | None = None
    max_model_len: int | None = 4096
    max_lora_rank: int = 16
    max_loras: int = 4
    enable_lora: bool = False
    runtime_lora: bool = False
    enforce_eager: bool = True
    kv_cache_gib: int = 2
    extra_args: Sequence[str] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)
    python: str = sys.executable
    cores: tuple[int, ...] | None = None
    device: Device = "cpu"
    worker_in_engine: bool = True
    shares_cores_with: tuple[str, ...] = ()

    def command(self, port: int) -> list[str]:
        """The full command line for this spec on `port`."""
        cmd = [
            self.python,
            "-m",
            _API_SERVER_MODULE,
            "--model",
            str(self.model),
            "--served-model-name",
            self.served_name,
            "--host",
            self.host,
            "--port",
            str(port),
            "--dtype",
            self.dtype,
        ]
        if self.max_model_len is not None:
            cmd += ["--max-model-len", str(self.max_model_len)]
        if self.enforce_eager:
            cmd.append("--enforce-eager")
        if self.lora_enabled:
            cmd += [
                "--enable-lora",
                "--max-lora-rank",
                str(self.max_lora_rank),
                "--max-loras",
                str(self.max_loras),
            ]
        if self.lora_modules:
            cmd += [
                "--lora-modules",
                *(f"{name}={path}" for name, path in sorted(self.lora_modules.items())),
            ]
        if self.uni_executor:
            cmd += ["--distributed-executor-backend", "uni"]
        cmd += list(self.extra_args)
        return cmd

    def environment(self) -> dict[str, str]:
        """The child's environment: ours, offline, plus the spec's additions."""
        env = dict(os.environ)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.kv_cache_gib))
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("DO_NOT_TRACK", "1")
        if self.runtime_lora:
            env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        if self.uni_executor and self.cores is None:
            # vLLM's own placement gives the worker one core; inside the engine process nothing
            # binds it, so keep it to one thread rather than one per core of the machine.
            env.setdefault("OMP_NUM_THREADS", "1")
        if self.cores is not None:
            ids = ",".join(str(c) for c in self.cores)
            if self.device == "gpu":
                env["CUDA_VISIBLE_DEVICES"] = ids
            else:
                # The OpenMP worker threads, one per core (vLLM binds them itself when the
                # worker is a process of its own); every thread of the instance is held to the
                # same cores once it is ready (see `VLLMServer._confine`).
                env["VLLM_CPU_OMP_THREADS_BIND"] = ids
                env["OMP_NUM_THREADS"] = str(len(self.cores))
        env.update(self.extra_env)
        return env

    @property
    def uni_executor(self) -> bool:
        """True when the worker runs inside the engine-core process (see `worker_in_engine`)."""
        return self.worker_in_engine and self.device == "cpu"

    @property
    def placement(self) -> str:
        """Where the instance runs, for logs: `cores [0]` or `vLLM's default placement`."""
        if self.cores is None:
            return "vLLM's default placement (core 0 on the CPU)"
        what = "GPUs" if self.device == "gpu" else "cores"
        return f"{what} {list(self.cores)}"

    @property
    def lora_enabled(self) -> bool:
        """True when the server starts with LoRA support."""
        return self.enable_lora or bool(self.lora_modules)

    @property
    def model_names(self) -> tuple[str, ...]:
        """Every name the server answers to: the base and each adapter."""
        return (self.served_name, *sorted(self.lora_modules))


@dataclass(frozen=True)
class RestartPolicy:
    """How a server that dies unexpectedly is brought back.

    Attributes:
        max_restarts: Give up (status "failed") after this many restarts.
        backoff_s: First wait before a restart; doubles each time up to `max_backoff_s`.
        max_backoff_s: Longest wait between restarts.
        stable_after_s: A server that stayed ready this long starts a new streak: the backoff
            and `max_restarts` count only restarts in a row, not every crash of its lifetime.
        unhealthy_after_s: Restart a server whose process lives but whose `/health` has not
            answered 200 for this long (its engine died behind a live API process).
        health_every_s: How often a ready server's `/health` is checked.
    """

    max_restarts: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    stable_after_s: float = 120.0
    unhealthy_after_s: float = 30.0
    health_every_s: float = 2.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before restart number `attempt` (1-based)."""
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** max(0, attempt - 1)))


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on (host, port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def available_cores() -> tuple[int, ...]:
    """The CPU cores this process may run on (its affinity mask), in order."""
    return tuple(sorted(os.sched_getaffinity(0)))


def parse_cores(text: str) -> tuple[int, ...]:
    """Parse a core list such as `0`, `0,1`, `2-3` or `0,2-3` into sorted core ids.

    Raises:
        ValueError: the text is not such a list.
    """
    cores: set[int] = set()
    for item in text.split(","):
        first, sep, last = item.strip().partition("-")
        try:
            low = int(first)
            high = int(last) if sep else low
        except ValueError:
            raise ValueError(
                f"core list {text!r} is not like '0', '0,1' or '0-3' (comma-separated ids or "
                "ranges)"
            ) from None
        if low < 0 or high < low:
            raise ValueError(f"core range {item.strip()!r} in {text!r} is empty or negative")
        cores.update(range(low, high + 1))
    return tuple(sorted(cores))


def plan_placement(
    wants: Mapping[str, int | Sequence[int]],
    *,
    available: Sequence[int] | None = None,
    taken: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, tuple[int, ...]]:
    """Give every instance cores of its own.

    Args:
        wants: Instance name -> a number of cores (taken from the free ones, lowest first) or
            the exact cores it must have.
        available: The machine's cores (default: this process's affinity mask).
        taken: Cores already held by running instances (name -> cores); never handed out.

    Returns:
        Instance name -> its cores.

    Raises:
        PlacementError: a core does not exist, two instances would share one, or the
            instances want more cores than are free.
    """
    machine = tuple(available) if available is not None else available_cores()
    owner: dict[int, str] = {}
    for name, cores in (taken or {}).items():
        for core in cores:
            owner.setdefault(core, name)
    plan: dict[str, tuple[int, ...]] = {}
    for name, want in wants.items():
        if isinstance(want, int):
            continue
        cores = tuple(sorted(set(want)))
        if not cores:
            raise PlacementError(f"instance {name!r} was given an empty core list")
        missing = [c for c in cores if c not in machine]
        if missing:
            raise PlacementError(
                f"instance {name!r} wants cores {missing!r}, but this machine has only "
                f"{list(machine)!r}; pick cores from that list"
            )
        for core in cores:
            if core in owner:
                raise PlacementError(
                    f"core {core} would serve both {owner[core]!r} and {name!r}: oversubscribed. "
                    "Give each instance its own cores (--cores), or stop the other instance"
                )
            owner[core] = name
        plan[name] = cores
    free = [c for c in machine if c not in owner]
    for name, want in wants.items():
        if not isinstance(want, int):
            continue
        if want < 1 or want > len(free):
            raise PlacementError(
                f"instance {name!r} wants {want} core(s) but {len(free)} of {len(machine)} are "
                f"free ({free!r}; the rest: {dict(sorted(owner.items()))!r}): oversubscribed. "
                "Ask for fewer cores, or stop an instance"
            )
        plan[name], free = tuple(free[:want]), free[want:]
    return {name: plan[name] for name in wants}


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM the child when the thread that spawned it exits."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def confine_group(pgid: int, cores: Sequence[int]) -> int:
    """Hold every thread of process group `pgid` to `cores`; returns how many were moved.

    Linux applies CPU affinity per thread, so each thread of each process is set; threads a
    process starts later inherit it from their creator.
    """
    moved = 0
    for pid in group_members(pgid):
        for task in Path(f"/proc/{pid}/task").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(task.name), cores)
                moved += 1
    return moved


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class VLLMServer:
    """One supervised vLLM server process.

    Use it as a context manager, or call `start()` and `stop()`:

        with VLLMServer(spec) as server:
            print(server.base_url)
    """

    def __init__(
        self,
        spec: ServerSpec,
        *,
        log_dir: Path | None = None,
        ready_timeout_s: float = 300.0,
        restart: RestartPolicy | None = None,
        progress: bool = True,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        """Prepare (not start) a server.

        Args:
            spec: What to serve and how.
            log_dir: Where the instance's log file goes (default `<cache>/logs`).
            ready_timeout_s: How long one start may take before it counts as failed.
            restart: When and how often a dead or unhealthy server is restarted.
            progress: Show a spinner while the first start runs.
            on_event: Called with one line whenever the server dies, is restarted or is back
                (also logged to the `brickwork.serving` logger and the instance's log file).
        """
        self.spec = spec
        self.ready_timeout_s = ready_timeout_s
        self.restart_policy = restart or RestartPolicy()
        self.progress = progress
        self.on_event = on_event
        self.port = spec.port if spec.port is not None else 0
        self.log_dir = log_dir or cache_dir() / "logs"
        self.status: ServerStatus = "new"
        self.restarts = 0
        self.started_at: float | None = None
        self.ready_after_s: float | None = None
        self.events: list[str] = []
        self._streak = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._monitor: threading.Thread | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._state_changed = threading.Condition()

    @property
    def log_path(self) -> Path:
        """The instance's own log file: one per model and port, so two never share one."""
        name = self.spec.served_name.replace("/", "_")
        return self.log_dir / (f"vllm-{name}-{self.port}.log" if self.port else f"vllm-{name}.log")

    # -- public -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, ending in /v1."""
        return f"http://{self.spec.host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        """Process id of the current child (also its process group id)."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> Self:
        """Start the server and block until it is ready.

        Raises:
            MissingDependencyError: vLLM is not importable by `spec.python`.
            ModelFolderError: `spec.model` or an adapter folder is missing.
            PortInUseError: the requested port is taken.
            ServerStartError: the process exited or was not ready within the timeout.
        """
        if self.status not in ("new", "stopped", "failed"):
            raise ServerStartError(f"server {self.spec.served_name!r} is already {self.status}")
        self._preflight()
        if not self.port:
            # Chosen once: a restarted server comes back on the same port, so clients that
            # hold the base URL reach it again; the log file is named after it.
            self.port = free_port(self.spec.host)
        self._stopping.clear()
        self._ready.clear()
        self._start_error = None
        self.restarts = 0
        self._streak = 0
        self._set_status("starting")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with _LIVE_LOCK:
            _LIVE_SERVERS.add(self)
        self._monitor = threading.Thread(
            target=self._run, name=f"vllm-{self.spec.served_name}", daemon=True
        )
        self._monitor.start()
        self._wait_first_ready()
        return self

    def stop(self, grace_s: float = 15.0) -> None:
        """Terminate the process group: SIGTERM, then SIGKILL after `grace_s`."""
        self._stopping.set()
        proc = self._proc
        if proc is not None:
            _terminate_group(proc, grace_s)
        if self._monitor is not None and self._monitor is not threading.current_thread():
            self._monitor.join(timeout=grace_s + 5)
        self._set_status("stopped")
        with _LIVE_LOCK:
            _LIVE_SERVERS.discard(self)

    def wait_ready(self, timeout_s: float) -> bool:
        """Block until the server is ready (e.g. after a restart); False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._state_changed:
            while self.status != "ready":
                left = deadline - time.monotonic()
                if left <= 0 or self.status in ("stopped", "failed"):
                    return False
                self._state_changed.wait(min(left, 0.5))
        return True

    def load_adapter(self, name: str, path: Path, *, timeout_s: float = 120.0) -> bool:
        """Load a LoRA adapter into the running server without a restart.

        On success the adapter also joins `spec.lora_modules`, so a restart keeps it.

        Returns:
            False when the server cannot load adapters at runtime (started without LoRA or
            without `runtime_lora`); the caller then restarts it with the adapter instead.

        Raises:
            ModelFolderError: The folder has no `adapter_config.json`.
            ServerStartError: The server is not running, or refused the adapter.
        """
        if not (Path(path) / "adapter_config.json").is_file():
            raise ModelFolderError(
                f"adapter {name!r} folder {str(path)!r} has no adapter_config.json"
            )
        if self.status != "ready":
            raise ServerStartError(f"server {self.spec.served_name!r} is {self.status}, not ready")
        if not (self.spec.lora_enabled and self.spec.runtime_lora):
            return False
        if not load_lora_adapter(self.base_url, name, path, timeout_s=timeout_s):
            return False
        modules = {**self.spec.lora_modules, name: Path(path)}
        self.spec = dataclasses.replace(self.spec, lora_modules=modules)
        return True

    def log_tail(self, lines: int = 25) -> str:
        """The last lines of the server's log."""
        return _tail(self.log_path, lines)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"VLLMServer({self.spec.served_name!r}, port={self.port}, status={self.status!r})"

    # -- internals ----------------------------------------------------------------------------

    def _preflight(self) -> None:
        spec = self.spec
        if not _vllm_importable(spec.python):
            raise MissingDependencyError("vllm", "cpu", "serving models locally (or 'gpu')")
        if not (spec.model / "config.json").is_file():
            raise ModelFolderError(
                f"model folder {str(spec.model)!r} is missing or has no config.json; build it "
                "with brickwork.serving.ensure_embedded_model() or point to a Hugging Face folder"
            )
        for name, path in spec.lora_modules.items():
            if not (Path(path) / "adapter_config.json").is_file():
                raise ModelFolderError(
                    f"adapter {name!r} folder {str(path)!r} has no adapter_config.json"
                )
        if spec.cores is not None:
            if spec.device == "cpu":
                plan_placement({spec.served_name: spec.cores})  # every core exists
            with _LIVE_LOCK:
                taken = {
                    f"{other.spec.served_name} (port {other.port})": other.spec.cores
                    for other in _LIVE_SERVERS
                    if other.spec.cores is not None
                    and other.spec.device == spec.device
                    and other.spec.served_name not in spec.shares_cores_with
                    and spec.served_name not in other.spec.shares_cores_with
                }
            if spec.device == "cpu":
                plan_placement({spec.served_name: spec.cores}, taken=taken)
        if spec.port is not None and port_in_use(spec.host, spec.port):
            raise PortInUseError(
                f"port {spec.port!r} on {spec.host} is already in use; stop what holds it "
                "(e.g. `ss -ltnp`) or pick another port"
            )

    def _set_status(self, status: ServerStatus) -> None:
        with self._state_changed:
            self.status = status
            self._state_changed.notify_all()

    def _event(self, message: str) -> None:
        """Report a life event: logger, the instance's log file, `on_event`, `events`."""
        line = f"{self.spec.served_name} (port {self.port}): {message}"
        self.events.append(line)
        # With a callback the caller shows it; logging's last-resort handler would print it twice.
        _log.log(logging.INFO if self.on_event is not None else logging.WARNING, "%s", line)
        with contextlib.suppress(OSError), self.log_path.open("a") as log:
            log.write(f"=== brickwork: {message} ===\n")
        if self.on_event is not None:
            with contextlib.suppress(Exception):
                self.on_event(line)

    def _confine(self) -> None:
        """Once ready, hold the whole instance (API, engine core, worker) to its cores.

        Not before: a start imports torch and vLLM in two processes one after the other (three
        without `worker_in_engine`), and on a single busy core that took 115 s where both
        cores gave it about half that.
        """
        if self.spec.cores is None or self.spec.device != "cpu" or self._proc is None:
            return
        moved = confine_group(self._proc.pid, self.spec.cores)
        _log.info("%s: %d threads held to %s", self.spec.served_name, moved, self.spec.placement)

    def _spawn(self) -> None:
        if not self.port:
            self.port = free_port(self.spec.host)
        log = self.log_path.open("ab")
        try:
            banner = f"starting on port {self.port}, {self.spec.placement}"
            log.write(f"\n=== brickwork: {banner} ===\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.spec.command(self.port),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.spec.environment(),
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        self.started_at = time.monotonic()
        _log.info(
            "%s: pid %s on port %s, %s",
            self.spec.served_name,
            self._proc.pid,
            self.port,
            self.spec.placement,
        )

    def _wait_http_ready(self) -> None:
        """Poll /health and /v1/models until both answer; raise on exit or timeout."""
        assert self._proc is not None
        deadline = time.monotonic() + self.ready_timeout_s
        root = f"http://{self.spec.host}:{self.port}"
        with httpx.Client(timeout=httpx.Timeout(2.0)) as http:
            while True:
                if self._stopping.is_set():
                    raise ServerStartError(f"server {self.spec.served_name!r} was stopped")
                code = self._proc.poll()
                if code is not None:
                    raise ServerStartError(
                        f"vLLM server {self.spec.served_name!r} exited with code {code} before "
                        f"it was ready. Log {str(self.log_path)!r} ends with:\n"
                        f"{self.log_tail()}"
                    )
                if _answers(http, root, self.spec.model_names):
                    self.ready_after_s = time.monotonic() - (self.started_at or 0.0)
                    return
                if time.monotonic() > deadline:
                    raise ServerStartError(
                        f"vLLM server {self.spec.served_name!r} was not ready after "
                        f"{self.ready_timeout_s:.0f} s (raise ready_timeout_s if the machine is "
                        f"slow). Log {str(self.log_path)!r} ends with:\n{self.log_tail()}"
                    )
                self._stopping.wait(0.25)

    def _watch(self) -> str:
        """Block while the server runs and answers; return why it is to be restarted."""
        assert self._proc is not None
        policy = self.restart_policy
        root = f"http://{self.spec.host}:{self.port}"
        healthy_at = time.monotonic()
        with httpx.Client(timeout=httpx.Timeout(5.0)) as http:
            while not self._stopping.is_set():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = self._proc.wait(timeout=policy.health_every_s)
                    return _exit_reason(code)
                try:
                    ok = http.get(f"{root}/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                now = time.monotonic()
                if ok:
                    healthy_at = now
                    if self._streak and now - (self.started_at or now) > policy.stable_after_s:
                        self._streak = 0
                elif now - healthy_at > policy.unhealthy_after_s:
                    return (
                        f"process alive but /health failing for {now - healthy_at:.0f} s "
                        "(its engine died or hangs)"
                    )
        return "stopped"

    def _run(self) -> None:
        """Monitor thread: spawn, wait ready, watch, restart with backoff and say why."""
        died_at: float | None = None
        while not self._stopping.is_set():
            try:
                self._spawn()
                self._wait_http_ready()
            except BaseException as exc:  # reported to the starter, or retried
                if self._proc is not None:
                    _terminate_group(self._proc, 2.0)
                if not self._ready.is_set():
                    self._start_error = exc
                    self._set_status("failed")
                    self._ready.set()
                    return
                if self._stopping.is_set():
                    return
                reason = f"restart attempt failed: {str(exc).splitlines()[0]}"
            else:
                if died_at is not None:
                    self._event(
                        f"back and ready {time.monotonic() - died_at:.1f} s after it went down "
                        f"(start took {self.ready_after_s or 0:.1f} s)"
                    )
                self._confine()
                self._set_status("ready")
                self._ready.set()
                reason = self._watch()
                if self._stopping.is_set():
                    return
                died_at = time.monotonic()
                self._set_status("restarting")
                # Reap the rest of the group (engine workers) so nothing outlives the server;
                # a dead server gets no grace period: its port is wanted back now.
                if self._proc is not None:
                    _terminate_group(self._proc, 1.0)
            if self._stopping.is_set():
                return
            self.restarts += 1
            self._streak += 1
            if self._streak > self.restart_policy.max_restarts:
                self._event(
                    f"{reason}; not restarted: {self.restart_policy.max_restarts} restarts in a "
                    f"row failed. Log {str(self.log_path)!r}"
                )
                self._set_status("failed")
                return
            delay = self.restart_policy.delay(self._streak)
            self._event(f"{reason}; restarting in {delay:.1f} s (restart {self.restarts})")
            self._set_status("restarting")
            if self._stopping.wait(delay):
                return

    def _wait_first_ready(self) -> None:
        if not self.progress:
            self._ready.wait()
        else:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
            with Progress(*columns, transient=True) as bar:
                task = bar.add_task(f"Starting vLLM ({self.spec.served_name})", total=None)
                while not self._ready.wait(0.5):
                    last = self.log_tail(1).strip()[:70]
                    bar.update(task, description=f"Starting vLLM ({self.spec.served_name}): {last}")
        if self._start_error is not None:
            self.stop()
            raise self._start_error


def served_models(base_url: str, *, timeout_s: float = 5.0) -> set[str]:
    """The model names a running OpenAI-compatible server lists (empty when it is down)."""
    try:
        with httpx.Client(timeout=httpx.Timeout(timeout_s)) as http:
            data = http.get(f"{base_url.rstrip('/')}/models").json().get("data", [])
    except (httpx.HTTPError, ValueError, AttributeError):
        return set()
    return {str(m.get("id")) for m in data if isinstance(m, dict)}


def load_lora_adapter(base_url: str, name: str, path: Path, *, timeout_s: float = 120.0) -> bool:
    """Ask a running vLLM (`base_url` ending in /v1) to load adapter `name` from `path`.

    Returns:
        True when the adapter is served afterwards (also when it already was); False when
        the server has no runtime LoRA loading (404/405: started without
        `VLLM_ALLOW_RUNTIME_LORA_UPDATING`, or 400 because LoRA is not enabled).

    Raises:
        ServerStartError: The server is unreachable or failed loading the adapter.
    """
    if name in served_models(base_url):
        return True
    try:
        with httpx.Client(timeout=httpx.Timeout(timeout_s)) as http:
            response = http.post(
                f"{base_url.rstrip('/')}/load_lora_adapter",
                json={"lora_name": name, "lora_path": str(path)},
            )
    except httpx.HTTPError as exc:
        raise ServerStartError(
            f"cannot reach vLLM at {base_url!r} to load {name!r}: {exc}"
        ) from exc
    if response.status_code in (404, 405):
        return False
    if response.status_code == 400 and "already been loaded" in response.text:
        # Loaded meanwhile by someone else (e.g. `brickwork serve`'s own adapter sync).
        return True
    if (
        response.status_code == 400
        and "lora" in response.text.lower()
        and "enable" in response.text.lower()
    ):
        return False
    if response.status_code != 200:
        raise ServerStartError(
            f"vLLM at {base_url!r} refused adapter {name!r} ({str(path)!r}): "
            f"HTTP {response.status_code} {response.text[:300]}"
        )
    return name in served_models(base_url)


def _answers(http: httpx.Client, root: str, names: Sequence[str]) -> bool:
    try:
        if http.get(f"{root}/health").status_code != 200:
            return False
        listed = {m.get("id") for m in http.get(f"{root}/v1/models").json().get("data", [])}
    except (httpx.HTTPError, ValueError):
        return False
    return all(name in listed for name in names)


def _terminate_group(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the child's process group, SIGKILL it after `grace_s`."""
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    # Children of the group may outlive the leader; make sure they are gone.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    deadline = time.monotonic() + 10
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _exit_reason(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"process exited on {signal.Signals(-code).name}"
        return f"process exited on signal {-code}"
    return f"process exited with code {code}"


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`, read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the command name: state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _vllm_importable(python: str) -> bool:
    if os.path.abspath(python) == os.path.abspath(sys.executable):
        return importlib.util.find_spec("vllm") is not None
    probe = subprocess.run(
        [
            python,
            "-c",
            "import importlib.util,sys; sys.exit(importlib.util.find_spec('vllm') is None)",
        ],
        capture_output=True,
        check=False,
        timeout=60,
    )
    return probe.returncode == 0


@atexit.register
def _stop_all() -> None:
    with _LIVE_LOCK:
        servers = list(_LIVE_SERVERS)
    for server in servers:
        server.stop(grace_s=5.0)
