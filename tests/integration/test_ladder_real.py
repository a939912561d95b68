"""The local ladder for real: the small model fails a node, the bundled large model fixes it.

Starts the bundled 1.5B model (converted on first use) on a core of its own beside the
session's small-model server, and runs the smart_home graph in hybrid mode through both.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from brickwork.app import App
from brickwork.events import ModelCallEvent
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
