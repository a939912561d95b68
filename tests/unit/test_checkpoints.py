"""The inline SQLite checkpointer: grouped commits, shared per file, durable where promised."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

from brickwork.app import App
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
