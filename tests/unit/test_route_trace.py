"""Route decisions as operators see them: `brickwork run --route`'s trace in the CLI, and the
TUI's run detail and live trace, on runs of a real App with a trained router (the package's
model fake answers; the router is a real scikit-learn fit): the node, the tier, P per tier,
the margin, and whether the cascade took over."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from rich.console import Console
from textual.widgets import Static

from brickwork._trace import CASCADE_REASONS, print_trace, route_text
from brickwork.agents.extract import ExtractAgent
from brickwork.app import App, RunResult
from brickwork.graphs import GraphModule
from brickwork.graphs.builder import Specialist, build_graph
from brickwork.routing import Features, Routing, Sample, save_router, train_router
from brickwork.skills.skill import JSONContract, Skill
from brickwork.store import RunStore
from brickwork.testing import FunctionModel, ModelStep
from brickwork.tui._trace import event_line, steps
from brickwork.tui.app import BrickworkTUI
from brickwork.tui.screens import RunDetailScreen
from brickwork.tui.widgets import Timeline

GRAPH = "route_trace_test"
SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer", "minimum": 0}},
    "required": ["n"],
    "additionalProperties": False,
}
SKILL = Skill(name="number", instructions="Give the number.", contract=JSONContract(SCHEMA))
EASY = [f"give {i}" for i in range(15)]
HARD = [f"please work out which number this long rambling request {i} means" for i in range(15)]


def graph_module() -> GraphModule:
    module = ModuleType(f"brickwork_test_{GRAPH}")

    def build(*, checkpointer: Any = None) -> Any:
        node = Specialist("number", ExtractAgent(SKILL), lambda s: s["text"])
        return build_graph([node], checkpointer=checkpointer)

    module.build = build  # type: ignore[attr-defined]
    return GraphModule(GRAPH, module)


def model() -> FunctionModel:
    """slm right on short texts only; large always right."""

    def answer(body: dict[str, Any]) -> ModelStep:
        text = next(m["content"] for m in body["messages"] if m["role"] == "user")
        good = body["model"] == "fake-large" or len(text) < 20
        return ModelStep('{"n": 4}' if good else '{"n": -1}')

    return FunctionModel(answer)


def router(binding: str = "own:slm") -> Any:
    samples = []
    for i in range(20):
        for text in (EASY[i % 15], HARD[i % 15]):
            ok = len(text) < 20
            samples.append(Sample(f"r{i}{ok}", "number", "slm", ok, Features(text)))
            if not ok:
                samples.append(Sample(f"r{i}", "number", "large", True, Features(text)))
    return train_router(samples, graph=GRAPH, node="number", skill="number", binding=binding)


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[RunStore, dict[str, RunResult]]:
    """Three stored runs: routed to large, kept on slm by the router, and a stale router's
    fallback to the cascade."""
    import asyncio

    monkeypatch.setenv("BRICKWORK_BINDINGS", str(tmp_path / "bindings.json"))
    store = RunStore(tmp_path / "runs.sqlite")

    async def run(text: str) -> RunResult:
        async with model().pool(tiers=("slm", "large")) as pool:
            app = App(graph_module(), pool=pool, store=store, checkpoints=None,
                      routing=Routing(margin=0.05))  # fmt: skip
            try:
                return await app.ainvoke(text)
            finally:
                await app.aclose()

    save_router(router())
    results = {"routed": asyncio.run(run(HARD[3])), "cheapest": asyncio.run(run(EASY[2]))}
    save_router(router(binding="bound:someone-else@then#1"))  # a new binding since: stale
    results["stale"] = asyncio.run(run(HARD[4]))
    store.flush()
    reasons = {
        k: [e.reason for e in r.events if e.kind == "route_decision"] for k, r in results.items()
    }
    assert reasons == {"routed": ["routed"], "cheapest": ["cheapest"], "stale": ["stale"]}
    return store, results


def test_the_cascade_reasons_are_the_ones_where_the_router_did_not_choose() -> None:
    assert {"unsure", "no_router", "stale", "no_embedding"} == CASCADE_REASONS


def rendered(result: RunResult, *, verbose: bool = False) -> list[str]:
    console = Console(width=80, record=True, color_system=None)
    print_trace(result, console, verbose=verbose)
    return console.export_text().splitlines()


def test_the_cli_trace_shows_each_route_decision(
    runs: tuple[RunStore, dict[str, RunResult]],
) -> None:
    _, results = runs
    lines = rendered(results["routed"])
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    [route] = [line for line in lines if line.startswith("route ")]
    assert route.startswith("route number -> large by the router (routed), margin 0.05; P slm")
    found = re.search(r"; P slm (0\.\d\d) large (0\.\d\d)$", route)
    assert found is not None, route
    assert float(found[1]) < 0.5 < float(found[2])
    # The route line sits between the node lines and the answer.
    assert lines.index(route) < next(i for i, x in enumerate(lines) if x.startswith("answer:"))

    [route] = [line for line in rendered(results["cheapest"]) if line.startswith("route ")]
    assert route.startswith("route number -> slm by the router (cheapest), margin 0.05; P slm")

    [route] = [line for line in rendered(results["stale"]) if line.startswith("route ")]
    assert route == "route number -> slm, fell back to the cascade (stale), margin 0.05"

    verbose = "\n".join(rendered(results["stale"], verbose=True))
    assert "fell back to the cascade (stale: trained under binding" in verbose
    verbose = "\n".join(rendered(results["routed"], verbose=True))
    assert "(routed: large predicted 0.9" in verbose and ", router r1" in verbose
    assert re.search(r"; \d+\.\d\d ms, router r1", verbose), verbose


async def test_the_tui_run_detail_shows_the_route_of_a_step(
    runs: tuple[RunStore, dict[str, RunResult]],
) -> None:
    store, results = runs
    tui = BrickworkTUI({}, store, refresh_s=3600)
    async with tui.run_test(size=(100, 30)) as pilot:
        for kind, expected in (
            ("routed", "route: number -> large by the router (routed: large predicted 0.9"),
            ("stale", "route: number -> slm, fell back to the cascade (stale: "),
        ):
            tui.open_run(results[kind].run_id)
            for _ in range(3):
                await pilot.pause()
                await tui.workers.wait_for_complete()
            screen = tui.screen
            assert isinstance(screen, RunDetailScreen)
            assert screen.query_one(Timeline).steps[0].route is not None
            detail = str(screen.query_one("#step-text", Static).content)
            assert expected in detail, detail
            assert "margin 0.05" in detail
            if kind == "routed":
                assert re.search(r"; P slm 0\.\d\d large 0\.9\d; ", detail), detail
                # The route comes before the step's calls, which are on the routed tier only.
                assert detail.index("route:") < detail.index("call large")
                assert "call slm" not in detail
            await pilot.press("escape")
            await pilot.pause()


def test_the_live_trace_has_a_route_line(runs: tuple[RunStore, dict[str, RunResult]]) -> None:
    store, results = runs
    found = store.run(results["routed"].run_id)
    assert found is not None
    events = found[1]
    [step] = steps(events)
    assert step.route is not None and step.route["tier"] == "large"
    lines = [event_line(e).plain for e in events]
    [route] = [line for line in lines if line.lstrip().startswith("route ")]
    assert "number -> large by the router (routed), margin 0.05; P slm 0." in route
    # The same words from a live event (`to_dict()`) as from the stored row.
    live = next(e for e in results["routed"].events if e.kind == "route_decision")
    assert route_text(live.to_dict()) == route_text(
        next(e for e in events if e["kind"] == "route_decision")
    )


def test_an_unsure_router_falls_back_with_its_probabilities() -> None:
    from brickwork.events import RouteDecision
    from brickwork.routing import choose

    choice = choose({"slm": 0.3, "large": 0.4}, ("slm", "large"), margin=0.1)
    event = RouteDecision("r1", "toolcall", choice.tier, choice.reason, choice.probabilities,
                          0.1, choice.detail, 2, 0.0004)  # fmt: skip
    assert route_text(event.to_dict()) == (
        "toolcall -> slm, fell back to the cascade (unsure), margin 0.1; P slm 0.30 large 0.40"
    )
    assert route_text(event.to_dict(), verbose=True) == (
        "toolcall -> slm, fell back to the cascade (unsure: no tier is predicted above 0.50 "
        "(best 0.40)), margin 0.1; P slm 0.30 large 0.40; 0.40 ms, router r2"
    )
    assert event_line(event.to_dict()).style == "yellow"
