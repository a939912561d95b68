"""The per-node learner: P(a tier's answer stands | the node's input), one model per tier.

For each tier with labelled attempts at a node, a scikit-learn pipeline (standardised
features -> logistic regression) is calibrated with `CalibratedClassifierCV` (isotonic when a
tier has at least `ISOTONIC_MIN` attempts, sigmoid below that: isotonic calibration overfits
small sets, as scikit-learn's own documentation warns). A tier whose attempts are almost all
one way (fewer than `MIN_PER_CLASS` of the rarer outcome) gets no classifier: its smoothed
success rate, (successes + 1) / (attempts + 2), stands for every input. Cross-validated
accuracy and AUC are computed for every classifier before the final fit. A decision evaluates
the fitted parameters with numpy (`_fast`, held equal to `predict_proba` by a unit test):
scikit-learn's per-call input checks alone cost about 1 ms per tier.

scikit-learn and numpy are imported only when a router is trained or asked.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from brickwork.errors import ConfigError
from brickwork.routing.features import Features, FeatureSpec
from brickwork.routing.labels import Sample

__all__ = [
    "ISOTONIC_MIN",
    "MIN_PER_CLASS",
    "MIN_SAMPLES",
    "Encoder",
    "Router",
    "TierFit",
    "train_router",
]

#: Labelled attempts a node needs before a router is trained for it.
MIN_SAMPLES = 20
#: Attempts of the rarer outcome a tier needs for a classifier (else its rate stands).
MIN_PER_CLASS = 5
#: Attempts a tier needs for isotonic calibration (else sigmoid).
ISOTONIC_MIN = 1000
#: Texts embedded per encoder call while training.
_BATCH = 64
#: Tiers in ladder order when the training data does not say otherwise.
_LADDER = ("slm", "large", "frontier")

#: Turns texts into a `(len(texts), dim)` array (`brickwork.agents.embeddings.Encoder`).
Encoder = Callable[[list[str]], Any]


@dataclass(frozen=True)
class TierFit:
    """What was learned for one tier of one node.

    Attributes:
        tier: The tier (logical model name).
        samples: Labelled attempts of this tier.
        positives: How many of them stood.
        kind: "model" (a calibrated classifier) or "rate" (the smoothed rate for every input).
        rate: Smoothed success rate, (positives + 1) / (samples + 2).
        method: The classifier's calibration ("isotonic" or "sigmoid"), None for a rate.
        accuracy: Cross-validated accuracy at a 0.5 threshold (None for a rate).
        auc: Cross-validated ROC AUC (None for a rate).
    """

    tier: str
    samples: int
    positives: int
    kind: Literal["model", "rate"]
    rate: float
    method: str | None = None
    accuracy: float | None = None
    auc: float | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON data for the router's manifest."""
        return {
            "samples": self.samples,
            "positives": self.positives,
            "kind": self.kind,
            "rate": self.rate,
            "method": self.method,
            "accuracy": self.accuracy,
            "auc": self.auc,
        }

    @classmethod
    def from_json(cls, tier: str, data: Mapping[str, Any]) -> TierFit:
        """Parse `to_json`'s output."""
        kind: Literal["model", "rate"] = "model" if data.get("kind") == "model" else "rate"
        return cls(
            tier, int(data["samples"]), int(data["positives"]), kind, float(data["rate"]),
            data.get("method"), _number(data.get("accuracy")), _number(data.get("auc")),
        )  # fmt: skip


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


