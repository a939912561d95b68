"""Local tiers priced at the capacities measured on this machine: the prices, the saved file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from brickwork.cost import (
    CPU_SELF_HOSTED,
    LARGE_CPU_SELF_HOSTED,
    LORA_CPU_SELF_HOSTED,
    LocalCapacity,
    PriceBook,
)
from brickwork.errors import ConfigError
from brickwork.serving.capacity import CAPACITY_ENV, load_capacity, save_capacity
from brickwork.serving.cpu_dtype import cpu_signature


def test_measured_capacities_replace_the_defaults_and_keep_the_hardware_price() -> None:
    capacity = LocalCapacity(small_tokens_per_s=382.0, large_tokens_per_s=52.0)
    book = PriceBook.default(
        "local-vllm",
        "merged:smart_home-specialist",
        "local-vllm:intent",
        "large-vllm",
        "frontier",
        top_tier="large-vllm",
        capacity=capacity,
    )
    small = book.endpoints["merged:smart_home-specialist"]
    assert small == book.endpoints["local-vllm"]
    assert small.tokens_per_s_capacity == 382.0  # type: ignore[union-attr]
    assert small.gpu_usd_per_hour == CPU_SELF_HOSTED.gpu_usd_per_hour  # type: ignore[union-attr]
    assert book.top_tier_price.tokens_per_s_capacity == 52.0  # type: ignore[union-attr]
    # A runtime LoRA route keeps its measured share of the small tier's speed (610 / 1,470).
    lora = book.endpoints["local-vllm:intent"]
    assert lora.tokens_per_s_capacity == pytest.approx(  # type: ignore[union-attr]
        382.0 * 610 / 1470
    )
    # An API stays at its list price; the ratio of the tiers is this machine's (7.3x).
    assert book.endpoints["frontier"] == PriceBook.default("frontier").endpoints["frontier"]
    ratio = book.top_tier_price.cost(1000, 0, 1.0) / small.cost(1000, 0, 1.0)
    assert ratio == pytest.approx(382 / 52)
    # Without a measurement the defaults stand.
    default = PriceBook.default("local-vllm", "large-vllm", "local-vllm:x", top_tier="large-vllm")
    assert default.endpoints["local-vllm"] == CPU_SELF_HOSTED
    assert default.endpoints["local-vllm:x"] == LORA_CPU_SELF_HOSTED
    assert default.top_tier_price == LARGE_CPU_SELF_HOSTED
    # A large tier that was not measured keeps its default.
    assert LocalCapacity(400.0).large() == LARGE_CPU_SELF_HOSTED
    # What the run summary and the eval report print about the prices they used.
    assert capacity.describe() == (
        "this machine's capacities: small tier 382 tokens/s, large tier 52 tokens/s, "
        "each core at $0.05/h"
    )
    assert "large tier - tokens/s" in LocalCapacity(1470.0).describe()


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_a_capacity_must_be_a_positive_number(bad: float) -> None:
    with pytest.raises(ConfigError, match="tokens/s"):
        LocalCapacity(small_tokens_per_s=bad)
    with pytest.raises(ConfigError, match="large_tokens_per_s"):
        LocalCapacity(small_tokens_per_s=100.0, large_tokens_per_s=bad)


def test_saved_for_this_cpu_and_read_back_only_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CAPACITY_ENV, raising=False)
    assert load_capacity(tmp_path) is None  # nothing measured yet
    measured = LocalCapacity(382.0, 52.0, measured_at=1.0)
    path = save_capacity(measured, tmp_path)
    assert json.loads(path.read_text())["cpu"] == cpu_signature()
    assert load_capacity(tmp_path) == measured
    # Off: the defaults, whatever was saved.
    monkeypatch.setenv(CAPACITY_ENV, "off")
    assert load_capacity(tmp_path) is None
    monkeypatch.delenv(CAPACITY_ENV)
    # Another kind of processor: not this machine's figures.
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "cpu": "another"}))
    assert load_capacity(tmp_path) is None
    # Damaged files are measured over, never trusted.
    for text in ("{not json", json.dumps({**data, "small_tokens_per_s": -5}), "[1]"):
        path.write_text(text)
        assert load_capacity(tmp_path) is None
    # No large tier measured.
    save_capacity(LocalCapacity(382.0), tmp_path)
    loaded = load_capacity(tmp_path)
    assert loaded is not None and loaded.large_tokens_per_s is None
