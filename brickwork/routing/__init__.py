"""Route before generating: per-node routers learned from the run store's own outcomes.

This package owns the decision of which tier a node starts on. `features` is the router's view
of a node input (text length, conversation turn, the intent an earlier node found and its
confidence, optionally a MiniLM embedding); `labels` reads, from stored runs, whether each
tier's answer for a node stood (accepted, escalated, fixed by a climb, judged by an eval);
`learner` fits one calibrated scikit-learn classifier per tier and node; `artefact` saves
versioned routers beside the adapter bindings and says when one is stale (the skill got a new
binding); `decision` holds the knob, the pure `choose` rule and `Routing`, the run resource
the graph builder asks before a specialist's first call; `commands` is `brickwork route`.
scikit-learn loads only when a router is trained or asked.
"""

from __future__ import annotations

from brickwork.routing.artefact import (
    FORMAT,
    RouterEntry,
    binding_key,
    list_routers,
    load_router,
    router_path,
    routers_dir,
    save_router,
    stale_reason,
)
from brickwork.routing.commands import add_route_arguments, route_main
from brickwork.routing.decision import (
    DEFAULT_FLOOR,
    DEFAULT_MARGIN,
    RESOURCE,
    Choice,
    RouteReason,
    Routing,
    choose,
    override,
)
from brickwork.routing.features import Features, FeatureSpec, features_from_state
from brickwork.routing.labels import (
    VERDICT,
    Judge,
    Sample,
    samples_from_run,
    samples_from_store,
    verdict_event,
)
from brickwork.routing.learner import MIN_SAMPLES, Router, TierFit, train_router

__all__ = [
    "DEFAULT_FLOOR",
    "DEFAULT_MARGIN",
    "FORMAT",
    "MIN_SAMPLES",
    "RESOURCE",
    "VERDICT",
    "Choice",
    "FeatureSpec",
    "Features",
    "Judge",
    "RouteReason",
    "Router",
    "RouterEntry",
    "Routing",
    "Sample",
    "TierFit",
    "add_route_arguments",
    "binding_key",
    "choose",
    "features_from_state",
    "list_routers",
    "load_router",
    "override",
    "route_main",
    "router_path",
    "routers_dir",
    "samples_from_run",
    "samples_from_store",
    "save_router",
    "stale_reason",
    "train_router",
    "verdict_event",
]