@dataclass(frozen=True)
class Router:
    """A trained router for one node of one graph.

    Attributes:
        graph: The graph.
        node: The node.
        skill: The node's skill when trained (None for agents without one).
        binding: The skill's binding when trained (`brickwork.routing.binding_key`); another
            binding makes the router stale until it is retrained.
        spec: The feature layout.
        tiers: What was learned per tier, cheapest first.
        models: The fitted classifiers, by tier (tiers with a rate have none).
        revision: 1 for the first router of this node, +1 per retraining (0: never saved).
        trained_at: Unix time of training.
    """

    graph: str
    node: str
    skill: str | None
    binding: str
    spec: FeatureSpec
    tiers: Mapping[str, TierFit]
    models: Mapping[str, Any] = field(default_factory=dict, repr=False)
    revision: int = 0
    trained_at: float = 0.0

    @property
    def samples(self) -> int:
        """Labelled attempts it was trained on, over all tiers."""
        return sum(t.samples for t in self.tiers.values())

    def with_revision(self, revision: int) -> Router:
        """A copy with another revision number."""
        return replace(self, revision=revision)

    def __post_init__(self) -> None:
        fast = {tier: _fast(model) for tier, model in self.models.items()}
        object.__setattr__(self, "_fast", {t: f for t, f in fast.items() if f is not None})

    def predict(self, features: Features) -> dict[str, float]:
        """P(the tier's answer stands) for each tier it knows, cheapest first.

        Raises:
            ValueError: The router uses an embedding and `features` has none of its size.
        """
        import numpy as np

        row = np.asarray(self.spec.row(features), dtype=np.float64)
        fast: dict[str, Callable[[Any], float]] = getattr(self, "_fast", {})
        found: dict[str, float] = {}
        for tier, fit in self.tiers.items():
            model = self.models.get(tier)
            if tier in fast:
                found[tier] = fast[tier](row)
            elif model is not None:
                found[tier] = float(model.predict_proba(row.reshape(1, -1))[0, 1])
            else:
                found[tier] = fit.rate
        return found


def _fast(model: Any) -> Callable[[Any], float] | None:
    """The fitted classifier's own parameters evaluated with numpy, or None for another shape.

    The same numbers as `predict_proba` of the `CalibratedClassifierCV(ensemble=False)` over
    StandardScaler + LogisticRegression that `train_router` fits (a unit test holds them
    equal), without scikit-learn's per-call input checks: those took about 1 ms per tier, over
    the issue's 1 ms budget for the whole decision. Fitting stays scikit-learn's.
    """
    import numpy as np

    try:
        (calibrated,) = model.calibrated_classifiers_
        scaler, regression = calibrated.estimator[0], calibrated.estimator[1]
        (calibrator,) = calibrated.calibrators
        coef = np.asarray(regression.coef_[0], dtype=np.float64) / scaler.scale_
        intercept = float(regression.intercept_[0] - scaler.mean_ @ coef)
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    if hasattr(calibrator, "a_"):  # sigmoid (Platt)
        a, b = float(calibrator.a_), float(calibrator.b_)

        def sigmoid(row: Any) -> float:
            z = a * float(row @ coef + intercept) + b
            return 0.0 if z > 700.0 else min(1.0, 1.0 / (1.0 + math.exp(z)))

        return sigmoid
    if hasattr(calibrator, "X_thresholds_"):  # isotonic, out_of_bounds="clip"
        xs, ys = calibrator.X_thresholds_, calibrator.y_thresholds_
        low, high = float(calibrator.X_min_), float(calibrator.X_max_)

        def isotonic(row: Any) -> float:
            score = min(max(float(row @ coef + intercept), low), high)
            return min(1.0, float(np.interp(score, xs, ys)))

        return isotonic
    return None


def _smoothed(positives: int, samples: int) -> float:
    return (positives + 1) / (samples + 2)


def _classifier(method: str, folds: int, seed: int) -> Any:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    base = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    # ensemble=False: one classifier fitted on all the data (calibrated on out-of-fold
    # predictions), so a decision costs one prediction per tier, not one per fold.
    return CalibratedClassifierCV(base, method=method, cv=cv, ensemble=False)


def _fit_tier(tier: str, x: Any, y: Any, seed: int) -> tuple[TierFit, Any]:
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    samples, positives = len(y), int(y.sum())
    rarer = min(positives, samples - positives)
    rate = _smoothed(positives, samples)
    if rarer < MIN_PER_CLASS:
        return TierFit(tier, samples, positives, "rate", rate), None
    method = "isotonic" if samples >= ISOTONIC_MIN else "sigmoid"
    outer = StratifiedKFold(n_splits=min(5, rarer), shuffle=True, random_state=seed)
    inner_folds = 3
    scores = cross_val_predict(
        _classifier(method, inner_folds, seed), x, y, cv=outer, method="predict_proba"
    )[:, 1]
    accuracy = float(((scores >= 0.5) == y.astype(bool)).mean())
    auc = float(roc_auc_score(y, scores))
    model = _classifier(method, inner_folds, seed).fit(x, y)
    return TierFit(tier, samples, positives, "model", rate, method, accuracy, auc), model


