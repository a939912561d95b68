"""GPU launch plans for vLLM: typed, checked before launch, rendered to exact command lines.

A `LaunchPlan` places `InstancePlan`s (one vLLM server each) on the GPUs of one machine: several
small specialists may share a GPU with split `--gpu-memory-utilization`, a larger base may span
GPUs with tensor parallelism. Building a plan checks that it can fit (utilisation per GPU, weights
plus a minimum KV cache per instance, GPU indices, ports, names) and raises `ConfigError`
otherwise; `render()` gives each server's argv and environment. Nothing here needs a GPU.

Weights are estimated as parameters x bytes per parameter / tensor-parallel size; activations
and CUDA graphs need more, so the KV-cache minimum is a floor, not a forecast. vLLM checks free
memory when an instance starts, so start instances that share a GPU one after another.
"""

from __future__ import annotations

import math
import shlex
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypedDict, Unpack

from brickwork.errors import ConfigError

__all__ = [
    "GPU",
    "H100_80GB",
    "LORA_RANKS",
    "BaseModelProfile",
    "Dtype",
    "InstanceOptions",
    "InstancePlan",
    "LaunchPlan",
    "RenderedCommand",
    "h100_shared_small",
    "h100_tensor_parallel",
]

Dtype = Literal["bfloat16", "float16", "float32"]

_API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
_BYTES_PER_PARAM: dict[str, int] = {"bfloat16": 2, "float16": 2, "float32": 4, "fp8": 1}
_TP_SIZES = (1, 2, 4, 8)
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # what vLLM's --max-lora-rank accepts
_GIB = 2**30
_EPS = 1e-9


@dataclass(frozen=True)
class GPU:
    """One kind of GPU: a name for messages and its memory in GiB."""

    name: str
    memory_gib: float


H100_80GB = GPU("H100-80GB", 80)
_EIGHT_H100 = (H100_80GB,) * 8


@dataclass(frozen=True)
class BaseModelProfile:
    """A base model to serve, described well enough to estimate its weight memory.

    Attributes:
        name: Default served name.
        path: Hugging Face model id or folder passed to `--model`.
        params_b: Parameter count in billions.
        dtype: Checkpoint/compute dtype; an instance's `quantization="fp8"` overrides its size.
    """

    name: str
    path: str
    params_b: float
    dtype: Dtype = "bfloat16"

    def weight_gib(self, quantization: Literal["fp8"] | None = None) -> float:
        """Estimated weight memory in GiB, whole model, for the given quantization."""
        per_param = _BYTES_PER_PARAM[quantization or self.dtype]
        return self.params_b * 1e9 * per_param / _GIB


class InstanceOptions(TypedDict, total=False):
    """Per-instance settings that `LaunchPlan.pack` passes on to every `InstancePlan`."""

    host: str
    max_num_seqs: int
    max_model_len: int | None
    enable_prefix_caching: bool
    quantization: Literal["fp8"] | None
    kv_cache_dtype: Literal["auto", "fp8"]
    extra_args: tuple[str, ...]


