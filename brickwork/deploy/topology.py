"""What a deployment is made of: API replicas, model tiers, the shared store and cache.

A `Topology` is written down before anything runs and is rendered by every target the same
way: Kubernetes manifests (`brickwork.deploy.k8s`) and a local Ray Serve cluster
(`brickwork.deploy.ray`). Each `Tier` is one vLLM server kind (a base model, its LoRA
adapters, its GPUs or CPU cores) run as `replicas` identical servers; its command line comes
from the launch profiles in `brickwork.serving.profiles` (GPU) or the launcher's `ServerSpec`
(CPU), so a deployment serves a model exactly as `brickwork serve` would.

The run store URL holds a password, so manifests only reference it (a Secret); the Redis URL
and the pool config (which tier answers each logical model name) are plain configuration.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from brickwork.errors import ConfigError

__all__ = [
    "API_PORT",
    "MODEL_PORT",
    "Device",
    "Tier",
    "Topology",
    "h100_topology",
]

Device = Literal["gpu", "cpu"]

#: Port every API replica listens on inside its pod or Serve proxy.
API_PORT = 8080
#: Port every vLLM server listens on inside its pod.
MODEL_PORT = 8000
#: Where adapters are mounted in a model pod (one folder per adapter name).
ADAPTERS_MOUNT = "/adapters"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LOGICAL = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class Tier:
    """One kind of model server in the ladder, run as `replicas` identical vLLM servers.

    Attributes:
        name: The logical model name the pool routes to (`slm`, `large`).
        model: Hugging Face model id or folder passed to `--model`.
        served_name: Name clients use for the base model; the last part of `model` when empty.
        params_b: Parameter count in billions (checks that it fits its GPUs).
        dtype: Weights dtype.
        adapters: LoRA adapter names served with it; each is mounted at `/adapters/<name>`
            and reachable in the pool as `<name of the tier>:<adapter>`.
        replicas: Identical servers behind one Service.
        gpus: GPUs per server (tensor parallel over them); 0 runs it on CPU cores.
        cores: CPU cores per server when `gpus` is 0.
        max_model_len: Context length, or None for the model's own.
        max_loras: Adapters active in one batch.
        max_lora_rank: Largest adapter rank accepted.
        fp8: FP8 weights and KV cache (GPU only).
    """

    name: str
    model: str
    served_name: str = ""
    params_b: float = 1.0
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    adapters: tuple[str, ...] = ()
    replicas: int = 1
    gpus: int = 1
    cores: int = 2
    max_model_len: int | None = 8192
    max_loras: int = 4
    max_lora_rank: int = 16
    fp8: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "adapters", tuple(self.adapters))
        if not self.served_name:
            object.__setattr__(self, "served_name", self.model.rstrip("/").rsplit("/", 1)[-1])
        if not _LOGICAL.match(self.name):
            raise ConfigError(
                f"tier name {self.name!r} must be lower-case letters, digits, '-' or '_', "
                "starting with a letter (e.g. 'slm', 'large')"
            )
        if self.replicas < 1:
            raise ConfigError(f"tier {self.name!r}: replicas {self.replicas!r} must be >= 1")
        if self.gpus < 0 or (self.gpus == 0 and self.cores < 1):
            raise ConfigError(
                f"tier {self.name!r}: gpus {self.gpus!r} must be >= 0 and a CPU tier needs "
                f"cores >= 1 (got {self.cores!r})"
            )
        if self.fp8 and self.gpus == 0:
            raise ConfigError(f"tier {self.name!r}: fp8 needs GPUs; set gpus >= 1 or fp8=False")
        if len(set(self.adapters)) != len(self.adapters):
            raise ConfigError(f"tier {self.name!r}: adapters {self.adapters!r} repeat a name")

    @property
    def device(self) -> Device:
        """Where each server runs."""
        return "gpu" if self.gpus else "cpu"

    @property
    def service(self) -> str:
        """The Kubernetes name of the tier's Deployment and Service (a DNS label)."""
        return f"brickwork-{self.name.replace('_', '-')}"

    def adapter_paths(self, root: str | Path = ADAPTERS_MOUNT) -> dict[str, str]:
        """Adapter name -> folder the server reads it from."""
        return {name: f"{str(root).rstrip('/')}/{name}" for name in self.adapters}


