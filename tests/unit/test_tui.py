"""The operator TUI under Textual's Pilot, at 80x24, on a store filled by real runs of Apps
over the package's fake models (the two-step graph: accepted, escalated, failed runs)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from brickwork.app import App, RunResult
from brickwork.serving.client import EndpointConfig
from brickwork.serving.pool import ModelPool, PoolConfig
from brickwork.serving.resilience import RetryPolicy
from brickwork.store import RunStore
from brickwork.testing import FunctionModel
from brickwork.tui._format import seconds
from brickwork.tui._trace import steps
from brickwork.tui.app import BrickworkTUI
from brickwork.tui.screens import (
    DashboardScreen,
    EscalationsScreen,
    HelpScreen,
    ModelsScreen,
    PlaygroundScreen,
    RunDetailScreen,
    RunsScreen,
)
from brickwork.tui.screens.confirm import ConfirmScreen
from brickwork.tui.widgets import FilterBar, SummaryBar, Timeline, TraceLog

GRAPH = str(Path(__file__).resolve().parents[1] / "fixtures" / "two_step_graph.py")
SIZE = (80, 24)


def _answer(body: dict[str, Any]) -> str:
    """The small model gets a negative number wrong whenever the request says "bad"."""
    if body["model"] == "fake-frontier":
        return '{"n": 8}'
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    return '{"n": -1}' if "bad" in user else '{"n": 7}'


@dataclass
class Filled:
    pool: ModelPool
    store: RunStore
    model: FunctionModel
    results: dict[str, RunResult]

    def app(self) -> App:
        return App.from_graph(GRAPH, pool=self.pool, store=self.store)

    def tui(self, app: App | None = None) -> BrickworkTUI:
        app = app or self.app()
        return BrickworkTUI({app.graph.name: app}, self.store, refresh_s=3600)


SLM_METRICS = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="fake-slm"} 2.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="fake-slm"} 5.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="fake-slm"} 0.375
"""


def vllm_like_pool(model: FunctionModel) -> ModelPool:
    """The fake model's pool (`fake-slm`, stand-in `fake-frontier`), whose servers also answer
    vLLM's GET routes: the slm one fully (an `intent` adapter, load gauges), the frontier one
    without `/metrics`."""
    config = PoolConfig(
        models={
            name: [
                EndpointConfig(
                    name=f"fake-{name}",
                    base_url=f"http://{name}.fake/v1",
                    model=f"fake-{name}",
                    stand_in=name == "frontier",
                )
            ]
            for name in ("slm", "frontier")
        },
        retry=RetryPolicy(max_retries=0),
    )

    def handle(request: httpx2.Request) -> httpx2.Response:
        if request.method != "GET":
            return model._handle(request)
        slm = request.url.host == "slm.fake"
        name = "fake-slm" if slm else "fake-frontier"
        adapters = [{"id": "intent", "parent": name}] if slm else []
        routes = {
            "/health": httpx2.Response(200),
            "/v1/models": httpx2.Response(200, json={"data": [{"id": name}, *adapters]}),
            "/metrics": httpx2.Response(200, text=SLM_METRICS) if slm else httpx2.Response(404),
        }
        return routes.get(request.url.path, httpx2.Response(404))

    return ModelPool(
        config,
        http_client_factory=lambda _: httpx2.AsyncClient(transport=httpx2.MockTransport(handle)),
    )


