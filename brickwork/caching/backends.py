"""Where cached answers live: an in-process LRU, or Redis shared by many replicas.

Both store opaque bytes under a string key with a time to live. A backend raises
`CacheUnavailable` when it cannot answer (Redis down, timed out); `ResponseCache` turns that
into a miss and a plain warning, never a failed run. `redis` is imported only when a
`RedisCache` is made.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from brickwork.errors import BrickworkError, ConfigError

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_TTL_S",
    "CacheBackend",
    "CacheUnavailable",
    "MemoryCache",
    "RedisCache",
]

log = logging.getLogger(__name__)

#: Entries an in-process cache keeps before it drops the least recently used one.
DEFAULT_MAX_ENTRIES = 10_000
#: How long an answer stays cached (one day): long enough for repeats, short enough that a
#: changed tool or world state is not answered from a week-old call.
DEFAULT_TTL_S = 86_400.0
#: After a failed Redis call, calls skip Redis for this long (a down server costs one timeout,
#: not one per model call).
REDIS_COOLDOWN_S = 30.0


class CacheUnavailable(BrickworkError):
    """The cache backend could not answer; the caller treats it as a miss."""


class CacheBackend(Protocol):
    """Bytes by key, with a time to live; `clear` removes this backend's entries."""

    name: str

    async def get(self, key: str) -> bytes | None:
        """The value, or None when absent or expired."""
        ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store `value` for `ttl_s` seconds."""
        ...

    async def incr(self, counter: str, field: str, amount: float) -> None:
        """Add `amount` to a shared statistics counter (a no-op where nothing is shared)."""
        ...

    async def push(self, bucket: str, value: bytes, max_len: int, ttl_s: float) -> None:
        """Put `value` first in a list, keep its newest `max_len` items, expire it after `ttl_s`."""
        ...

    async def members(self, bucket: str) -> list[bytes]:
        """Every item of a list, newest first (empty when absent or expired)."""
        ...

    async def counters(self, counter: str) -> dict[str, float]:
        """Every field of a statistics counter."""
        ...

    async def clear(self) -> int:
        """Remove every entry and counter of this backend's namespace; returns how many."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class MemoryCache:
    """An in-process LRU with a size bound and a time to live (the embedded App's default).

    Safe to share between asyncio tasks and threads. Expired entries are dropped when read.
    """

    name = "memory"

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create an empty cache.

        Args:
            max_entries: Entries kept; past it the least recently used one is dropped.
            clock: Monotonic seconds (tests pass a fake clock).
        """
        if max_entries < 1:
            raise ConfigError(f"max_entries {max_entries!r} must be 1 or more")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._counters: dict[str, dict[str, float]] = {}
        self._buckets: OrderedDict[str, tuple[float, list[bytes]]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        """The value, or None when absent or expired (an expired entry is dropped)."""
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            expires, value = found
            if self._clock() >= expires:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store `value`; drops the least recently used entries past `max_entries`."""
        with self._lock:
            self._entries[key] = (self._clock() + ttl_s, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    async def incr(self, counter: str, field: str, amount: float) -> None:
        """Add to an in-process counter."""
        with self._lock:
            fields = self._counters.setdefault(counter, {})
            fields[field] = fields.get(field, 0.0) + amount

    async def counters(self, counter: str) -> dict[str, float]:
        """A copy of an in-process counter."""
        with self._lock:
            return dict(self._counters.get(counter, {}))

    async def push(self, bucket: str, value: bytes, max_len: int, ttl_s: float) -> None:
        """Put `value` first in an in-process list (lists count towards `max_entries` too)."""
        with self._lock:
            _, items = self._buckets.pop(bucket, (0.0, []))
            items = [value, *items][:max_len]
            self._buckets[bucket] = (self._clock() + ttl_s, items)
            while len(self._buckets) > self.max_entries:
                self._buckets.popitem(last=False)

    async def members(self, bucket: str) -> list[bytes]:
        """The list's items, newest first (an expired list is dropped)."""
        with self._lock:
            found = self._buckets.get(bucket)
            if found is None:
                return []
            expires, items = found
            if self._clock() >= expires:
                del self._buckets[bucket]
                return []
            self._buckets.move_to_end(bucket)
            return list(items)

    async def clear(self) -> int:
        """Drop everything; returns the number of entries dropped."""
        with self._lock:
            dropped = len(self._entries) + len(self._buckets)
            self._entries.clear()
            self._buckets.clear()
            self._counters.clear()
            return dropped

    async def aclose(self) -> None:
        """Nothing to release."""


class RedisCache:
    """Entries in Redis under `<prefix>`, with SET EX time to live (shared by API replicas).

    Every key this backend writes starts with `prefix`, so `clear` (SCAN + DEL) touches only
    its own namespace. Calls time out after `timeout_s`; a failed call raises
    `CacheUnavailable` and makes the next calls skip Redis for `cooldown_s`.
    """

    name = "redis"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "brickwork:cache:",
        timeout_s: float = 0.25,
        cooldown_s: float = REDIS_COOLDOWN_S,
        client: Any = None,
    ) -> None:
        """Make the client (no connection is opened until the first call).

        Args:
            url: The Redis server (`redis://host:port/db`).
            prefix: The namespace: every key starts with it.
            timeout_s: Connect and read timeout of one call.
            cooldown_s: How long to skip Redis after a failed call.
            client: A ready `redis.asyncio.Redis` (default: one made from `url`).

        Raises:
            ConfigError: The `redis` package is not installed, or `prefix` is empty.
        """
        if not prefix:
            raise ConfigError("a Redis cache needs a non-empty key prefix (its namespace)")
        try:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError as exc:  # pragma: no cover - redis is a dependency
            raise ConfigError(
                "the Redis cache needs the `redis` package: pip install redis"
            ) from exc
        self.url = url
        self.prefix = prefix
        self.cooldown_s = cooldown_s
        self._down_until = 0.0
        self._client = client or aioredis.Redis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )

    def _check(self) -> None:
        if time.monotonic() < self._down_until:
            raise CacheUnavailable(f"Redis at {self.url!r} failed recently; skipping it for now")

    def _failed(self, exc: Exception) -> CacheUnavailable:
        self._down_until = time.monotonic() + self.cooldown_s
        log.warning(
            "response cache: Redis at %r failed (%s); answering without the cache for %.0f s",
            self.url,
            exc,
            self.cooldown_s,
        )
        return CacheUnavailable(f"Redis at {self.url!r} failed: {exc}")

    async def get(self, key: str) -> bytes | None:
        """The value under `<prefix><key>`, or None."""
        self._check()
        try:
            value = await self._client.get(self.prefix + key)
        except Exception as exc:  # redis raises its own tree, and OSError underneath
            raise self._failed(exc) from exc
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else bytes(value)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """SET `<prefix><key>` with EX (whole seconds, at least 1)."""
        self._check()
        try:
            await self._client.set(self.prefix + key, value, ex=max(1, round(ttl_s)))
        except Exception as exc:
            raise self._failed(exc) from exc

    async def incr(self, counter: str, field: str, amount: float) -> None:
        """HINCRBYFLOAT on the shared counter `<prefix>stats:<counter>`."""
        self._check()
        try:
            await self._client.hincrbyfloat(f"{self.prefix}stats:{counter}", field, amount)
        except Exception as exc:
            raise self._failed(exc) from exc

    async def push(self, bucket: str, value: bytes, max_len: int, ttl_s: float) -> None:
        """LPUSH, LTRIM and EXPIRE `<prefix><bucket>` in one transaction."""
        self._check()
        name = self.prefix + bucket
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.lpush(name, value)
                pipe.ltrim(name, 0, max_len - 1)
                pipe.expire(name, max(1, round(ttl_s)))
                await pipe.execute()
        except Exception as exc:
            raise self._failed(exc) from exc

    async def members(self, bucket: str) -> list[bytes]:
        """LRANGE `<prefix><bucket>` 0 -1."""
        self._check()
        try:
            raw = await self._client.lrange(self.prefix + bucket, 0, -1)
        except Exception as exc:
            raise self._failed(exc) from exc
        return [v.encode() if isinstance(v, str) else bytes(v) for v in raw]

    async def counters(self, counter: str) -> dict[str, float]:
        """Every field of the shared counter."""
        self._check()
        try:
            raw = await self._client.hgetall(f"{self.prefix}stats:{counter}")
        except Exception as exc:
            raise self._failed(exc) from exc
        return {_text(k): float(v) for k, v in raw.items()}

    async def clear(self) -> int:
        """Delete every key under the prefix (SCAN, so the server is never blocked)."""
        self._check()
        deleted = 0
        try:
            batch: list[Any] = []
            async for key in self._client.scan_iter(match=_glob_escape(self.prefix) + "*"):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += int(await self._client.delete(*batch))
                    batch = []
            if batch:
                deleted += int(await self._client.delete(*batch))
        except Exception as exc:
            raise self._failed(exc) from exc
        return deleted

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _glob_escape(text: str) -> str:
    """`text` as a literal in a Redis MATCH pattern."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
