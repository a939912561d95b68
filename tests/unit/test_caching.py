"""The response cache: keys, isolation, the LRU, hits that still run tools, failures, bindings."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from brickwork.agents.extract import ExtractAgent
from brickwork.app import App
from brickwork.caching import (
    CachedPool,
    CacheUnavailable,
    MemoryCache,
    ResponseCache,
    Scope,
    decode,
    encode,
    request_key,
    skill_version,
)
from brickwork.caching.commands import format_stats, stats_from_events
from brickwork.events import CacheLookup, ModelCallEvent
from brickwork.graphs import GraphModule
from brickwork.graphs.builder import Specialist, build_graph
from brickwork.serving.types import ChatRequest, Completion, TokenLogprob, Usage
from brickwork.skills.skill import JSONContract, Skill
from brickwork.testing import FunctionModel, ModelStep
from brickwork.tools.smart_home import SmartHomeHub
from brickwork.tune.adapters import bind
from tests.fixtures.graph_fakes import Agents, call

SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer"}},
    "required": ["n"],
    "additionalProperties": False,
}
SKILL = Skill(name="number", instructions="Give the number.", contract=JSONContract(SCHEMA))
SCOPE = Scope("g", "extract", "acme", "number", skill_version(SKILL), "own:slm")


def scope(**changes: str) -> Scope:
    return Scope(**{**SCOPE.__dict__, **changes})


MESSAGES = [{"role": "system", "content": "Give the number."}, {"role": "user", "content": "four"}]


def key(where: Scope = SCOPE, model: str = "slm", **changes: Any) -> str:
    options: dict[str, Any] = {"messages": MESSAGES, "json_schema": SCHEMA, **changes}
    return request_key(where, model, ["fake-slm"], ChatRequest(**options))


# -- keys -------------------------------------------------------------------------------------


def test_the_same_request_has_the_same_key_and_any_option_order_does_not_matter() -> None:
    assert key() == key()
    reordered = dict(reversed(list(SCHEMA.items())))
    assert key() == key(json_schema=reordered)
    assert len(key()) == 64


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(lambda: key(scope(tenant="globex")), id="tenant"),
        pytest.param(lambda: key(model="slm:number-v2"), id="adapter"),
        pytest.param(lambda: key(model="frontier"), id="tier"),
        pytest.param(lambda: key(scope(skill_version="x")), id="skill version"),
        pytest.param(lambda: key(scope(binding="bound:v2@t#1")), id="binding"),
        pytest.param(lambda: key(scope(node="other")), id="node"),
        pytest.param(
            lambda: key(messages=[{"role": "system", "content": "Be terse."}, MESSAGES[1]]),
            id="system prompt",
        ),
        pytest.param(
            lambda: key(json_schema={**SCHEMA, "properties": {"n": {"type": "string"}}}),
            id="schema",
        ),
        pytest.param(lambda: key(max_tokens=17), id="max_tokens"),
    ],
)
def test_everything_that_determines_the_output_changes_the_key(other: Any) -> None:
    assert other() != key()


def test_the_skill_version_follows_instructions_contract_and_examples() -> None:
    base = skill_version(SKILL)
    assert skill_version(Skill("number", "Give the number.", JSONContract(SCHEMA))) == base
    assert skill_version(Skill("number", "Give a number.", JSONContract(SCHEMA))) != base
    other_schema = {**SCHEMA, "properties": {"n": {"type": "number"}}}
    assert skill_version(Skill("number", "Give the number.", JSONContract(other_schema))) != base


def test_a_completion_round_trips_with_its_logprobs() -> None:
    completion = Completion(
        "lights", "slm", "fake-slm", "fake-slm", Usage(12, 3), 0.4, finish_reason="stop",
        logprobs=(TokenLogprob("lights", -0.1, (("lights", -0.1), ("locks", -2.5))),),
    )  # fmt: skip
    assert decode(encode(completion)) == completion


# -- the in-process LRU -----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_lru_expires_entries_after_their_ttl() -> None:
    clock = Clock()
    lru = MemoryCache(10, clock=clock)
    await lru.set("a", b"1", ttl_s=5)
    clock.now = 4.9
    assert await lru.get("a") == b"1"
    clock.now = 5.0
    assert await lru.get("a") is None
    assert len(lru) == 0


async def test_the_lru_keeps_at_most_its_size_dropping_the_least_recently_used() -> None:
    lru = MemoryCache(2)
    await lru.set("a", b"1", 60)
    await lru.set("b", b"2", 60)
    assert await lru.get("a") == b"1"  # a is now the most recently used
    await lru.set("c", b"3", 60)
    assert len(lru) == 2
    assert await lru.get("b") is None
    assert await lru.get("a") == b"1" and await lru.get("c") == b"3"


# -- the pool view ----------------------------------------------------------------------------


def echo() -> FunctionModel:
    """Answers with the request's last user message, so a wrong hit would show."""

    def answer(body: dict[str, Any]) -> ModelStep:
        return ModelStep(json.dumps({"said": body["messages"][-1]["content"]}))

    return FunctionModel(answer)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Lock the front door", "Unlock the front door"),
        ("Turn on the kitchen lights", "Turn on the bedroom lights"),
        ("Set the thermostat to 21 degrees", "Set the thermostat to 22 degrees"),
        ("Turn the lights on", "Turn the lights off"),
    ],
)
async def test_a_negation_or_a_changed_slot_never_hits(first: str, second: str) -> None:
    model = echo()
    cache = ResponseCache.memory()
    async with model.pool() as pool:
        view = CachedPool(pool, cache, SCOPE)
        for text in (first, second, first, second):
            completion = await view.complete("slm", [{"role": "user", "content": text}])
            assert json.loads(completion.text) == {"said": text}
    assert len(model.requests) == 2  # each text asked the model once; repeats hit their own
    stats = cache.stats()["g/extract"]
    assert (stats.hits, stats.misses) == (2, 2)