PG_URL = os.environ.get("BRICKWORK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def store_on(backend: str, tmp_path: Path) -> Iterator[RunStore]:
    """A fresh run store: a SQLite file, or a new schema on the PostgreSQL server."""
    if backend == "sqlite":
        yield RunStore(tmp_path / "runs.sqlite")
        return
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (extra: postgres)")
    schema = f"bw_tui_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    store = RunStore(f"{PG_URL}?options=-csearch_path%3D{schema}")
    try:
        yield store
    finally:
        store.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


#: Every screen test runs on both run-store backends.
@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def filled(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Filled]:
    """Four real runs: accepted, escalated on validation, failed in slm mode, frontier mode."""
    with store_on(request.param, tmp_path) as store:
        async for filled in _filled(store):
            yield filled


async def _filled(store: RunStore) -> AsyncIterator[Filled]:
    model = FunctionModel(_answer)
    async with vllm_like_pool(model) as pool:
        app = App.from_graph(GRAPH, pool=pool, store=store)
        results = {}
        for name, text, mode in [
            ("accepted", "seven", "hybrid"),
            ("escalated", "bad number", "hybrid"),
            ("failed", "bad again", "slm"),
            ("frontier", "seven more", "frontier"),
        ]:
            results[name] = await app.ainvoke(text, mode=mode)
        await app.aclose()
        yield Filled(pool, store, model, results)


async def settle(pilot: Pilot[Any]) -> None:
    """Let messages, then workers, then the messages they posted, all be handled."""
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def press(pilot: Pilot[Any], *keys: str) -> None:
    await pilot.press(*keys)
    await settle(pilot)


def rows(table: DataTable[Any]) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def text_of(widget: Static) -> str:
    return str(widget.content)


async def test_dashboard_shows_per_node_figures_from_the_store(filled: Filled) -> None:
    tui = filled.tui()
    async with tui.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = tui.screen
        assert isinstance(screen, DashboardScreen)
        table = screen.query_one("#nodes", DataTable)
        by_node = {r[0]: r for r in rows(table)}
        stats = {s.node: s for s in filled.store.node_stats()}
        assert set(by_node) == {"number", "supervisor"}
        number = by_node["number"]
        assert number[1] == str(stats["number"].calls) == "4"
        p50, p95 = stats["number"].p50_s, stats["number"].p95_s
        assert number[2] == f"{seconds(p50, compact=True)}/{seconds(p95, compact=True)}"
        assert number[3] == "50%"  # validation failed in the escalated and the slm run
        assert number[4] == "50%"  # escalated in hybrid and in frontier mode
        assert by_node["supervisor"][1] == "2"
        summary = text_of(screen.query_one(SummaryBar))
        assert "runs 4" in summary and "esc 50%" in summary and "ok 75%" in summary
        assert len(summary) <= SIZE[0] - 2  # one line at 80 columns: the header never wraps
        assert "cost more by" in summary or "saved" in summary  # never a negative saving


async def test_keys_switch_screens_and_help_opens_and_closes(filled: Filled) -> None:
    closed: list[bool] = []

    async def on_exit() -> None:
        closed.append(True)

    app = filled.app()
    tui = BrickworkTUI({"two_step": app}, filled.store, refresh_s=3600, on_exit=on_exit)
    async with tui.run_test(size=SIZE) as pilot:
        await settle(pilot)
        expected = {
            "r": RunsScreen,
            "e": EscalationsScreen,
            "m": ModelsScreen,
            "p": PlaygroundScreen,
        }
        for key, screen_type in expected.items():
            if key != "r":
                await press(pilot, "escape")  # the playground box holds the focus
            await press(pilot, key)
            assert isinstance(tui.screen, screen_type), key
        await press(pilot, "escape", "d")
        assert isinstance(tui.screen, DashboardScreen)
        await press(pilot, "question_mark")
        assert isinstance(tui.screen, HelpScreen)
        await press(pilot, "escape")
        assert isinstance(tui.screen, DashboardScreen)
        await press(pilot, "q")
    assert tui.return_code == 0 and closed == [True]


async def test_runs_table_is_newest_first_and_filters_change_the_rows(filled: Filled) -> None:
    tui = filled.tui()
    async with tui.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "r")
        table = tui.screen.query_one("#runs", DataTable)
        texts = [r[7] for r in rows(table)]
        assert texts == ["seven more", "bad again", "bad number", "seven"]
        await press(pilot, "s")  # status: ok
        assert tui.screen.query_one(FilterBar).values["status"] == "ok"
        assert sorted(r[7] for r in rows(table)) == ["bad number", "seven", "seven more"]
        await press(pilot, "x")  # and escalated
        assert [r[7] for r in rows(table)] == ["seven more", "bad number"]
        await press(pilot, "x")  # not escalated
        assert [r[7] for r in rows(table)] == ["seven"]
        await press(pilot, "s")  # status: failed
        assert [r[7] for r in rows(table)] == ["bad again"]
        await press(pilot, "c", "g")  # no filter but the graph
        assert tui.screen.query_one(FilterBar).values == {
            "graph": "two_step",
            "status": "",
            "escalated": "",
            "source": "",
            "mode": "",
        }
        assert len(rows(table)) == 4
        await press(pilot, "s", "g")  # status ok, graph back to any
        assert tui.screen.query_one(FilterBar).values["graph"] == ""
        assert len(rows(table)) == 3
        await press(pilot, "c")
        assert len(rows(table)) == 4
        assert "runs 4" in text_of(tui.screen.query_one(SummaryBar))
        await press(pilot, "slash", *"MORE", "enter")  # text search, any case
        assert [r[7] for r in rows(table)] == ["seven more"]
        assert "text~'MORE'" in text_of(tui.screen.query_one(SummaryBar))
        await press(pilot, "c")
        assert len(rows(table)) == 4
        await press(pilot, "f")  # from: the first source, cli
        assert tui.screen.query_one(FilterBar).values["source"] == "cli"
        assert rows(table) == []  # the fixture's runs came through App: source "app"
        await press(pilot, "c", "o")  # mode: slm
        assert all(r[2].endswith("/s") for r in rows(table)) and rows(table)


