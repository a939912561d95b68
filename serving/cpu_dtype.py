"""Which dtype serves a model fastest on this CPU: measured once per processor, then cached.

On a CPU, a call is a prefill (matrix-matrix products over the prompt) and one matrix-vector
product per generated token. Whether bfloat16 beats float32 depends on the processor, not on
the model: where the CPU has fast bfloat16 kernels, bfloat16 reads half the bytes and wins (the
bundled 1.5B model was 1.6-2.5x faster a call in bfloat16 on one such machine); on an AVX2-only
AMD EPYC here, torch's bfloat16 matrix-matrix product was 5x slower than float32 and the
bundled 1.5B model took 46 s a call in bfloat16 against 27 s in float32. A flag check cannot
tell the two apart (both machines report AVX2 and no AVX-512), so `fastest_cpu_dtype` times
both on the shapes of a call, on one thread, and keeps the answer in
`<cache>/cpu-dtype.json`, keyed by the processor's name and flags.

`BRICKWORK_LARGE_DTYPE` (`bfloat16` or `float32`) overrides the measurement.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brickwork._settings import cache_dir
from brickwork.errors import ConfigError

__all__ = [
    "DTYPE_ENV",
    "DtypeTiming",
    "cpu_signature",
    "fastest_cpu_dtype",
    "pick_dtype",
    "time_linear",
]

#: Environment variable that overrides the measured choice.
DTYPE_ENV = "BRICKWORK_LARGE_DTYPE"
_CHOICES = ("bfloat16", "float32")
_CACHE_NAME = "cpu-dtype.json"
#: A call's shape, roughly: a prompt of a few hundred tokens (prefill in blocks of 64 rows) and
#: a few dozen generated tokens (one row each), through one of the model's larger projections.
_PREFILL_BLOCKS = 5
_DECODE_STEPS = 32
_IN, _OUT = 1536, 8960  # Qwen2.5-1.5B's MLP projection


@dataclass(frozen=True)
class DtypeTiming:
    """Seconds one call's shapes took in one dtype: `prefill` (64 rows) and `decode` (1 row)."""

    dtype: str
    prefill_s: float
    decode_s: float

    @property
    def call_s(self) -> float:
        """The estimated time of one call's products in this dtype."""
        return _PREFILL_BLOCKS * self.prefill_s + _DECODE_STEPS * self.decode_s


def pick_dtype(timings: Sequence[DtypeTiming]) -> str:
    """The dtype whose call estimate is lowest (bfloat16 on a tie: half the memory)."""
    if not timings:
        raise ValueError("no timings to pick from")
    ranked = sorted(timings, key=lambda t: (t.call_s, t.dtype != "bfloat16"))
    return ranked[0].dtype


def time_linear(dtype: str, *, budget_s: float = 0.4) -> DtypeTiming:
    """Time one large projection in `dtype` on one thread: 64 rows and 1 row."""
    import torch

    torch_dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(0)
        weight = torch.randn(_OUT, _IN, generator=generator).to(torch_dtype)

        def mean_s(rows: int) -> float:
            x = torch.randn(rows, _IN, generator=generator).to(torch_dtype)
            torch.nn.functional.linear(x, weight)  # warm-up
            started, runs = time.perf_counter(), 0
            while runs < 2 or time.perf_counter() - started < budget_s:
                torch.nn.functional.linear(x, weight)
                runs += 1
            return (time.perf_counter() - started) / runs

        return DtypeTiming(dtype, prefill_s=mean_s(64), decode_s=mean_s(1))
    finally:
        torch.set_num_threads(threads)


def cpu_signature() -> str:
    """The processor's model name and flags, hashed: a cached choice holds for one CPU kind."""
    text = platform.processor() or platform.machine()
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        info = ""
    lines = {
        line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
        for line in info.splitlines()
        if ":" in line
    }
    text += "|" + lines.get("model name", "") + "|" + lines.get("flags", "")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fastest_cpu_dtype(
    *,
    cache: Path | None = None,
    measure: Callable[[str], DtypeTiming] = time_linear,
    say: Callable[[str], None] | None = None,
) -> str:
    """The dtype to serve a large model in on this CPU (`BRICKWORK_LARGE_DTYPE` first).

    Measured once per processor kind (a few seconds) and cached in `<cache>/cpu-dtype.json`.

    Raises:
        ConfigError: `BRICKWORK_LARGE_DTYPE` names another dtype.
    """
    forced = os.environ.get(DTYPE_ENV, "").strip()
    if forced:
        if forced not in _CHOICES:
            raise ConfigError(
                f"{DTYPE_ENV}={forced!r} is not a dtype brickwork serves on a CPU; "
                f"use one of {', '.join(_CHOICES)}, or unset it to measure"
            )
        return forced
    path = (cache or cache_dir()) / _CACHE_NAME
    signature = cpu_signature()
    known = _read(path)
    if known.get("cpu") == signature and known.get("dtype") in _CHOICES:
        return str(known["dtype"])
    if say is not None:
        say("Timing bfloat16 against float32 on this CPU (once, a few seconds)...")
    timings = [measure(dtype) for dtype in _CHOICES]
    chosen = pick_dtype(timings)
    record = {
        "cpu": signature,
        "dtype": chosen,
        "timings": {
            t.dtype: {"prefill_s": t.prefill_s, "decode_s": t.decode_s, "call_s": t.call_s}
            for t in timings
        },
        "measured_at": time.time(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(record, indent=2), encoding="utf-8")
    partial.replace(path)
    if say is not None:
        estimates = ", ".join(f"{t.dtype} {t.call_s * 1000:.0f} ms" for t in timings)
        say(f"Serving the large model in {chosen} (one call's products: {estimates})")
    return chosen


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
