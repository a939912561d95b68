"""Calibrating a node's semantic threshold from labelled pairs, and measuring it.

A labelled pair is (new request, cached request, would the cached answer be right?) with the
cosine similarity of the two user texts and whether the guard (`semantic.guard_problem`) lets
the cached answer through for the new text. At a threshold `t` a pair is a *hit* when its
similarity is at least `t` (and, with the guard, the guard passes); a *false hit* is a hit whose
cached answer is wrong for the new request.

The false-hit rate is false hits / hits: the share of semantically served answers that are
wrong, what a user of the node sees. `calibrate` returns the lowest threshold whose false-hit
rate stays at or under a target, judged by the upper end of its 95 % Wilson interval
(`bound="wilson"`, the default: a threshold that looks clean on 5 hits is not trusted) or by
the point estimate (`bound="point"`). None when no threshold qualifies: leave the node on
exact hits.

Pairs come from a labelled set of requests (`pairs_from_items`): JSON lines with the graph,
the user text, a paraphrase group and the right answer of each node (an intent label, a tool
call). Two requests have the same answer at a node when their answers there are equal.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from brickwork.caching.key import canonical_json
from brickwork.caching.semantic import guard_problem
from brickwork.evals.report import wilson

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "Bound",
    "Calibration",
    "Item",
    "LabelledPair",
    "NodeMeasure",
    "PairKind",
    "calibrate",
    "cross_validate",
    "load_items",
    "measure",
    "pairs_from_items",
]

Bound = Literal["wilson", "point"]
#: paraphrase: the same paraphrase group (same meaning); same_answer: another group with the
#: same answer at this node (e.g. "lock" and "unlock" are both device commands); negation: same
#: tool, only an on/off, lock/unlock or heat/cool value differs; slot: same tool, another
#: argument differs; other: another label or tool.
PairKind = Literal["paraphrase", "same_answer", "negation", "slot", "other"]
_NEGATIONS = ({"on", "off"}, {"lock", "unlock"}, {"heat", "cool"})


@dataclass(frozen=True)
class Item:
    """One labelled request: its graph, text, paraphrase group and each node's right answer.

    `family` gathers groups that are hard negatives of each other (a device's on, off and
    status question): a family stays in one fold, so held-out pairs include its negations.
    """

    graph: str
    text: str
    group: str
    answers: Mapping[str, Any]
    family: str = ""


@dataclass(frozen=True)
class LabelledPair:
    """A new request against a cached one, at one node.

    Attributes:
        node: `graph/node`.
        similarity: Cosine similarity of the two user texts' embeddings.
        same: The cached answer is right for the new request.
        guarded: The guard lets the cached answer through for the new text.
        kind: What differs between the two requests' answers (`PairKind`).
        fold: Which of two folds the pair belongs to (by the items' family), for
            `cross_validate`; -1 when the two requests are in different folds.
    """

    node: str
    similarity: float
    same: bool
    guarded: bool
    kind: PairKind = "other"
    fold: int = -1


@dataclass(frozen=True)
class NodeMeasure:
    """What a threshold does on a node's pairs.

    Attributes:
        node: `graph/node`.
        threshold: The similarity threshold.
        guard: Whether the guard was applied.
        pairs: Pairs measured.
        positives: Paraphrase pairs (same group: the cached answer is right).
        positive_hits: Of those, pairs that hit (the semantic hit rate's numerator).
        hits: Pairs that hit.
        false_hits: Hits whose cached answer is wrong.
        by_kind: For each pair kind, (pairs, hits).
    """

    node: str
    threshold: float
    guard: bool
    pairs: int
    positives: int
    positive_hits: int
    hits: int
    false_hits: int
    by_kind: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def hit_rate(self) -> float:
        """Share of paraphrase pairs served from the cache (nan without paraphrases)."""
        return self.positive_hits / self.positives if self.positives else math.nan

    @property
    def false_hit_rate(self) -> float:
        """False hits / hits (nan without hits)."""
        return self.false_hits / self.hits if self.hits else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        """95 % Wilson interval of the false-hit rate."""
        return wilson(self.false_hits, self.hits)


@dataclass(frozen=True)
class Calibration:
    """A node's calibrated threshold (None: no threshold met the target) and its measure."""

    node: str
    threshold: float | None
    target: float
    bound: Bound
    measure: NodeMeasure | None


def measure(pairs: Iterable[LabelledPair], threshold: float, *, guard: bool = True) -> NodeMeasure:
    """Hits, false hits and hits on paraphrases of one node's pairs at `threshold`."""
    pairs = list(pairs)
    nodes = {p.node for p in pairs}
    hits = false_hits = positives = positive_hits = 0
    by_kind: dict[str, list[int]] = {}
    for pair in pairs:
        hit = pair.similarity >= threshold and (pair.guarded or not guard)
        counts = by_kind.setdefault(pair.kind, [0, 0])
        counts[0] += 1
        counts[1] += hit
        hits += hit
        false_hits += hit and not pair.same
        positives += pair.kind == "paraphrase"
        positive_hits += hit and pair.kind == "paraphrase"
    return NodeMeasure(
        node=",".join(sorted(nodes)),
        threshold=threshold,
        guard=guard,
        pairs=len(pairs),
        positives=positives,
        positive_hits=positive_hits,
        hits=hits,
        false_hits=false_hits,
        by_kind={kind: (n, h) for kind, (n, h) in sorted(by_kind.items())},
    )


def calibrate(
    pairs: Iterable[LabelledPair],
    target: float,
    *,
    bound: Bound = "wilson",
    guard: bool = True,
) -> Calibration:
    """The lowest threshold whose false-hit rate stays at or under `target` on these pairs.

    Args:
        pairs: One node's labelled pairs.
        target: The highest acceptable false-hit rate (e.g. 0.05).
        bound: Judge the rate by its Wilson upper bound ("wilson") or point estimate ("point").
        guard: Count a pair as a hit only when the guard lets it through (as served).

    Returns:
        The calibration; its threshold is None when no threshold qualifies.
    """
    pairs = list(pairs)
    node = ",".join(sorted({p.node for p in pairs}))
    # Pairs that can hit, nearest first: at the k-th one's similarity, the first k + 1 hit.
    eligible = sorted(
        ((p.similarity, p.same) for p in pairs if p.guarded or not guard), key=lambda x: -x[0]
    )
    false_so_far = []
    false_hits = 0
    for _, same in eligible:
        false_hits += not same
        false_so_far.append(false_hits)
    for k in range(len(eligible) - 1, -1, -1):  # ascending thresholds: most hits first
        if k + 1 < len(eligible) and eligible[k + 1][0] == eligible[k][0]:
            continue  # ties hit together: judge at the last of them
        hits, wrong = k + 1, false_so_far[k]
        rate = wilson(wrong, hits)[1] if bound == "wilson" else wrong / hits
        if rate <= target:
            threshold = eligible[k][0]
            return Calibration(
                node, threshold, target, bound, measure(pairs, threshold, guard=guard)
            )
    return Calibration(node, None, target, bound, None)


def cross_validate(
    pairs: Iterable[LabelledPair],
    target: float,
    *,
    bound: Bound = "wilson",
    guard: bool = True,
) -> tuple[NodeMeasure, list[Calibration]]:
    """Calibrate on one fold, measure on the other, both ways; the two measures summed.

    Pairs across folds are left out, so no paraphrase group (nor family) is on both sides. A
    fold whose calibration finds no threshold serves nothing semantically on the other fold.
    """
    pairs = list(pairs)
    calibrations = []
    measured = []
    for train, test in ((0, 1), (1, 0)):
        fitted = calibrate([p for p in pairs if p.fold == train], target, bound=bound, guard=guard)
        calibrations.append(fitted)
        held_out = [p for p in pairs if p.fold == test]
        measured.append(measure(held_out, fitted.threshold or math.inf, guard=guard))
    a, b = measured
    kinds = sorted(set(a.by_kind) | set(b.by_kind))
    total = NodeMeasure(
        node=a.node or b.node,
        threshold=math.nan,
        guard=guard,
        pairs=a.pairs + b.pairs,
        positives=a.positives + b.positives,
        positive_hits=a.positive_hits + b.positive_hits,
        hits=a.hits + b.hits,
        false_hits=a.false_hits + b.false_hits,
        by_kind={
            k: (
                a.by_kind.get(k, (0, 0))[0] + b.by_kind.get(k, (0, 0))[0],
                a.by_kind.get(k, (0, 0))[1] + b.by_kind.get(k, (0, 0))[1],
            )
            for k in kinds
        },
    )
    return total, calibrations


# -- labelled data ----------------------------------------------------------------------------


def load_items(path: str | Path) -> list[Item]:
    """Items from JSON lines: `{"graph", "family"?, "group", "text", "answers": {node: answer}}`.

    Raises:
        ValueError: A line is not such an object (the line number is named).
    """
    items = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            family = str(row.get("family") or row["group"])
            items.append(
                Item(str(row["graph"]), str(row["text"]), str(row["group"]), row["answers"], family)
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a labelled request ({exc})") from exc
    return items


def _kind(cached: Any, new: Any, same_group: bool) -> PairKind:
    if canonical_json(cached) == canonical_json(new):
        return "paraphrase" if same_group else "same_answer"
    if not (isinstance(cached, Mapping) and isinstance(new, Mapping)):
        return "other"
    if cached.get("name") != new.get("name"):
        return "other"
    a, b = cached.get("parameters") or {}, new.get("parameters") or {}
    differing = [k for k in set(a) | set(b) if a.get(k) != b.get(k)]
    if differing and all({a.get(k), b.get(k)} in _NEGATIONS for k in differing):
        return "negation"
    return "slot"


def _answer_text(answer: Any) -> str:
    return answer if isinstance(answer, str) else json.dumps(answer)


def pairs_from_items(
    items: Sequence[Item], encode: Callable[[list[str]], NDArray[Any]]
) -> dict[str, list[LabelledPair]]:
    """Every ordered pair of distinct requests of a graph, at each node both have an answer for.

    The cached answer is the cached request's right answer (the cache held a correct one);
    the guard runs on it against the new request's text.

    Returns:
        Pairs by `graph/node`.
    """
    import numpy as np

    vectors = np.asarray(encode([item.text for item in items]), dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    similarities = vectors @ vectors.T
    # Families alternate between the two folds in the order they first appear.
    families: dict[str, int] = {}
    for item in items:
        families.setdefault(f"{item.graph}/{item.family or item.group}", len(families) % 2)
    pairs: dict[str, list[LabelledPair]] = {}
    for i, cached in enumerate(items):
        for j, new in enumerate(items):
            if i == j or cached.graph != new.graph or cached.text == new.text:
                continue
            fold_a = families[f"{cached.graph}/{cached.family or cached.group}"]
            fold_b = families[f"{new.graph}/{new.family or new.group}"]
            for node, answer in cached.answers.items():
                if node not in new.answers:
                    continue
                wanted = new.answers[node]
                structured = not isinstance(answer, str)
                problem = guard_problem(
                    _answer_text(answer), new.text, cached.text, structured=structured
                )
                pairs.setdefault(f"{cached.graph}/{node}", []).append(
                    LabelledPair(
                        node=f"{cached.graph}/{node}",
                        similarity=float(similarities[i, j]),
                        same=canonical_json(answer) == canonical_json(wanted),
                        guarded=problem is None,
                        kind=_kind(answer, wanted, cached.group == new.group),
                        fold=fold_a if fold_a == fold_b else -1,
                    )
                )
    return pairs
