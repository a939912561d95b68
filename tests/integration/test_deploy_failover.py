"""A replica killed mid-run loses no run, and another replica resumes it from its checkpoint.

Replica A is a child process: an `App` on the real PostgreSQL (run store and checkpointer)
that finishes a few runs, then starts more that hang in their second node
(`tests/fixtures/hang_graph.py`) after the first one's checkpoint. While A lives, its runs
show "running" and nobody else can advance them; once A is killed (SIGKILL, nothing closed),
the runs it had in flight become "interrupted" with an error saying how to resume them, and
replica B resumes them from their checkpoints (the first node is not run again): through
`App.aresume`, and through the HTTP front (`POST /v1/runs/{id}/resume`). Override the
database with BRICKWORK_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.instant_server import InstantServer
from brickwork.app import App
from brickwork.deploy import FrontSpec, build_front
from brickwork.deploy.locks import hold_run
from brickwork.errors import RunInProgress
from brickwork.events import ModelCallEvent
from brickwork.http.idempotency import run_id_for
from brickwork.store import RunStore
from brickwork.testing import FunctionModel

pytestmark = pytest.mark.postgres

PG_URL = os.environ.get("BRICKWORK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parents[2]
GRAPH = str(ROOT / "tests" / "fixtures" / "hang_graph.py")
IN_FLIGHT = 4

REPLICA_A = textwrap.dedent(
    """
    import asyncio, sys
    from brickwork.app import App
    from brickwork.store import RunStore
    from brickwork.testing import FunctionModel

    async def main() -> None:
        graph, url, *hanging = sys.argv[1:]
        async with FunctionModel(lambda body: '{"n": 7}').pool() as pool:
            app = App.from_graph(graph, pool=pool, store=RunStore(url), checkpoints=url)
            for _ in range(3):
                result = await app.ainvoke("seven")
                print("done", result.run_id, result.status, flush=True)
            await asyncio.gather(
                *(app.ainvoke(f"seven (hang) {r}", run_id=r) for r in hanging)
            )

    asyncio.run(main())
    """
)


def _lines(process: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.strip())

    threading.Thread(target=read, daemon=True).start()
    return lines


def _never_called(body: dict[str, Any]) -> str:
    raise AssertionError(f"a resumed run called the model again: {body['messages'][-1]}")


async def test_a_killed_replicas_runs_are_interrupted_and_resumed_elsewhere() -> None:
    hanging = [f"failover-{uuid.uuid4().hex[:10]}" for _ in range(IN_FLIGHT)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BRICKWORK_TEST_HANG": "1"}
    replica_a = subprocess.Popen(
        [sys.executable, "-c", REPLICA_A, GRAPH, PG_URL, *hanging],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    store = RunStore(PG_URL)
    try:
        lines = _lines(replica_a)
        done, waiting = [], set(hanging)
        while waiting:
            line = lines.get(timeout=120)  # A is up and running (or this fails)
            kind, *rest = line.split()
            if kind == "done":
                done.append((rest[0], rest[1]))
            elif kind == "hanging":
                waiting.discard(rest[-1])
        async with FunctionModel(_never_called).pool() as pool:
            b = App.from_graph(GRAPH, pool=pool, store=store, checkpoints=PG_URL)
            await b.astart()  # A lives: B's start recovers none of A's runs
            for run_id in hanging:
                found = store.run(run_id)
                assert found is not None and found[0].status == "running", run_id
                # The first node's checkpoint is written behind the second node: wait for it.
                config = {"configurable": {"thread_id": run_id}}
                while (await b._compiled.aget_state(config)).next != ("finish",):
                    await asyncio.sleep(0.05)
            # Nobody advances a run another live replica is running.
            with pytest.raises(RunInProgress, match=hanging[0]):
                await b.aresume(hanging[0])
            assert store.recover(hanging[0]) == []

            replica_a.send_signal(signal.SIGKILL)
            assert replica_a.wait(timeout=30) == -signal.SIGKILL

            # A new replica's start finds A's runs orphaned and says so in the store.
            c = App.from_graph(GRAPH, pool=pool, store=store, checkpoints=PG_URL)
            await c.astart()
            for run_id, status in done:
                assert status == "ok" and store.run(run_id)[0].status == "ok"  # type: ignore[index]
            for run_id in hanging:
                summary = store.run(run_id)[0]  # type: ignore[index]
                assert summary.status == "interrupted", run_id
                assert "the process running it ended before the run did" in (summary.error or "")
                assert f"/v1/runs/{run_id}/resume" in (summary.error or "")

            # Replica C resumes one from its checkpoint: the model is not called again.
            result = await c.aresume(hanging[0])
            assert (result.status, result.answer) == ("ok", "n=7")
            assert not [e for e in result.events if isinstance(e, ModelCallEvent)]
            summary, events = store.run(hanging[0])  # type: ignore[misc]
            assert (summary.status, summary.text) == ("ok", f"seven (hang) {hanging[0]}")
            assert events[-1]["kind"] == "run_finished"
            await b.aclose()
            await c.aclose()

        # The others through the HTTP front of another replica (its model is never needed).
        with InstantServer() as server:
            spec = FrontSpec(graphs=(GRAPH,), store=PG_URL, url=server.base_url)
            front = build_front(spec)
            async with front.router.lifespan_context(front):
                transport = httpx.ASGITransport(app=front)
                async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
                    for run_id in hanging[1:]:
                        shown = await client.get(f"/v1/runs/{run_id}")
                        assert shown.json()["status"] == "interrupted"
                        resumed = await client.post(f"/v1/runs/{run_id}/resume")
                        assert resumed.status_code == 200, resumed.text
                        assert resumed.json()["choices"][0]["message"]["content"] == "n=7"
                        again = await client.post(f"/v1/runs/{run_id}/resume")
                        assert again.status_code == 409
                        assert again.json()["error"]["code"] == "not_interrupted"
                        trace = (await client.get(f"/v1/runs/{run_id}")).json()
                        assert trace["status"] == "ok"
                        assert "model_call" not in {e["kind"] for e in trace["events"]}
    finally:
        if replica_a.poll() is None:
            replica_a.kill()
            replica_a.wait(timeout=30)
        store.close()


async def test_a_cancelled_run_is_interrupted_and_resumes_in_another_app(monkeypatch) -> None:
    monkeypatch.setenv("BRICKWORK_TEST_HANG", "1")
    run_id = f"cancelled-{uuid.uuid4().hex[:10]}"
    store_a, store_b = RunStore(PG_URL), RunStore(PG_URL)  # two replicas' connections
    try:
        async with FunctionModel(lambda body: '{"n": 7}').pool() as pool:
            a = App.from_graph(GRAPH, pool=pool, store=store_a, checkpoints=PG_URL)
            task = asyncio.create_task(a.ainvoke(f"seven (hang) {run_id}", run_id=run_id))
            config = {"configurable": {"thread_id": run_id}}
            while a._compiled is None or (await a._compiled.aget_state(config)).next != ("finish",):
                await asyncio.sleep(0.05)
            assert store_b.run(run_id)[0].status == "running"  # type: ignore[index]
            task.cancel()  # e.g. the client went away
            with pytest.raises(asyncio.CancelledError):
                await task
            while (summary := store_b.run(run_id)[0]).status == "running":  # type: ignore[index]
                await asyncio.sleep(0.05)
            assert summary.status == "interrupted"
            assert "cancelled before it finished" in (summary.error or "")
            await a.aclose()

        monkeypatch.delenv("BRICKWORK_TEST_HANG")
        async with FunctionModel(_never_called).pool() as pool:
            b = App.from_graph(GRAPH, pool=pool, store=store_b, checkpoints=PG_URL)
            result = await b.aresume(run_id)
            await b.aclose()
        assert (result.status, result.answer) == ("ok", "n=7")
        assert store_b.run(run_id)[0].status == "ok"  # type: ignore[index]
    finally:
        store_a.close()
        store_b.close()


async def test_a_keyed_retry_on_another_replica_waits_for_a_live_run_then_resumes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a client retrying with its Idempotency-Key meets on another replica's front."""
    monkeypatch.setenv("BRICKWORK_TEST_HANG", "1")
    key = f"key-{uuid.uuid4()}"
    run_id = run_id_for("default", key)
    text = f"seven (hang) {run_id}"
    body = {"model": "hang_step", "messages": [{"role": "user", "content": text}]}
    headers = {"Idempotency-Key": key}
    store_a = RunStore(PG_URL)
    try:
        with InstantServer() as server:
            front = build_front(FrontSpec(graphs=(GRAPH,), store=PG_URL, url=server.base_url))
            async with front.router.lifespan_context(front):
                transport = httpx.ASGITransport(app=front)
                async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
                    # Replica A runs the keyed run (its request went to A), hanging mid-run.
                    async with FunctionModel(lambda body: '{"n": 7}').pool() as pool:
                        a = App.from_graph(GRAPH, pool=pool, store=store_a, checkpoints=PG_URL)
                        task = asyncio.create_task(a.ainvoke(text, run_id=run_id))
                        config = {"configurable": {"thread_id": run_id}}
                        while a._compiled is None or (
                            await a._compiled.aget_state(config)
                        ).next != ("finish",):
                            await asyncio.sleep(0.05)
                        busy = await client.post("/v1/chat/completions", json=body, headers=headers)
                        assert busy.status_code == 409, busy.text
                        assert busy.json()["error"]["code"] == "run_in_progress"
                        assert busy.headers["retry-after"] == "1"
                        assert busy.headers["x-should-retry"] == "true"
                        task.cancel()  # A goes away mid-run
                        with pytest.raises(asyncio.CancelledError):
                            await task
                        while store_a.run(run_id)[0].status == "running":  # type: ignore[index]
                            await asyncio.sleep(0.05)
                        await a.aclose()
                    monkeypatch.delenv("BRICKWORK_TEST_HANG")

                    # A resume of the run under way elsewhere holds its lock: the retry waits.
                    async with hold_run(PG_URL, run_id) as held:
                        assert held
                        busy = await client.post("/v1/chat/completions", json=body, headers=headers)
                        assert busy.status_code == 409, busy.text

                    # The retry resumes the interrupted run from its checkpoint, once.
                    resumed = await client.post("/v1/chat/completions", json=body, headers=headers)
                    assert resumed.status_code == 200, resumed.text
                    assert resumed.json()["brickwork"]["run_id"] == run_id
                    assert resumed.json()["choices"][0]["message"]["content"] == "n=7"
                    assert "idempotent-replayed" not in resumed.headers
                    trace = (await client.get(f"/v1/runs/{run_id}")).json()
                    assert trace["status"] == "ok"
                    assert "model_call" not in {e["kind"] for e in trace["events"]}
                    replay = await client.post("/v1/chat/completions", json=body, headers=headers)
                    assert replay.status_code == 200
                    assert replay.headers["idempotent-replayed"] == "true"
                    assert replay.json()["choices"] == resumed.json()["choices"]
        assert [s.run_id for s in store_a.runs(search=run_id)] == [run_id]
    finally:
        store_a.close()
