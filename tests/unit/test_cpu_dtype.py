"""Choosing the large model's dtype on this CPU: the pick, the cache, the override."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from brickwork.errors import ConfigError
from brickwork.serving.cpu_dtype import (
    DTYPE_ENV,
    DtypeTiming,
    cpu_signature,
    fastest_cpu_dtype,
    pick_dtype,
    time_linear,
)


def test_the_pick_weighs_a_calls_prefill_and_decode() -> None:
    # An AVX2-only EPYC here: bfloat16 decodes as fast but prefills 5x slower -> float32.
    slow_bf16 = [DtypeTiming("bfloat16", 0.25, 0.0042), DtypeTiming("float32", 0.045, 0.0038)]
    assert pick_dtype(slow_bf16) == "float32"
    # A CPU with fast bfloat16 kernels: half the bytes wins.
    fast_bf16 = [DtypeTiming("bfloat16", 0.03, 0.002), DtypeTiming("float32", 0.045, 0.0038)]
    assert pick_dtype(fast_bf16) == "bfloat16"
    # A tie keeps bfloat16 (half the memory).
    assert pick_dtype([DtypeTiming("float32", 0.1, 0.01), DtypeTiming("bfloat16", 0.1, 0.01)]) == (
        "bfloat16"
    )
    with pytest.raises(ValueError):
        pick_dtype([])


def test_measured_once_per_cpu_then_read_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DTYPE_ENV, raising=False)
    measured: list[str] = []

    def measure(dtype: str) -> DtypeTiming:
        measured.append(dtype)
        return DtypeTiming(dtype, 0.25 if dtype == "bfloat16" else 0.04, 0.004)

    said: list[str] = []
    assert fastest_cpu_dtype(cache=tmp_path, measure=measure, say=said.append) == "float32"
    assert sorted(measured) == ["bfloat16", "float32"]
    assert "float32" in said[-1]
    record = json.loads((tmp_path / "cpu-dtype.json").read_text())
    assert record["cpu"] == cpu_signature() and record["dtype"] == "float32"
    # The same CPU: no second measurement.
    assert fastest_cpu_dtype(cache=tmp_path, measure=measure) == "float32"
    assert len(measured) == 2
    # Another CPU kind (another signature): measured again.
    record["cpu"] = "another-cpu"
    (tmp_path / "cpu-dtype.json").write_text(json.dumps(record))
    fastest_cpu_dtype(cache=tmp_path, measure=measure)
    assert len(measured) == 4
    # A corrupt cache file is measured over, not trusted.
    (tmp_path / "cpu-dtype.json").write_text("{not json")
    assert fastest_cpu_dtype(cache=tmp_path, measure=measure) == "float32"
    assert len(measured) == 6


def test_the_environment_overrides_and_a_bad_value_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def measure(dtype: str) -> DtypeTiming:
        raise AssertionError("an override measures nothing")

    monkeypatch.setenv(DTYPE_ENV, "bfloat16")
    assert fastest_cpu_dtype(cache=tmp_path, measure=measure) == "bfloat16"
    monkeypatch.setenv(DTYPE_ENV, "float8")
    with pytest.raises(ConfigError, match="BRICKWORK_LARGE_DTYPE='float8'"):
        fastest_cpu_dtype(cache=tmp_path, measure=measure)


def test_time_linear_really_times_both_shapes() -> None:
    timing = time_linear("float32", budget_s=0.01)
    assert timing.dtype == "float32"
    assert 0 < timing.decode_s < timing.prefill_s
    assert timing.call_s == pytest.approx(5 * timing.prefill_s + 32 * timing.decode_s)
