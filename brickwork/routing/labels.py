"""Training labels from the run store: whether a tier's answer for a node stood.

Every stored run already says, per node and per tier, whether the answer was accepted:

- a specialist's own finish (`node_finished` of the node) on its starting tier (`slm`, or the
  tier a router chose): ok -> that tier succeeded; "escalated: ..." or a failed validation ->
  it did not;
- a climb step (`escalation` "<tier> tier failed too; climbing to <next>") -> that tier failed;
- the supervisor's finish for the escalated node, on the tier that answered last: ok or not.

Failures that say nothing about the request (the model could not be reached, the budget ran
out, a plan was needed, a confirmation or a declined call) give no label. Where an evaluation
knows the right answer, an accepted-but-wrong answer is a negative label: `brickwork eval
--store` appends a verdict event per scored node to each run it stores (`VERDICT`: `{"kind":
"eval_verdict", "node": ..., "correct": true|false}`), which these labels read; a `Judge`
given to them decides first where it has an opinion.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from brickwork.routing.features import Features, intent_of

if TYPE_CHECKING:
    from brickwork.store import RunStore, RunSummary

__all__ = [
    "VERDICT",
    "Judge",
    "Sample",
    "samples_from_run",
    "samples_from_store",
    "skipped_node",
    "verdict_event",
]

#: Whether a node's accepted output was right: (run, node, output) -> True/False, None unknown.
Judge = Callable[["RunSummary", str, Any], "bool | None"]

#: The kind of the stored event that says whether an eval found a node's final output right.
VERDICT = "eval_verdict"
_SUPERVISOR = "supervisor"
_CLIMB = re.compile(r"^(?P<tier>\S+) tier failed too; climbing to \S+$")
#: Escalation reasons that are not the tier's fault: no label (frontier mode hands every
#: node to the top tier before any small call).
_NO_LABEL = frozenset(
    {"model_error", "timeout", "budget_exhausted", "plan_needed", "frontier_mode"}
)


@dataclass(frozen=True)
class Sample:
    """One labelled attempt of one tier at one node's input.

    Attributes:
        run_id: The run it comes from.
        node: The node.
        tier: The tier that answered (a logical model name of the ladder).
        ok: Whether its answer stood (validated, not escalated, and right when judged).
        features: The node input's features (without embedding).
    """

    run_id: str
    node: str
    tier: str
    ok: bool
    features: Features


def skipped_node(node: str) -> bool:
    """Nodes that are not specialists: the supervisor, confirmations, plan steps."""
    return node in (_SUPERVISOR, "confirm") or node.startswith("step_")


def verdict_event(run_id: str, node: str | None, correct: bool) -> dict[str, Any]:
    """The stored form of an eval's verdict on a node's final output (None: the whole run)."""
    return {"run_id": run_id, "kind": VERDICT, "node": node, "correct": bool(correct),
            "at": time.time()}  # fmt: skip


def _verdicts(events: Sequence[Mapping[str, Any]]) -> dict[str, bool]:
    """The eval verdicts recorded in a run, by node (the last one of a node wins)."""
    return {
        str(e["node"]): bool(e.get("correct"))
        for e in events
        if e.get("kind") == VERDICT and isinstance(e.get("node"), str)
    }


def _judged(
    judge: Judge | None, verdicts: Mapping[str, bool], run: RunSummary, node: str, output: Any
) -> bool:
    verdict = judge(run, node, output) if judge is not None else None
    if verdict is None:
        verdict = verdicts.get(node)
    return True if verdict is None else bool(verdict)


def samples_from_run(
    run: RunSummary,
    events: Sequence[Mapping[str, Any]],
    *,
    nodes: Iterable[str] | None = None,
    judge: Judge | None = None,
) -> list[Sample]:
    """The labelled attempts in one stored run (events as the store returns them).

    Args:
        run: The run's summary (its text is the request).
        events: The run's events, in order.
        nodes: Only these nodes (default: every specialist node).
        judge: Marks accepted outputs right or wrong, where an evaluation knows (before the
            run's own recorded eval verdicts).
    """
    wanted = set(nodes) if nodes is not None else None
    verdicts = _verdicts(events)
    outputs: dict[str, Any] = {}
    features: dict[str, Features] = {}
    reasons: dict[str, str | None] = {}
    pending: str | None = None
    samples: list[Sample] = []

    def add(node: str, tier: str, ok: bool) -> None:
        if (wanted is None or node in wanted) and not skipped_node(node) and node in features:
            samples.append(Sample(run.run_id, node, tier, ok, features[node]))

    for event in events:
        kind = event.get("kind")
        node = str(event.get("node", ""))
        if kind == "node_started" and not skipped_node(node):
            earlier = [v for k, v in outputs.items() if k != node]
            intent, confidence = intent_of(earlier)
            features[node] = Features(run.text, 1, intent, confidence)
        elif kind == "route_decision" and node in features:
            recorded = event.get("features") or {}
            turn = recorded.get("turn")
            if isinstance(turn, int) and turn > 0:
                f = features[node]
                features[node] = Features(f.text, turn, f.intent, f.confidence)
        elif kind == "escalation":
            reasons[node] = event.get("reason")
            if event.get("action") == "escalate":
                pending = node
                climb = _CLIMB.match(str(event.get("detail", "")))
                if climb is not None:
                    add(node, climb["tier"], False)
        elif kind == "node_finished":
            model = str(event.get("model") or "-")
            error = str(event.get("error") or "")
            if model == "-" or "needs confirmation" in error:
                continue
            if event.get("ok"):
                owner = (pending or "") if node == _SUPERVISOR else node
                outputs[owner] = event.get("output")
                if node == _SUPERVISOR and event.get("method") == "plan":
                    continue
                add(owner, model, _judged(judge, verdicts, run, owner, event.get("output")))
            elif node == _SUPERVISOR:
                if pending is not None:
                    add(pending, model, False)
            elif reasons.get(node) not in _NO_LABEL:
                add(node, model, False)
    return samples


def samples_from_store(
    store: RunStore,
    graph: str,
    *,
    nodes: Iterable[str] | None = None,
    judge: Judge | None = None,
    limit: int = 100_000,
    source: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Sample]:
    """Every labelled attempt in a graph's stored runs, oldest run first.

    Args:
        store: The run store.
        graph: The graph whose runs to read.
        nodes: Only these nodes (default: every specialist node).
        judge: Marks accepted outputs right or wrong, where an evaluation knows.
        limit: Read at most this many runs (the newest).
        source: Only runs from this source (e.g. "eval", see `brickwork.store.SOURCES`).
        progress: Called with (runs read, runs to read) after each run.
    """
    summaries = list(reversed(store.runs(graph=graph, limit=limit, source=source)))
    wanted = list(nodes) if nodes is not None else None
    samples: list[Sample] = []
    for index, summary in enumerate(summaries, 1):
        found = store.run(summary.run_id)
        if found is not None:
            run, events = found
            samples += samples_from_run(run, events, nodes=wanted, judge=judge)
        if progress is not None:
            progress(index, len(summaries))
    return samples


def node_names(samples: Iterable[Sample]) -> list[str]:
    """The nodes that have samples, in first-seen order."""
    return list(dict.fromkeys(s.node for s in samples))


def rate(samples: Sequence[Sample]) -> float:
    """Share of samples that succeeded (NaN without samples)."""
    return sum(s.ok for s in samples) / len(samples) if samples else math.nan
