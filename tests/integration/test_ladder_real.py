"""The local ladder for real: the small model fails a node, the bundled large model fixes it;
and a router learned from real hybrid runs decides where a new request starts.

Starts the bundled 1.5B model (converted on first use) on a core of its own beside the
session's small-model server, once for this module, and runs the smart_home graph in hybrid
mode through both.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from rich.console import Console

from brickwork._trace import CASCADE_REASONS, print_trace
from brickwork.app import App
from brickwork.cli import main
from brickwork.events import ModelCallEvent, RouteDecision
from brickwork.routing import Routing, load_router, samples_from_store
from brickwork.serving.pool import ModelPool
from brickwork.store import RunStore
from brickwork.tools.smart_home import SmartHomeHub

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


async def test_a_node_the_small_model_fails_is_fixed_on_the_large_tier(
    ladder: ModelPool, tmp_path: Path
) -> None:
    assert ladder.tiers == ("slm", "large") and ladder.top_tier == "large"
    hub = SmartHomeHub()
    app = App.from_graph(
        "graphs.smart_home",
        pool=ladder,
        store=RunStore(tmp_path / "runs.sqlite"),
        graph_options={"hub": hub},
        checkpoints=None,
    )
    # The 135M base model answers this with an ungrounded call (seen: set_scene('away')).
    result = await app.ainvoke("Turn on the kitchen lights", mode="hybrid")
    await app.aclose()
    calls = [e for e in result.events if isinstance(e, ModelCallEvent)]
    assert [e["node"] for e in result.escalations] == ["toolcall"], result
    assert result.status == "ok", result
    assert hub.lights["kitchen"].on
    large_calls = [c for c in calls if c.endpoint == "large-vllm"]
    assert large_calls and all(c.stand_in for c in large_calls)  # the top tier, labelled
    assert "frontier_stand_in" in result.flags
    # The ladder paid for the small attempts and the large fix; with every node on the top
    # tier the node would have cost its large call alone (counted once).
    assert result.cost.frontier_calls == len(large_calls)
    assert result.cost.frontier_only_usd >= sum(c.cost_usd for c in large_calls) * (1 - 1e-9)
    assert result.cost.cost_usd == pytest.approx(sum(c.cost_usd for c in calls))
    assert result.cost.cost_usd > result.cost.frontier_only_usd


# -- Route before generating ---------------------------------------------------------------------
# Hybrid runs of the smart_home graph on the ladder are stored, `brickwork route train` learns a
# router per node from them, and a new request starts where that router says. What the real
# models answer is not asserted; what is: the runs give labelled attempts of both tiers, the
# trained router is saved and valid, the new run records a decision with P per tier and the
# knob, its node's first model call is on the tier decided, and the CLI trace shows it.

GRAPH = "smart_home"
NODE = "toolcall"
#: Single-step requests of evals/smart_home.jsonl (no plan, nothing sensitive to confirm).
TRAIN = (
    "Turn the bedroom lights off",
    "Set the thermostat to 68 degrees",
    "Lock the garage door",
    "Is the living room light on?",
    "Start the movie night scene",
    "Cool the house down to 74",
    "What temperature is the thermostat set to?",
    "Switch on the bathroom lights",
    "Activate the bedtime scene",
)
NEW = "Turn on the kitchen lights"


async def test_a_router_trained_on_real_hybrid_runs_routes_a_new_request(
    ladder: ModelPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRICKWORK_BINDINGS", str(tmp_path / "bindings.json"))  # routers here
    assert ladder.tiers == ("slm", "large")
    store_path = tmp_path / "runs.sqlite"
    store = RunStore(store_path)
    app = App.from_graph(
        f"graphs.{GRAPH}", pool=ladder, store=store, graph_options={"hub": SmartHomeHub()},
        checkpoints=None,
    )  # fmt: skip
    try:
        results = [await app.ainvoke(text, mode="hybrid") for text in TRAIN]
    finally:
        await app.aclose()
    store.flush()
    assert all(r.status in ("ok", "failed") for r in results), [r.error for r in results]

    samples = [s for s in samples_from_store(store, GRAPH) if s.node == NODE]
    tiers = {s.tier for s in samples}
    print(f"{NODE}: {len(samples)} labelled attempts, by tier and outcome:",
          {(t, ok): sum(s.tier == t and s.ok == ok for s in samples)
           for t in sorted(tiers) for ok in (True, False)})  # fmt: skip
    assert "slm" in tiers and len(samples) >= len(TRAIN)  # every run tried the small tier
    store.close()

    # `brickwork route train` on those runs (no embeddings: cheap signals only).
    # The CLI runs its own event loop: call it from a thread, as a shell would from outside.
    argv = ["route", "train", f"{GRAPH}:{NODE}", "--store", str(store_path),
            "--embeddings", "off", "--min-samples", "5"]  # fmt: skip
    assert await asyncio.to_thread(main, argv) == 0
    router = load_router(GRAPH, NODE)
    assert router is not None and "slm" in router.tiers

    store = RunStore(store_path)
    routed = App.from_graph(
        f"graphs.{GRAPH}", pool=ladder, store=store, graph_options={"hub": SmartHomeHub()},
        checkpoints=None, routing=Routing.for_graph(GRAPH, margin=0.05),
    )  # fmt: skip
    try:
        result = await routed.ainvoke(NEW, mode="hybrid")
    finally:
        await routed.aclose()
        store.close()
    decisions = [e for e in result.events if isinstance(e, RouteDecision) and e.node == NODE]
    assert len(decisions) == 1, result.events
    [decision] = decisions
    print(f"decision: {decision.tier} ({decision.reason}) P={decision.probabilities} "
          f"margin={decision.margin} in {decision.latency_s * 1000:.2f} ms")  # fmt: skip
    assert decision.reason in ("routed", "cheapest", "unsure"), decision  # a valid router
    assert decision.margin == 0.05 and decision.revision == router.revision
    assert {t for t, _ in decision.probabilities} == set(router.tiers)
    assert all(0.0 <= p <= 1.0 for _, p in decision.probabilities)
    calls = [e for e in result.events if isinstance(e, ModelCallEvent) and e.node == NODE]
    assert calls and calls[0].model == decision.tier  # the node started where it was routed
    if decision.reason in CASCADE_REASONS or decision.tier == "slm":
        assert calls[0].model == "slm"

    console = Console(width=100, record=True, color_system=None)
    print_trace(result, console)
    assert f"route {NODE} -> {decision.tier}" in console.export_text()