async def test_enter_opens_the_run_under_the_cursor(filled: Filled) -> None:
    tui = filled.tui()
    escalated = filled.results["escalated"]
    async with tui.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "r", "down", "down", "enter")  # the third newest: "bad number"
        screen = tui.screen
        assert isinstance(screen, RunDetailScreen) and screen.run_id == escalated.run_id
        timeline = screen.query_one(Timeline)
        assert [r[1:4] for r in rows(timeline)] == [
            ["number", "escalated", "slm"],
            ["supervisor", "ok", "frontier"],
        ]
        assert rows(timeline)[0][5] == "20+10"  # the first try and one repair
        detail = text_of(screen.query_one("#step-text", Static))
        assert "decision: escalate (validation_failed)" in detail
        assert "signal invalid_output: $.n: -1 is less than the minimum of 0" in detail
        assert "user: bad number" in detail and "attempt 2 (slm)" in detail
        await press(pilot, "down")
        detail = text_of(screen.query_one("#step-text", Static))
        assert detail.startswith("supervisor") and 'result: {"n": 8}' in detail
        summary = text_of(screen.query_one(SummaryBar))
        assert "frontier_stand_in" in summary and "status ok" in summary
        await press(pilot, "escape")
        assert isinstance(tui.screen, RunsScreen)


async def test_escalation_queue_filters_and_opens_the_run_at_its_node(filled: Filled) -> None:
    tui = filled.tui()
    async with tui.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "e")
        table = tui.screen.query_one("#escalations", DataTable)
        decisions = sorted(r[2] for r in rows(table))
        assert decisions == ["↑ frontier_mode", "↑ validation_failed", "✗ validation_failed"]
        await press(pilot, "a")  # escalations only
        assert sorted(r[2] for r in rows(table)) == ["↑ frontier_mode", "↑ validation_failed"]
        await press(pilot, "w")  # reason: the first of the reasons, validation_failed
        assert tui.screen.query_one(FilterBar).values["reason"] == "validation_failed"
        [row] = rows(table)
        assert row[6].startswith("invalid_o") and row[3] in ("yes", "no")
        detail = text_of(tui.screen.query_one("#escalation-detail"))
        assert "signals: invalid_output: $.n: -1 is less than the minimum of 0" in detail
        await press(pilot, "enter")
        screen = tui.screen
        assert isinstance(screen, RunDetailScreen)
        assert screen.run_id == filled.results["escalated"].run_id and screen.node == "number"
        assert screen.query_one(Timeline).cursor_row == 0


