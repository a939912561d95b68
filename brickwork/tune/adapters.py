"""Registered LoRA adapters, and which adapter each skill is bound to (with rollback history).

Layout, under the cache (`brickwork._settings.cache_dir()`):

    adapters/<name>/adapter_config.json      the peft adapter (weights beside it)
    adapters/<name>/brickwork-adapter.json   its manifest: skill, base model, data, metrics
    merged/<name>/                           the adapter merged into a copy of the base weights
    bindings.json                            skill -> current adapter, plus the history

`bindings.json` is written atomically (temp file + rename) under a file lock, so two
`brickwork tune --promote` never lose each other's change. A skill whose `ModelBinding` names
no adapter (and is not `pinned`) runs on the adapter bound here, when the pool serves it.
`BRICKWORK_BINDINGS` points the bindings file elsewhere; `BRICKWORK_BINDINGS=off` ignores it.

Shipped adapters: brickwork installs specialists trained by its own recipe
(`brickwork.tune.recipe`, in `skills/adapters/`). They are served beside the registered ones
(`shipped_adapters`), and a skill with no entry in the bindings file runs on its shipped
specialist (`binding_for`); `brickwork skill rollback` or a binding to the base model (an
entry with no adapter) overrides that, and `BRICKWORK_BINDINGS=off` ignores it too.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

from brickwork._settings import cache_dir
from brickwork.errors import ConfigError

__all__ = [
    "MANIFEST_FILE",
    "AdapterInfo",
    "BindingChange",
    "SkillBinding",
    "adapter_path",
    "adapters_dir",
    "bind",
    "binding_for",
    "bindings_path",
    "check_adapter_name",
    "find_adapter",
    "get_adapter",
    "list_adapters",
    "load_bindings",
    "merged_dir",
    "rollback",
    "save_metrics",
    "shipped_adapters",
]

#: The manifest `brickwork tune` writes into every adapter folder.
MANIFEST_FILE = "brickwork-adapter.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_OFF = ("off", "none", "0", "false")


def adapters_dir(root: Path | None = None) -> Path:
    """Folder holding one sub-folder per registered adapter."""
    return (root or cache_dir()) / "adapters"


def merged_dir(name: str, root: Path | None = None) -> Path:
    """Folder of adapter `name` merged into a dedicated copy of its base weights."""
    return (root or cache_dir()) / "merged" / check_adapter_name(name)


def bindings_path() -> Path | None:
    """`$BRICKWORK_BINDINGS`, else `<cache>/bindings.json`; None when bindings are switched off."""
    env = os.environ.get
    return _bindings_path(
        env("BRICKWORK_BINDINGS"), env("BRICKWORK_CACHE_DIR"), env("XDG_CACHE_HOME"), env("HOME")
    )


@functools.lru_cache(maxsize=16)
def _bindings_path(
    setting: str | None, cache: str | None, xdg: str | None, home: str | None
) -> Path | None:
    """`bindings_path` for these environment values (`cache_dir` reads the last three).

    Asked on every run of every agent node; building the path each time cost 17 us.
    """
    if setting and setting.strip().lower() in _OFF:
        return None
    return Path(setting).expanduser() if setting else cache_dir() / "bindings.json"


def check_adapter_name(name: str) -> str:
    """Return `name` if it can name an adapter (a logical model `slm:<name>`), else raise.

    Raises:
        ConfigError: Empty, too long, or with characters other than letters, digits, `_.-`.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"adapter name {name!r} must be 1-64 letters, digits, '_', '.' or '-', starting "
            "with a letter or digit (it becomes the model name 'slm:<name>')"
        )
    return name


# -- the registry -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdapterInfo:
    """One registered adapter, read from its folder.

    Attributes:
        name: The adapter's name (the folder name; served as this model name).
        path: The adapter folder.
        rank: LoRA rank from `adapter_config.json` (vLLM's `--max-lora-rank` must cover it).
        skill: The skill it was trained for (None without a manifest).
        base_model: The base model it was trained on, as the manifest names it.
        metrics: Evaluation results stored by `brickwork tune` (empty before evaluation).
        created_at: When it was trained (ISO 8601), if known.
        manifest: The whole manifest as JSON data (empty without one).
    """

    name: str
    path: Path
    rank: int
    skill: str | None = None
    base_model: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    manifest: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, folder: Path) -> AdapterInfo:
        """Read an adapter folder.

        Raises:
            ConfigError: No `adapter_config.json`, or it or the manifest is not valid JSON.
        """
        config = _read_json(folder / "adapter_config.json", "adapter config")
        manifest = (
            _read_json(folder / MANIFEST_FILE, "adapter manifest")
            if (folder / MANIFEST_FILE).is_file()
            else {}
        )
        metrics = manifest.get("metrics")
        created = manifest.get("created_at")
        if isinstance(created, int | float):
            created = datetime.fromtimestamp(created, UTC).isoformat(timespec="seconds")
        return cls(
            name=folder.name,
            path=folder,
            rank=int(config.get("r", 8)),
            skill=manifest.get("skill"),
            base_model=manifest.get("base_model"),
            metrics=dict(metrics) if isinstance(metrics, Mapping) else {},
            created_at=str(created) if created is not None else None,
            manifest=manifest,
        )


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {str(path)!r} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what} {str(path)!r} cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {str(path)!r} is not a JSON object")
    return data


