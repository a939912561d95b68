"""Routers on disk, beside the adapter bindings, and whether one still fits its node.

Layout, in the folder that holds `bindings.json` (`brickwork.tune.adapters.bindings_path`;
the cache when bindings are off):

    routers/<graph>/<node>.json          the manifest: format, revision, skill, binding, tiers,
                                         feature layout, scikit-learn version, model file name
    routers/<graph>/<node>.r<N>.pkl      the fitted classifiers of revision N (pickle)

A skill folder evaluated as a one-node graph is named `<kind>:<skill>`; its folder is
`<kind>.<skill>` (no ':' in file names). The manifest is written last, by rename, so a reader
sees either the old router or the new one. A router is *valid* for a run only when its format
and scikit-learn version are this process's and the node's skill still has the binding it was
trained under (`binding_key`): promoting a new adapter (or rolling one back) makes the router
stale until
`brickwork route train` runs again. Pickles are read only from this folder, which brickwork
itself writes.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brickwork._settings import cache_dir
from brickwork.errors import ConfigError
from brickwork.routing.features import FeatureSpec
from brickwork.routing.learner import Router, TierFit

if TYPE_CHECKING:
    from brickwork.skills.skill import Skill

__all__ = [
    "FORMAT",
    "RouterEntry",
    "binding_key",
    "list_routers",
    "load_router",
    "router_path",
    "routers_dir",
    "save_router",
    "stale_reason",
]

#: The manifest format this code writes and reads.
FORMAT = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
#: Loaded routers by manifest path, with the manifest's (mtime, size) when loaded.
_loaded: dict[Path, tuple[tuple[int, int], Router | None]] = {}


def routers_dir(root: Path | None = None) -> Path:
    """`<root>/routers`; by default beside the bindings file (the cache when bindings are off)."""
    if root is not None:
        return root / "routers"
    from brickwork.tune.adapters import bindings_path

    bindings = bindings_path()
    return (bindings.parent if bindings is not None else cache_dir()) / "routers"


def _check(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(
            f"{what} name {name!r} cannot name a router file: use letters, digits, '_.-'"
        )
    return name


def _folder(graph: str) -> str:
    """The folder name of a graph's routers (`kind:skill` -> `kind.skill`)."""
    return _check(graph.replace(":", "."), "graph")


def router_path(graph: str, node: str, root: Path | None = None) -> Path:
    """The manifest of the router of `node` in `graph`."""
    return routers_dir(root) / _folder(graph) / f"{_check(node, 'node')}.json"


def binding_key(skill: Skill | str | None) -> str:
    """What a skill runs on, as a string that changes with every new binding.

    "own:<logical name>" for a skill bound explicitly (or pinned, or with bindings off),
    "bound:<adapter or base>@<when>#<bindings so far>" for an entry in the bindings file,
    "shipped:<adapter>" for a shipped specialist, "-" for an agent without a skill. A skill
    given by name is taken to have the default binding (`slm`, not pinned).
    """
    if skill is None:
        return "-"
    if isinstance(skill, str):
        name, own, fixed = skill, "own:slm", False
    else:
        name, own = skill.name, f"own:{skill.binding.logical_name}"
        fixed = skill.binding.adapter is not None or skill.binding.pinned
    if fixed:
        return own
    from brickwork.tune.adapters import binding_for, bindings_path, load_bindings

    path = bindings_path()
    if path is None:
        return own
    entry = load_bindings(path).get(name)
    if entry is not None:
        when = entry.history[-1].at if entry.history else ""
        return f"bound:{entry.adapter or 'base'}@{when}#{len(entry.history)}"
    shipped = binding_for(name, path)
    return f"shipped:{shipped}" if shipped else own


def _sklearn_version() -> str:
    import sklearn

    return str(sklearn.__version__)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)


def _manifest(router: Router, model_file: str) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "graph": router.graph,
        "node": router.node,
        "revision": router.revision,
        "skill": router.skill,
        "binding": router.binding,
        "trained_at": router.trained_at,
        "sklearn": _sklearn_version(),
        "features": router.spec.to_json(),
        "tiers": {tier: fit.to_json() for tier, fit in router.tiers.items()},
        "model_file": model_file,
    }


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def save_router(router: Router, root: Path | None = None) -> Router:
    """Save a router as the next revision of its node's router; returns it with that revision."""
    path = router_path(router.graph, router.node, root)
    previous = _read_manifest(path) if path.is_file() else None
    revision = int(previous.get("revision", 0)) + 1 if previous else 1
    saved = router.with_revision(revision)
    model_file = f"{router.node}.r{revision}.pkl"
    _write_atomic(path.with_name(model_file), pickle.dumps(dict(router.models)))
    _write_atomic(path, json.dumps(_manifest(saved, model_file), indent=2).encode())
    if previous and previous.get("model_file") not in (None, model_file):
        (path.parent / str(previous["model_file"])).unlink(missing_ok=True)
    return saved


def load_router(graph: str, node: str, root: Path | None = None) -> Router | None:
    """The saved router of `node` in `graph`, or None (none, unreadable, or another format).

    Routers are cached per process and re-read when their manifest changes on disk.
    """
    path = router_path(graph, node, root)
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (stat.st_mtime_ns, stat.st_size)
    cached = _loaded.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    router = _read(path)
    _loaded[path] = (key, router)
    return router


def _read(path: Path) -> Router | None:
    data = _read_manifest(path)
    if data is None or data.get("format") != FORMAT or data.get("sklearn") != _sklearn_version():
        return None
    try:
        with (path.parent / str(data["model_file"])).open("rb") as file:
            models = pickle.load(file)  # noqa: S301 - written by save_router into our own cache
        tiers = {t: TierFit.from_json(t, v) for t, v in dict(data["tiers"]).items()}
        return Router(
            str(data["graph"]), str(data["node"]), data.get("skill"), str(data["binding"]),
            FeatureSpec.from_json(data["features"]), tiers, dict(models),
            int(data["revision"]), float(data["trained_at"]),
        )  # fmt: skip
    except (OSError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError):
        return None


def stale_reason(router: Router, skill: Skill | None) -> str | None:
    """Why `router` no longer fits its node (None: it does)."""
    current = binding_key(skill)
    if router.binding != current:
        return (
            f"trained under binding {router.binding!r}, the skill now runs on {current!r}; "
            "run `brickwork route train` again"
        )
    name = skill.name if skill is not None else None
    if router.skill != name:
        return f"trained for skill {router.skill!r}, the node now runs {name!r}"
    return None


@dataclass(frozen=True)
class RouterEntry:
    """A saved router, as `brickwork route show` lists it (manifest data, not loaded)."""

    graph: str
    node: str
    path: Path
    manifest: dict[str, Any]

    @property
    def age_s(self) -> float:
        """Seconds since it was trained."""
        return time.time() - float(self.manifest.get("trained_at", 0.0))


def list_routers(graph: str | None = None, root: Path | None = None) -> list[RouterEntry]:
    """Saved routers (of one graph, or all), by graph then node."""
    base = routers_dir(root)
    if not base.is_dir():
        return []
    found = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        if graph is not None and folder.name != _folder(graph):
            continue
        for path in sorted(folder.glob("*.json")):
            manifest = _read_manifest(path)
            if manifest is not None:
                name = str(manifest.get("graph") or folder.name)
                found.append(RouterEntry(name, path.stem, path, manifest))
    return found