async def test_models_screen_shows_the_pool_endpoints(filled: Filled) -> None:
    tui = filled.tui()
    async with tui.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "m")
        table = tui.screen.query_one("#endpoints", DataTable)
        by_name = {r[0]: r for r in rows(table)}
        assert set(by_name) == {"fake-slm", "fake-frontier *"}
        # Endpoint, Tiers, Health, Circuit, Run, Queue, KV, Rst: the load is the server's.
        assert by_name["fake-slm"][1:] == ["slm", "ok", "closed", "2", "5", "38%", "-"]
        assert by_name["fake-frontier *"][1:] == ["frontier", "ok", "closed", "~0", "-", "-", "-"]
        summary = text_of(tui.screen.query_one(SummaryBar))
        assert "endpoints 2" in summary and "running 2" in summary and "queued 5" in summary
        client = next(c for c in filled.pool.endpoints() if c.config.name == "fake-slm")
        assert client.calls > 0
        detail = text_of(tui.screen.query_one("#endpoint-detail", Static))
        assert "http://slm.fake/v1" in detail and f"{client.calls} calls" in detail
        assert "external server" in detail
        await press(pilot, "down")
        detail = text_of(tui.screen.query_one("#endpoint-detail", Static))
        assert "http://frontier.fake/v1" in detail and "stand-in" in detail
        assert "/metrics answered HTTP 404" in detail


async def test_models_screen_refreshes_on_its_timer(filled: Filled) -> None:
    app = filled.app()
    tui = BrickworkTUI({"two_step": app}, filled.store, refresh_s=0.05)
    async with tui.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "m")
        table = tui.screen.query_one("#endpoints", DataTable)
        client = next(c for c in filled.pool.endpoints() if c.config.name == "fake-slm")
        calls = client.calls
        await app.ainvoke("seven again")
        assert client.calls == calls + 1
        for _ in range(100):  # the timer's worker reads again; wait for the figure
            detail = text_of(tui.screen.query_one("#endpoint-detail", Static))
            if f"{calls + 1} calls" in detail:
                break
            await pilot.pause(0.05)
        assert f"{calls + 1} calls" in detail and table.row_count == 2
    await app.aclose()


@dataclass
class FakeServer:
    """What `App.restart_instance` uses of a `VLLMServer`; it records stop and start."""

    base_url: str = "http://slm.fake/v1"
    restarts: int = 1
    status: str = "ready"
    ready_timeout_s: float = 300.0
    calls: list[str] = field(default_factory=list)

    def stop(self) -> None:
        self.calls.append("stop")
        self.status = "stopped"

    def start(self) -> FakeServer:
        self.calls.append("start")
        self.restarts, self.status = 0, "ready"
        return self


@dataclass
class FakeLocal:
    """A `LocalServing` that launched `server` (the App's `_local`)."""

    server: FakeServer | None
    base_url: str = "http://slm.fake/v1"
    origin: str = "private vLLM at http://slm.fake/v1"

    def stop(self) -> None:
        self.server = None


async def test_restart_key_asks_first_and_restarts_a_launched_server(filled: Filled) -> None:
    server = FakeServer()
    app = filled.app()
    app._local = FakeLocal(server)
    tui = filled.tui(app)
    async with tui.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "m")
        table = tui.screen.query_one("#endpoints", DataTable)
        assert rows(table)[0][0] == "fake-slm" and rows(table)[0][7] == "1"
        await press(pilot, "R")
        confirm = tui.screen
        assert isinstance(confirm, ConfirmScreen)
        assert "Restart the vLLM server behind fake-slm" in str(confirm.question)
        await press(pilot, "enter")  # No has the focus: Enter out of habit does nothing
        assert isinstance(tui.screen, ModelsScreen) and server.calls == []
        await press(pilot, "R")
        await press(pilot, "n")
        assert isinstance(tui.screen, ModelsScreen) and server.calls == []
        await press(pilot, "R", "y")
        assert isinstance(tui.screen, ModelsScreen)
        assert server.calls == ["stop", "start"]
        assert rows(table)[0][7] == "2"  # the crash restart before, and this one
        assert any(n.title == "Restarted" for n in tui._notifications)
    app._local = None


async def test_restart_key_says_why_it_cannot_restart(filled: Filled) -> None:
    tui = filled.tui()
    async with tui.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "m", "R")
        assert isinstance(tui.screen, ModelsScreen)  # no question asked
        [note] = list(tui._notifications)
        assert note.title == "Cannot restart"
        assert "fake-slm is served by external server" in note.message
        assert "restart it where it runs" in note.message


