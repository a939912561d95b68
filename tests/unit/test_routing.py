"""Per-node routers: labels from stored runs, training, persistence, staleness, the rule."""

from __future__ import annotations

import asyncio
import math
import pickle
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from brickwork.agents.extract import ExtractAgent
from brickwork.app import App
from brickwork.cost import CPU_SELF_HOSTED, FRONTIER_REFERENCE, LARGE_CPU_SELF_HOSTED, PriceBook
from brickwork.errors import ConfigError
from brickwork.graphs import GraphModule
from brickwork.graphs.builder import Specialist, build_graph
from brickwork.routing import (
    Features,
    Routing,
    Sample,
    binding_key,
    choose,
    load_router,
    override,
    samples_from_run,
    samples_from_store,
    save_router,
    stale_reason,
    train_router,
)
from brickwork.skills.skill import JSONContract, Skill
from brickwork.store import RunStore, RunSummary
from brickwork.testing import FunctionModel, ModelStep
from brickwork.tune.adapters import bind

LADDER = ("slm", "large", "frontier")
GRAPH = "routed_test"
SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer", "minimum": 0}},
    "required": ["n"],
    "additionalProperties": False,
}
SKILL = Skill(name="number", instructions="Give the number.", contract=JSONContract(SCHEMA))
PRICES = PriceBook(
    endpoints={
        "fake-slm": CPU_SELF_HOSTED,
        "fake-large": LARGE_CPU_SELF_HOSTED,
        "fake-frontier": FRONTIER_REFERENCE,
    },
    top_tier=FRONTIER_REFERENCE,
)
EASY = [f"give {i}" for i in range(15)]
HARD = [
    f"please work out which number this long rambling request {i} means in the end"
    for i in range(15)
]


def graph_module(routing: Routing | None = None) -> GraphModule:
    module = ModuleType(f"brickwork_test_{GRAPH}")

    def build(*, checkpointer: Any = None) -> Any:
        node = Specialist("number", ExtractAgent(SKILL), lambda s: s["text"])
        return build_graph([node], checkpointer=checkpointer)

    module.build = build  # type: ignore[attr-defined]
    if routing is not None:
        module.resources = lambda: {"routing": routing}  # type: ignore[attr-defined]
    return GraphModule(GRAPH, module)


def by_tier(slm_ok: Any = lambda text: len(text) < 20, large: bool = True) -> FunctionModel:
    """slm answers right on short texts; large as told; the frontier always."""

    def answer(body: dict[str, Any]) -> ModelStep:
        tier = body["model"].removeprefix("fake-")
        text = next(m["content"] for m in body["messages"] if m["role"] == "user")
        good = {"slm": slm_ok(text), "large": large, "frontier": True}[tier]
        return ModelStep('{"n": 4}' if good else '{"n": -1}')

    return FunctionModel(answer)


def tiers_called(model: FunctionModel) -> list[str]:
    return [r["model"].removeprefix("fake-") for r in model.requests]


async def run_all(
    model: FunctionModel,
    texts: list[str],
    *,
    routing: Routing | None = None,
    store: RunStore | None = None,
) -> list[Any]:
    async with model.pool(tiers=LADDER) as pool:
        app = App(graph_module(routing), pool=pool, prices=PRICES, checkpoints=None, store=store)
        results = [await app.ainvoke(text) for text in texts]
        await app.aclose()
    return results


def synthetic(n: int = 20) -> list[Sample]:
    """slm stands on short texts and fails on long ones; large always stands."""
    samples = []
    for i in range(n):
        for text in (EASY[i % len(EASY)], HARD[i % len(HARD)]):
            ok = len(text) < 20
            samples.append(Sample(f"r{i}{ok}", "number", "slm", ok, Features(text)))
            if not ok:
                samples.append(Sample(f"r{i}", "number", "large", True, Features(text)))
    return samples


def trained(binding: str = "own:slm") -> Any:
    return train_router(synthetic(), graph=GRAPH, node="number", skill="number", binding=binding)


