"""Admission control: slots, a FIFO queue with a wait limit, refusal at once beyond it."""

from __future__ import annotations

import asyncio

import pytest

from brickwork.admission import Admission, AdmissionLimits, default_limits
from brickwork.errors import AdmissionRefused, ConfigError
from brickwork.testing import FunctionModel, ModelStep


async def hold(gate: Admission, release: asyncio.Event, log: list[str], name: str) -> None:
    async with gate.slot():
        log.append(f"start {name}")
        await release.wait()
        log.append(f"end {name}")


async def until(predicate) -> None:  # type: ignore[no-untyped-def]
    while not predicate():
        await asyncio.sleep(0)


async def test_runs_past_the_slots_and_the_queue_are_refused_at_once() -> None:
    gate = Admission(AdmissionLimits(max_in_flight=2, max_queue=1, max_wait_s=60))
    release = asyncio.Event()
    log: list[str] = []
    running = [asyncio.create_task(hold(gate, release, log, n)) for n in ("a", "b", "c")]
    await until(lambda: gate.in_flight == 2 and gate.waiting == 1)
    with pytest.raises(AdmissionRefused, match=r"2 runs in flight and 1 waiting") as refused:
        async with gate.slot():
            pytest.fail("a fourth run got a slot")
    assert refused.value.retry_after_s > 0
    assert (gate.admitted, gate.refused) == (2, 1)
    release.set()
    await asyncio.gather(*running)
    # c waited for a slot and ran after a and b had started
    assert log.index("start c") > log.index("start b")
    assert (gate.in_flight, gate.waiting, gate.admitted) == (0, 0, 3)


async def test_a_queued_run_is_refused_after_the_wait_limit() -> None:
    gate = Admission(AdmissionLimits(max_in_flight=1, max_queue=5, max_wait_s=0.01))
    release = asyncio.Event()
    first = asyncio.create_task(hold(gate, release, [], "a"))
    await until(lambda: gate.in_flight == 1)
    with pytest.raises(AdmissionRefused, match="within max_wait_s=0.01 s"):
        async with gate.slot():
            pytest.fail("got a slot that was never free")
    assert gate.waiting == 0
    release.set()
    await first
    async with gate.slot():  # the slot is free again
        assert gate.in_flight == 1
    assert gate.in_flight == 0


async def test_waiters_get_slots_in_arrival_order_and_a_cancelled_one_passes_it_on() -> None:
    gate = Admission(AdmissionLimits(max_in_flight=1, max_queue=3, max_wait_s=60))
    release = asyncio.Event()
    log: list[str] = []
    first = asyncio.create_task(hold(gate, release, log, "a"))
    await until(lambda: gate.in_flight == 1)
    second = asyncio.create_task(hold(gate, release, log, "b"))
    third = asyncio.create_task(hold(gate, release, log, "c"))
    await until(lambda: gate.waiting == 2)
    second.cancel()
    release.set()
    await asyncio.gather(first, third)
    with pytest.raises(asyncio.CancelledError):
        await second
    assert log == ["start a", "end a", "start c", "end c"]
    assert gate.in_flight == 0


async def test_an_error_in_the_run_frees_its_slot() -> None:
    gate = Admission(AdmissionLimits(max_in_flight=1, max_queue=0))
    with pytest.raises(RuntimeError):
        async with gate.slot():
            raise RuntimeError("boom")
    async with gate.slot():
        assert gate.in_flight == 1


def test_limits_are_checked_and_sized_from_the_pool() -> None:
    with pytest.raises(ConfigError, match="max_in_flight=0"):
        AdmissionLimits(max_in_flight=0, max_queue=1)
    with pytest.raises(ConfigError, match="max_queue=-1"):
        AdmissionLimits(max_in_flight=1, max_queue=-1)
    with pytest.raises(ConfigError, match="max_wait_s=-1"):
        AdmissionLimits(max_in_flight=1, max_queue=1, max_wait_s=-1)
    pool = FunctionModel(lambda body: ModelStep("x")).pool()
    slm = sum(e.max_concurrency for e in pool.config.models["slm"])
    assert default_limits(pool) == AdmissionLimits(slm, slm // 2, 10.0)
    assert default_limits(pool, max_in_flight=3, max_queue=0, max_wait_s=1) == AdmissionLimits(
        3, 0, 1.0
    )
    assert default_limits(None).max_in_flight == 16