async def test_sampled_requests_are_never_cached() -> None:
    model = echo()
    async with model.pool() as pool:
        view = CachedPool(pool, ResponseCache.memory(), SCOPE)
        for _ in range(2):
            await view.complete("slm", [{"role": "user", "content": "hi"}], temperature=0.7)
    assert len(model.requests) == 2


class Broken:
    """A backend that is down."""

    name = "broken"

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def get(self, key: str) -> bytes | None:
        raise self.error

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        raise self.error

    async def incr(self, counter: str, field: str, amount: float) -> None:
        raise self.error

    async def counters(self, counter: str) -> dict[str, float]:
        raise self.error

    async def clear(self) -> int:
        raise self.error

    async def aclose(self) -> None:
        pass


# -- in a graph -------------------------------------------------------------------------------


def number_graph() -> GraphModule:
    module = ModuleType("brickwork_test_cached_number")

    def build(*, checkpointer: Any = None) -> Any:
        node = Specialist("number", ExtractAgent(SKILL), lambda s: s["text"])
        return build_graph([node], checkpointer=checkpointer)

    module.build = build  # type: ignore[attr-defined]
    return GraphModule("cached_number", module)


def lookups(result: Any) -> list[CacheLookup]:
    return [e for e in result.events if isinstance(e, CacheLookup)]


async def test_a_hit_makes_no_model_call_and_still_runs_the_tool(tmp_path: Path) -> None:
    hub = SmartHomeHub()
    agents = Agents(
        intent=lambda text, model: "device_command",
        call=lambda text, model: call("toggle_lights", room="kitchen", state="on"),
    )
    cache = ResponseCache.memory()
    async with agents.model().pool() as pool:
        app = App.from_graph(
            "smart_home", pool=pool, checkpoints=None, store=None, cache=cache,
            graph_options={"knn": False, "hub": hub},
        )  # fmt: skip
        first = await app.ainvoke("Turn on the kitchen lights")
        asked = len(agents.seen)
        hub.lights["kitchen"].on = False  # someone switched it off since
        second = await app.ainvoke("Turn on the kitchen lights")
        other_tenant = await app.ainvoke("Turn on the kitchen lights", tenant="globex")
        await app.aclose()
    assert first.ok and second.ok and other_tenant.ok
    assert asked == 2 and len(agents.seen) == 4  # the repeat asked nothing; another tenant did
    assert hub.lights["kitchen"].on  # the cached call was executed again
    assert [e.hit for e in lookups(first)] == [False, False]
    assert [(e.node, e.hit) for e in lookups(second)] == [("intent", True), ("toolcall", True)]
    assert all(e.saved_usd > 0 and e.saved_latency_s > 0 for e in lookups(second))
    assert [e.hit for e in lookups(other_tenant)] == [False, False]
    calls = [e for e in second.events if isinstance(e, ModelCallEvent)]
    assert calls and all(e.cached and e.cost_usd == 0 for e in calls)
    assert second.cost.cost_usd == 0 and first.cost.cost_usd > 0
    assert cache.stats()["smart_home/toolcall"].hit_rate == pytest.approx(1 / 3)


