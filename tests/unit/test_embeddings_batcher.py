"""The kNN micro-batcher: one text the encoder rejects fails only its own waiter."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from brickwork.agents.embeddings import EmbeddingKNN
from brickwork.skills.skill import Example

EXAMPLES = [Example("card lost", "card"), Example("pin change", "pin")]


def picky_encoder(calls: list[list[str]]):  # type: ignore[no-untyped-def]
    """Like the HF tokenizer: a batch with a lone surrogate fails as a whole."""

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        if any("\ud83d" in t for t in texts):
            raise TypeError("TextEncodeInput must be Union[TextInputSequence, ...]")
        return np.array([[float("card" in t), float("pin" in t), 1.0] for t in texts])

    return encode


async def test_a_rejected_text_fails_only_its_own_waiter() -> None:
    calls: list[list[str]] = []
    knn = EmbeddingKNN.from_examples(EXAMPLES, encoder=picky_encoder(calls), k=1)
    calls.clear()
    texts = ["card", "pin"] * 12
    texts[5] = "pin \ud83d"
    results = await asyncio.gather(*(knn.aclassify(t) for t in texts), return_exceptions=True)
    failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert failed == [5]
    assert isinstance(results[5], TypeError)
    labels = [getattr(r, "label", None) for r in results]
    assert labels == [None if i == 5 else ("card" if i % 2 == 0 else "pin") for i in range(24)]
    # The failed batch was retried text by text; the bad text was tried alone.
    assert ["pin \ud83d"] in calls


async def test_a_cancelled_waiter_does_not_stop_the_others() -> None:
    calls: list[list[str]] = []
    knn = EmbeddingKNN.from_examples(EXAMPLES, encoder=picky_encoder(calls), k=1)
    first = asyncio.ensure_future(knn.aclassify("card"))
    doomed = asyncio.ensure_future(knn.aclassify("\ud83d"))
    other = asyncio.ensure_future(knn.aclassify("pin"))
    doomed.cancel()
    assert (await first).label == "card"
    assert (await other).label == "pin"
    with pytest.raises(asyncio.CancelledError):
        await doomed