@pytest.fixture
def routers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Bindings (and so routers) in a folder of this test's own."""
    monkeypatch.setenv("BRICKWORK_BINDINGS", str(tmp_path / "bindings.json"))
    return tmp_path / "routers"


# -- labels and training --------------------------------------------------------------------


async def test_training_from_stored_runs_learns_which_inputs_the_small_tier_gets_right(
    tmp_path: Path,
) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    await run_all(by_tier(), EASY + HARD, store=store)
    store.flush()
    samples = samples_from_store(store, GRAPH)
    slm = [s for s in samples if s.tier == "slm"]
    large = [s for s in samples if s.tier == "large"]
    # Every run labels the small tier once; each escalated one labels the large tier too.
    assert len(slm) == 30 and sum(s.ok for s in slm) == 15
    assert len(large) == 15 and all(s.ok for s in large)
    assert {s.features.text for s in slm if not s.ok} == set(HARD)

    router = train_router(samples, graph=GRAPH, node="number", skill="number", binding="-")
    assert router.tiers["slm"].kind == "model" and router.tiers["slm"].method == "sigmoid"
    assert router.tiers["slm"].auc is not None and router.tiers["slm"].auc > 0.9
    assert router.tiers["large"].kind == "rate"  # never failed: its smoothed rate stands
    assert router.tiers["large"].rate == pytest.approx(16 / 17)
    assert router.predict(Features("give 99"))["slm"] > 0.8
    assert router.predict(Features(HARD[0]))["slm"] < 0.2
    store.close()


def test_too_few_labelled_attempts_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"'number' of graph 'g' has 3 labelled attempt\(s\)"):
        train_router(synthetic()[:3], graph="g", node="number", skill=None, binding="-")


def test_labels_skip_model_outages_and_take_an_evaluations_verdict() -> None:
    run = RunSummary("r1", GRAPH, "t", "hybrid", "give 3", "ok", "", None, 0, 0, 0, 1, (), 0.0)
    events: list[dict[str, Any]] = [
        {"kind": "node_started", "node": "intent"},
        {"kind": "node_finished", "node": "intent", "ok": True, "model": "slm",
         "output": {"label": "lights", "confidence": 0.7}},
        {"kind": "node_started", "node": "act"},
        {"kind": "escalation", "node": "act", "action": "escalate", "reason": "model_error",
         "detail": "down"},
        {"kind": "node_finished", "node": "act", "ok": False, "model": "slm",
         "error": "escalated: model_error"},
        {"kind": "escalation", "node": "act", "action": "escalate", "reason": "validation_failed",
         "detail": "large tier failed too; climbing to frontier"},
        {"kind": "node_started", "node": "supervisor"},
        {"kind": "node_finished", "node": "supervisor", "ok": True, "model": "frontier",
         "output": {"call": 1}},
    ]  # fmt: skip
    samples = samples_from_run(run, events)
    assert [(s.node, s.tier, s.ok) for s in samples] == [
        ("intent", "slm", True),
        ("act", "large", False),
        ("act", "frontier", True),
    ]  # the outage of the small tier says nothing about the request: no label
    assert samples[1].features.intent == "lights" and samples[1].features.confidence == 0.7
    judged = samples_from_run(run, events, judge=lambda run, node, output: node != "intent")
    assert [s.ok for s in judged] == [False, False, True]


# -- persistence and staleness ----------------------------------------------------------------


def test_a_router_round_trips_through_disk_with_a_new_revision_each_time(tmp_path: Path) -> None:
    router = trained()
    saved = save_router(router, tmp_path)
    assert saved.revision == 1
    loaded = load_router(GRAPH, "number", tmp_path)
    assert loaded is not None and loaded.revision == 1
    assert loaded.tiers == router.tiers and loaded.spec == router.spec
    for text in ("give 1", HARD[3]):
        assert loaded.predict(Features(text)) == pytest.approx(router.predict(Features(text)))
    again = save_router(trained(), tmp_path)
    assert again.revision == 2
    folder = tmp_path / "routers" / GRAPH
    assert sorted(p.name for p in folder.iterdir()) == ["number.json", "number.r2.pkl"]
    assert load_router(GRAPH, "number", tmp_path).revision == 2  # type: ignore[union-attr]


