"""Retry with jittered backoff, and a circuit breaker per endpoint.

Both are plain logic with an injectable clock and random source, so they are unit-tested
without sleeping or a server.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["CircuitBreaker", "CircuitPolicy", "CircuitState", "RetryPolicy"]

CircuitState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class RetryPolicy:
    """Retries for transient failures (connection errors, 429, 5xx) only.

    Attributes:
        max_retries: Retries after the first attempt, per endpoint.
        base_delay_s: Delay before the first retry; doubles per retry.
        max_delay_s: Cap on one delay.
        jitter: Fraction of each delay drawn at random ("full jitter" when 1.0).
    """

    max_retries: int = 3
    base_delay_s: float = 0.25
    max_delay_s: float = 4.0
    jitter: float = 0.5

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `retry` (1-based)."""
        raw = min(self.max_delay_s, self.base_delay_s * 2.0 ** max(0, retry - 1))
        draw = (rng or random).random()
        return raw * (1.0 - self.jitter) + raw * self.jitter * draw


@dataclass(frozen=True)
class CircuitPolicy:
    """When an endpoint's circuit opens and how long it stays open.

    Attributes:
        failure_threshold: Consecutive failed calls that open the circuit.
        reset_after_s: Time the circuit stays open before one trial call is let through.
    """

    failure_threshold: int = 5
    reset_after_s: float = 5.0


@dataclass
class CircuitBreaker:
    """Per-endpoint circuit: closed -> open after N failures -> half-open trial -> closed.

    Only failures that say the endpoint is unwell count (connection errors, timeouts, 5xx);
    a 4xx is the caller's fault and leaves the circuit alone.
    """

    policy: CircuitPolicy = field(default_factory=CircuitPolicy)
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    _trial_in_flight: bool = False

    @property
    def state(self) -> CircuitState:
        """Current state, moving from open to half-open once the reset time has passed."""
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.policy.reset_after_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """Whether a call may go to this endpoint now (claims the half-open trial)."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        """A call succeeded: close the circuit."""
        self.failures = 0
        self.opened_at = None
        self._trial_in_flight = False

    def record_abandoned(self) -> None:
        """The caller gave up (its run timed out or was cancelled): the endpoint said nothing.

        Neither a failure nor a success; a half-open trial slot is freed for the next call.
        Counting these as failures opened a busy but healthy endpoint's circuit: an eval at 8
        in flight on a slow large tier timed out five runs in a row, and every later row then
        failed at once with "every replica's circuit is open".
        """
        self._trial_in_flight = False

    def record_failure(self) -> None:
        """A call failed for an endpoint reason: count it, open (or re-open) the circuit."""
        self.failures += 1
        if self._trial_in_flight or self.failures >= self.policy.failure_threshold:
            self.opened_at = self.clock()
        self._trial_in_flight = False
