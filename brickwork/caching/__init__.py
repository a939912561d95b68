"""Response caching: a cache in front of each node's model call, exact hits first.

This package owns the cache of model completions. `key` says what an answer is keyed on: the
graph and node, the skill and its version (instructions, contract, examples), its binding and
the logical model as resolved (a new adapter binding is a new key space), the tenant, the full
message list and every request option, hashed (sha256 of canonical JSON); only deterministic
(temperature 0) requests are cached. `backends` holds the in-process LRU (`MemoryCache`, the
embedded App's default) and `RedisCache` (shared by replicas; `redis` is imported only when
one is made). `cache.ResponseCache` stores completions, never a tool's effect, and keeps
per-node hit statistics; `pool.CachedPool` is the view of the model pool a node's agent gets
(`node_pool`), which records `CacheLookup` events and marks hits so the ledger prices them at
$0. A cache failure is a miss, never a failed run. `commands` is
`brickwork cache stats|clear|calibrate`. Nothing is cached unless `App(cache=...)` or a
graph's `resources()` sets one.

Semantic hits (`semantic`) only for the nodes a cache names with a threshold: the nearest cached
request of the same key space (`semantic_space`: the exact key without the last user message)
above it, unless `guard_problem` finds the answer unsafe for the new text. `calibration` picks
a node's threshold from labelled pairs for a target false-hit rate (Wilson upper bound).
"""

from __future__ import annotations

from brickwork.caching.backends import (
    DEFAULT_MAX_ENTRIES,
    DEFAULT_TTL_S,
    CacheBackend,
    CacheUnavailable,
    MemoryCache,
    RedisCache,
)
from brickwork.caching.cache import RESOURCE, NodeCacheStats, ResponseCache, decode, encode
from brickwork.caching.calibration import (
    Calibration,
    LabelledPair,
    NodeMeasure,
    calibrate,
    cross_validate,
    load_items,
    measure,
    pairs_from_items,
)
from brickwork.caching.commands import add_cache_arguments, cache_main
from brickwork.caching.key import (
    KEY_FORMAT,
    Scope,
    canonical_json,
    deterministic,
    last_user_text,
    request_key,
    request_of,
    semantic_space,
    skill_version,
)
from brickwork.caching.pool import CachedPool, is_cached, node_pool
from brickwork.caching.semantic import DEFAULT_SPACE_ENTRIES, Entry, guard_problem, said_strictly

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_SPACE_ENTRIES",
    "DEFAULT_TTL_S",
    "KEY_FORMAT",
    "RESOURCE",
    "CacheBackend",
    "CacheUnavailable",
    "CachedPool",
    "Calibration",
    "Entry",
    "LabelledPair",
    "MemoryCache",
    "NodeCacheStats",
    "NodeMeasure",
    "RedisCache",
    "ResponseCache",
    "Scope",
    "add_cache_arguments",
    "cache_main",
    "calibrate",
    "canonical_json",
    "cross_validate",
    "decode",
    "deterministic",
    "encode",
    "guard_problem",
    "is_cached",
    "last_user_text",
    "load_items",
    "measure",
    "node_pool",
    "pairs_from_items",
    "request_key",
    "request_of",
    "said_strictly",
    "semantic_space",
    "skill_version",
]