def test_an_unreadable_router_is_no_router(tmp_path: Path) -> None:
    save_router(trained(), tmp_path)
    (tmp_path / "routers" / GRAPH / "number.r1.pkl").write_bytes(pickle.dumps(None)[:3])
    assert load_router(GRAPH, "number", tmp_path) is None
    assert load_router(GRAPH, "other", tmp_path) is None


def test_a_router_trained_with_an_embedding_needs_one_of_its_size(tmp_path: Path) -> None:
    def encoder(texts: list[str]) -> list[list[float]]:
        return [[float(len(t) > 20), 1.0, 0.5] for t in texts]

    router = train_router(
        synthetic(), graph=GRAPH, node="number", skill=None, binding="-", encoder=encoder
    )
    assert router.spec.embedding_dim == 3
    assert router.predict(Features(HARD[0], embedding=(1.0, 1.0, 0.5)))["slm"] < 0.2
    with pytest.raises(ValueError, match="embedding of size 3"):
        router.predict(Features(HARD[0]))


def test_a_new_adapter_binding_makes_the_router_stale_until_retrained(routers: Path) -> None:
    before = binding_key(SKILL)
    assert before == "own:slm"
    router = trained(binding=before)
    assert stale_reason(router, SKILL) is None
    bind("number", None, note="promoted in a test")
    after = binding_key(SKILL)
    assert after.startswith("bound:base@") and after != before
    assert "run `brickwork route train` again" in (stale_reason(router, SKILL) or "")
    assert stale_reason(trained(binding=after), SKILL) is None


# -- the decision rule ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("margin", "tier", "reason"),
    [
        (0.0, "frontier", "routed"),
        (0.05, "large", "routed"),
        (0.2, "large", "routed"),
        (0.35, "slm", "cheapest"),
        (1.0, "slm", "cheapest"),
    ],
)
def test_the_cheapest_tier_within_the_margin_of_the_best(
    margin: float, tier: str, reason: str
) -> None:
    choice = choose({"slm": 0.6, "large": 0.9, "frontier": 0.95}, LADDER, margin=margin)
    assert (choice.tier, choice.reason) == (tier, reason)
    assert choice.probabilities == (("slm", 0.6), ("large", 0.9), ("frontier", 0.95))


def test_the_router_abstains_when_it_cannot_tell() -> None:
    assert choose({"slm": 0.2, "large": 0.4}, LADDER).reason == "unsure"  # all below the floor
    assert choose({"large": 0.99}, LADDER).reason == "unsure"  # knows nothing of the bottom
    assert choose({"slm": 0.2, "large": 0.4}, LADDER, floor=0.3).tier == "large"
    # A tier the pool does not serve is never chosen.
    assert choose({"slm": 0.5, "large": 0.9}, ("slm", "frontier")).tier == "slm"
    with pytest.raises(ConfigError, match="margin=1.5"):
        choose({"slm": 0.5}, LADDER, margin=1.5)


def test_the_knob_per_graph_per_node_and_per_run() -> None:
    routing = Routing(margin=0.1, margins={"act": 0.3})
    assert (routing.margin_for("intent"), routing.margin_for("act")) == (0.1, 0.3)
    with override(0.5):
        assert (routing.margin_for("intent"), routing.margin_for("act")) == (0.5, 0.5)
        with override(margins={"act": 0.0}):
            assert (routing.margin_for("intent"), routing.margin_for("act")) == (0.5, 0.0)
    assert routing.margin_for("intent") == 0.1
    with pytest.raises(ConfigError, match="floor=2"):
        Routing(floor=2)


# -- the builder hook -------------------------------------------------------------------------


def route_events(result: Any) -> list[Any]:
    return [e for e in result.events if e.kind == "route_decision"]


