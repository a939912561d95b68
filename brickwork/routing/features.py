"""What a router sees of a node's input: cheap signals, and optionally a text embedding.

`Features` is computed the same way at training time (from a stored run) and at decision time
(from the graph state), so the learner never sees two different views of one request:

- the text the node works on (the last user turn), its length in characters and words;
- the conversation turn (how many user turns so far, 1 for a single request);
- the intent an earlier node found, and its confidence, when the graph has an intent node;
- an embedding of the text (all-MiniLM-L6-v2 by default), when the router was trained with one.

`FeatureSpec` fixes the vector layout of one trained router (the intent labels it knows, the
embedding size), so a router stored on disk turns features into the same columns it was
trained on. numpy is imported only when vectors are built.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["FeatureSpec", "Features", "features_from_state", "intent_of", "text_of"]


@dataclass(frozen=True)
class Features:
    """The router's view of one node input.

    Attributes:
        text: The text the node works on (the last user turn).
        turn: Which user turn of the conversation this is (1 for a single request).
        intent: The label an earlier intent node chose, if any.
        confidence: That intent's confidence (NaN when unknown).
        embedding: The text's embedding, when one was computed.
    """

    text: str
    turn: int = 1
    intent: str | None = None
    confidence: float = math.nan
    embedding: tuple[float, ...] | None = field(default=None, repr=False)

    def cheap(self) -> dict[str, Any]:
        """The signals besides the embedding, JSON-able (recorded with each decision)."""
        return {
            "chars": len(self.text),
            "words": len(self.text.split()),
            "turn": self.turn,
            "intent": self.intent,
            "confidence": None if math.isnan(self.confidence) else round(self.confidence, 4),
        }


def text_of(input: Any, state: Mapping[str, Any] | None = None) -> str:
    """The text of a node input: itself, the last user turn of a chat, else the run's text."""
    if isinstance(input, str):
        return input
    if isinstance(input, Sequence):
        for message in reversed(input):
            if isinstance(message, Mapping) and message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, str):
                    return content
    return str((state or {}).get("text") or "")


def intent_of(outputs: Iterable[Any]) -> tuple[str | None, float]:
    """The first intent-like output (a mapping with `label` and `confidence`), if any."""
    for output in outputs:
        if isinstance(output, Mapping) and isinstance(output.get("label"), str):
            confidence = output.get("confidence")
            value = float(confidence) if isinstance(confidence, int | float) else math.nan
            return str(output["label"]), value
    return None, math.nan


def features_from_state(input: Any, state: Mapping[str, Any]) -> Features:
    """Features of a node input at decision time, from the graph state before the node runs."""
    messages = state.get("messages") or ()
    turns = sum(1 for m in messages if isinstance(m, Mapping) and m.get("role") == "user")
    intent, confidence = intent_of((state.get("outputs") or {}).values())
    return Features(text_of(input, state), max(turns, 1), intent, confidence)


@dataclass(frozen=True)
class FeatureSpec:
    """The column layout of one router's feature vectors.

    Attributes:
        intents: The intent labels seen in training, one indicator column each (an unseen or
            missing intent sets none of them).
        embedding_dim: Size of the text embedding (0: the router uses no embedding).
    """

    intents: tuple[str, ...] = ()
    embedding_dim: int = 0

    @classmethod
    def fit(cls, samples: Sequence[Features], *, embedding_dim: int = 0) -> FeatureSpec:
        """The layout for a training set: every intent label it contains, sorted."""
        intents = sorted({f.intent for f in samples if f.intent is not None})
        return cls(tuple(intents), embedding_dim)

    @property
    def width(self) -> int:
        """Number of columns."""
        return 5 + len(self.intents) + self.embedding_dim

    def row(self, features: Features) -> list[float]:
        """One sample's columns: log lengths, turn, confidence (+ known flag), intents, embedding.

        Raises:
            ValueError: The router uses an embedding and `features` has none of that size.
        """
        known = not math.isnan(features.confidence)
        values = [
            math.log1p(len(features.text)),
            math.log1p(len(features.text.split())),
            float(features.turn),
            features.confidence if known else 0.0,
            1.0 if known else 0.0,
        ]
        values += [1.0 if features.intent == label else 0.0 for label in self.intents]
        if self.embedding_dim:
            embedding = features.embedding
            if embedding is None or len(embedding) != self.embedding_dim:
                size = None if embedding is None else len(embedding)
                raise ValueError(
                    f"this router needs an embedding of size {self.embedding_dim}, got {size!r}"
                )
            values += list(embedding)
        return values

    def matrix(self, samples: Sequence[Features]) -> NDArray[Any]:
        """The feature matrix of several samples (one row each)."""
        import numpy as np

        return np.asarray([self.row(f) for f in samples], dtype=np.float64).reshape(
            len(samples), self.width
        )

    def to_json(self) -> dict[str, Any]:
        """JSON data for the router's manifest."""
        return {"intents": list(self.intents), "embedding_dim": self.embedding_dim}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """Parse `to_json`'s output."""
        return cls(tuple(str(i) for i in data.get("intents", ())), int(data["embedding_dim"]))