@dataclass(frozen=True)
class Topology:
    """A whole deployment: the HTTP front's replicas, the model tiers and shared state.

    Attributes:
        name: Prefix of every object's name and the `app.kubernetes.io/part-of` label.
        namespace: Kubernetes namespace.
        api_replicas: Replicas of the HTTP front (each serves every graph).
        graphs: Graphs the front serves (its `model` names).
        tiers: Model tiers from the cheapest to the top; the pool's ladder follows this order.
        store_url: The shared run store and checkpointer (`postgresql://...`); never written
            into manifests, only referenced through `store_secret`.
        redis_url: The shared response cache, or None for none.
        store_secret: Secret (name, key) holding the store URL.
        image: The brickwork container image (the API replicas).
        vllm_image: The vLLM container image (GPU tiers).
        vllm_cpu_image: The vLLM image for CPU tiers.
        adapters_claim: PersistentVolumeClaim holding the adapters, mounted read-only.
        api_cpu: CPU request of one API replica (cores).
        api_memory: Memory request of one API replica.
    """

    name: str = "brickwork"
    namespace: str = "brickwork"
    api_replicas: int = 2
    graphs: tuple[str, ...] = ("smart_home",)
    tiers: tuple[Tier, ...] = ()
    store_url: str | None = None
    redis_url: str | None = None
    store_secret: tuple[str, str] = ("brickwork-store", "url")
    image: str = "brickwork:0.1.0"
    vllm_image: str = "vllm/vllm-openai:latest"
    vllm_cpu_image: str = "vllm-cpu:latest"
    adapters_claim: str = "brickwork-adapters"
    api_cpu: str = "1"
    api_memory: str = "2Gi"
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tiers", tuple(self.tiers))
        object.__setattr__(self, "graphs", tuple(self.graphs))
        for label in (self.name, self.namespace):
            if not _DNS_LABEL.match(label):
                raise ConfigError(
                    f"{label!r} is not a DNS label (lower-case letters, digits and '-', "
                    "at most 63); Kubernetes names must be"
                )
        if self.api_replicas < 1:
            raise ConfigError(f"api_replicas {self.api_replicas!r} must be >= 1")
        if not self.graphs:
            raise ConfigError("a topology serves at least one graph, e.g. graphs=('smart_home',)")
        names = [tier.name for tier in self.tiers]
        if len(set(names)) != len(names):
            raise ConfigError(f"tier names {names!r} repeat; every tier needs its own name")
        if self.store_url is not None and not self.store_url.startswith(
            ("postgresql://", "postgres://")
        ):
            raise ConfigError(
                f"store_url {self.store_url!r} must be a postgresql:// URL: replicas share "
                "one run store and checkpointer, which a SQLite file cannot be"
            )

    def pool_config(self, base_urls: Mapping[str, str] | None = None) -> dict[str, object]:
        """The pool config (the `PoolConfig` JSON) every API replica loads.

        Each tier answers its own name, and each of its adapters as `<tier>:<adapter>`; the
        top tier also plays `frontier` (flagged `stand_in`) unless a tier is named so.

        Args:
            base_urls: Tier name -> base URL ending in /v1 (default: the tier's in-cluster
                Service, `http://brickwork-<tier>:8000/v1`).
        """
        if not self.tiers:
            raise ConfigError("the topology has no model tier; add one (e.g. Tier('slm', ...))")
        urls = dict(base_urls or {})
        models: dict[str, list[dict[str, object]]] = {}
        for tier in self.tiers:
            url = urls.get(tier.name, f"http://{tier.service}:{MODEL_PORT}/v1")
            models[tier.name] = [_endpoint(tier.service, url, tier.served_name)]
            for adapter in tier.adapters:
                models[f"{tier.name}:{adapter}"] = [
                    _endpoint(f"{tier.service}:{adapter}", url, adapter)
                ]
        if "frontier" not in models:
            top = dict(models[self.tiers[-1].name][0])
            top["stand_in"] = True
            models[self.tiers[-1].name] = [top]
            models["frontier"] = [top]
        ladder = [tier.name for tier in self.tiers if tier.name != "frontier"] + ["frontier"]
        return {"models": models, "tiers": ladder}


def _endpoint(name: str, base_url: str, model: str) -> dict[str, object]:
    return {"name": name, "base_url": base_url, "model": model, "kind": "vllm"}


def h100_topology(
    *,
    api_replicas: int = 2,
    slm_replicas: int = 2,
    adapters: tuple[str, ...] = (),
    redis_url: str | None = "redis://brickwork-redis:6379/0",
) -> Topology:
    """The H100 plan on paper: a small tier with its adapters and a large tier, one GPU each.

    The small tier is Qwen2.5-1.5B-Instruct with multi-LoRA; the large one is
    Qwen2.5-7B-Instruct. One GPU per server keeps scheduling simple; sharing one H100
    between small servers (`serving.profiles.h100_shared_small`) needs MIG or time-slicing
    on the cluster and is not rendered here.
    """
    return Topology(
        api_replicas=api_replicas,
        graphs=("smart_home", "support"),
        tiers=(
            Tier(
                "slm",
                "Qwen/Qwen2.5-1.5B-Instruct",
                params_b=1.5,
                adapters=adapters,
                replicas=slm_replicas,
            ),
            Tier("large", "Qwen/Qwen2.5-7B-Instruct", params_b=7.6),
        ),
        redis_url=redis_url,
    )