@dataclass(frozen=True)
class InstancePlan:
    """One vLLM server: a base model, optional LoRA adapters, its GPUs and its limits.

    Attributes:
        model: The base model.
        port: Port to bind (fixed: a plan is written down before anything runs).
        gpus: Indices of the GPUs it runs on (`CUDA_VISIBLE_DEVICES`).
        gpu_memory_utilization: Fraction of each of its GPUs' memory it may take.
        tensor_parallel_size: Must equal `len(gpus)` and be 1, 2, 4 or 8.
        served_name: Name clients use for the base model; `model.name` when empty.
        lora_modules: Adapter name -> adapter path, each served under its name.
        enable_lora: Turn LoRA on even without `lora_modules` (adapters loaded at run time).
        max_loras: Adapters active in one batch.
        max_lora_rank: Largest adapter rank accepted.
        max_num_seqs: Sequences in one batch.
        max_model_len: Context length, or None for the model's own.
        enable_prefix_caching: Reuse the KV cache of shared prompt prefixes.
        quantization: "fp8" for FP8 weights (dynamic or an FP8 checkpoint).
        kv_cache_dtype: "fp8" halves KV-cache memory.
        host: Interface to bind.
        extra_args: Appended to the command line as given.
        extra_env: Added to the environment.
    """

    model: BaseModelProfile
    port: int
    gpus: tuple[int, ...] = (0,)
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    served_name: str = ""
    lora_modules: Mapping[str, str | Path] = field(default_factory=dict, hash=False)
    enable_lora: bool = False
    max_loras: int = 4
    max_lora_rank: int = 16
    max_num_seqs: int = 256
    max_model_len: int | None = None
    enable_prefix_caching: bool = True
    quantization: Literal["fp8"] | None = None
    kv_cache_dtype: Literal["auto", "fp8"] = "auto"
    host: str = "127.0.0.1"
    extra_args: tuple[str, ...] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "gpus", tuple(self.gpus))
        object.__setattr__(self, "extra_args", tuple(self.extra_args))
        object.__setattr__(self, "served_name", self.served_name or self.model.name)
        if problem := self._problem():
            raise ConfigError(f"instance {self.served_name!r}: {problem}")

    def _problem(self) -> str | None:
        tp, util, gpus = self.tensor_parallel_size, self.gpu_memory_utilization, self.gpus
        if not gpus or len(set(gpus)) != len(gpus) or min(gpus) < 0:
            return f"gpus {gpus!r} must be distinct GPU indices >= 0"
        if tp not in _TP_SIZES or tp != len(gpus):
            return (
                f"tensor_parallel_size {tp!r} must be one of {_TP_SIZES} and equal the number "
                f"of gpus {gpus!r}; list one GPU per shard"
            )
        if not 0 < util <= 1:
            return f"gpu_memory_utilization {util!r} must be in (0, 1]"
        if not 0 < self.port < 65536:
            return f"port {self.port!r} must be in 1-65535"
        if self.max_lora_rank not in LORA_RANKS:
            return f"max_lora_rank {self.max_lora_rank!r} must be one of {LORA_RANKS}"
        if min(self.max_loras, self.max_num_seqs, self.max_model_len or 1) < 1:
            return "max_loras, max_num_seqs and max_model_len must be at least 1"
        return None

    @property
    def model_names(self) -> tuple[str, ...]:
        """Every name the server answers to: the base and each adapter."""
        return (self.served_name, *sorted(self.lora_modules))

    @property
    def weight_gib_per_gpu(self) -> float:
        """Estimated weight memory on each of its GPUs, in GiB."""
        return self.model.weight_gib(self.quantization) / self.tensor_parallel_size

    def command(self, python: str = "python") -> list[str]:
        """The vLLM command line for this instance."""
        argv = [python, "-m", _API_SERVER_MODULE, "--model", self.model.path]
        argv += ["--served-model-name", self.served_name, "--host", self.host]
        argv += ["--port", str(self.port), "--dtype", self.model.dtype]
        argv += ["--tensor-parallel-size", str(self.tensor_parallel_size)]
        argv += ["--gpu-memory-utilization", str(self.gpu_memory_utilization)]
        argv += ["--max-num-seqs", str(self.max_num_seqs)]
        if self.max_model_len is not None:
            argv += ["--max-model-len", str(self.max_model_len)]
        caching = "enable" if self.enable_prefix_caching else "no-enable"
        argv.append(f"--{caching}-prefix-caching")
        if self.quantization is not None:
            argv += ["--quantization", self.quantization]
        if self.kv_cache_dtype != "auto":
            argv += ["--kv-cache-dtype", self.kv_cache_dtype]
        if self.enable_lora or self.lora_modules:
            argv += ["--enable-lora", "--max-loras", str(self.max_loras)]
            argv += ["--max-lora-rank", str(self.max_lora_rank)]
        if self.lora_modules:
            argv.append("--lora-modules")
            argv += [f"{name}={path}" for name, path in sorted(self.lora_modules.items())]
        return argv + list(self.extra_args)


@dataclass(frozen=True)
class RenderedCommand:
    """One server's command line and the environment variables to set for it."""

    argv: list[str]
    env: dict[str, str]

    def to_shell(self) -> str:
        """A copy-pasteable shell line: `VAR=value ... python -m ...`."""
        prefix = [f"{key}={shlex.quote(value)}" for key, value in sorted(self.env.items())]
        return " ".join([*prefix, shlex.join(self.argv)])


