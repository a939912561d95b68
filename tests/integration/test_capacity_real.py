"""The small tier's capacity measured on the real vLLM server, saved, and priced from."""

from __future__ import annotations

from pathlib import Path

import pytest

from brickwork._demo import tool_call_bodies
from brickwork.cost import CPU_SELF_HOSTED, PriceBook
from brickwork.serving.capacity import (
    CAPACITY_ENV,
    Target,
    load_capacity,
    measure_capacity,
    save_capacity,
)
from brickwork.serving.models import EMBEDDED_MODEL


async def test_the_small_tier_is_measured_and_priced_at_what_it_served(
    slm_base_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CAPACITY_ENV, raising=False)
    bodies = tool_call_bodies(max_tokens=32)[:3]
    target = Target(slm_base_url, EMBEDDED_MODEL.served_name)
    capacity = await measure_capacity(target, None, bodies, in_flight=2, small_requests=4)
    # A few hundred prompt tokens a request in seconds: tens to thousands of tokens/s here.
    assert 10 < capacity.small_tokens_per_s < 100_000
    assert capacity.large_tokens_per_s is None
    save_capacity(capacity, tmp_path)
    assert load_capacity(tmp_path) == capacity
    book = PriceBook.default("local-vllm", "large-vllm", top_tier="large-vllm", capacity=capacity)
    measured = book.endpoints["local-vllm"]
    assert measured.tokens_per_s_capacity == capacity.small_tokens_per_s  # type: ignore[union-attr]
    assert measured.gpu_usd_per_hour == CPU_SELF_HOSTED.gpu_usd_per_hour  # type: ignore[union-attr]
