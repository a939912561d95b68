"""The TUI playground resumes a run that stopped for a confirmation: y runs it, n declines."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input

from brickwork.app import App
from brickwork.tools.smart_home import SmartHomeHub
from brickwork.tui.app import BrickworkTUI
from brickwork.tui.screens import PlaygroundScreen
from brickwork.tui.widgets import TraceLog
from tests.fixtures.graph_fakes import Agents, call
from tests.unit.test_tui import press, settle


@pytest.mark.parametrize(("key", "unlocked", "status"), [("y", True, "ok"), ("n", False, "failed")])
async def test_y_or_n_answers_the_runs_question(
    tmp_path: Path, key: str, unlocked: bool, status: str
) -> None:
    hub = SmartHomeHub()
    agents = Agents(
        intent=lambda text, model: "device_command",
        call=lambda text, model: call("lock_door", door="front", state="unlock"),
    )
    async with agents.model().pool() as pool:
        app = App.from_graph(
            "smart_home", pool=pool, checkpoints=tmp_path / "state.sqlite",
            graph_options={"hub": hub, "knn": False},
        )  # fmt: skip
        tui = BrickworkTUI({app.graph.name: app}, refresh_s=3600)
        async with tui.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            await press(pilot, "p")
            screen = tui.screen
            assert isinstance(screen, PlaygroundScreen) and isinstance(tui.focused, Input)
            await press(pilot, *"Is the front door unlocked?", "enter")
            assert screen.state == "needs_confirmation" and hub.doors["front"].locked
            last = screen.query_one(TraceLog).plain[-1]
            assert last.startswith("■ needs_confirmation") and "Please confirm" in last
            await press(pilot, "escape", key)
            assert screen.state == status
            assert hub.doors["front"].locked is not unlocked
        await app.aclose()
