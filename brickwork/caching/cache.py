"""`ResponseCache`: cached model completions by key, with per-node hit statistics.

What is stored is the model's completion (text, token counts, finish reason, logprobs), never
a tool's effect: the agent validates a cached answer like a fresh one, and a cached tool call
is executed again. A backend failure is a miss (counted as an error), never a failed run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from brickwork.caching.backends import (
    DEFAULT_MAX_ENTRIES,
    DEFAULT_TTL_S,
    CacheBackend,
    CacheUnavailable,
    MemoryCache,
    RedisCache,
)
from brickwork.caching.semantic import DEFAULT_SPACE_ENTRIES, Entry, MemoEncoder, nearest
from brickwork.errors import ConfigError
from brickwork.serving.types import Completion, TokenLogprob, Usage

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["RESOURCE", "NodeCacheStats", "ResponseCache", "decode", "encode"]

log = logging.getLogger(__name__)

#: The run resource (`RunContext.resources[RESOURCE]`) a graph module or `App(cache=...)` sets.
RESOURCE = "cache"
#: The shared statistics counter (one field per node and measure).
_COUNTER = "nodes"
_MEASURES = ("hits", "misses", "errors", "saved_usd", "saved_s", "semantic_hits", "rejected")


@dataclass(frozen=True)
class NodeCacheStats:
    """Lookups of one node: hits, misses, backend errors, and what the hits saved.

    `hits` counts exact and semantic hits; `semantic_hits` the semantic ones among them;
    `rejected` the semantic candidates above the threshold that the guard turned down (each
    of those lookups is also a miss).
    """

    node: str
    hits: int = 0
    misses: int = 0
    errors: int = 0
    saved_usd: float = 0.0
    saved_s: float = 0.0
    semantic_hits: int = 0
    rejected: int = 0

    @property
    def exact_hits(self) -> int:
        """Hits on the exact key."""
        return self.hits - self.semantic_hits

    @property
    def lookups(self) -> int:
        """Hits plus misses."""
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float:
        """Share of lookups that hit (0.0 without lookups)."""
        return self.hits / self.lookups if self.lookups else 0.0


def encode(completion: Completion) -> bytes:
    """A completion as JSON bytes (its `extra` and attempt count are not kept)."""
    body = {
        "text": completion.text,
        "model": completion.model,
        "served_model": completion.served_model,
        "endpoint": completion.endpoint,
        "usage": [completion.usage.prompt_tokens, completion.usage.completion_tokens],
        "latency_s": completion.latency_s,
        "finish_reason": completion.finish_reason,
        "logprobs": None
        if completion.logprobs is None
        else [[t.token, t.logprob, [list(p) for p in t.top]] for t in completion.logprobs],
        "endpoint_kind": completion.endpoint_kind,
        "stand_in": completion.stand_in,
    }
    return json.dumps(body, ensure_ascii=False).encode()


def decode(data: bytes) -> Completion:
    """The completion `encode` wrote.

    Raises:
        ValueError: The bytes are not an encoded completion.
    """
    try:
        body = json.loads(data)
        logprobs = body["logprobs"]
        return Completion(
            text=str(body["text"]),
            model=str(body["model"]),
            served_model=str(body["served_model"]),
            endpoint=str(body["endpoint"]),
            usage=Usage(int(body["usage"][0]), int(body["usage"][1])),
            latency_s=float(body["latency_s"]),
            finish_reason=body["finish_reason"],
            logprobs=None
            if logprobs is None
            else tuple(
                TokenLogprob(str(t), float(lp), tuple((str(a), float(b)) for a, b in top))
                for t, lp, top in logprobs
            ),
            endpoint_kind=body["endpoint_kind"],
            stand_in=bool(body["stand_in"]),
        )
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise ValueError(f"not a cached completion: {exc}") from exc


class ResponseCache:
    """Model completions by key (`brickwork.caching.key.request_key`) in one backend.

    Off unless configured: give one to `App(cache=...)`, or return it from a graph module's
    `resources()` under `RESOURCE`. Per-node statistics are kept in this process (`stats`) and
    in the backend (`shared_stats`: summed over every replica sharing a Redis).
    """

    def __init__(
        self,
        backend: CacheBackend | None = None,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        semantic: Mapping[str, float] | None = None,
        encoder: Callable[[list[str]], NDArray[Any]] | None = None,
        space_entries: int = DEFAULT_SPACE_ENTRIES,
    ) -> None:
        """Create a cache.

        Args:
            backend: Where entries live (default: an in-process `MemoryCache`).
            ttl_s: How long an entry is kept, in seconds.
            semantic: The nodes that opt into semantic hits, each with its similarity
                threshold (cosine, in (0, 1]): `{"smart_home/intent": 0.93}` or by node name
                alone (`{"intent": 0.93}`, every graph's). Calibrate thresholds with
                `brickwork cache calibrate`. Other nodes get exact hits only.
            encoder: Texts to embeddings for semantic lookups (default: MiniLM on the CPU,
                loaded on the first semantic lookup; the graph's intent kNN uses the same).
            space_entries: Cached texts kept per semantic key space (newest first).
        """
        if ttl_s <= 0:
            raise ConfigError(f"cache ttl_s {ttl_s!r} must be positive")
        for node, threshold in (semantic or {}).items():
            if not 0 < threshold <= 1:
                raise ConfigError(
                    f"semantic threshold {threshold!r} of node {node!r} must be in (0, 1]"
                )
        if space_entries < 1:
            raise ConfigError(f"space_entries {space_entries!r} must be 1 or more")
        self.backend: CacheBackend = backend if backend is not None else MemoryCache()
        self.ttl_s = ttl_s
        self.semantic: dict[str, float] = dict(semantic or {})
        self.space_entries = space_entries
        self._encode = MemoEncoder(encoder)
        self._stats: dict[str, dict[str, float]] = {}

    @classmethod
    def memory(
        cls,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        semantic: Mapping[str, float] | None = None,
    ) -> ResponseCache:
        """An in-process LRU cache (semantic hits for the nodes in `semantic`)."""
        return cls(MemoryCache(max_entries), ttl_s=ttl_s, semantic=semantic)

    @classmethod
    def redis(
        cls,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "brickwork:cache:",
        ttl_s: float = DEFAULT_TTL_S,
        timeout_s: float = 0.25,
        semantic: Mapping[str, float] | None = None,
    ) -> ResponseCache:
        """A cache in Redis under `prefix` (see `RedisCache`)."""
        return cls(
            RedisCache(url, prefix=prefix, timeout_s=timeout_s), ttl_s=ttl_s, semantic=semantic
        )

    def threshold(self, graph: str, node: str) -> float | None:
        """The semantic threshold of a node, or None when it gets exact hits only."""
        return self.semantic.get(f"{graph}/{node}", self.semantic.get(node))

    async def embed(self, text: str) -> NDArray[Any]:
        """The text's normalised embedding (off the event loop; memoised per text)."""
        return await asyncio.to_thread(self._encode, text)

    async def nearest(
        self, space: str, vector: NDArray[Any]
    ) -> tuple[Entry, float, Completion] | None:
        """The closest cached request of `space`, its similarity and completion, or None.

        Raises:
            CacheUnavailable: The backend could not answer.
        """
        found = nearest(vector, await self.backend.members(f"sem:{space}"))
        if found is None:
            return None
        entry, similarity = found
        completion = await self.get(entry.key)
        if completion is None:  # the completion expired before the index entry
            return None
        return entry, similarity, completion

    async def index(self, space: str, entry: Entry) -> None:
        """Add a cached request to its semantic key space (failures are logged, never raised)."""
        with contextlib.suppress(CacheUnavailable):
            await self.backend.push(f"sem:{space}", entry.pack(), self.space_entries, self.ttl_s)

    async def get(self, key: str) -> Completion | None:
        """The cached completion, or None (absent, expired, unreadable or backend down).

        Raises:
            CacheUnavailable: The backend could not answer (the caller counts an error).
        """
        data = await self.backend.get(key)
        if data is None:
            return None
        try:
            return decode(data)
        except ValueError as exc:
            log.warning("response cache: entry %s is unreadable (%s); treated as a miss", key, exc)
            return None

    async def put(self, key: str, completion: Completion) -> None:
        """Cache a completion (backend failures are logged, never raised)."""
        # A failed write was logged by the backend; the answer is simply not cached.
        with contextlib.suppress(CacheUnavailable):
            await self.backend.set(key, encode(completion), self.ttl_s)

    async def record(
        self,
        node: str,
        *,
        hit: bool,
        error: bool = False,
        saved_usd: float = 0.0,
        saved_s: float = 0.0,
        semantic: bool = False,
        rejected: bool = False,
    ) -> None:
        """Count one lookup of `node` here and in the backend (never raises)."""
        measures = {
            "hits": float(hit),
            "misses": float(not hit),
            "errors": float(error),
            "saved_usd": saved_usd,
            "saved_s": saved_s,
            "semantic_hits": float(hit and semantic),
            "rejected": float(rejected),
        }
        mine = self._stats.setdefault(node, dict.fromkeys(_MEASURES, 0.0))
        for name, amount in measures.items():
            mine[name] += amount
        if error:
            return  # the backend is down: do not wait on it again for a counter
        try:
            for name, amount in measures.items():
                if amount:
                    await self.backend.incr(_COUNTER, f"{node}|{name}", amount)
        except CacheUnavailable:
            pass

    def stats(self) -> dict[str, NodeCacheStats]:
        """Per-node statistics of this process's lookups."""
        return {node: _stats(node, fields) for node, fields in sorted(self._stats.items())}

    async def shared_stats(self) -> dict[str, NodeCacheStats]:
        """Per-node statistics kept in the backend (every process sharing it, for Redis)."""
        return stats_from_counters(await self.backend.counters(_COUNTER))

    async def clear(self) -> int:
        """Remove every entry and counter; returns the number of keys removed."""
        self._stats.clear()
        return await self.backend.clear()

    async def aclose(self) -> None:
        """Release the backend's connections."""
        await self.backend.aclose()


def _stats(node: str, fields: Mapping[str, float]) -> NodeCacheStats:
    return NodeCacheStats(
        node,
        int(fields.get("hits", 0)),
        int(fields.get("misses", 0)),
        int(fields.get("errors", 0)),
        float(fields.get("saved_usd", 0.0)),
        float(fields.get("saved_s", 0.0)),
        int(fields.get("semantic_hits", 0)),
        int(fields.get("rejected", 0)),
    )


def stats_from_counters(counters: Mapping[str, float]) -> dict[str, NodeCacheStats]:
    """Per-node statistics from `<node>|<measure>` counter fields."""
    by_node: dict[str, dict[str, float]] = {}
    for field, value in counters.items():
        node, _, measure = field.rpartition("|")
        if node and measure in _MEASURES:
            by_node.setdefault(node, {})[measure] = value
    return {node: _stats(node, fields) for node, fields in sorted(by_node.items())}