@dataclass(frozen=True)
class LaunchPlan:
    """Instances placed on the GPUs of one machine, checked to fit when built.

    Attributes:
        instances: The servers to run.
        gpus: The machine's GPUs; an instance's GPU index points into this tuple.
        max_gpu_utilization: Ceiling on the summed utilisation of instances sharing a GPU.
        min_kv_cache_gib: KV cache each instance needs per GPU beyond its weights.
        python: Interpreter that runs vLLM.
    """

    instances: tuple[InstancePlan, ...]
    gpus: tuple[GPU, ...] = _EIGHT_H100
    max_gpu_utilization: float = 0.95
    min_kv_cache_gib: float = 1.0
    python: str = "python"

    def __post_init__(self) -> None:
        object.__setattr__(self, "instances", tuple(self.instances))
        object.__setattr__(self, "gpus", tuple(self.gpus))
        if not self.instances:
            raise ConfigError("a launch plan needs at least one instance")
        self._check_names_and_ports()
        used: dict[int, float] = {}
        for inst in self.instances:
            for index in inst.gpus:
                if index >= len(self.gpus):
                    raise ConfigError(
                        f"instance {inst.served_name!r}: GPU index {index!r} is out of range; "
                        f"the plan has {len(self.gpus)} GPU(s) (indices 0-{len(self.gpus) - 1})"
                    )
                used[index] = used.get(index, 0.0) + inst.gpu_memory_utilization
                self._check_fits(inst, index)
        for index, total in sorted(used.items()):
            if total > self.max_gpu_utilization + _EPS:
                sharing = [i.served_name for i in self.instances if index in i.gpus]
                raise ConfigError(
                    f"GPU {index} is over-subscribed: instances {sharing!r} ask for "
                    f"gpu_memory_utilization summing to {total:.2f}, more than "
                    f"{self.max_gpu_utilization!r}; lower their fractions or move one"
                )

    def _check_names_and_ports(self) -> None:
        ports = Counter(inst.port for inst in self.instances)
        if clashes := sorted(port for port, n in ports.items() if n > 1):
            raise ConfigError(f"duplicate port(s) {clashes!r}; give every instance its own port")
        names = Counter(name for inst in self.instances for name in inst.model_names)
        if clashes_n := sorted(name for name, n in names.items() if n > 1):
            raise ConfigError(
                f"duplicate served/adapter name(s) {clashes_n!r}; every base and adapter "
                "name must be unique so the pool can route to it"
            )

    def _check_fits(self, inst: InstancePlan, index: int) -> None:
        gpu = self.gpus[index]
        share = inst.gpu_memory_utilization * gpu.memory_gib
        needed = inst.weight_gib_per_gpu + self.min_kv_cache_gib
        if needed > share:
            raise ConfigError(
                f"instance {inst.served_name!r} does not fit on GPU {index} ({gpu.name}): "
                f"{inst.weight_gib_per_gpu:.1f} GiB of weights per GPU + "
                f"{self.min_kv_cache_gib:g} GiB KV cache > its share {share:.1f} GiB "
                f"({inst.gpu_memory_utilization!r} x {gpu.memory_gib:g} GiB); use more GPUs "
                "(tensor_parallel_size), quantization='fp8' or a larger utilization"
            )

    @classmethod
    def pack(
        cls,
        models: Sequence[BaseModelProfile],
        *,
        gpu_index: int = 0,
        gpus: tuple[GPU, ...] = _EIGHT_H100,
        total_utilization: float = 0.9,
        base_port: int = 8000,
        python: str = "python",
        **options: Unpack[InstanceOptions],
    ) -> LaunchPlan:
        """Put one instance per model on GPU `gpu_index`, splitting `total_utilization` evenly.

        Each share is rounded down to a hundredth; ports count up from `base_port`.
        """
        if not models:
            raise ConfigError("pack() needs at least one model")
        share = math.floor(total_utilization / len(models) * 100 + _EPS) / 100
        instances = tuple(
            InstancePlan(
                model=model,
                port=base_port + offset,
                gpus=(gpu_index,),
                gpu_memory_utilization=share,
                **options,
            )
            for offset, model in enumerate(models)
        )
        return cls(instances=instances, gpus=gpus, python=python)

    def render(self) -> list[RenderedCommand]:
        """Each instance's argv and environment (`CUDA_VISIBLE_DEVICES` plus its extras)."""
        return [
            RenderedCommand(
                argv=inst.command(self.python),
                env={
                    "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in inst.gpus),
                    **inst.extra_env,
                },
            )
            for inst in self.instances
        ]

    def to_shell(self) -> str:
        """One copy-pasteable shell line per instance (each runs in the foreground)."""
        return "\n".join(command.to_shell() for command in self.render())


def h100_shared_small(
    models: Sequence[BaseModelProfile],
    *,
    gpu_index: int = 0,
    gpu_count: int = 1,
    base_port: int = 8000,
    **options: Unpack[InstanceOptions],
) -> LaunchPlan:
    """Several small specialists (about 0.5B-8B) sharing one H100, 0.9 split evenly.

    Defaults to `max_num_seqs=128` and `max_model_len=8192` per instance; `options` override.
    """
    options.setdefault("max_num_seqs", 128)
    options.setdefault("max_model_len", 8192)
    gpus = (H100_80GB,) * gpu_count
    return LaunchPlan.pack(models, gpu_index=gpu_index, gpus=gpus, base_port=base_port, **options)


def h100_tensor_parallel(
    model: BaseModelProfile | str,
    *,
    params_b: float = 70,
    gpus: int = 4,
    fp8: bool = True,
    port: int = 8000,
    gpu_count: int = 8,
    max_model_len: int | None = None,
) -> LaunchPlan:
    """One larger base on GPUs 0..`gpus`-1 with tensor parallelism; FP8 weights and KV cache.

    `params_b` is used only when `model` is a path or model id (to estimate its weights).
    """
    if isinstance(model, str):
        model = BaseModelProfile(
            name=model.rstrip("/").rsplit("/", 1)[-1], path=model, params_b=params_b
        )
    instance = InstancePlan(
        model=model,
        port=port,
        gpus=tuple(range(gpus)),
        tensor_parallel_size=gpus,
        quantization="fp8" if fp8 else None,
        kv_cache_dtype="fp8" if fp8 else "auto",
        max_model_len=max_model_len,
    )
    return LaunchPlan(instances=(instance,), gpus=(H100_80GB,) * gpu_count)
