"""Typed run events: what `App.astream` yields and what the run store and TUI read.

Every event is a frozen dataclass with the run id, a `kind` literal and a timestamp; `to_dict()`
gives a JSON-able form for the store, the HTTP front and logs.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal

__all__ = [
    "CacheLookup",
    "Escalation",
    "Event",
    "ModelCallEvent",
    "ModelSkipped",
    "NodeFinished",
    "NodeStarted",
    "RouteDecision",
    "RunFinished",
    "RunStarted",
    "RunStatus",
]

#: How a run ended. ok: every node on its path produced a validated value and every tool call
#: it ran succeeded (for a plan, every step the user asked for). failed: something was not done
#: (the answer says what). needs_confirmation: stopped before a sensitive call the request did
#: not plainly ask for; `App.aresume(run_id, confirm=...)` continues it.
RunStatus = Literal["ok", "failed", "needs_confirmation", "over_budget", "timeout", "error"]


def _now() -> float:
    return time.time()


#: Each event class's field names, read once (`dataclasses.fields` walks the class each time).
_FIELDS: dict[type, tuple[str, ...]] = {}
_ATOMS = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> Any:
    """A deep copy of a field's value, as `dataclasses.asdict` makes it, without its detours.

    `asdict` sends every value through `copy.deepcopy` and every container through a generic
    rebuild: a quarter of a millisecond for a one-node run's six events. Events hold strings,
    numbers and plain containers of them; anything else takes `asdict`'s own path.
    """
    kind = type(value)
    if kind in _ATOMS:
        return value
    if kind is dict:
        return {_plain(k): _plain(v) for k, v in value.items()}
    if kind is list:
        return [_plain(v) for v in value]
    if kind is tuple:
        return tuple(_plain(v) for v in value)
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    return copy.deepcopy(value)


@dataclass(frozen=True)
class _Base:
    run_id: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, with the event kind (a deep copy, as `dataclasses.asdict` gives)."""
        names = _FIELDS.get(type(self))
        if names is None:
            names = _FIELDS[type(self)] = tuple(f.name for f in fields(self))
        return {name: _plain(getattr(self, name)) for name in names}


@dataclass(frozen=True)
class RunStarted(_Base):
    """A run began."""

    graph: str
    text: str
    mode: str
    tenant: str
    kind: Literal["run_started"] = "run_started"
    at: float = field(default_factory=_now)


@dataclass(frozen=True)
class NodeStarted(_Base):
    """A node began (on the small model, or the supervisor on the frontier model)."""

    node: str
    kind: Literal["node_started"] = "node_started"
    at: float = field(default_factory=_now)


@dataclass(frozen=True)
class ModelCallEvent(_Base):
    """One model call, with its cost."""

    node: str
    endpoint: str
    model: str
    served_model: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    cost_usd: float
    frontier_cost_usd: float
    stand_in: bool
    escalated: bool
    cached: bool = False  # answered from the response cache: no model ran, $0 in the ledger
    kind: Literal["model_call"] = "model_call"
    at: float = field(default_factory=_now)


@dataclass(frozen=True)
class ModelSkipped(_Base):
    """A step decided without a model call, priced as the top tier would have made it.

    The intent kNN decides confident inputs on the small tier without calling a model; with
    every node on the top tier that step would have been a model call (the top tier does not
    use the kNN). The tokens are estimated from the prompt the top tier would have been sent
    (`agents.base.SkippedCall`); the cost is 0, the counterfactual is not.
    """

    node: str
    method: str
    prompt_tokens: int
    completion_tokens: int
    frontier_cost_usd: float
    api_reference_usd: float
    kind: Literal["model_skipped"] = "model_skipped"
    at: float = field(default_factory=_now)


@dataclass(frozen=True)
class Escalation(_Base):
    """The escalation decision for a node, with the signals it was made from."""

    node: str
    action: str
    reason: str | None
    detail: str
    signals: tuple[tuple[str, str], ...]
    kind: Literal["escalation"] = "escalation"
    at: float = field(default_factory=_now)


@dataclass(frozen=True)
class RouteDecision(_Base):
    """Where a node started, as a per-node router decided before any model call.

    Recorded only for graphs configured to route (`brickwork.routing`). `tier` is the tier the
    node ran on first: above the bottom one only when `reason` is "routed"; otherwise the
    cascade ran as usual (with the reason: cheapest, unsure, no_router, stale, no_embedding).
    `probabilities` are P(the tier's answer stands) per tier the router knows, cheapest first;
    `margin` is the knob the decision used; `latency_s` is the decision's own time (features
    to tier, without computing an embedding); `features` the cheap signals it saw.
    """

    node: str
    tier: str
    reason: str
    probabilities: tuple[tuple[str, float], ...]
    margin: float
    detail: str = ""
    revision: int | None = None
    latency_s: float = 0.0
    features: dict[str, Any] = field(default_factory=dict)
    kind: Literal["route_decision"] = "route_decision"
    at: float = field(default_factory=_now)


@dataclass(frozen=True)
class CacheLookup(_Base):
    """One response-cache lookup before a model call (only when a cache is configured).

    `key` is the first 12 hex digits of the request's key (`brickwork.caching.request_key`);
    on a hit, `saved_usd` is what the cached call cost when it ran and `saved_latency_s` its
    latency then (an estimate of what the hit saved); `lookup_s` is the lookup's own time.
    `error` says why the cache could not answer (the call then went to the model).
    On a node that opts into semantic hits, `semantic` marks a hit on a similar earlier request
    (`similarity`: the cosine of the two user texts' embeddings), and `rejected` says why a
    candidate above the threshold was not served (the guard), the lookup then being a miss.
    """

    node: str
    hit: bool
    key: str
    model: str
    backend: str
    lookup_s: float
    saved_usd: float = 0.0
    saved_latency_s: float = 0.0
    error: str | None = None
    semantic: bool = False
    similarity: float | None = None
    rejected: str | None = None
    kind: Literal["cache_lookup"] = "cache_lookup"
    at: float = field(default_factory=_now)


@dataclass(frozen=True)
class NodeFinished(_Base):
    """A node finished: its output (JSON-able) or the reason it failed, and its trace."""

    node: str
    ok: bool
    latency_s: float
    output: Any
    method: str
    model: str
    attempts: tuple[dict[str, Any], ...] = ()
    error: str | None = None
    kind: Literal["node_finished"] = "node_finished"
    at: float = field(default_factory=_now)


@dataclass(frozen=True)
class RunFinished(_Base):
    """A run ended."""

    status: RunStatus
    answer: str
    cost_usd: float
    frontier_only_usd: float
    latency_s: float
    flags: tuple[str, ...] = ()
    error: str | None = None
    kind: Literal["run_finished"] = "run_finished"
    at: float = field(default_factory=_now)


Event = (
    RunStarted
    | NodeStarted
    | ModelCallEvent
    | ModelSkipped
    | Escalation
    | RouteDecision
    | CacheLookup
    | NodeFinished
    | RunFinished
)