async def test_models_screen_fits_80x24(filled: Filled, tmp_path: Path) -> None:
    tui = filled.tui()
    async with tui.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "m")
        shot = Path(tui.save_screenshot("models.svg", path=str(tmp_path)))
    svg = shot.read_text().replace("&#160;", " ")
    for expected in ("Health", "Tiers", "Queue", "KV", "Rst", "38%", "intent", "Restart"):
        assert expected in svg, expected


async def test_models_screen_before_the_pool_has_started(tmp_path: Path) -> None:
    app = App.from_graph(GRAPH, store=RunStore(tmp_path / "runs.sqlite"))  # no pool yet
    tui = BrickworkTUI({"two_step": app}, refresh_s=3600)
    async with tui.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "m")
        assert tui.screen.query_one("#endpoints", DataTable).row_count == 0
        note = text_of(tui.screen.query_one(SummaryBar))
        assert "two_step: the model pool starts with the first run" in note
        await press(pilot, "r")
        assert "runs 0" in text_of(tui.screen.query_one(SummaryBar))


async def test_playground_runs_a_request_and_shows_its_trace(filled: Filled) -> None:
    tui = filled.tui()
    async with tui.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "p")
        screen = tui.screen
        assert isinstance(screen, PlaygroundScreen)
        assert isinstance(tui.focused, Input)
        await press(pilot, *"bad news", "enter")
        assert screen.state == "ok" and screen.run_id is not None
        assert not screen.has_class("-running")
        lines = screen.query_one(TraceLog).plain
        assert lines[0] == "▶ two_step (hybrid): bad news"
        assert any("decision escalate (validation_failed)" in line for line in lines)
        assert any(line.startswith("  ✓ supervisor") for line in lines)
        assert lines[-1].startswith("■ ok in") and lines[-1].endswith("n=8")
        stored = filled.store.run(screen.run_id)
        assert stored is not None and stored[0].text == "bad news"
        await press(pilot, "escape", "o")  # leave the box, open the run
        assert isinstance(tui.screen, RunDetailScreen) and tui.screen.run_id == screen.run_id
        await press(pilot, "escape", "r")
        assert rows(tui.screen.query_one("#runs", DataTable))[0][7] == "bad news"


async def test_playground_mode_picker_and_refused_input(filled: Filled) -> None:
    tui = filled.tui()
    async with tui.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "p")
        screen = tui.screen
        screen.query_one("#request-mode").value = "slm"
        await press(pilot, *"bad luck", "enter")
        assert screen.state == "failed"
        assert screen.query_one(TraceLog).plain[0] == "▶ two_step (slm): bad luck"
        screen.query_one("#request-mode").value = "frontier"
        screen.query_one("#request-text", Input).value = "x" * 20_001
        await press(pilot, "enter")
        assert screen.state == "refused"
        assert "limit is 20000" in text_of(screen.query_one(SummaryBar))


async def test_screenshots_of_key_screens(filled: Filled, tmp_path: Path) -> None:
    tui = filled.tui()
    async with tui.run_test(size=SIZE) as pilot:
        await settle(pilot)
        dashboard = Path(tui.save_screenshot("dashboard.svg", path=str(tmp_path)))
        await press(pilot, "r", "down", "down", "enter")
        detail = Path(tui.save_screenshot("detail.svg", path=str(tmp_path)))
    svg = dashboard.read_text().replace("&#160;", " ")
    for expected in ("Dashboard", "Playground", "supervisor", "number", "Help"):
        assert expected in svg, expected
    svg = detail.read_text().replace("&#160;", " ")
    for expected in ("bad number", "escalated", "validation_failed", "Back"):
        assert expected in svg, expected


def test_steps_fold_events_into_spans(filled: Filled) -> None:
    events = [e.to_dict() for e in filled.results["escalated"].events]
    found = steps(events)
    assert [(s.node, s.status, len(s.calls)) for s in found] == [
        ("number", "escalated", 2),
        ("supervisor", "ok", 1),
    ]
    small = [e for e in events if e["kind"] == "model_call" and e["node"] == "number"]
    assert found[0].cost_usd == pytest.approx(sum(c["cost_usd"] for c in small))
    assert found[0].tokens == (20, 10) and found[1].models == "frontier"
    assert steps([]) == []
    running = steps(events[:3])
    assert running[0].status == "running" and running[0].latency_s is None
    # A gate that hands over to the planner has a decision and no span of its own: it is
    # escalated, not forever "running" (seen on make run's multi-step request).
    gate = {"kind": "escalation", "node": "plan_check", "action": "escalate", "reason": "x"}
    assert [s.status for s in steps([gate])] == ["escalated"]


