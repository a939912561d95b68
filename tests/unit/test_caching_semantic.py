"""Semantic hits: only where a node opts in, only in its own key space, only past the guard;
threshold calibration to a target false-hit rate."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from brickwork.caching import (
    CachedPool,
    Entry,
    LabelledPair,
    ResponseCache,
    Scope,
    calibrate,
    cross_validate,
    guard_problem,
    measure,
    said_strictly,
    semantic_space,
)
from brickwork.events import CacheLookup, Event
from brickwork.serving.types import ChatRequest
from brickwork.testing import FunctionModel, ModelStep

SCOPE = Scope("smart_home", "toolcall", "acme", "smart_home", "v1", "own:slm")
CALL_SCHEMA = {"type": "object", "properties": {"name": {}, "parameters": {}}}

#: Hand-placed embeddings: paraphrases close together, every other pair far apart unless a
#: test wants a near miss (a negation or a slot change placed as close as a paraphrase).
VECTORS: dict[str, list[float]] = {
    "Turn on the kitchen lights": [1.0, 0.0, 0.0, 0.0],
    "Switch the kitchen lights on": [0.97, 0.243, 0.0, 0.0],
    "Turn off the kitchen lights": [0.96, 0.0, 0.28, 0.0],
    "Turn on the bedroom lights": [0.96, 0.0, 0.0, 0.28],
    "Lock the front door": [0.0, 1.0, 0.0, 0.0],
    "Unlock the front door": [0.0, 0.98, 0.199, 0.0],
    "Set the thermostat to 21 degrees": [0.0, 0.0, 1.0, 0.0],
    "Set the thermostat to 22 degrees": [0.0, 0.0, 0.99, 0.141],
    "What's the weather?": [0.0, 0.0, 0.0, 1.0],
}
CALLS: dict[str, dict[str, Any]] = {
    "Turn on the kitchen lights": {"room": "kitchen", "state": "on"},
    "Switch the kitchen lights on": {"room": "kitchen", "state": "on"},
    "Turn off the kitchen lights": {"room": "kitchen", "state": "off"},
    "Turn on the bedroom lights": {"room": "bedroom", "state": "on"},
    "Lock the front door": {"door": "front", "state": "lock"},
    "Unlock the front door": {"door": "front", "state": "unlock"},
    "Set the thermostat to 21 degrees": {"temperature": 21},
    "Set the thermostat to 22 degrees": {"temperature": 22},
}


def encoder(texts: list[str]) -> Any:
    return np.asarray([VECTORS[t] for t in texts], dtype=np.float32)


def tool_model() -> FunctionModel:
    """Answers each known text with its right tool call, so a wrong hit would show."""

    def answer(body: dict[str, Any]) -> ModelStep:
        text = body["messages"][-1]["content"]
        return ModelStep(json.dumps({"name": "tool", "parameters": CALLS[text]}))

    return FunctionModel(answer)


def cache(threshold: float = 0.95, node: str = "smart_home/toolcall") -> ResponseCache:
    return ResponseCache(semantic={node: threshold}, encoder=encoder)


async def ask(
    view: CachedPool, text: str, system: str = "Call a tool.", **options: Any
) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": text}]
    options.setdefault("json_schema", CALL_SCHEMA)
    completion = await view.complete("slm", messages, **options)
    return {"answer": json.loads(completion.text), "extra": completion.extra}


def view_of(pool: Any, store: ResponseCache, scope: Scope = SCOPE) -> tuple[CachedPool, list]:
    events: list[Event] = []
    return CachedPool(pool, store, scope, emit=events.append), events


# -- the pool ---------------------------------------------------------------------------------


async def test_a_paraphrase_hits_on_a_node_that_opts_in_and_is_counted_apart() -> None:
    model = tool_model()
    store = cache()
    async with model.pool() as pool:
        view, events = view_of(pool, store)
        first = await ask(view, "Turn on the kitchen lights")
        second = await ask(view, "Switch the kitchen lights on")
    assert len(model.requests) == 1  # the paraphrase made no model call
    assert second["answer"] == first["answer"]
    assert second["extra"]["cache"] == "hit"
    assert second["extra"]["cache_semantic"] == pytest.approx(0.97, abs=1e-3)
    looked = [e for e in events if isinstance(e, CacheLookup)]
    assert [(e.hit, e.semantic) for e in looked] == [(False, False), (True, True)]
    stats = store.stats()["smart_home/toolcall"]
    assert (stats.hits, stats.semantic_hits, stats.exact_hits, stats.misses) == (1, 1, 0, 1)


async def test_below_the_threshold_or_without_opting_in_a_paraphrase_is_a_miss() -> None:
    for store in (cache(threshold=0.98), cache(node="smart_home/intent")):
        model = tool_model()
        async with model.pool() as pool:
            view, _ = view_of(pool, store)
            await ask(view, "Turn on the kitchen lights")
            await ask(view, "Switch the kitchen lights on")
        assert len(model.requests) == 2


async def test_an_encoder_failure_is_a_miss_and_exact_repeats_still_hit() -> None:
    def broken(texts: list[str]) -> Any:
        raise RuntimeError("no encoder here")

    model = tool_model()
    store = ResponseCache(semantic={"smart_home/toolcall": 0.9}, encoder=broken)
    async with model.pool() as pool:
        view, events = view_of(pool, store)
        await ask(view, "Turn on the kitchen lights")
        again = await ask(view, "Turn on the kitchen lights")
    assert len(model.requests) == 1 and again["extra"]["cache"] == "hit"
    first = next(e for e in events if isinstance(e, CacheLookup))
    assert not first.hit and first.error and "no encoder here" in first.error


@pytest.mark.parametrize(
    "other",
    [
        pytest.param({"scope": Scope(**{**SCOPE.__dict__, "tenant": "globex"})}, id="tenant"),
        pytest.param({"scope": Scope(**{**SCOPE.__dict__, "binding": "bound:v2"})}, id="binding"),
        pytest.param({"scope": Scope(**{**SCOPE.__dict__, "skill_version": "v2"})}, id="skill"),
        pytest.param({"system": "Call a tool, tersely."}, id="system prompt"),
        pytest.param({"max_tokens": 17}, id="options"),
    ],
)
async def test_a_semantic_hit_never_crosses_its_key_space(other: dict[str, Any]) -> None:
    model = tool_model()
    store = cache(threshold=0.9)
    scope = other.pop("scope", SCOPE)
    async with model.pool() as pool:
        first, _ = view_of(pool, store)
        await ask(first, "Turn on the kitchen lights")
        second, _ = view_of(pool, store, scope)
        await ask(second, "Switch the kitchen lights on", **other)
    assert len(model.requests) == 2


def test_the_semantic_space_is_the_exact_key_without_the_last_user_message() -> None:
    def request(*turns: str) -> ChatRequest:
        roles = ["user", "assistant"] * 3
        messages = [{"role": r, "content": t} for r, t in zip(roles, turns, strict=False)]
        return ChatRequest(messages=messages)

    space = semantic_space(SCOPE, "slm", ["m"], request("a", "b", "c"))
    assert space == semantic_space(SCOPE, "slm", ["m"], request("a", "b", "another text"))
    assert space != semantic_space(SCOPE, "slm", ["m"], request("x", "b", "c"))  # earlier turns
    assert semantic_space(SCOPE, "slm", ["m"], request("a", "b")) is None  # ends with assistant


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Turn on the kitchen lights", "Turn off the kitchen lights"),
        ("Turn on the kitchen lights", "Turn on the bedroom lights"),
        ("Lock the front door", "Unlock the front door"),
        ("Set the thermostat to 21 degrees", "Set the thermostat to 22 degrees"),
    ],
)
async def test_a_negation_or_slot_change_as_close_as_a_paraphrase_is_stopped_by_the_guard(
    first: str, second: str
) -> None:
    model = tool_model()
    store = cache(threshold=0.9)  # every pair here is closer than 0.9
    async with model.pool() as pool:
        view, events = view_of(pool, store)
        await ask(view, first)
        again = await ask(view, second)
    assert again["answer"]["parameters"] == CALLS[second]
    assert len(model.requests) == 2
    rejected = [e for e in events if isinstance(e, CacheLookup) and e.rejected]
    assert len(rejected) == 1 and not rejected[0].hit and rejected[0].similarity >= 0.9
    assert store.stats()["smart_home/toolcall"].rejected == 1


async def test_a_label_outside_the_offered_choices_is_not_served() -> None:
    model = FunctionModel(lambda body: ModelStep("lights"))
    store = cache(threshold=0.9)
    async with model.pool() as pool:
        view, _ = view_of(pool, store)
        messages = [{"role": "user", "content": "Turn on the kitchen lights"}]
        await view.complete("slm", messages, choices=["lights", "locks"])
        paraphrase = [{"role": "user", "content": "Switch the kitchen lights on"}]
        await view.complete("slm", paraphrase, choices=["locks", "climate"])
    assert len(model.requests) == 2  # the other choices are another key space anyway
    assert guard_problem("lights", "x", "y", structured=False, choices=["locks"]) is not None


# -- the guard --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "said", "ok"),
    [
        ("lock", "Unlock the front door", False),
        ("lock", "Lock the front door", True),
        ("lock", "make sure it is locked", True),
        ("door", "check the doors", True),
        ("on", "switch the conservatory lamp off", False),
        ("living_room", "the living-room lights", True),
        ("EUR", "300 euros to Jan", True),
        (21, "set it to 21 degrees", True),
        (21, "set it to 22 degrees", False),
        (True, "anything", True),
    ],
)
def test_values_must_be_said_from_a_word_start(value: Any, said: str, ok: bool) -> None:
    assert said_strictly(value, said) is ok


def test_a_number_the_cached_request_did_not_say_is_a_changed_slot() -> None:
    answer = json.dumps({"name": "set_scene", "parameters": {"scene": "away"}})
    assert guard_problem(answer, "away mode", "away mode please", structured=True) is None
    problem = guard_problem(answer, "away mode for 3 days", "away mode", structured=True)
    assert problem is not None and "3" in problem
    assert guard_problem("not json", "a", "a", structured=True) is not None


def test_an_index_entry_round_trips() -> None:
    vector = np.asarray([0.6, 0.8, 0.0], dtype=np.float32)
    entry = Entry.unpack(Entry("k" * 64, "Turn on the kitchen lights", vector).pack())
    assert entry.key == "k" * 64 and entry.text == "Turn on the kitchen lights"
    assert np.allclose(entry.vector, vector, atol=1e-3)
    with pytest.raises(ValueError, match="not a semantic cache entry"):
        Entry.unpack(b"short")


# -- calibration ------------------------------------------------------------------------------


def pairs(spec: list[tuple[float, bool]], guarded: bool = True) -> list[LabelledPair]:
    return [
        LabelledPair("g/n", s, same, guarded, "paraphrase" if same else "negation")
        for s, same in spec
    ]


def test_calibration_picks_the_lowest_threshold_under_the_target() -> None:
    # 40 clean pairs above 0.9, one wrong at 0.85, more clean below, a wrong one at 0.5.
    spec = [(0.9 + i / 1000, True) for i in range(40)] + [(0.85, False), (0.6, True), (0.5, False)]
    point = calibrate(pairs(spec), 0.03, bound="point")
    assert point.threshold == 0.6  # one wrong in 42 hits is under 3 %
    strict = calibrate(pairs(spec), 0.10)  # Wilson upper bound: 0 of 40 is at most 8.8 %
    assert strict.threshold == pytest.approx(0.9)
    assert strict.measure is not None and strict.measure.false_hits == 0
    assert calibrate(pairs(spec), 0.01).threshold is None  # 40 clean hits cannot show < 1 %


def test_the_measure_counts_hits_false_hits_and_the_guard() -> None:
    spec = [(0.95, True), (0.93, False), (0.7, True)]
    with_guard = measure(pairs(spec[:1]) + pairs(spec[1:2], guarded=False) + pairs(spec[2:]), 0.9)
    assert (with_guard.hits, with_guard.false_hits, with_guard.positive_hits) == (1, 0, 1)
    without = measure(pairs(spec), 0.9, guard=False)
    assert (without.hits, without.false_hits) == (2, 1)
    assert without.false_hit_rate == 0.5 and without.hit_rate == 0.5
    low, high = without.interval
    assert 0 < low < 0.5 < high < 1
    assert without.by_kind == {"negation": (1, 1), "paraphrase": (2, 1)}
    assert math.isnan(measure([], 0.5).false_hit_rate)


def test_cross_validation_calibrates_on_one_fold_and_measures_the_other() -> None:
    fold0 = [LabelledPair("g/n", 0.92 + i / 50, True, True, "paraphrase", 0) for i in range(5)]
    fold1 = [
        LabelledPair("g/n", 0.8, False, True, "slot", 1),
        LabelledPair("g/n", 0.95, True, True, "paraphrase", 1),
    ]
    total, fitted = cross_validate(fold0 + fold1, 0.4, bound="point")
    assert [f.threshold for f in fitted] == [pytest.approx(0.92), pytest.approx(0.95)]
    assert total.hits == 1 + 3 and total.false_hits == 0  # fold 1 at 0.92, fold 0 at 0.95


# -- in a graph -------------------------------------------------------------------------------


def keyword_encoder(texts: list[str]) -> Any:
    """Kitchen requests close together (a paraphrase, and a negation just as close)."""
    return np.asarray(
        [
            [1.0, 0.2 * ("Switch" in t), 0.25 * ("off" in t), 0.0 if "kitchen" in t else 5.0]
            for t in texts
        ],
        dtype=np.float32,
    )


async def test_a_semantic_hit_in_a_graph_runs_the_tool_again_and_is_a_cached_ledger_row() -> None:
    from brickwork.app import App
    from brickwork.events import ModelCallEvent
    from brickwork.tools.smart_home import SmartHomeHub
    from tests.fixtures.graph_fakes import Agents, call

    def toolcall(text: str, model: str) -> dict[str, Any]:
        return call("toggle_lights", room="kitchen", state="off" if "off" in text else "on")

    hub = SmartHomeHub()
    agents = Agents(intent=lambda text, model: "device_command", call=toolcall)
    store = ResponseCache(semantic={"smart_home/toolcall": 0.9}, encoder=keyword_encoder)
    async with agents.model().pool() as pool:
        app = App.from_graph(
            "smart_home", pool=pool, checkpoints=None, store=None, cache=store,
            graph_options={"knn": False, "hub": hub},
        )  # fmt: skip
        first = await app.ainvoke("Turn on the kitchen lights")
        hub.lights["kitchen"].on = False  # someone switched it off since
        paraphrase = await app.ainvoke("Switch the kitchen lights on")
        on_after_paraphrase = hub.lights["kitchen"].on
        negation = await app.ainvoke("Turn off the kitchen lights")
        assert app.ledger is not None
        rows = app.ledger.rows(paraphrase.run_id)
        await app.aclose()
    assert first.ok and paraphrase.ok and negation.ok
    assert on_after_paraphrase  # the semantically cached call was executed again
    assert not hub.lights["kitchen"].on  # the negation was not served from the cache
    calls = [kind for kind, _, _ in agents.seen if kind == "call"]
    assert len(calls) == 2  # the first request and the negation; not the paraphrase
    looked = [e for e in paraphrase.events if isinstance(e, CacheLookup)]
    assert [(e.node, e.hit, e.semantic) for e in looked] == [
        ("intent", False, False),
        ("toolcall", True, True),
    ]
    # The negation pins state='off' in its call schema (the paraphrase pins 'on', as the first
    # request did), so it is a different cache key: looked up, and missed.
    looked = [e for e in negation.events if isinstance(e, CacheLookup) and e.node == "toolcall"]
    assert [(e.hit, e.rejected) for e in looked] == [(False, None)]
    toolcall_rows = [r for r in rows if r.node == "toolcall"]
    assert toolcall_rows and all(r.cached and r.cost_usd == 0 for r in toolcall_rows)
    assert not any(r.cached for r in rows if r.node == "intent")
    model_calls = [e for e in paraphrase.events if isinstance(e, ModelCallEvent)]
    assert {e.node: e.cached for e in model_calls} == {"intent": False, "toolcall": True}


def test_metrics_count_cache_lookups_by_outcome_and_what_hits_saved() -> None:
    from brickwork.http.metrics import ApiMetrics

    metrics = ApiMetrics()
    for event in (
        CacheLookup("r", "toolcall", True, "k", "slm", "memory", 0.0004, 0.002, 0.8),
        CacheLookup("r", "toolcall", True, "k", "slm", "memory", 0.0015, 0.001, 0.5,
                    semantic=True, similarity=0.93),
        CacheLookup("r", "toolcall", False, "k", "slm", "memory", 0.001, rejected="'off'"),
        CacheLookup("r", "intent", False, "k", "slm", "redis", 0.25, error="down"),
        CacheLookup("r", "intent", False, "k", "slm", "memory", 0.0002),
    ):  # fmt: skip
        metrics.observe("smart_home", event)
    text = metrics.render().decode()
    for sample in (
        'brickwork_cache_lookups_total{graph="smart_home",node="toolcall",outcome="hit"} 1.0',
        'brickwork_cache_lookups_total{graph="smart_home",node="toolcall",'
        'outcome="semantic_hit"} 1.0',
        'brickwork_cache_lookups_total{graph="smart_home",node="toolcall",outcome="rejected"} 1.0',
        'brickwork_cache_lookups_total{graph="smart_home",node="intent",outcome="error"} 1.0',
        'brickwork_cache_lookups_total{graph="smart_home",node="intent",outcome="miss"} 1.0',
        'brickwork_cache_saved_usd_total{graph="smart_home",node="toolcall"} 0.003',
        'brickwork_cache_saved_seconds_total{graph="smart_home",node="toolcall"} 1.3',
        'brickwork_cache_lookup_seconds_bucket{graph="smart_home",le="0.002"} 4.0',
    ):
        assert sample in text


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_the_dashboard_shows_a_cache_line_from_the_stored_lookups(
    backend: str, tmp_path: Any
) -> None:
    from textual.widgets import Static

    from brickwork.app import App
    from brickwork.tui.app import BrickworkTUI
    from brickwork.tui.screens.dashboard import DashboardScreen, load_dashboard
    from tests.unit.test_caching import number_graph
    from tests.unit.test_tui import SIZE, settle, store_on

    with store_on(backend, tmp_path) as store:
        model = FunctionModel(lambda body: '{"n": 4}')
        async with model.pool() as pool:
            app = App(number_graph(), pool=pool, checkpoints=None, store=store, cache=cache())
            for _ in range(3):
                await app.ainvoke("four")
            store.flush()
            lookups = store.cache_lookups()
            line = load_dashboard(store, None).cache_line()
            assert load_dashboard(store, "another graph").cache_line() == ""
            tui = BrickworkTUI({app.graph.name: app}, store, refresh_s=3600)
            async with tui.run_test(size=SIZE) as pilot:
                await settle(pilot)
                assert isinstance(tui.screen, DashboardScreen)
                shown = tui.screen.query_one("#dashboard-cache", Static)
                assert shown.display and "hits 2/3" in str(shown.render())
            await app.aclose()
    assert [(e["node"], bool(e["hit"])) for e in lookups] == [("number", False)] + [
        ("number", True)
    ] * 2
    assert line.startswith("cache  hits 2/3 (67%)") and "semantic 0" in line