def adapter_path(name: str, root: Path | None = None) -> Path:
    """Where adapter `name` lives (or will live) in the registry."""
    return adapters_dir(root) / check_adapter_name(name)


def list_adapters(
    root: Path | None = None, *, skill: str | None = None, strict: bool = True
) -> list[AdapterInfo]:
    """Registered adapters (folders with an `adapter_config.json`), by name.

    Args:
        root: Cache root (default: `cache_dir()`).
        skill: Only adapters trained for this skill.
        strict: Raise on an unreadable adapter folder (False: leave it out, as servers do,
            so one broken folder does not stop serving).

    Raises:
        ConfigError: With `strict`, an adapter's config or manifest is not valid JSON.
    """
    folder = adapters_dir(root)
    if not folder.is_dir():
        return []
    found = []
    for sub in sorted(folder.iterdir()):
        if (sub / "adapter_config.json").is_file() and _NAME.match(sub.name):
            try:
                info = AdapterInfo.read(sub)
            except ConfigError:
                if strict:
                    raise
                continue
            if skill is None or info.skill == skill:
                found.append(info)
    return found


def get_adapter(name: str, root: Path | None = None) -> AdapterInfo:
    """The registered adapter `name`.

    Raises:
        ConfigError: No such adapter (the message lists the registered ones).
    """
    folder = adapter_path(name, root)
    if not (folder / "adapter_config.json").is_file():
        known = ", ".join(a.name for a in list_adapters(root)) or "none yet"
        raise ConfigError(
            f"unknown adapter {name!r} (registered: {known}); train one with `brickwork tune`"
        )
    return AdapterInfo.read(folder)


def find_adapter(name: str, root: Path | None = None) -> AdapterInfo:
    """Adapter `name`: the registered one, else the shipped specialist of that name.

    Raises:
        ConfigError: Neither is known (the message lists both kinds).
    """
    folder = adapter_path(name, root)
    if (folder / "adapter_config.json").is_file():
        return AdapterInfo.read(folder)
    shipped = shipped_adapters()
    for info in shipped:
        if info.name == name:
            return info
    known = ", ".join(a.name for a in list_adapters(root)) or "none yet"
    ships = ", ".join(a.name for a in shipped) or "none"
    raise ConfigError(
        f"unknown adapter {name!r} (registered: {known}; shipped: {ships}); "
        "train one with `brickwork tune`"
    )


def save_metrics(name: str, metrics: Mapping[str, float], root: Path | None = None) -> AdapterInfo:
    """Merge `metrics` into the adapter's manifest (atomically) and return the updated info.

    Values are numbers, as the manifest format (`brickwork.tune.train.AdapterManifest`)
    requires.
    """
    info = get_adapter(name, root)
    manifest = dict(info.manifest)
    manifest["metrics"] = {**dict(info.metrics), **dict(metrics)}
    _write_atomic(info.path / MANIFEST_FILE, json.dumps(manifest, indent=2, default=str))
    return AdapterInfo.read(info.path)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


# -- bindings -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BindingChange:
    """One earlier binding of a skill, kept for rollback.

    Attributes:
        adapter: The adapter the skill was bound to (None: the base model).
        at: When that binding was replaced (ISO 8601, UTC).
        note: Why it changed (e.g. the evaluation that promoted its successor).
    """

    adapter: str | None
    at: str
    note: str = ""