async def test_runs_and_dashboard_pick_up_new_runs_on_their_timer(filled: Filled) -> None:
    app = filled.app()
    tui = BrickworkTUI({"two_step": app}, filled.store, refresh_s=0.05)
    async with tui.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "r")
        table = tui.screen.query_one("#runs", DataTable)
        assert table.row_count == 4
        await app.ainvoke("seven at last")  # as another process writing to the store would
        for _ in range(100):  # the screen's timer reloads it; wait for the row, not a time
            if table.row_count == 5:
                break
            await pilot.pause(0.05)
        assert rows(table)[0][7] == "seven at la…"  # cut at 80 columns (whole under the table)
        await press(pilot, "d")
        for _ in range(100):
            summary = text_of(tui.screen.query_one(SummaryBar))
            if "runs 5" in summary:
                break
            await pilot.pause(0.05)
        assert "runs 5" in summary
    await app.aclose()


async def test_without_graphs_the_store_screens_work_and_the_playground_says_why(
    filled: Filled,
) -> None:
    tui = BrickworkTUI({}, filled.store, refresh_s=3600)
    async with tui.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "r")
        assert tui.screen.query_one("#runs", DataTable).row_count == 4
        await press(pilot, "p")
        message = text_of(tui.screen.query_one("#no-graphs", Static))
        assert "start the TUI with --graph REF" in message
        await press(pilot, "o")
        assert isinstance(tui.screen, PlaygroundScreen)


async def test_store_outage_is_shown_and_the_screens_recover(filled: Filled) -> None:
    tui = filled.tui()
    original = filled.store.runs

    def down(**_: Any) -> Any:
        raise OSError("database is unreachable")

    async with tui.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "r")
        table = tui.screen.query_one("#runs", DataTable)
        assert len(rows(table)) == 4
        filled.store.runs = down  # type: ignore[method-assign]
        try:
            await press(pilot, "s")  # a reload while the store is down
            bar = text_of(tui.screen.query_one(SummaryBar))
            assert "Run store unavailable" in bar and "unreachable" in bar
            assert len(rows(table)) == 4  # the last good rows stay
            for key in ("d", "e", "r"):  # every screen still answers its keys
                await press(pilot, key)
        finally:
            filled.store.runs = original  # type: ignore[method-assign]
        await press(pilot, "c")
        assert len(rows(tui.screen.query_one("#runs", DataTable))) == 4
        assert "runs 4" in text_of(tui.screen.query_one(SummaryBar))


def test_the_live_trace_names_the_counterfactual_as_the_run_summary_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    from brickwork.tui._trace import event_line

    for name in [n for n in os.environ if n.startswith("BRICKWORK_FRONTIER")]:
        monkeypatch.delenv(name)
    finished = {"kind": "run_finished", "status": "ok", "latency_s": 1.0, "answer": "done",
                "cost_usd": 0.000002, "frontier_only_usd": 0.000008}  # fmt: skip
    line = event_line(finished).plain
    assert "top-tier only $0.000008" in line and "frontier-only" not in line
    spared = {"kind": "model_skipped", "node": "intent", "method": "knn", "prompt_tokens": 612,
              "completion_tokens": 3, "frontier_cost_usd": 0.000004}  # fmt: skip
    line = event_line(spared).plain
    assert "no call (knn decided); top tier ~612+3 tok, $0.000004" in line
    # The stored run's step detail says the same under the kNN's step.
    from brickwork.tui._trace import step_detail

    finished = {"kind": "node_finished", "node": "intent", "ok": True, "method": "knn"}
    [step] = steps([{"kind": "node_started", "node": "intent"}, spared, finished])
    assert step.models == "knn" and step.cost_usd == 0
    assert "no call (knn decided); top tier ~612+3 tok, $0.000004" in step_detail(step).plain
