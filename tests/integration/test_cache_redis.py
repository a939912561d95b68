"""The response cache on the real Redis at 127.0.0.1:6379: entries, TTL, sharing, isolation,
clear, statistics, and a run that goes on when Redis is down.

Each test writes under a key prefix of its own and deletes it afterwards. Skipped, with the
reason, only when no Redis answers on 127.0.0.1:6379.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import pytest

from brickwork.agents.extract import ExtractAgent
from brickwork.app import App
from brickwork.caching import CachedPool, RedisCache, ResponseCache, Scope
from brickwork.events import CacheLookup
from brickwork.graphs import GraphModule
from brickwork.graphs.builder import Specialist, build_graph
from brickwork.skills.skill import JSONContract, Skill
from brickwork.testing import FunctionModel, ModelStep

URL = "redis://127.0.0.1:6379/0"
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
SKILL = Skill(name="number", instructions="Give the number.", contract=JSONContract(SCHEMA))


def _redis_up() -> str | None:
    import redis

    try:
        redis.Redis.from_url(URL, socket_connect_timeout=1).ping()
    except Exception as exc:
        return f"no Redis on 127.0.0.1:6379 ({exc}); start redis-server to run these tests"
    return None


_DOWN = _redis_up()
pytestmark = pytest.mark.skipif(_DOWN is not None, reason=_DOWN or "")


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own, deleted afterwards."""
    name = f"brickwork-test:{uuid.uuid4().hex}:"
    yield name
    backend = RedisCache(URL, prefix=name)
    await backend.clear()
    await backend.aclose()


def echo() -> FunctionModel:
    def answer(body: dict[str, Any]) -> ModelStep:
        return ModelStep(json.dumps({"said": body["messages"][-1]["content"]}))

    return FunctionModel(answer)


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def test_entries_are_shared_between_replicas_and_isolated_by_tenant(prefix: str) -> None:
    model = echo()
    one, two = ResponseCache.redis(URL, prefix=prefix), ResponseCache.redis(URL, prefix=prefix)
    acme = Scope("g", "node", "acme")
    async with model.pool() as pool:
        first = await CachedPool(pool, one, acme).complete("slm", ask("Lock the front door"))
        again = await CachedPool(pool, two, acme).complete("slm", ask("Lock the front door"))
        unlock = await CachedPool(pool, two, acme).complete("slm", ask("Unlock the front door"))
        globex = Scope("g", "node", "globex")
        other = await CachedPool(pool, two, globex).complete("slm", ask("Lock the front door"))
    assert again.extra["cache"] == "hit" and again.text == first.text
    assert json.loads(unlock.text) == {"said": "Unlock the front door"}
    assert "cache" not in unlock.extra and "cache" not in other.extra
    assert len(model.requests) == 3
    shared = await two.shared_stats()  # counted by both replicas
    assert (shared["g/node"].hits, shared["g/node"].misses) == (1, 3)
    await one.aclose()
    await two.aclose()


async def test_entries_expire_with_set_ex(prefix: str) -> None:
    backend = RedisCache(URL, prefix=prefix)
    await backend.set("k", b"v", ttl_s=1)
    assert await backend.get("k") == b"v"
    ttl = await backend._client.ttl(prefix + "k")
    assert 0 < ttl <= 1
    for _ in range(40):  # wait on the server's own expiry, not a fixed sleep
        if await backend.get("k") is None:
            break
        await asyncio.sleep(0.1)
    assert await backend.get("k") is None
    await backend.aclose()


async def test_clear_deletes_only_its_own_prefix(prefix: str) -> None:
    mine, neighbour = RedisCache(URL, prefix=prefix), RedisCache(URL, prefix=prefix + "x*")
    for i in range(3):
        await mine.set(f"k{i}", b"v", 60)
    await neighbour.set("k", b"v", 60)
    await mine.incr("nodes", "n|hits", 1)
    assert await neighbour.clear() == 1  # its glob-like prefix matches only itself
    assert await mine.get("k0") == b"v"
    assert await mine.clear() == 4  # three entries and the counter
    assert await mine.get("k0") is None
    await mine.aclose()
    await neighbour.aclose()


