"""The inline SQLite checkpointer: grouped commits, shared per file, durable where promised.

Also when a run's graph state is written (`App(durability=...)`, `default_durability`).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import types
from pathlib import Path
from typing import Any

import pytest

from brickwork.agents.base import AgentResult
from brickwork.agents.extract import ExtractAgent
from brickwork.app import App
from brickwork.graphs import GraphModule, load_graph
from brickwork.graphs.builder import END, Specialist, build_graph, default_durability
from brickwork.serving.pool import ModelPool
from brickwork.skills.skill import JSONContract, Skill
from brickwork.testing import FunctionModel

GRAPH = str(Path(__file__).resolve().parents[1] / "fixtures" / "two_step_graph.py")


def _answer(body: dict[str, Any]) -> str:
    return '{"n": 7}'


async def test_apps_sharing_a_checkpoint_file_run_together(tmp_path: Path) -> None:
    # Grouped commits keep a write transaction open until the commit: two connections to
    # one file on one event loop would wait on each other's lock with the loop blocked.
    path = tmp_path / "checkpoints.sqlite"
    async with FunctionModel(_answer).pool() as pool:
        apps = [App.from_graph(GRAPH, pool=pool, checkpoints=path, store=None) for _ in range(2)]
        started = time.monotonic()
        results = await asyncio.gather(*(app.ainvoke("seven") for app in apps * 10))
        took = time.monotonic() - started
        for app in apps:
            await app.aclose()
    assert [r.status for r in results] == ["ok"] * 20, {r.error for r in results}
    assert took < 10.0


async def test_an_interrupted_run_is_committed_before_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.sqlite"
    async with FunctionModel(_answer).pool() as pool:
        app = App.from_graph(GRAPH, pool=pool, checkpoints=path, store=None)
        app.graph.module.CRASH["armed"] = True
        crashed = await app.ainvoke("seven")
        # Another connection, as another process would open it, sees the state at once.
        with sqlite3.connect(path) as conn:
            threads = {r[0] for r in conn.execute("SELECT DISTINCT thread_id FROM checkpoints")}
        await app.aclose()
    assert crashed.status == "error"
    assert crashed.run_id in threads


SKILL = Skill(
    name="number",
    instructions="Give the number.",
    contract=JSONContract({"type": "object", "properties": {"n": {"type": "integer"}}}),
)
#: Set to True to make the one-node graph's node wait until its run times out (once).
HANG = {"armed": False}


class _Agent:
    """The extraction agent, except that it hangs once when `HANG` is armed."""

    async def run(self, input: Any, *, pool: ModelPool, model: str | None = None) -> AgentResult:
        if HANG["armed"]:
            HANG["armed"] = False
            await asyncio.Event().wait()
        result: AgentResult = await ExtractAgent(SKILL).run(input, pool=pool, model=model)
        return result


def _one_node() -> GraphModule:
    module = types.ModuleType("one_node")
    module.build = lambda *, checkpointer=None: build_graph(  # type: ignore[attr-defined]
        [Specialist("number", _Agent(), lambda s: s["text"], next=END)],
        checkpointer=checkpointer,
    )
    return GraphModule("one_node", module)


def _threads(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT thread_id FROM checkpoints")}


def test_one_node_graphs_checkpoint_on_exit_longer_ones_after_every_step() -> None:
    assert default_durability(_one_node().build()) == "exit"
    assert default_durability(load_graph(GRAPH).build()) == "async"
    assert default_durability(object()) == "async"  # nodes unknown: LangGraph's default


async def test_a_finished_one_node_run_writes_nothing_to_the_checkpoint_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run's exit checkpoint and its deletion share one commit when the deletion comes within
    # the commit window (10 ms). On a loaded machine a run's last steps can take longer than
    # that, and the test then failed now and then; a wider window keeps it about the design.
    monkeypatch.setattr("brickwork._checkpoints.COMMIT_WINDOW_S", 0.5)
    path = tmp_path / "state.sqlite"
    statements: list[str] = []
    async with FunctionModel(lambda body: '{"n": 7}').pool() as pool:
        app = App(_one_node(), pool=pool, checkpoints=path, store=None)
        await app.astart()
        saver = app._compiled.checkpointer
        saver.conn.set_trace_callback(statements.append)
        serialised: list[Any] = []
        dumps = saver.serde.dumps_typed
        saver.serde.dumps_typed = lambda value: serialised.append(value) or dumps(value)
        results = [await app.ainvoke("seven") for _ in range(3)]
        results += await asyncio.gather(*(app.ainvoke("seven") for _ in range(8)))
        await asyncio.sleep(0.6)  # past the commit window: the commit has run
        written = [s for s in statements if not s.lstrip().upper().startswith("SELECT")]
        await app.aclose()
    assert all(r.ok and r.outputs["number"] == {"n": 7} for r in results)
    # The runs' state was serialised on exit and dropped with the run, never written.
    assert written == []
    # Nor read: the App made up the runs' ids, so there was nothing to look for.
    assert [s for s in statements if s.lstrip().upper().startswith("SELECT")] == []
    # Nor even serialised: a checkpoint taken as a run stops waits for the commit as it is.
    assert serialised == []
    assert _threads(path) == set()


async def test_a_run_id_the_caller_gave_is_looked_up(tmp_path: Path) -> None:
    # Only ids the App mints skip the read of the thread's last checkpoint: a given id may
    # have one (here: a run that timed out, run again under the same id, resumes it).
    path = tmp_path / "state.sqlite"
    statements: list[str] = []
    async with FunctionModel(lambda body: '{"n": 7}').pool() as pool:
        app = App(_one_node(), pool=pool, checkpoints=path, store=None)
        await app.astart()
        app._compiled.checkpointer.conn.set_trace_callback(statements.append)
        given = await app.ainvoke("seven", run_id="given-id")
        await app.aclose()
    assert given.ok
    assert any(s.lstrip().upper().startswith("SELECT") for s in statements)


def test_langgraph_reads_the_savers_put_writes_signature_without_inspecting_it() -> None:
    from langgraph.pregel._checkpoint import put_writes_accepts_task_path

    from brickwork._checkpoints import InlineSqliteSaver

    conn = sqlite3.connect(":memory:", check_same_thread=False)
    saver = InlineSqliteSaver(conn)
    assert put_writes_accepts_task_path(saver.aput_writes)
    assert put_writes_accepts_task_path(saver.put_writes)
    assert "__signature__" in vars(InlineSqliteSaver.aput_writes)
    conn.close()


async def test_a_one_node_run_that_times_out_keeps_its_checkpoint_and_resumes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite"
    async with FunctionModel(lambda body: '{"n": 7}').pool() as pool:
        app = App(_one_node(), pool=pool, checkpoints=path, store=None)
        HANG["armed"] = True
        stopped = await app.ainvoke("seven", timeout_s=0.2)
        assert stopped.status == "timeout"
        assert _threads(path) == {stopped.run_id}  # committed before ainvoke returned
        await app.aclose()
        again = App(_one_node(), pool=pool, checkpoints=path, store=None)
        resumed = await again.aresume(stopped.run_id)
        await again.aclose()
    assert resumed.ok and resumed.outputs["number"] == {"n": 7}
    assert _threads(path) == set()


@pytest.mark.parametrize("durability", ["exit", "async", "sync"])
async def test_a_run_that_failed_in_its_second_node_resumes_there_whatever_the_durability(
    tmp_path: Path, durability: Any
) -> None:
    path = tmp_path / "state.sqlite"
    calls: list[dict[str, Any]] = []

    def answer(body: dict[str, Any]) -> str:
        calls.append(body)
        return '{"n": 7}'

    async with FunctionModel(answer).pool() as pool:
        app = App.from_graph(GRAPH, pool=pool, checkpoints=path, durability=durability)
        app.graph.module.CRASH["armed"] = True
        crashed = await app.ainvoke("seven")
        await app.aclose()
        assert crashed.status == "error" and len(calls) == 1
        again = App.from_graph(GRAPH, pool=pool, checkpoints=path, durability=durability)
        resumed = await again.aresume(crashed.run_id)
        await again.aclose()
    assert resumed.ok and resumed.answer == "n=7"
    assert len(calls) == 1  # the first node was not run again


async def test_writes_wait_for_the_commit_and_reads_see_them(tmp_path: Path) -> None:
    from langgraph.checkpoint.base import empty_checkpoint

    from brickwork._checkpoints import COMMIT_WINDOW_S, InlineSqliteSaver

    path = tmp_path / "state.sqlite"
    saver = InlineSqliteSaver.open(path)
    try:

        def put(thread: str) -> dict[str, Any]:
            config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
            stored = saver.put(config, empty_checkpoint(), {"step": -1}, {})
            saver.put_writes(stored, [("outputs", {"n": 7})], "task-1")
            return stored

        assert saver.get_tuple({"configurable": {"thread_id": "kept"}}) is None
        assert saver.get_tuple({"configurable": {"thread_id": "dropped"}}) is None
        stored = put("kept")
        put("dropped")
        assert _threads(path) == set()  # nothing committed yet: another connection sees none
        found = saver.get_tuple(stored)  # the saver's own reads see its writes at once
        assert found is not None and found.pending_writes == [("task-1", "outputs", {"n": 7})]
        saver.delete_thread("dropped")  # never written: no statement at all
        await asyncio.sleep(COMMIT_WINDOW_S * 5)
        assert _threads(path) == {"kept"}
        saver.delete_thread("kept")  # written: deleted in the database
        saver.commit()
        assert _threads(path) == set()
    finally:
        saver.close()


def test_a_synchronous_caller_commits_at_once(tmp_path: Path) -> None:
    from langgraph.checkpoint.base import empty_checkpoint

    from brickwork._checkpoints import InlineSqliteSaver

    path = tmp_path / "state.sqlite"
    saver = InlineSqliteSaver.open(path)
    try:
        config: Any = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        saver.put(config, empty_checkpoint(), {"step": -1}, {})
        assert _threads(path) == {"t"}
    finally:
        saver.close()
