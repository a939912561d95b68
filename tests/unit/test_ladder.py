"""Escalation climbs the ladder one tier at a time: slm -> large -> frontier."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from brickwork.app import App
from brickwork.cost import CPU_SELF_HOSTED, FRONTIER_REFERENCE, LARGE_CPU_SELF_HOSTED, PriceBook
from brickwork.events import Escalation, ModelCallEvent
from brickwork.testing import FunctionModel, ModelStep

GRAPH = str(Path(__file__).resolve().parents[1] / "fixtures" / "two_step_graph.py")
LADDER = ("slm", "large", "frontier")
PRICES = PriceBook(
    endpoints={
        "fake-slm": CPU_SELF_HOSTED,
        "fake-large": LARGE_CPU_SELF_HOSTED,
        "fake-frontier": FRONTIER_REFERENCE,
    },
    top_tier=FRONTIER_REFERENCE,
)


def _answers(**by_tier: str) -> FunctionModel:
    def answer(body: dict[str, Any]) -> ModelStep:
        return ModelStep(by_tier[body["model"].removeprefix("fake-")])

    return FunctionModel(answer)


async def _run(model: FunctionModel, **options: Any) -> Any:
    async with model.pool(tiers=LADDER) as pool:
        assert pool.tiers == LADDER
        app = App.from_graph(GRAPH, pool=pool, prices=PRICES, checkpoints=None, store=None)
        result = await app.ainvoke("a number", **options)
        await app.aclose()
    return result


def _tiers_called(result: Any) -> list[str]:
    return [e.model for e in result.events if isinstance(e, ModelCallEvent)]


async def test_the_large_tier_fixes_a_node_and_the_frontier_is_never_called() -> None:
    result = await _run(_answers(slm='{"n": -1}', large='{"n": 5}', frontier='{"n": 9}'))
    assert result.ok and result.answer == "n=5"
    assert set(_tiers_called(result)) == {"slm", "large"}
    # The large tier's answer stands in for the node in the counterfactual, at the top price.
    assert result.cost.frontier_calls == 0
    assert 0 < result.cost.cost_usd < result.cost.frontier_only_usd


async def test_a_failure_on_the_large_tier_climbs_to_the_frontier() -> None:
    result = await _run(_answers(slm='{"n": -1}', large='{"n": -2}', frontier='{"n": 9}'))
    assert result.ok and result.answer == "n=9"
    called = _tiers_called(result)
    assert called.index("large") < called.index("frontier")
    climbs = [e for e in result.events if isinstance(e, Escalation) and "climbing" in e.detail]
    assert [e.detail for e in climbs] == ["large tier failed too; climbing to frontier"]
    # Spend counts every call; the counterfactual counts the node once, through its top call.
    frontier_cost = sum(
        e.cost_usd for e in result.events if isinstance(e, ModelCallEvent) and e.model == "frontier"
    )
    assert result.cost.frontier_only_usd == pytest.approx(frontier_cost)
    assert result.cost.cost_usd > frontier_cost


async def test_the_top_tier_failing_too_fails_the_run_plainly() -> None:
    result = await _run(_answers(slm='{"n": -1}', large='{"n": -2}', frontier='{"n": -3}'))
    assert result.status == "failed"
    assert "frontier model too" in (result.error or "")
