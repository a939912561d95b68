"""A run that `ainvoke` reported is durable: SIGKILL right after it loses neither it nor its state.

A child process makes runs on the default durable pieces (the inline SQLite checkpointer and a
SQLite run store), some at once, one of them crashing in its second node, prints each run id
as `ainvoke` returns it, and kills itself with SIGKILL without closing anything. The parent
then finds every printed run in the store, and resumes the crashed run from its checkpoint.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from brickwork.app import App
from brickwork.store import RunStore
from brickwork.testing import FunctionModel

GRAPH = str(Path(__file__).resolve().parents[1] / "fixtures" / "two_step_graph.py")

CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from brickwork.app import App
    from brickwork.store import RunStore
    from brickwork.testing import FunctionModel

    async def main() -> None:
        graph, store, checkpoints = sys.argv[1:4]
        async with FunctionModel(lambda body: '{"n": 7}').pool() as pool:
            app = App.from_graph(graph, pool=pool, store=RunStore(store), checkpoints=checkpoints)
            for result in await asyncio.gather(*(app.ainvoke("seven") for _ in range(8))):
                print("ok", result.run_id, flush=True)
            app.graph.module.CRASH["armed"] = True
            crashed = await app.ainvoke("seven")
            print(crashed.status, crashed.run_id, flush=True)
            last = await app.ainvoke("seven")
            print("ok", last.run_id, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # nothing closed, nothing flushed

    asyncio.run(main())
    """
)


def test_sigkill_after_ainvoke_loses_no_reported_run(tmp_path: Path) -> None:
    store_path, checkpoints = tmp_path / "runs.sqlite", tmp_path / "checkpoints.sqlite"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, GRAPH, str(store_path), str(checkpoints)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert child.returncode == -9, child.stderr
    reported = [line.split() for line in child.stdout.splitlines()]
    assert [status for status, _ in reported] == ["ok"] * 8 + ["error", "ok"]

    store = RunStore(store_path)
    try:
        for status, run_id in reported:
            found = store.run(run_id)
            assert found is not None, f"run {run_id} was reported finished but is not stored"
            assert found[0].status == status
            assert [e["kind"] for e in found[1]][-1] == "run_finished"
    finally:
        store.close()

    crashed = next(run_id for status, run_id in reported if status == "error")

    async def resume() -> str:
        async with FunctionModel(lambda body: '{"n": 7}').pool() as pool:
            app = App.from_graph(GRAPH, pool=pool, store=None, checkpoints=checkpoints)
            try:
                result = await app.aresume(crashed)
            finally:
                await app.aclose()
        return result.answer

    assert asyncio.run(resume()) == "n=7"
