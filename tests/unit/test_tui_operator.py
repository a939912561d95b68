"""The TUI items of issue 14 under Pilot, each at 80x24 and at 120x40: one-line dashboard header
and a labelled "Avoided" column, request/signal columns that use the width, a run header with
its answer and error, no finished run shown as running, the escalation queue's actions (retry,
flywheel, acknowledge), the Models screen's serves and endpoints, every graph in the playground.

Stores are filled by real App runs over the package's fake models (see test_tui)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from textual.widgets import DataTable, Select, Static

from brickwork._settings import cache_dir, state_dir
from brickwork.app import App
from brickwork.graphs import available_graphs
from brickwork.serving.client import EndpointConfig
from brickwork.serving.pool import ModelPool, PoolConfig
from brickwork.serving.registry import ServeLease, ServeRecord
from brickwork.serving.resilience import RetryPolicy
from brickwork.skills.loaders import load_examples
from brickwork.store import RunStore
from brickwork.store.triage import flywheel_path
from brickwork.testing import FunctionModel
from brickwork.tui.app import BrickworkTUI
from brickwork.tui.screens import EscalationsScreen, HelpScreen, RunDetailScreen
from brickwork.tui.screens.dashboard import _avoided
from brickwork.tui.screens.help import HELP
from brickwork.tui.widgets import SummaryBar, Timeline
from tests.unit.test_tui import GRAPH, Filled, _answer, _filled, press, rows, settle, text_of

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


@pytest.fixture
async def filled(tmp_path: Path) -> AsyncIterator[Filled]:
    """test_tui's four runs (accepted, escalated, failed in slm mode, frontier mode), SQLite."""
    async for found in _filled(RunStore(tmp_path / "runs.sqlite")):
        yield found


@pytest.mark.parametrize("size", SIZES)
async def test_dashboard_header_is_one_line_and_avoided_never_a_bare_negative(
    filled: Filled, size: tuple[int, int]
) -> None:
    tui = filled.tui()
    async with tui.run_test(size=size) as pilot:
        await settle(pilot)
        summary = text_of(tui.screen.query_one(SummaryBar))
        assert "\n" not in summary and len(summary) <= size[0] - 2
        for row in rows(tui.screen.query_one("#nodes", DataTable)):
            assert not row[6].startswith("-"), row
    assert str(_avoided(-0.012, wide=False)) == "more $0.0120"
    assert str(_avoided(-0.012, wide=True)) == "cost more by $0.0120"
    assert str(_avoided(0.5, wide=True)) == "$0.5000"