def _embed(texts: Sequence[str], encoder: Encoder) -> dict[str, tuple[float, ...]]:
    unique = list(dict.fromkeys(texts))
    found: dict[str, tuple[float, ...]] = {}
    for start in range(0, len(unique), _BATCH):
        batch = unique[start : start + _BATCH]
        for text, vector in zip(batch, encoder(list(batch)), strict=True):
            found[text] = tuple(float(v) for v in vector)
    return found


def _order(tiers: Sequence[str], ladder: Sequence[str] | None) -> list[str]:
    known = list(ladder or _LADDER)
    return sorted(set(tiers), key=lambda t: (known.index(t) if t in known else len(known), t))


def train_router(
    samples: Sequence[Sample],
    *,
    graph: str,
    node: str,
    skill: str | None,
    binding: str,
    ladder: Sequence[str] | None = None,
    encoder: Encoder | None = None,
    min_samples: int = MIN_SAMPLES,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Router:
    """Train a router for one node from its labelled attempts.

    Args:
        samples: Labelled attempts (those of other nodes are ignored).
        graph: The graph.
        node: The node.
        skill: The node's skill name (None for agents without one).
        binding: The skill's current binding (`binding_key`), stored with the router.
        ladder: Tier names cheapest first (default: slm, large, frontier).
        encoder: Embeds texts; without one the router uses the cheap signals only.
        min_samples: Fewest labelled attempts to train on.
        seed: Seed of the cross-validation splits.
        progress: Called with a line of text at each step.

    Raises:
        ConfigError: Fewer than `min_samples` labelled attempts for the node.
    """
    import numpy as np

    mine = [s for s in samples if s.node == node]
    if len(mine) < min_samples:
        raise ConfigError(
            f"node {node!r} of graph {graph!r} has {len(mine)} labelled attempt(s) in the run "
            f"store; a router needs at least {min_samples}. Run more requests through it in "
            "hybrid mode (e.g. `brickwork eval` with --store) and train again"
        )
    say = progress or (lambda _: None)
    mine = _one_per_input(mine)
    features = [s.features for s in mine]
    dim = 0
    if encoder is not None:
        say(f"{node}: embedding {len({f.text for f in features})} texts")
        vectors = _embed([f.text for f in features], encoder)
        features = [replace(f, embedding=vectors[f.text]) for f in features]
        dim = len(next(iter(vectors.values())))
    spec = FeatureSpec.fit(features, embedding_dim=dim)
    x_all = spec.matrix(features)
    y_all = np.asarray([int(s.ok) for s in mine])
    tiers: dict[str, TierFit] = {}
    models: dict[str, Any] = {}
    for tier in _order([s.tier for s in mine], ladder):
        rows = np.asarray([s.tier == tier for s in mine])
        say(f"{node}: fitting {tier} on {int(rows.sum())} attempt(s)")
        fit, model = _fit_tier(tier, x_all[rows], y_all[rows], seed)
        tiers[tier] = fit
        if model is not None:
            models[tier] = model
    return Router(graph, node, skill, binding, spec, tiers, models, 0, time.time())


def _one_per_input(samples: Sequence[Sample]) -> list[Sample]:
    """One sample per (tier, input text): the same input answered again is not new evidence.

    Deterministic calls repeat their outcome (an eval compared over several modes asks the
    small tier the same question twice), and a repeated text on both sides of a
    cross-validation split makes the reported accuracy look perfect. Repeats are merged into
    one sample whose label is the majority (a tie counts as not stood: the safe side).
    """
    groups: dict[tuple[str, str], list[Sample]] = {}
    for sample in samples:
        groups.setdefault((sample.tier, sample.features.text), []).append(sample)
    merged: list[Sample] = []
    for group in groups.values():
        stood = sum(sample.ok for sample in group)
        merged.append(replace(group[-1], ok=2 * stood > len(group)))
    return merged


def is_nan(value: float | None) -> bool:
    """True for None or NaN (a metric that could not be computed)."""
    return value is None or math.isnan(value)
