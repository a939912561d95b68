"""App behaviour with the package's fake models: ledger, budgets, escalation, resume, bad input."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

from brickwork.app import App
from brickwork.cost import CPU_SELF_HOSTED, FRONTIER_REFERENCE, BudgetBook, PriceBook
from brickwork.errors import ConfigError, ServerStartError
from brickwork.events import ModelCallEvent
from brickwork.serving.client import EndpointConfig
from brickwork.serving.pool import ModelPool, PoolConfig
from brickwork.serving.resilience import RetryPolicy
from brickwork.store import RunStore
from brickwork.testing import FunctionModel, ModelStep

GRAPH = str(Path(__file__).resolve().parents[1] / "fixtures" / "two_step_graph.py")


#: The fake's frontier endpoint priced as an API (the default book prices a local stand-in as
#: our own hardware, which is honest but makes escalations nearly free).
API_PRICES = PriceBook(
    endpoints={"fake-slm": CPU_SELF_HOSTED, "fake-frontier": FRONTIER_REFERENCE},
    top_tier=FRONTIER_REFERENCE,
)


def _model(
    small: str = '{"n": 7}',
    frontier: str = '{"n": 8}',
    *,
    frontier_tokens: tuple[int, int] = (10, 5),
) -> FunctionModel:
    def answer(body: dict[str, Any]) -> ModelStep:
        if body["model"] == "fake-frontier":
            return ModelStep(frontier, prompt_tokens=frontier_tokens[0],
                             completion_tokens=frontier_tokens[1])  # fmt: skip
        return ModelStep(small)

    return FunctionModel(answer)


async def test_small_model_answer_is_accepted_and_costed(tmp_path: Path) -> None:
    model = _model()
    async with model.pool() as pool:
        app = App.from_graph(
            GRAPH, pool=pool, store=RunStore(tmp_path / "runs.sqlite"), prices=API_PRICES
        )
        result = await app.ainvoke("seven")
        await app.aclose()
    assert result.ok and result.answer == "n=7" and result.escalations == []
    calls = [e for e in result.events if isinstance(e, ModelCallEvent)]
    assert len(calls) == 1 and calls[0].model == "slm"
    assert result.cost.cost_usd == pytest.approx(sum(c.cost_usd for c in calls))
    assert result.cost.frontier_only_usd == pytest.approx(sum(c.frontier_cost_usd for c in calls))
    assert result.cost.saving_usd > 0
    stored = RunStore(tmp_path / "runs.sqlite").run(result.run_id)
    assert stored is not None and stored[0].status == "ok" and stored[0].answer == "n=7"
    assert stored[1][0]["kind"] == "run_started"


async def test_invalid_small_output_escalates_exactly_that_node() -> None:
    model = _model(small='{"n": -1}')
    async with model.pool() as pool:
        app = App.from_graph(GRAPH, pool=pool)
        result = await app.ainvoke("eight")
        await app.aclose()
    assert result.ok and result.answer == "n=8"
    assert result.escalations == [{"node": "number", "reason": "validation_failed"}]
    models = [e.model for e in result.events if isinstance(e, ModelCallEvent)]
    assert models == ["slm", "slm", "frontier"]  # first try, one repair, then the frontier
    assert "frontier_stand_in" in result.flags


async def test_slm_mode_never_escalates_and_frontier_mode_always_does() -> None:
    model = _model(small='{"n": -1}')
    async with model.pool() as pool:
        app = App.from_graph(GRAPH, pool=pool)
        slm = await app.ainvoke("x", mode="slm")
        frontier = await app.ainvoke("x", mode="frontier")
        await app.aclose()
    assert slm.status == "failed" and "validation_failed" in (slm.error or "")
    assert frontier.ok and frontier.escalations == [{"node": "number", "reason": "frontier_mode"}]
    assert [e.model for e in frontier.events if isinstance(e, ModelCallEvent)] == ["frontier"]


async def test_exhausted_budget_blocks_the_escalation_and_flags_the_run() -> None:
    model = _model(small='{"n": -1}')
    async with model.pool() as pool:
        app = App.from_graph(GRAPH, pool=pool)
        result = await app.ainvoke("x", budget_usd=0.000001)
        await app.aclose()
    assert result.status == "over_budget"
    assert "number:budget_exhausted" in result.flags
    assert not any(e.model == "frontier" for e in result.events if isinstance(e, ModelCallEvent))


async def test_budget_is_never_exceeded_under_50_concurrent_runs() -> None:
    from brickwork.run_context import ESCALATION_OUTPUT_TOKENS, ESCALATION_PROMPT_TOKENS

    # Every escalation really costs what was reserved for it, so the budget must bind.
    model = _model(
        small='{"n": -1}', frontier_tokens=(ESCALATION_PROMPT_TOKENS, ESCALATION_OUTPUT_TOKENS)
    )
    async with model.pool() as pool:
        probe = App.from_graph(GRAPH, pool=pool, prices=API_PRICES)
        await probe.ainvoke("warm up", mode="slm")  # starts the app to read the estimate
        estimate = probe.ledger.prices.frontier_reference  # type: ignore[union-attr]
        await probe.aclose()
        from brickwork.cost.prices import estimate_cost

        one = estimate_cost(estimate, ESCALATION_PROMPT_TOKENS, ESCALATION_OUTPUT_TOKENS)
        limit = one * 10.5  # room for at most 10 escalations (small calls cost a little too)
        budgets = BudgetBook({"acme": limit})
        app = App.from_graph(GRAPH, pool=pool, budgets=budgets, prices=API_PRICES)
        results = await asyncio.gather(*(app.ainvoke(f"r{i}", tenant="acme") for i in range(50)))
        await app.aclose()
    escalated = [r for r in results if r.escalations]
    refused = [r for r in results if r.status == "over_budget"]
    assert 1 <= len(escalated) <= 10 and len(escalated) + len(refused) == 50
    tenant = budgets.tenant("acme")
    assert tenant is not None and tenant.spent_usd <= limit and tenant.reserved_usd == 0
    spent = sum(r.cost.cost_usd for r in results)
    assert spent == pytest.approx(tenant.spent_usd)


POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.mark.parametrize("where", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_interrupted_run_resumes_from_its_checkpoint(tmp_path: Path, where: str) -> None:
    from tests.fixtures import two_step_graph

    model = _model()
    checkpoints = tmp_path / "state.sqlite" if where == "sqlite" else POSTGRES_URL
    async with model.pool() as pool:
        app = App.from_graph(GRAPH, pool=pool, checkpoints=checkpoints)
        module = app.graph.module
        module.CRASH["armed"] = True
        crashed = await app.ainvoke("seven")
        assert crashed.status == "error" and "simulated crash" in (crashed.error or "")
        calls_before = len(model.requests)
        await app.aclose()  # as if the process had died: a new App resumes from the file
        again = App.from_graph(GRAPH, pool=pool, checkpoints=checkpoints)
        resumed = await again.aresume(crashed.run_id)
        await again.aclose()
    assert resumed.ok and resumed.answer == "n=7"
    assert len(model.requests) == calls_before  # the first node was not run again
    assert two_step_graph is not None


@pytest.mark.parametrize("keep", [False, True])
async def test_a_finished_run_leaves_no_checkpoints_unless_asked(
    tmp_path: Path, keep: bool
) -> None:
    import sqlite3

    checkpoints = tmp_path / "state.sqlite"
    async with _model().pool() as pool:
        app = App.from_graph(GRAPH, pool=pool, checkpoints=checkpoints, keep_checkpoints=keep)
        done = await app.ainvoke("seven")
        app.graph.module.CRASH["armed"] = True
        crashed = await app.ainvoke("seven")
        await app.aclose()
    assert done.ok and crashed.status == "error"
    with sqlite3.connect(checkpoints) as conn:
        threads = {row[0] for row in conn.execute("SELECT DISTINCT thread_id FROM checkpoints")}
    # An interrupted run always keeps what `aresume` needs; a finished one only when asked.
    assert threads == ({done.run_id, crashed.run_id} if keep else {crashed.run_id})


def test_the_wal_is_checkpointed_off_the_writing_thread_and_truncated_on_close(
    tmp_path: Path,
) -> None:
    import time

    from brickwork._checkpoints import InlineSqliteSaver, WalCheckpointer

    path = tmp_path / "state.sqlite"
    saver = InlineSqliteSaver.open(path)
    assert saver.wal is not None
    saver.wal.stop()  # replaced by one with a small threshold, polling fast
    saver.wal = WalCheckpointer(path, threshold_bytes=64 * 1024, interval_s=0.01).start()
    assert saver.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    wal = Path(f"{path}-wal")
    blob = b"x" * 4096
    saver.conn.execute("CREATE TABLE t (b BLOB)")
    deadline = time.monotonic() + 30
    while saver.wal.checkpoints == 0:
        assert time.monotonic() < deadline, "the log was never checkpointed"
        with saver.conn:
            saver.conn.executemany("INSERT INTO t VALUES (?)", [(blob,)] * 16)
        time.sleep(0.005)
    size = wal.stat().st_size
    for _ in range(200):  # the log restarts from its start: it does not grow without bound
        with saver.conn:
            saver.conn.executemany("INSERT INTO t VALUES (?)", [(blob,)] * 16)
        time.sleep(0.005)
    assert wal.stat().st_size < 40 * size
    rows = saver.conn.execute("SELECT COUNT(*) FROM t").fetchone()[0]
    saver.close()
    assert not wal.exists() or wal.stat().st_size == 0
    import sqlite3

    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == rows


@pytest.mark.parametrize(
    ("text", "match"),
    [("", "empty"), ("   ", "empty"), ("x" * 1_000_001, "limit is 20000")],
)
async def test_bad_text_is_refused_before_any_model_call(text: str, match: str) -> None:
    model = _model()
    async with model.pool() as pool:
        app = App.from_graph(GRAPH, pool=pool)
        with pytest.raises(ConfigError, match=match):
            await app.ainvoke(text)
        await app.aclose()
    assert model.requests == []


def test_unknown_graph_and_mode() -> None:
    with pytest.raises(ConfigError, match="unknown graph 'nope'.*smart_home"):
        App.from_graph("nope")
    with pytest.raises(ConfigError, match="does not exist"):
        App.from_graph("/no/such/graph.py")


async def test_invalid_mode_is_refused() -> None:
    model = _model()
    async with model.pool() as pool:
        app = App.from_graph(GRAPH, pool=pool)
        with pytest.raises(ConfigError, match="mode must be"):
            await app.ainvoke("x", mode="turbo")
        await app.aclose()


def test_sync_invoke_works_from_plain_code() -> None:
    model = _model()
    pool = model.pool()
    app = App.from_graph(GRAPH, pool=pool)
    try:
        first = app.invoke("seven")
        second = app.invoke("seven again")
    finally:
        app.close()
    assert first.answer == second.answer == "n=7" and first.run_id != second.run_id


async def test_model_server_error_becomes_a_clear_failed_run() -> None:
    model = FunctionModel(lambda body: ModelStep(status=500, text="boom"))
    async with model.pool() as pool:
        app = App.from_graph(GRAPH, pool=pool)
        result = await app.ainvoke("x")
        await app.aclose()
    assert result.status == "failed"
    assert "model_error" in (result.error or "") or "escalation_failed" in " ".join(result.flags)
    json.dumps([e.to_dict() for e in result.events])  # the trace is JSON-able


# -- model instances ----------------------------------------------------------------------------


def _vllm_like_pool(model: FunctionModel, *, kv: float = 0.5) -> ModelPool:
    """`slm` and a stand-in `frontier` on one fake vLLM that also answers its GET routes."""
    metrics = (
        'vllm:num_requests_running{model_name="fake-slm"} 1\n'
        'vllm:num_requests_waiting{model_name="fake-slm"} 4\n'
        f'vllm:kv_cache_usage_perc{{model_name="fake-slm"}} {kv}\n'
    )
    models = {"data": [{"id": "fake-slm", "parent": None}, {"id": "intent", "parent": "fake-slm"}]}

    def handle(request: httpx2.Request) -> httpx2.Response:
        if request.method == "GET":
            routes = {
                "/health": httpx2.Response(200),
                "/v1/models": httpx2.Response(200, json=models),
                "/metrics": httpx2.Response(200, text=metrics),
            }
            return routes.get(request.url.path, httpx2.Response(404))
        return model._handle(request)

    def endpoint(name: str, stand_in: bool) -> EndpointConfig:
        return EndpointConfig(
            name=name, base_url="http://vllm.fake/v1", model="fake-slm", stand_in=stand_in
        )

    config = PoolConfig(
        models={"slm": [endpoint("local", False)], "frontier": [endpoint("stand-in", True)]},
        retry=RetryPolicy(max_retries=0),
    )
    return ModelPool(
        config,
        http_client_factory=lambda _: httpx2.AsyncClient(transport=httpx2.MockTransport(handle)),
    )


@dataclass
class FakeServer:
    """What `App.restart_instance` uses of a `VLLMServer`: it records stop and start."""

    base_url: str
    restarts: int = 2
    status: str = "ready"
    ready_timeout_s: float = 300.0
    calls: list[str] = field(default_factory=list)
    fail_start: bool = False

    def stop(self) -> None:
        self.calls.append("stop")
        self.status = "stopped"

    def start(self) -> FakeServer:
        self.calls.append(f"start(timeout={self.ready_timeout_s:g})")
        if self.fail_start:
            self.status = "failed"
            raise ServerStartError("the server did not come back")
        self.restarts = 0
        self.status = "ready"
        return self


@dataclass
class FakeLocal:
    """A `LocalServing` that launched `server`."""

    server: FakeServer | None
    base_url: str = "http://vllm.fake/v1"
    origin: str = "private vLLM at http://vllm.fake/v1"

    def stop(self) -> None:
        self.server = None


async def test_instances_join_the_pool_and_what_the_servers_say() -> None:
    model = _model()
    async with _vllm_like_pool(model) as pool:
        app = App.from_graph(GRAPH, pool=pool, checkpoints=None)
        assert (await app.ainvoke("seven")).ok
        found = {i.name: i for i in await app.instances()}
        await app.aclose()
    assert set(found) == {"local", "stand-in"}
    local = found["local"]
    assert local.serves == ("slm",) and local.kind == "vllm" and local.circuit == "closed"
    assert local.calls == 1 and local.failures == 0 and local.in_flight == 0
    assert (local.health, local.running, local.waiting, local.kv_cache_usage) == ("ok", 1, 4, 0.5)
    assert local.adapters == ("intent",)
    assert not local.launched and not local.restartable and local.restarts is None
    assert local.origin == "external server"
    assert found["stand-in"].stand_in and found["stand-in"].serves == ("frontier",)


async def test_restart_refuses_servers_this_app_did_not_launch() -> None:
    async with _vllm_like_pool(_model()) as pool:
        app = App.from_graph(GRAPH, pool=pool, checkpoints=None)
        with pytest.raises(ConfigError, match="no endpoint named 'nope'.*known: local, stand-in"):
            await app.restart_instance("nope")
        with pytest.raises(ConfigError, match="did not start .*Restart it where it runs"):
            await app.restart_instance("local")
        # A reused `brickwork serve`: the LocalServing has a record, no server of its own.
        app._local = FakeLocal(None, origin="brickwork serve (pid 42) at http://vllm.fake/v1")
        with pytest.raises(ConfigError, match=r"served by brickwork serve \(pid 42\)"):
            await app.restart_instance("local")
        app._local = None
        await app.aclose()


async def test_restart_stops_and_starts_the_launched_server_and_counts_it() -> None:
    server = FakeServer("http://vllm.fake/v1")
    async with _vllm_like_pool(_model()) as pool:
        app = App.from_graph(GRAPH, pool=pool, checkpoints=None)
        app._local = FakeLocal(server)
        before = {i.name: i for i in await app.instances()}
        assert before["local"].restartable and before["local"].restarts == 2
        assert before["local"].status == "ready"
        assert before["local"].origin == "private vLLM at http://vllm.fake/v1"
        await app.restart_instance("stand-in", timeout_s=42)
        assert server.calls == ["stop", "start(timeout=42)"] and server.ready_timeout_s == 300
        after = {i.name: i for i in await app.instances()}
        assert after["local"].restarts == 3  # two crash restarts before, and this one
        server.fail_start = True
        with pytest.raises(ServerStartError, match="did not come back"):
            await app.restart_instance("local")
        app._local = None
        await app.aclose()


async def test_instances_before_the_pool_starts_is_a_clear_error() -> None:
    app = App.from_graph(GRAPH, checkpoints=None)
    with pytest.raises(ConfigError, match="the pool starts with the first run"):
        await app.instances()
