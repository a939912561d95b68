"""The operator TUI on the real local model: the playground runs a smart_home request and
shows its trace; the run then shows up in the runs table and its detail. The models screen
shows the real server's own health and load, read from its `/metrics`."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from brickwork.app import App
from brickwork.serving.local import pool_config_for
from brickwork.serving.models import EMBEDDED_MODEL
from brickwork.serving.pool import ModelPool
from brickwork.store import RunStore
from brickwork.tools.smart_home import SmartHomeHub
from brickwork.tui.app import BrickworkTUI
from brickwork.tui.screens import PlaygroundScreen, RunDetailScreen
from brickwork.tui.widgets import Timeline, TraceLog

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


async def settle(pilot: Pilot[Any]) -> None:
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def test_playground_runs_smart_home_on_the_real_model(
    slm_base_url: str, tmp_path: Path
) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    async with ModelPool(pool_config_for(slm_base_url, EMBEDDED_MODEL.served_name)) as pool:
        app = App.from_graph(
            "graphs.smart_home", pool=pool, store=store, graph_options={"hub": SmartHomeHub()}
        )
        tui = BrickworkTUI({app.graph.name: app}, store, refresh_s=3600)
        async with tui.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("p")
            await settle(pilot)
            screen = tui.screen
            assert isinstance(screen, PlaygroundScreen)
            # Mode slm by keyboard (no escalation keeps the test short), then the request.
            await pilot.press("tab", "tab", "enter", "down", "enter", "i")
            await settle(pilot)
            await pilot.press(*"Turn on the kitchen lights", "enter")
            await settle(pilot)  # waits for the playground worker: the whole run
            assert screen.state in ("ok", "failed"), screen.query_one(TraceLog).plain
            lines = screen.query_one(TraceLog).plain
            assert lines[0] == "▶ smart_home (slm): Turn on the kitchen lights"
            assert "  intent started" in lines
            assert any(line.startswith("    call slm on local-vllm:") for line in lines)
            assert any(line.startswith("    decision ") for line in lines)
            assert lines[-1].startswith(f"■ {screen.state} in")
            run_id = screen.run_id
            assert run_id is not None
            stored = store.run(run_id)
            assert stored is not None and stored[0].status == screen.state

            await pilot.press("escape", "o")
            await settle(pilot)
            detail = tui.screen
            assert isinstance(detail, RunDetailScreen) and detail.run_id == run_id
            timeline = detail.query_one(Timeline)
            assert timeline.steps[0].node == "intent"
            # The step that called the small model (intent may answer by embedding kNN).
            index = next(i for i, s in enumerate(timeline.steps) if s.calls)
            row = [str(c) for c in timeline.get_row_at(index)]
            assert row[1] == timeline.steps[index].node and row[3].startswith("slm")
            prompt, completion = timeline.steps[index].tokens
            assert row[5] == f"{prompt}+{completion}" and prompt > 0 and completion > 0
            await pilot.press(*["down"] * index)
            await settle(pilot)
            body = str(detail.query_one("#step-text", Static).content)
            assert body.startswith(timeline.steps[index].node)
            assert "attempt 1 (slm)" in body and "output: " in body and "decision: " in body

            await pilot.press("escape", "r")
            await settle(pilot)
            table = tui.screen.query_one("#runs", DataTable)
            shown = str(table.get_row_at(0)[_column(table, "Request")])  # cut to fit 80 columns
            assert "Turn on the kitchen lights".startswith(shown.removesuffix("…"))
        await app.aclose()


async def test_models_screen_reads_the_real_servers_metrics(
    slm_base_url: str, tmp_path: Path
) -> None:
    async with ModelPool(pool_config_for(slm_base_url, EMBEDDED_MODEL.served_name)) as pool:
        app = App.from_graph("graphs.smart_home", pool=pool, graph_options={"hub": SmartHomeHub()})
        messages = [{"role": "user", "content": "Write a long story about a lighthouse."}]
        # Load the server, and see its own gauges count the requests (wait on the state).
        load = [
            asyncio.create_task(pool.complete("slm", messages, max_tokens=48)) for _ in range(4)
        ]
        busiest = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(t.done() for t in load):
            state = (await pool.server_metrics())["local-vllm"]
            assert state.running is not None and state.waiting is not None
            busiest = max(busiest, state.running + state.waiting)
            if busiest >= 2:
                break
            await asyncio.sleep(0.05)
        assert busiest >= 2, "vLLM's /metrics never showed the requests in flight"
        for task in load:  # seen; no need to wait for the stories (the server aborts them)
            task.cancel()
        await asyncio.gather(*load, return_exceptions=True)

        [local] = [i for i in await app.instances() if i.name == "local-vllm"]
        assert local.health == "ok" and local.error is None
        # Other clients may share the server: the counts are its own, so only their form is ours.
        assert local.running is not None and local.waiting is not None
        assert local.kv_cache_usage is not None and 0 <= local.kv_cache_usage <= 1
        assert local.adapters is not None  # the list may be empty: it was read
        assert not local.restartable and local.calls == 4

        tui = BrickworkTUI({app.graph.name: app}, refresh_s=3600)
        async with tui.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("m")
            await settle(pilot)
            table = tui.screen.query_one("#endpoints", DataTable)
            by_name = {str(r[0]): [str(c) for c in r] for r in map(table.get_row_at, range(2))}
            row = by_name["local-vllm"]
            health, run, queue, kv, rst = (
                _column(table, k) for k in ("Health", "Run", "Queue", "KV", "Rst")
            )
            assert row[health] == "ok" and row[run].isdigit() and row[queue].isdigit()
            assert row[kv].endswith("%") and row[rst] in ("-", "0")
            await pilot.press("R")
            await settle(pilot)
            [note] = list(tui._notifications)
            assert note.title == "Cannot restart" and "restart it where it runs" in note.message
        await app.aclose()


def _column(table: DataTable[Any], label: str) -> int:
    """The index of the column headed `label` (columns move as screens gain columns)."""
    labels = [str(column.label) for column in table.columns.values()]
    return labels.index(label)
