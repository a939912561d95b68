"""Admission control: a bound on runs in flight, a bounded queue with a wait limit, refusal beyond.

    gate = Admission(max_in_flight=8, max_queue=4, max_wait_s=5.0)
    async with gate.slot():       # raises AdmissionRefused at once when 8 run and 4 wait
        await run()

Without it, every request past the models' capacity is accepted and all of them slow down
together until they time out (seen: at 2 requests/s on a 2-core machine, 49 of 119 runs timed
out at 300 s). With it, a request either gets a slot (at once, or within `max_wait_s` in a
FIFO queue) or is refused immediately with `AdmissionRefused` (HTTP 429 with `Retry-After` on
the HTTP front), so admitted runs keep their latency and callers learn at once to back off.

`default_limits(pool)` sizes it from the pool: runs in flight = the sum of the concurrency
limits of the endpoints serving the entry tier (`slm`), so every admitted run can have its
model call in flight; the queue holds half as many again and a run waits at most
`DEFAULT_MAX_WAIT_S` for a slot.

One `Admission` belongs to one event loop (like the App and pool that own it).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from brickwork.errors import AdmissionRefused, ConfigError

if TYPE_CHECKING:
    from brickwork.serving.pool import ModelPool

__all__ = ["DEFAULT_MAX_WAIT_S", "Admission", "AdmissionLimits", "default_limits"]

#: Longest a run waits in the queue for a slot by default (seconds).
DEFAULT_MAX_WAIT_S = 10.0
#: Runs in flight when the pool says nothing about its capacity.
_FALLBACK_IN_FLIGHT = 16
#: Weight of the newest run in the moving average of run durations (for Retry-After).
_EWMA = 0.2


@dataclass(frozen=True)
class AdmissionLimits:
    """How many runs may run and wait, and how long one may wait.

    Attributes:
        max_in_flight: Runs executing at once (at least 1).
        max_queue: Runs waiting for a slot (0: refuse as soon as every slot is taken).
        max_wait_s: Longest wait in the queue before the run is refused.
    """

    max_in_flight: int
    max_queue: int
    max_wait_s: float = DEFAULT_MAX_WAIT_S

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ConfigError(
                f"max_in_flight={self.max_in_flight!r} must be 1 or more; pass None for the "
                "default sized from the pool"
            )
        if self.max_queue < 0:
            raise ConfigError(f"max_queue={self.max_queue!r} must be 0 or more")
        if not self.max_wait_s >= 0:
            raise ConfigError(f"max_wait_s={self.max_wait_s!r} must be 0 or more seconds")


def default_limits(
    pool: ModelPool | None,
    *,
    max_in_flight: int | None = None,
    max_queue: int | None = None,
    max_wait_s: float | None = None,
) -> AdmissionLimits:
    """Limits from explicit values, else sized from the pool's entry-tier capacity.

    Args:
        pool: The pool runs will use (None: a fixed fallback of 16 runs in flight).
        max_in_flight: Runs at once (default: the sum of `max_concurrency` over the
            endpoints serving `slm`, or over every endpoint when no `slm` is served).
        max_queue: Runs waiting (default: half of `max_in_flight`, at least 1).
        max_wait_s: Longest wait for a slot (default `DEFAULT_MAX_WAIT_S`).
    """
    if max_in_flight is None:
        max_in_flight = _pool_capacity(pool) if pool is not None else _FALLBACK_IN_FLIGHT
    if max_queue is None:
        max_queue = max(1, max_in_flight // 2)
    return AdmissionLimits(
        max_in_flight, max_queue, DEFAULT_MAX_WAIT_S if max_wait_s is None else max_wait_s
    )


def _pool_capacity(pool: ModelPool) -> int:
    models = pool.config.models
    endpoints = models.get("slm") or [e for replicas in models.values() for e in replicas]
    return max(1, sum(e.max_concurrency for e in endpoints))


class Admission:
    """Admits runs up to `max_in_flight`, queues up to `max_queue` for `max_wait_s`, refuses more.

    Args:
        limits: The limits (see `default_limits`).
    """

    def __init__(self, limits: AdmissionLimits) -> None:
        self.limits = limits
        self._running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._mean_run_s: float | None = None
        self.admitted = 0
        self.refused = 0

    @property
    def in_flight(self) -> int:
        """Runs holding a slot now."""
        return self._running

    @property
    def waiting(self) -> int:
        """Runs in the queue now."""
        return sum(1 for w in self._waiters if not w.done())

    def retry_after_s(self) -> float:
        """A hint for when a slot is likely free: the queue ahead drained at the mean run rate."""
        mean = self._mean_run_s if self._mean_run_s is not None else 1.0
        rounds = (self.waiting + 1) / self.limits.max_in_flight
        return max(0.1, mean * math.ceil(rounds))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a run slot for the block.

        Raises:
            AdmissionRefused: every slot is taken and the queue is full (at once), or no slot
                came free within `max_wait_s`.
        """
        await self._acquire()
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            previous = self._mean_run_s
            self._mean_run_s = (
                elapsed if previous is None else previous + _EWMA * (elapsed - previous)
            )
            self._release()

    async def _acquire(self) -> None:
        limits = self.limits
        if self._running < limits.max_in_flight and not self.waiting:
            self._running += 1
            self.admitted += 1
            return
        if self.waiting >= limits.max_queue:
            self.refused += 1
            raise AdmissionRefused(
                f"{self._running} runs in flight and {self.waiting} waiting, the limits "
                f"(max_in_flight={limits.max_in_flight}, max_queue={limits.max_queue})",
                retry_after_s=self.retry_after_s(),
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(limits.max_wait_s):
                await waiter  # _release hands its slot over: _running is not decremented
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._release()  # a slot was handed over just as the wait ended: pass it on
            else:
                waiter.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                self.refused += 1
                raise AdmissionRefused(
                    f"no run slot came free within max_wait_s={limits.max_wait_s:g} s",
                    retry_after_s=self.retry_after_s(),
                ) from None
            raise
        self.admitted += 1

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the oldest waiter
                return
        self._running -= 1