@dataclass(frozen=True)
class SkillBinding:
    """A skill's current adapter and the bindings it replaced, newest last."""

    skill: str
    adapter: str | None
    note: str = ""
    history: tuple[BindingChange, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON data for the bindings file."""
        return {
            "adapter": self.adapter,
            "note": self.note,
            "history": [{"adapter": c.adapter, "at": c.at, "note": c.note} for c in self.history],
        }

    @classmethod
    def from_json(cls, skill: str, data: Mapping[str, Any]) -> SkillBinding:
        """Parse one skill's entry of the bindings file."""
        history = tuple(
            BindingChange(h.get("adapter"), str(h.get("at", "")), str(h.get("note", "")))
            for h in data.get("history", ())
        )
        return cls(skill, data.get("adapter"), str(data.get("note", "")), history)


def _require_path(path: Path | None) -> Path:
    path = path or bindings_path()
    if path is None:
        raise ConfigError(
            "skill bindings are switched off (BRICKWORK_BINDINGS=off); unset it to promote "
            "or roll back"
        )
    return path


def load_bindings(path: Path | None = None) -> dict[str, SkillBinding]:
    """Every skill's binding (empty when the file does not exist or bindings are off).

    Raises:
        ConfigError: The bindings file exists but is not valid.
    """
    path = path or bindings_path()
    if path is None or not path.is_file():
        return {}
    data = _read_json(path, "bindings file")
    skills = data.get("skills", {})
    if not isinstance(skills, Mapping):
        raise ConfigError(f"bindings file {str(path)!r}: 'skills' is not an object")
    return {name: SkillBinding.from_json(name, entry) for name, entry in skills.items()}


def binding_for(skill: str, path: Path | None = None) -> str | None:
    """The adapter skill `skill` is bound to, or None (base model, or bindings off).

    Without an entry in the bindings file, a shipped specialist of the skill (see the module
    docstring) is its binding. Every agent node asks this on every run, so the file is read
    again only when it changed (`_bindings_at`).
    """
    path = path or bindings_path()
    if path is None:
        return None
    binding = _bindings_at(path).get(skill)
    if binding is not None:
        return binding.adapter
    return _shipped_for(skill)


#: The bindings file `binding_for` read last: its path, its (mtime, size, inode) or None when
#: it did not exist, and what it held. Writers replace the file (a new inode), never edit it.
_LAST_READ: tuple[Path, tuple[int, int, int] | None, dict[str, SkillBinding]] | None = None


def _bindings_at(path: Path) -> dict[str, SkillBinding]:
    """`load_bindings(path)`, read again only when the file changed (else one `stat`)."""
    global _LAST_READ
    try:
        info = path.stat()
        signature: tuple[int, int, int] | None = (info.st_mtime_ns, info.st_size, info.st_ino)
    except OSError:
        signature = None
    last = _LAST_READ
    if last is not None and last[0] == path and last[1] == signature:
        return last[2]
    bindings = load_bindings(path) if signature is not None else {}
    _LAST_READ = (path, signature, bindings)
    return bindings


@functools.cache
def _installed_shipped() -> tuple[AdapterInfo, ...]:
    """The installed package's shipped adapters, read once (package data never changes)."""
    from brickwork import skills

    return tuple(shipped_adapters(Path(skills.__file__).resolve().parent / "adapters"))


def _shipped_for(skill: str) -> str | None:
    shipped = [a for a in shipped_adapters() if a.skill == skill]
    return shipped[0].name if shipped else None


def shipped_adapters(folder: Path | None = None) -> list[AdapterInfo]:
    """The specialists brickwork ships (`skills/adapters/`), by name; unreadable ones left out.

    Args:
        folder: Where to look (default: the installed `brickwork.skills` package's `adapters`).
    """
    if folder is None:
        return list(_installed_shipped())
    if not folder.is_dir():
        return []
    found = []
    for sub in sorted(folder.iterdir()):
        if (sub / "adapter_config.json").is_file() and _NAME.match(sub.name):
            try:
                found.append(AdapterInfo.read(sub))
            except ConfigError:
                continue
    return found


def _lock(path: Path) -> FileLock:
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.with_name(f"{path.name}.lock")), timeout=30)


def _save(path: Path, bindings: Mapping[str, SkillBinding]) -> None:
    data = {"skills": {name: b.to_json() for name, b in sorted(bindings.items())}}
    _write_atomic(path, json.dumps(data, indent=2))


def bind(
    skill: str, adapter: str | None, *, note: str = "", path: Path | None = None
) -> SkillBinding:
    """Bind `skill` to `adapter` (None: the base model); the old binding goes to the history.

    Raises:
        ConfigError: Bindings are switched off, or `adapter` is not registered.
    """
    path = _require_path(path)
    if adapter is not None:
        get_adapter(adapter)
    with _lock(path):
        bindings = load_bindings(path)
        old = bindings.get(skill)
        if old is None:  # no entry yet: the skill ran on its shipped specialist, or the base
            shipped = _shipped_for(skill)
            old = SkillBinding(skill, shipped, "shipped with brickwork" if shipped else "")
        now = datetime.now(UTC).isoformat(timespec="seconds")
        change = BindingChange(old.adapter, now, old.note)
        new = SkillBinding(skill, adapter, note, (*old.history, change))
        bindings[skill] = new
        _save(path, bindings)
    return new


def rollback(skill: str, *, path: Path | None = None) -> SkillBinding:
    """Restore the binding `skill` had before its current one.

    Raises:
        ConfigError: Bindings are off, or the skill has no earlier binding.
    """
    path = _require_path(path)
    with _lock(path):
        bindings = load_bindings(path)
        current = bindings.get(skill)
        if current is None or not current.history:
            raise ConfigError(
                f"skill {skill!r} has no earlier binding to roll back to "
                "(see `brickwork skill show` for its history)"
            )
        previous = current.history[-1]
        note = f"rolled back from {current.adapter or 'the base model'}"
        restored = SkillBinding(skill, previous.adapter, note, current.history[:-1])
        bindings[skill] = restored
        _save(path, bindings)
    return restored