async def test_a_routed_node_starts_on_the_large_tier_without_a_small_call(
    routers: Path,
) -> None:
    save_router(trained())
    model = by_tier()
    [result] = await run_all(model, [HARD[2]], routing=Routing(margin=0.05))
    assert result.ok, result.error
    assert tiers_called(model) == ["large"]
    [event] = route_events(result)
    assert (event.node, event.tier, event.reason, event.margin) == (
        "number",
        "large",
        "routed",
        0.05,
    )
    probabilities = dict(event.probabilities)
    assert probabilities["slm"] < 0.2 < 0.9 < probabilities["large"]
    assert event.revision == 1 and event.features["words"] == len(HARD[2].split())
    finished = [e for e in result.events if e.kind == "node_finished"]
    assert [(e.node, e.model, e.ok) for e in finished] == [("number", "large", True)]


async def test_an_easy_input_stays_on_the_small_tier(routers: Path) -> None:
    save_router(trained())
    model = by_tier()
    [result] = await run_all(model, ["give 7"], routing=Routing())
    assert result.ok and tiers_called(model) == ["slm"]
    assert [e.reason for e in route_events(result)] == ["cheapest"]


async def test_a_routed_call_that_fails_climbs_from_above_its_tier(routers: Path) -> None:
    save_router(trained())
    model = by_tier(large=False)
    [result] = await run_all(model, [HARD[0]], routing=Routing())
    assert result.ok, result.error
    # large, its repair turn, then the frontier: the small tier is never asked.
    assert tiers_called(model) == ["large", "large", "frontier"]


async def test_a_node_routed_to_the_top_tier_that_fails_fails_plainly(routers: Path) -> None:
    # Hard inputs: the large tier failed them too, the frontier fixed them.
    samples = [
        Sample(s.run_id, s.node, s.tier, s.ok if s.tier == "slm" else False, s.features)
        for s in synthetic()
    ]
    samples += [Sample(s.run_id, s.node, "frontier", True, s.features) for s in samples[-10:]]
    router = train_router(samples, graph=GRAPH, node="number", skill="number", binding="own:slm")
    save_router(router)
    model = FunctionModel(lambda body: '{"n": -1}')
    [result] = await run_all(model, [HARD[0]], routing=Routing())
    [event] = route_events(result)
    assert event.tier == "frontier"
    assert result.status == "failed" and "nothing above it" in " ".join(
        e.detail for e in result.events if e.kind == "escalation"
    )
    assert tiers_called(model) == ["frontier", "frontier"]


async def test_without_a_valid_router_the_cascade_runs_as_before(routers: Path) -> None:
    model = by_tier()
    [result] = await run_all(model, [HARD[0]], routing=Routing())
    assert [(e.tier, e.reason) for e in route_events(result)] == [("slm", "no_router")]
    assert tiers_called(model) == ["slm", "slm", "large"]

    save_router(trained(binding="bound:someone-else@then#1"))
    model = by_tier()
    [result] = await run_all(model, [HARD[0]], routing=Routing())
    assert [e.reason for e in route_events(result)] == ["stale"]
    assert tiers_called(model) == ["slm", "slm", "large"]


async def test_no_routing_configured_means_no_decision_at_all(routers: Path) -> None:
    save_router(trained())  # a router exists, but the graph does not route
    model = by_tier()
    [result] = await run_all(model, [HARD[0]])
    assert route_events(result) == [] and tiers_called(model) == ["slm", "slm", "large"]


async def test_slm_mode_never_routes(routers: Path) -> None:
    save_router(trained())
    model = by_tier()
    async with model.pool(tiers=LADDER) as pool:
        app = App(graph_module(Routing()), pool=pool, prices=PRICES, checkpoints=None, store=None)
        result = await app.ainvoke(HARD[0], mode="slm")
        await app.aclose()
    assert route_events(result) == [] and set(tiers_called(model)) == {"slm"}


async def test_routed_runs_label_the_tier_they_ran_on(routers: Path, tmp_path: Path) -> None:
    save_router(trained())
    store = RunStore(tmp_path / "runs.sqlite")
    await run_all(by_tier(), [HARD[1], "give 2"], routing=Routing(), store=store)
    store.flush()
    samples = samples_from_store(store, GRAPH)
    assert sorted((s.tier, s.ok) for s in samples) == [("large", True), ("slm", True)]
    store.close()