def number_graph() -> GraphModule:
    module = ModuleType("brickwork_test_redis_number")

    def build(*, checkpointer: Any = None) -> Any:
        node = Specialist("number", ExtractAgent(SKILL), lambda s: s["text"])
        return build_graph([node], checkpointer=checkpointer)

    module.build = build  # type: ignore[attr-defined]
    return GraphModule("redis_number", module)


async def test_a_graph_run_hits_redis_on_the_repeat(prefix: str) -> None:
    model = FunctionModel(lambda body: '{"n": 4}')
    cache = ResponseCache.redis(URL, prefix=prefix)
    async with model.pool() as pool:
        app = App(number_graph(), pool=pool, checkpoints=None, store=None, cache=cache)
        first, second = [await app.ainvoke("four") for _ in range(2)]
        await app.aclose()
    await cache.aclose()
    hits = [e.hit for r in (first, second) for e in r.events if isinstance(e, CacheLookup)]
    assert hits == [False, True] and len(model.requests) == 1
    assert second.ok and second.cost.cost_usd == 0


async def test_a_down_redis_is_a_miss_with_a_clear_error_never_a_failed_run() -> None:
    model = FunctionModel(lambda body: '{"n": 4}')
    cache = ResponseCache.redis("redis://127.0.0.1:1/0", prefix="brickwork-test:down:")
    async with model.pool() as pool:
        app = App(number_graph(), pool=pool, checkpoints=None, store=None, cache=cache)
        results = [await app.ainvoke("four") for _ in range(2)]
        await app.aclose()
    await cache.aclose()
    assert all(r.ok for r in results) and len(model.requests) == 2
    errors = [e.error for r in results for e in r.events if isinstance(e, CacheLookup)]
    assert len(errors) == 2 and all(e and "127.0.0.1:1" in e for e in errors)
    assert "skipping it for now" in (errors[1] or "")  # the cooldown: one timeout, not two


def close_vectors(texts: list[str]) -> Any:
    """Every lock request as close as a paraphrase: only the guard tells lock from unlock."""
    import numpy as np

    return np.asarray(
        [[1.0, 0.1 * ("Please" in t), 0.1 * ("Unlock" in t or "unlock" in t)] for t in texts],
        dtype=np.float32,
    )


async def test_semantic_hits_are_shared_through_redis_and_never_cross_tenants(
    prefix: str,
) -> None:
    schema = {"type": "object"}

    def answer(body: dict[str, Any]) -> ModelStep:
        text = body["messages"][-1]["content"]
        state = "unlock" if "nlock" in text else "lock"
        return ModelStep(json.dumps({"name": "lock_door", "parameters": {"state": state}}))

    model = FunctionModel(answer)
    semantic = {"g/node": 0.9}
    one = ResponseCache(RedisCache(URL, prefix=prefix), semantic=semantic, encoder=close_vectors)
    two = ResponseCache(RedisCache(URL, prefix=prefix), semantic=semantic, encoder=close_vectors)
    acme, globex = Scope("g", "node", "acme"), Scope("g", "node", "globex")
    async with model.pool() as pool:
        first = await CachedPool(pool, one, acme).complete(
            "slm", ask("Lock the front door"), json_schema=schema
        )
        paraphrase = await CachedPool(pool, two, acme).complete(
            "slm", ask("Please lock the front door"), json_schema=schema
        )
        other_tenant = await CachedPool(pool, two, globex).complete(
            "slm", ask("Please lock the front door"), json_schema=schema
        )
        negation = await CachedPool(pool, two, acme).complete(
            "slm", ask("Unlock the front door"), json_schema=schema
        )
    assert paraphrase.extra["cache"] == "hit" and paraphrase.extra["cache_semantic"] > 0.9
    assert paraphrase.text == first.text
    assert "cache" not in other_tenant.extra and "cache" not in negation.extra
    assert json.loads(negation.text)["parameters"] == {"state": "unlock"}
    assert len(model.requests) == 3
    index = await one.backend._client.keys(prefix + "sem:*")
    assert len(index) == 2  # one key space per tenant
    shared = await two.shared_stats()
    assert (shared["g/node"].semantic_hits, shared["g/node"].rejected) == (1, 1)
    await one.aclose()
    await two.aclose()