async def test_without_a_cache_nothing_changes_not_even_an_event() -> None:
    model = FunctionModel(lambda body: '{"n": 4}')
    async with model.pool() as pool:
        app = App(number_graph(), pool=pool, checkpoints=None, store=None)
        results = [await app.ainvoke("four") for _ in range(2)]
        await app.aclose()
    assert len(model.requests) == 2
    assert not any(lookups(r) for r in results)
    assert not any(e.cached for r in results for e in r.events if isinstance(e, ModelCallEvent))


@pytest.mark.parametrize(
    "error", [CacheUnavailable("Redis at 'x' failed"), RuntimeError("bug in a backend")]
)
async def test_a_cache_failure_never_fails_a_run(error: Exception) -> None:
    model = FunctionModel(lambda body: '{"n": 4}')
    cache = ResponseCache(Broken(error))
    async with model.pool() as pool:
        app = App(number_graph(), pool=pool, checkpoints=None, store=None, cache=cache)
        results = [await app.ainvoke("four") for _ in range(2)]
        await app.aclose()
    assert all(r.ok for r in results) and len(model.requests) == 2
    events = [e for r in results for e in lookups(r)]
    assert [e.hit for e in events] == [False, False]
    assert all(e.error and str(error) in e.error for e in events)
    assert cache.stats()["cached_number/number"].errors == 2


async def test_a_new_binding_of_the_skill_is_a_new_key_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRICKWORK_BINDINGS", str(tmp_path / "bindings.json"))
    model = FunctionModel(lambda body: '{"n": 4}')
    async with model.pool() as pool:
        app = App(
            number_graph(), pool=pool, checkpoints=None, store=None, cache=ResponseCache.memory()
        )
        before = [await app.ainvoke("four") for _ in range(2)]
        bind("number", None, note="a new binding")
        after = [await app.ainvoke("four") for _ in range(2)]
        await app.aclose()
    assert [e.hit for r in before + after for e in lookups(r)] == [False, True, False, True]
    assert len(model.requests) == 2


# -- statistics -------------------------------------------------------------------------------


def test_stats_from_stored_events_and_their_table() -> None:
    events = [
        {"kind": "cache_lookup", "node": "intent", "hit": True, "saved_usd": 0.5},
        {"kind": "cache_lookup", "node": "intent", "hit": False},
        {"kind": "cache_lookup", "node": "intent", "hit": False, "error": "down"},
        {"kind": "model_call", "node": "intent"},
    ]
    stats = stats_from_events(events)["intent"]
    assert (stats.hits, stats.misses, stats.errors) == (1, 2, 1)
    assert stats.hit_rate == pytest.approx(1 / 3) and stats.saved_usd == 0.5
    table = format_stats({"intent": stats}, "test")
    assert "33.3%" in table and "0.500000" in table
    assert format_stats({}, "test") == "no cache lookups in test"


async def test_brickwork_cache_stats_reads_the_run_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from brickwork.cli import main
    from brickwork.store import open_store

    where = tmp_path / "runs.sqlite"
    store = open_store(where)
    model = FunctionModel(lambda body: '{"n": 4}')
    async with model.pool() as pool:
        app = App(number_graph(), pool=pool, checkpoints=None, store=store, cache=ResponseCache())
        for _ in range(3):
            await app.ainvoke("four")
        await app.aclose()
    store.close()
    assert main(["cache", "stats", "--store", str(where)]) == 0
    out = capsys.readouterr().out
    assert "number" in out and "66.7%" in out
    assert main(["cache", "clear"]) == 0
    assert "nothing to clear" in capsys.readouterr().out