def test_probabilities_are_numbers() -> None:
    router = trained()
    assert all(0 <= p <= 1 and not math.isnan(p) for p in router.predict(Features("x")).values())


# -- the command line -------------------------------------------------------------------------


def test_route_train_refuses_too_few_runs_plainly(
    routers: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from brickwork.cli import main

    store = RunStore(tmp_path / "runs.sqlite")
    asyncio.run(run_all(by_tier(), ["give 1", HARD[0]], store=store))
    store.close()
    code = main(["route", "train", GRAPH, "--store", str(tmp_path / "runs.sqlite"),
                 "--embeddings", "off"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 2
    assert "has 3 labelled attempt(s)" in " ".join(out.split())
    assert "no router trained for 'routed_test'" in " ".join(err.split())
    assert not routers.exists()


def test_route_train_and_show(
    routers: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from brickwork.cli import main

    where = str(tmp_path / "runs.sqlite")
    store = RunStore(where)
    asyncio.run(run_all(by_tier(), EASY + HARD, store=store))
    store.close()
    capsys.readouterr()
    assert main(["route", "train", "number", "--store", where, "--embeddings", "off"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "45 labelled attempt(s) over 1 node(s)" in out
    assert "routed_test:number revision 1, 45 attempt(s)" in out
    assert "sigmoid calibrated" in out and "rate 0.94" in out
    router = load_router(GRAPH, "number")
    assert router is not None and router.tiers["slm"].samples == 30
    assert main(["route", "train", f"{GRAPH}:number", "--store", where, "--embeddings", "off"]) == 0
    assert main(["route", "show", GRAPH]) == 0
    shown = capsys.readouterr().out
    assert "number" in shown and "slm 30" in " ".join(shown.split())
    assert load_router(GRAPH, "number").revision == 2  # type: ignore[union-attr]


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_the_fast_prediction_is_scikit_learns_own(
    method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from brickwork.routing import learner

    monkeypatch.setattr(learner, "ISOTONIC_MIN", 10 if method == "isotonic" else 10_000)
    samples = synthetic(40) + [
        Sample("x", "number", "slm", i % 3 == 0, Features(f"give me {'a ' * i}number"))
        for i in range(30)
    ]
    router = train_router(samples, graph=GRAPH, node="number", skill=None, binding="-")
    assert router.tiers["slm"].method == method
    for text in ("give 1", HARD[0], "give me a a a a number", "x" * 300):
        row = np.asarray([router.spec.row(Features(text))])
        expected = router.models["slm"].predict_proba(row)[0, 1]
        assert router.predict(Features(text))["slm"] == pytest.approx(expected, abs=1e-9)


def test_a_low_confidence_value_on_the_top_tier_is_kept_as_the_cascade_keeps_it() -> None:
    # Seen on banking8: intents routed to the large tier failed on `low_confidence` where
    # the same answer, reached by escalation, was accepted.
    from brickwork.agents.base import AgentResult, Signal
    from brickwork.escalation import Decision
    from brickwork.graphs.builder import at_the_top

    escalate = Decision("escalate", "low_confidence", "low_confidence after 1 repair(s)")
    unsure = AgentResult(value="card_lost", signals=(Signal("low_confidence", "0.41"),))
    kept = at_the_top(escalate, unsure, "large")
    assert kept.action == "accept" and "value kept" in kept.detail
    invalid = AgentResult(value=None, signals=(Signal("invalid_output", "not JSON"),))
    failed = at_the_top(Decision("escalate", "validation_failed"), invalid, "large")
    assert failed.action == "fail" and "nothing above it" in failed.detail
    wrong = AgentResult(
        value="x", signals=(Signal("low_confidence", ""), Signal("tool_error", "boom"))
    )
    assert at_the_top(escalate, wrong, "frontier").action == "fail"
