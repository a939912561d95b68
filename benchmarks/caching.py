"""Response-cache lookup latency: the in-process LRU and Redis on loopback.

    .venv/bin/python -m benchmarks.caching [--lookups 3000] [--redis redis://127.0.0.1:6379/0]

Times what a node pays before its model call when a cache is configured, per lookup:
the key (sha256 of the canonical JSON of a smart_home-sized request: system prompt, few-shot
turns, the tool-call schema) plus the backend read and the decode of a hit, and, apart, the
backend read alone. Half the lookups hit, half miss. Redis runs under a key prefix of this
run's own, deleted at the end; without a reachable Redis only the LRU is measured. Prints p50,
p95 and p99 in milliseconds, measured in this run on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

from brickwork.caching import (
    RedisCache,
    ResponseCache,
    Scope,
    request_key,
    skill_version,
)
from brickwork.serving.types import ChatRequest, Completion, Usage
from brickwork.skills.examples import smart_home_skill
from brickwork.tools.smart_home import SmartHomeHub


def _request(i: int) -> ChatRequest:
    """A smart_home tool-call request of realistic size, the user turn varying with `i`."""
    skill = smart_home_skill(SmartHomeHub())
    messages: list[dict[str, Any]] = [{"role": "system", "content": skill.instructions}]
    for example in skill.few_shot(4):
        messages += [*example.messages(), {"role": "assistant", "content": str(example.output)}]
    messages.append({"role": "user", "content": f"Turn on the kitchen lights ({i})"})
    schema = skill.contract.registry.call_schema()  # type: ignore[union-attr]
    return ChatRequest(messages=messages, json_schema=schema, max_tokens=128)


def _percentiles(samples: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[94] * 1000, cuts[98] * 1000


async def _measure(cache: ResponseCache, lookups: int) -> dict[str, tuple[float, float, float]]:
    skill = smart_home_skill(SmartHomeHub())
    scope = Scope("smart_home", "toolcall", "default", skill.name, skill_version(skill), "own:slm")
    requests = [_request(i) for i in range(lookups)]
    answer = Completion(
        '{"name": "toggle_lights", "parameters": {"room": "kitchen", "state": "on"}}',
        "slm", "fake-slm", "fake-slm", Usage(420, 24), 0.8, finish_reason="stop",
    )  # fmt: skip
    for i, request in enumerate(requests):
        if i % 2 == 0:  # every other request is a repeat: half the lookups hit
            await cache.put(request_key(scope, "slm", ["fake-slm"], request), answer)
    full: list[float] = []
    read: list[float] = []
    keys = []
    for request in requests:
        started = time.perf_counter()
        key = request_key(scope, "slm", ["fake-slm"], request)
        await cache.get(key)
        full.append(time.perf_counter() - started)
        keys.append(key)
    for key in keys:
        started = time.perf_counter()
        await cache.backend.get(key)
        read.append(time.perf_counter() - started)
    return {"key + lookup": _percentiles(full), "backend read": _percentiles(read)}


async def _run(lookups: int, url: str) -> list[tuple[str, str, tuple[float, float, float]]]:
    rows = []
    lru = ResponseCache.memory(max_entries=lookups)
    for what, cuts in (await _measure(lru, lookups)).items():
        rows.append(("memory (LRU)", what, cuts))
    prefix = f"brickwork-bench:{uuid.uuid4().hex}:"
    redis = ResponseCache(RedisCache(url, prefix=prefix, timeout_s=2.0))
    try:
        await redis.backend.get("warm-up")
    except Exception as exc:
        print(f"Redis at {url} not reachable ({exc}); measured the LRU only")
        return rows
    try:
        for what, cuts in (await _measure(redis, lookups)).items():
            rows.append((f"redis ({url})", what, cuts))
    finally:
        await redis.clear()
        await redis.aclose()
    return rows


def main(argv: list[str] | None = None) -> None:
    """Measure and print the lookup latency table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--lookups", type=int, default=3000, help="lookups per backend")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="the Redis URL")
    args = parser.parse_args(argv)
    rows = asyncio.run(_run(args.lookups, args.redis))
    print(f"response-cache lookups ({args.lookups} per backend, half hits), milliseconds")
    print(f"{'backend':<38} {'what':<14} {'p50':>8} {'p95':>8} {'p99':>8}")
    for backend, what, (p50, p95, p99) in rows:
        print(f"{backend:<38} {what:<14} {p50:>8.3f} {p95:>8.3f} {p99:>8.3f}")


if __name__ == "__main__":
    main()