@pytest.mark.parametrize("size", SIZES)
async def test_escalation_request_and_signal_columns_use_the_width(
    filled: Filled, size: tuple[int, int]
) -> None:
    tui = filled.tui()
    async with tui.run_test(size=size) as pilot:
        await settle(pilot)
        await press(pilot, "e", "a", "w")  # escalations for validation_failed: "bad number"
        [row] = rows(tui.screen.query_one("#escalations", DataTable))
        signals = "invalid_output: $.n: -1 is less than the minimum of 0"
        width = max(10, (size[0] - 62) // 2)
        assert len(row[6]) == min(width, len(signals))
        assert row[6] == signals if width >= len(signals) else row[6].endswith("…")
        assert row[5] == "bad number"
        if size[0] >= 120:
            assert len(row[6]) >= 28  # the 40 extra columns go to the text, not to padding
        detail = text_of(tui.screen.query_one("#escalation-detail", Static))
        assert f"signals: {signals}" in detail and "request: bad number" in detail


@pytest.mark.parametrize("size", SIZES)
async def test_run_header_shows_answer_and_error_and_finished_runs_never_run(
    filled: Filled, size: tuple[int, int]
) -> None:
    tui = filled.tui()
    failed = filled.results["failed"]
    assert failed.error
    async with tui.run_test(size=size) as pilot:
        await settle(pilot)
        for index in range(4):
            await press(pilot, "r", *["down"] * index, "enter")
            screen = tui.screen
            assert isinstance(screen, RunDetailScreen)
            header = text_of(screen.query_one("#run-text", Static))
            assert "request: " in header and "answer: " in header
            statuses = [r[2] for r in rows(screen.query_one(Timeline))]
            assert statuses and "running" not in statuses, statuses
            if screen.run_id == failed.run_id:
                assert f"error: {failed.error}" in header  # whole, never cut
                assert "status failed" in text_of(screen.query_one(SummaryBar))
            if screen.run_id == filled.results["escalated"].run_id:
                assert "answer: n=8" in header
            await press(pilot, "escape")


def _by_text(table: DataTable[Any], text: str) -> int:
    return next(i for i, row in enumerate(rows(table)) if row[5] == text)


@pytest.mark.parametrize("size", SIZES)
async def test_escalation_actions_retry_flywheel_acknowledge(
    filled: Filled, size: tuple[int, int]
) -> None:
    tui = filled.tui()
    escalated = filled.results["escalated"]
    async with tui.run_test(size=size) as pilot:
        await settle(pilot)
        await press(pilot, "e")
        screen = tui.screen
        assert isinstance(screen, EscalationsScreen)
        table = screen.query_one("#escalations", DataTable)
        assert len(rows(table)) == 3
        footer = " ".join(
            b.binding.description for b in screen.active_bindings.values() if b.binding.show
        )
        for label in ("Retry", "Flywheel", "Ack", "Mark"):
            assert label in footer

        # Retry: the same request on its graph, in its mode; a new run in the store and Runs.
        table.move_cursor(row=_by_text(table, "bad number"))
        await press(pilot, "t")
        runs = filled.store.runs(limit=10)
        assert len(runs) == 5
        again = runs[0]
        assert again.text == "bad number" and again.mode == "hybrid"
        assert again.run_id != escalated.run_id and again.status == "ok"
        assert any(n.title == "Retried" and again.run_id in n.message for n in tui._notifications)
        assert len(rows(table)) == 4  # the retry escalated too
        await press(pilot, "r")
        assert rows(tui.screen.query_one("#runs", DataTable))[0][7] == "bad number"
        await press(pilot, "e")

        # Flywheel: mark the original escalation and the failed one (not fixed), send both.
        table.move_cursor(row=next(i for i, r in enumerate(screen.records)
                                   if r.run_id == escalated.run_id))  # fmt: skip
        await press(pilot, "space")
        assert "marked 1" in text_of(screen.query_one(SummaryBar))
        marks = [r[2].startswith("●") for r in rows(table)]
        assert marks == [r.run_id == escalated.run_id for r in screen.records]
        table.move_cursor(row=_by_text(table, "bad again"))
        await press(pilot, "space", "f")
        path = flywheel_path("two_step", "number")
        assert path.parent == cache_dir() / "tune-data"
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        mine = [row for row in lines if escalated.run_id in row["source"]]
        assert mine == [
            {
                "question": "bad number",
                "answer": '{"n": 8}',
                "source": f"escalation:{escalated.run_id}/number",
                "teacher": "frontier",
            }
        ]
        assert load_examples(path)  # what `brickwork tune --data FILE` reads
        detail = text_of(screen.query_one("#queue-note", Static))
        assert "1 sent to the flywheel" in detail and str(path) in detail
        assert "did not fix it" in detail  # the failed one, skipped and said so
        assert not screen.marked
        assert screen.records[table.cursor_row].run_id == escalated.run_id  # space moved down
        await press(pilot, "f")  # the row under the cursor again: not written twice
        assert len(path.read_text().splitlines()) == len(lines)
        assert "already in" in text_of(screen.query_one("#queue-note", Static))

        # Acknowledge: hidden now and after a restart of the TUI (kept beside the store).
        before = len(rows(table))
        table.move_cursor(row=_by_text(table, "bad again"))
        await press(pilot, "k")
        assert len(rows(table)) == before - 1
        assert "bad again" not in [r[5] for r in rows(table)]
        assert "acked 1" in text_of(screen.query_one(SummaryBar))
        await press(pilot, "question_mark")
        assert isinstance(tui.screen, HelpScreen)
        await press(pilot, "escape")
    assert (filled.store.path or Path()).with_name("runs.acknowledged.jsonl").is_file()
    tui = filled.tui()
    async with tui.run_test(size=size) as pilot:
        await settle(pilot)
        await press(pilot, "e")
        assert "bad again" not in [r[5] for r in rows(tui.screen.query_one(DataTable))]
    keys = {keys for _, keys, _ in HELP}
    assert {"space", "t", "f", "k"} <= keys


def _tiered_pool(model: FunctionModel) -> ModelPool:
    """A pool with every tier: slm and slm:intent on one server, large, frontier (stand-in)."""

    def endpoint(name: str, host: str, served: str, **extra: Any) -> EndpointConfig:
        return EndpointConfig(name=name, base_url=f"http://{host}/v1", model=served, **extra)

    large = endpoint("large-vllm", "large.fake", "fake-frontier", kind="vllm", stand_in=True)
    config = PoolConfig(
        models={
            "slm": [endpoint("local-vllm", "slm.fake", "fake-slm", kind="vllm")],
            "slm:intent": [endpoint("local-vllm:intent", "slm.fake", "intent", kind="vllm")],
            "large": [large],
            "frontier": [large],
        },
        retry=RetryPolicy(max_retries=0),
    )

    def handle(request: httpx2.Request) -> httpx2.Response:
        if request.method != "GET":
            return model._handle(request)
        if request.url.path == "/health":
            return httpx2.Response(200)
        if request.url.path == "/v1/models":
            return httpx2.Response(200, json={"data": [{"id": "fake-slm"}, {"id": "intent"}]})
        return httpx2.Response(404)

    return ModelPool(
        config,
        http_client_factory=lambda _: httpx2.AsyncClient(transport=httpx2.MockTransport(handle)),
    )


@pytest.mark.parametrize("size", SIZES)
async def test_models_screen_lists_every_serve_and_every_endpoint_with_restart_reasons(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    root = state_dir()
    log = tmp_path / "vllm-fake-59999.log"
    log.write_text(
        "=== brickwork: starting on port 59999, cores 0-1 ===\nvLLM says hello\n"
        "=== brickwork: fake (port 59999): exited with code -9 (killed: out of memory?); "
        "restarting in 1.0 s (restart 1) ===\n"
        "=== brickwork: fake (port 59999): back and ready 31.0 s after it went down ===\n"
    )
    lease = ServeLease(59999, root=root)
    lease.acquire()  # a registered serve whose port answers nothing (dead or restarting)
    lease.publish(
        ServeRecord(
            pid=os.getpid(), host="127.0.0.1", port=59999, served_name="fake-serve",
            adapters=("intent",), model="/models/fake", log=str(log),
            started_at="2026-01-02T03:04:05",
        )
    )  # fmt: skip
    try:
        model = FunctionModel(_answer)
        async with _tiered_pool(model) as pool:
            app = App.from_graph(GRAPH, pool=pool, store=RunStore(tmp_path / "runs.sqlite"))
            tui = BrickworkTUI({"two_step": app}, app.store, refresh_s=3600)
            async with tui.run_test(size=size) as pilot:
                await settle(pilot)
                await press(pilot, "m")
                endpoints = {r[0]: r for r in rows(tui.screen.query_one("#endpoints", DataTable))}
                assert set(endpoints) == {"local-vllm", "local-vllm:intent", "large-vllm *"}
                assert endpoints["local-vllm"][1] == "slm"
                assert endpoints["local-vllm:intent"][1] == "slm:intent"
                assert endpoints["large-vllm *"][1] == "large,frontier"
                serves = rows(tui.screen.query_one("#serves", DataTable))
                assert [r[:2] for r in serves] == [["59999", str(os.getpid())]]
                [serve] = serves
                assert serve[3] == "down" and serve[4] == "1"
                assert serve[5].startswith("exited with code -9 (")
                summary = text_of(tui.screen.query_one(SummaryBar))
                assert "endpoints 3" in summary and "serves 1" in summary
                await press(pilot, "tab")  # the serve table: its details
                detail = text_of(tui.screen.query_one("#endpoint-detail", Static))
                assert "serve :59999" in detail and "restarts in its log: 1" in detail
                assert "health not answering (dead or restarting)" in detail
                assert "back and ready 31.0 s" in detail and str(log) in detail
            await app.aclose()
    finally:
        lease.release()


@pytest.mark.parametrize("size", SIZES)
async def test_playground_offers_every_graph(tmp_path: Path, size: tuple[int, int]) -> None:
    """`brickwork tui` without --graph loads `available_graphs()`; each is in the picker."""
    store = RunStore(tmp_path / "runs.sqlite")
    apps = {name: App.from_graph(name, store=store) for name in available_graphs()}
    assert {"smart_home", "support", "analytics"} <= set(apps)
    tui = BrickworkTUI(apps, store, refresh_s=3600)
    async with tui.run_test(size=size) as pilot:
        await settle(pilot)
        await press(pilot, "p")
        picker: Select[str] = tui.screen.query_one("#request-graph", Select)
        offered = [value for _, value in picker._options if value != Select.BLANK]
        assert offered == list(apps)
        assert picker.value == "smart_home"  # the CLI default graph first, not the first name
