"""`CachedPool`: the model pool a node's agent sees when a response cache is configured.

Every agent's model call goes through `ModelPool.complete` (`choose` and `complete_json` call
it), so one override covers intent, extract, tool-call, SQL and planner agents without touching
them. The graph builder hands agents `node_pool(ctx, node, skill)`: the run's own pool when no
cache is configured (today's behaviour, not even an event), else a `CachedPool` scoped to that
node, skill, binding and tenant. A hit returns the cached completion flagged
`extra["cache"] == "hit"` (the run context records it at $0) and makes no model call; a
semantic hit also carries `extra["cache_semantic"]`, the similarity it was served at.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from brickwork.caching.backends import CacheUnavailable
from brickwork.caching.cache import RESOURCE, ResponseCache
from brickwork.caching.key import (
    Scope,
    deterministic,
    last_user_text,
    request_key,
    request_of,
    semantic_space,
    skill_version,
)
from brickwork.caching.semantic import Entry, guard_problem
from brickwork.events import CacheLookup, Event
from brickwork.serving.pool import ModelPool
from brickwork.serving.types import ChatRequest, Completion, Message

if TYPE_CHECKING:
    from brickwork.cost.prices import PriceBook
    from brickwork.run_context import RunContext
    from brickwork.skills.skill import Skill

__all__ = ["CachedPool", "is_cached", "node_pool"]

log = logging.getLogger(__name__)


def is_cached(completion: Completion) -> bool:
    """True when `completion` was answered from the response cache."""
    return completion.extra.get("cache") == "hit"


class CachedPool(ModelPool):
    """A view of a `ModelPool` whose `complete` looks in a `ResponseCache` first.

    Everything else (tiers, resolve, health, replicas) is the wrapped pool's: the view shares
    its state and does not own it (closing the view closes nothing).
    """

    def __init__(
        self,
        pool: ModelPool,
        cache: ResponseCache,
        scope: Scope,
        *,
        run_id: str = "",
        emit: Callable[[Event], None] | None = None,
        prices: PriceBook | None = None,
    ) -> None:
        # Deliberately not ModelPool.__init__: this is a view, attributes come from `pool`.
        self._inner = pool
        self._cache = cache
        self.scope = scope
        self._run_id = run_id
        self._emit = emit
        self._prices = prices

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def complete(
        self, model: str, messages: Sequence[Message] | ChatRequest, **options: Any
    ) -> Completion:
        """The cached completion for this request, else the wrapped pool's (then cached).

        Exact key first; then, on a node that opts into semantic hits, the nearest cached
        request of the same key space above the node's threshold that passes the guard
        (`semantic.guard_problem`). Sampled requests (temperature above 0) are never looked
        up nor stored.
        """
        request = request_of(messages, options)
        if not deterministic(request):
            return await self._inner.complete(model, request)
        started = time.perf_counter()
        replicas, adapter = self._inner.resolve(model)  # unknown names raise, as uncached
        served = [adapter] if adapter else sorted({r.config.model for r in replicas})
        key = request_key(self.scope, model, served, request)
        node = f"{self.scope.graph}/{self.scope.node}"
        error: str | None = None
        try:
            cached = await self._cache.get(key)
        except CacheUnavailable as exc:
            cached, error = None, str(exc)
        except Exception as exc:  # a cache must never fail a run
            cached, error = None, f"{type(exc).__name__}: {exc}"
        lookup_s = time.perf_counter() - started
        if cached is not None:
            return await self._hit(key, model, cached, lookup_s)
        threshold = self._cache.threshold(self.scope.graph, self.scope.node)
        space = text = semantic_error = None
        vector: Any = None
        if threshold is not None and error is None:
            space = semantic_space(self.scope, model, served, request)
            text = last_user_text(request)
        if space is not None and text is not None:
            try:
                # The embedding is not lookup time: the graph's intent kNN embeds this text.
                vector = await self._cache.embed(text)
                semantic_started = time.perf_counter()
                found = await self._cache.nearest(space, vector)
                lookup_s += time.perf_counter() - semantic_started
            except CacheUnavailable as exc:
                found, error = None, str(exc)
            except Exception as exc:  # the encoder, say: no semantic lookup, still an exact put
                found, vector = None, None
                semantic_error = f"semantic lookup failed: {type(exc).__name__}: {exc}"
                log.warning("response cache: %s; answered without it", semantic_error)
            if found is not None and threshold is not None and found[1] >= threshold:
                entry, similarity, candidate = found
                problem = guard_problem(
                    candidate.text,
                    text,
                    entry.text,
                    structured=request.json_schema is not None,
                    choices=request.choices,
                )
                if problem is None:
                    return await self._hit(key, model, candidate, lookup_s, similarity)
                await self._cache.record(node, hit=False, rejected=True)
                self._event(key, False, model, lookup_s, 0.0, 0.0, None, similarity, problem)
                return await self._fresh(key, model, request, space, text, vector)
        shown = error or semantic_error
        await self._cache.record(node, hit=False, error=shown is not None)
        self._event(key, False, model, lookup_s, 0.0, 0.0, shown)
        if error is not None:  # the backend is down: do not wait on it again to store
            return await self._inner.complete(model, request)
        return await self._fresh(key, model, request, space, text, vector)

    async def _fresh(
        self,
        key: str,
        model: str,
        request: ChatRequest,
        space: str | None,
        text: str | None,
        vector: Any,
    ) -> Completion:
        completion = await self._inner.complete(model, request)
        await self._cache.put(key, completion)  # never raises: a failed write is logged
        if space is not None and text is not None and vector is not None:
            await self._cache.index(space, Entry(key, text, vector))
        return completion

    async def _hit(
        self,
        key: str,
        model: str,
        cached: Completion,
        lookup_s: float,
        similarity: float | None = None,
    ) -> Completion:
        node = f"{self.scope.graph}/{self.scope.node}"
        semantic = similarity is not None
        saved_usd = self._price(cached)
        await self._cache.record(
            node, hit=True, saved_usd=saved_usd, saved_s=cached.latency_s, semantic=semantic
        )
        self._event(key, True, model, lookup_s, saved_usd, cached.latency_s, None, similarity)
        extra: dict[str, Any] = {
            "cache": "hit",
            "cache_key": key[:12],
            "cached_latency_s": cached.latency_s,
        }
        if semantic:
            extra["cache_semantic"] = similarity
        return replace(cached, latency_s=lookup_s, attempts=1, extra=extra)

    def _price(self, completion: Completion) -> float:
        if self._prices is None:
            return 0.0
        try:
            return self._prices.cost(completion)
        except Exception:  # an endpoint without a price saved an unknown amount
            return 0.0

    def _event(
        self,
        key: str,
        hit: bool,
        model: str,
        lookup_s: float,
        saved_usd: float,
        saved_s: float,
        error: str | None = None,
        similarity: float | None = None,
        rejected: str | None = None,
    ) -> None:
        if self._emit is not None:
            self._emit(
                CacheLookup(
                    self._run_id,
                    self.scope.node,
                    hit,
                    key[:12],
                    model,
                    self._cache.backend.name,
                    lookup_s,
                    saved_usd,
                    saved_s,
                    error,
                    semantic=hit and similarity is not None,
                    similarity=similarity,
                    rejected=rejected,
                )
            )

    async def aclose(self) -> None:
        """Nothing: the wrapped pool belongs to whoever made it."""


def node_pool(ctx: RunContext, node: str, skill: Skill | None) -> ModelPool:
    """The pool a node's agent gets: the run's own, or a cached view when a cache is set."""
    cache = ctx.resources.get(RESOURCE)
    if not isinstance(cache, ResponseCache):
        return ctx.pool
    from brickwork.routing.artefact import binding_key

    scope = Scope(
        graph=ctx.graph,
        node=node,
        tenant=ctx.tenant,
        skill=skill.name if skill is not None else "-",
        skill_version=skill_version(skill),
        binding=binding_key(skill),
    )
    return CachedPool(
        ctx.pool, cache, scope, run_id=ctx.run_id, emit=ctx.emit, prices=ctx.ledger.prices
    )
