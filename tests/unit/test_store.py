"""The run store's queries: filters, totals, node statistics, escalations, retention, migrations."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from brickwork.app import App
from brickwork.store import SCHEMA_VERSION, RunStore, RunSummary, percentile
from brickwork.testing import FunctionModel

GRAPH = str(Path(__file__).resolve().parents[1] / "fixtures" / "two_step_graph.py")
DAY = 86_400.0


def _summary(run_id: str, **changes: Any) -> RunSummary:
    fields: dict[str, Any] = {
        "run_id": run_id, "graph": "g", "tenant": "default", "mode": "hybrid", "text": "t",
        "status": "ok", "answer": "a", "error": None, "cost_usd": 0.0,
        "frontier_only_usd": 0.0, "latency_s": 0.1, "escalations": 0, "flags": (),
        "started_at": 1000.0,
    }  # fmt: skip
    fields.update(changes)
    return RunSummary(**fields)


def _call(run_id: str, node: str, model: str, cost: float, frontier: float, **extra: Any) -> dict:
    return {
        "run_id": run_id, "kind": "model_call", "node": node, "at": 1.0, "endpoint": "e",
        "model": model, "served_model": model, "prompt_tokens": 10, "completion_tokens": 5,
        "latency_s": 0.01, "cost_usd": cost, "frontier_cost_usd": frontier,
        "stand_in": extra.get("stand_in", False), "escalated": extra.get("escalated", False),
    }  # fmt: skip


def _finished(run_id: str, node: str, latency: float, ok: bool, errors: list[str]) -> dict:
    attempts = [{"messages": [], "output": "x", "errors": errors, "model": "slm"}]
    return {
        "run_id": run_id, "kind": "node_finished", "node": node, "at": 2.0, "ok": ok,
        "latency_s": latency, "output": None, "method": "slm", "model": "slm",
        "attempts": attempts, "error": None,
    }  # fmt: skip


def _decision(run_id: str, node: str, action: str, reason: str | None) -> dict:
    return {
        "run_id": run_id, "kind": "escalation", "node": node, "at": 1.5, "action": action,
        "reason": reason, "detail": f"{action} detail", "signals": [["invalid_output", "bad"]],
    }  # fmt: skip


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.5) == pytest.approx(2.5)
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.95) == pytest.approx(4.8)
    assert percentile([7.0], 0.95) == 7.0
    assert math.isnan(percentile([], 0.5))
    with pytest.raises(ValueError, match="between 0 and 1"):
        percentile([1.0], 95)


def test_node_stats_arithmetic(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    # Run a: "n" accepted at once. Run b: "n" fails validation twice and escalates; the
    # supervisor answers on the frontier. Run c: "n" needs a repair, then is accepted.
    store.save(
        _summary("a", started_at=1.0),
        [_call("a", "n", "slm", 0.001, 0.01), _decision("a", "n", "accept", None),
         _finished("a", "n", 0.1, True, [])],
    )  # fmt: skip
    store.save(
        _summary("b", started_at=2.0, escalations=1),
        [_call("b", "n", "slm", 0.001, 0.01), _call("b", "n", "slm", 0.001, 0.01),
         _decision("b", "n", "escalate", "validation_failed"),
         _finished("b", "n", 0.3, False, ["bad"]),
         _call("b", "supervisor", "frontier", 0.02, 0.02, stand_in=False, escalated=True),
         _finished("b", "supervisor", 0.5, True, [])],
    )  # fmt: skip
    store.save(
        _summary("c", started_at=3.0, graph="other"),
        [_call("c", "n", "slm:lora", 0.002, 0.03), _decision("c", "n", "accept", None),
         _finished("c", "n", 0.2, True, ["first try was bad"])],
    )  # fmt: skip
    stats = {(s.graph, s.node): s for s in store.node_stats()}
    assert set(stats) == {("g", "n"), ("g", "supervisor"), ("other", "n")}
    n = stats["g", "n"]
    assert (n.calls, n.failed, n.validation_failures, n.escalations) == (2, 1, 1, 1)
    assert n.validation_failure_rate == 0.5 and n.escalation_rate == 0.5
    assert n.p50_s == pytest.approx(0.2) and n.p95_s == pytest.approx(0.29)
    assert n.model_calls == 3 and (n.prompt_tokens, n.completion_tokens) == (30, 15)
    assert n.cost_usd == pytest.approx(0.003)
    # Only run a's call counts in the counterfactual: run b's node went to the frontier.
    assert n.frontier_only_usd == pytest.approx(0.01)
    assert n.cost_avoided_usd == pytest.approx(0.007)
    supervisor = stats["g", "supervisor"]
    assert supervisor.calls == 1 and supervisor.escalations == 0
    assert supervisor.cost_usd == supervisor.frontier_only_usd == pytest.approx(0.02)
    other = stats["other", "n"]
    assert other.validation_failures == 1 and other.escalation_rate == 0.0
    assert other.frontier_only_usd == pytest.approx(0.03)
    assert [s.node for s in store.node_stats(graph="other")] == ["n"]
    assert {s.graph for s in store.node_stats(since=2.0)} == {"g", "other"}
    assert [(s.graph, s.calls) for s in store.node_stats(since=2.5)] == [("other", 1)]


def test_run_filters_and_totals(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    store.save(_summary("1", started_at=10.0, cost_usd=0.5, frontier_only_usd=2.0), [])
    store.save(_summary("2", started_at=20.0, status="failed", cost_usd=0.25), [])
    third = _summary("3", started_at=30.0, escalations=2, graph="h", cost_usd=1.0,
                     frontier_only_usd=1.5)  # fmt: skip
    store.save(third, [])
    assert [r.run_id for r in store.runs()] == ["3", "2", "1"]
    assert [r.run_id for r in store.runs(graph="g")] == ["2", "1"]
    assert [r.run_id for r in store.runs(status="failed")] == ["2"]
    assert [r.run_id for r in store.runs(escalated=True)] == ["3"]
    assert [r.run_id for r in store.runs(escalated=False, graph="g", status="ok")] == ["1"]
    assert [r.run_id for r in store.runs(limit=1)] == ["3"]
    assert [r.run_id for r in store.runs(since=20.0)] == ["3", "2"]
    assert store.graphs() == ["g", "h"]
    totals = store.totals()
    assert (totals.runs, totals.ok, totals.escalated) == (3, 2, 1)
    assert totals.cost_usd == pytest.approx(1.75)
    assert totals.frontier_only_usd == pytest.approx(3.5)
    assert totals.cost_avoided_usd == pytest.approx(1.75)
    assert totals.escalation_rate == pytest.approx(1 / 3)
    assert (totals.first_at, totals.last_at) == (10.0, 30.0)
    recent = store.totals(graph="g", since=15.0)
    assert (recent.runs, recent.ok, recent.cost_usd) == (1, 0, 0.25)
    empty = store.totals(graph="nope")
    assert empty.runs == 0 and empty.escalation_rate == 0.0 and empty.first_at is None


def test_escalation_queue_filters(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    a = [_decision("a", "x", "escalate", "validation_failed"), _decision("a", "y", "accept", None)]
    b = [
        _decision("b", "y", "escalate", "tool_error"),
        _decision("b", "x", "fail", "budget_exhausted"),
    ]
    store.save(_summary("a", graph="g"), a)
    store.save(_summary("b", graph="h"), b)
    assert {(e.run_id, e.node) for e in store.escalations()} == {("a", "x"), ("b", "y")}
    assert [e.node for e in store.escalations(graph="h")] == ["y"]
    assert [e.run_id for e in store.escalations(node="x")] == ["a"]
    [tool] = store.escalations(reason="tool_error")
    assert tool.graph == "h" and tool.signals == (("invalid_output", "bad"),)
    assert tool.detail == "escalate detail"
    assert [e.reason for e in store.escalations(actions=("fail",))] == ["budget_exhausted"]
    assert len(store.escalations(actions=("escalate", "fail", "accept"))) == 4


def test_retention_deletes_old_runs_and_their_events(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    now = 100 * DAY
    store.save(_summary("old", started_at=now - 31 * DAY), [_decision("old", "x", "escalate", "r")])
    store.save(_summary("new", started_at=now - 29 * DAY), [_decision("new", "x", "escalate", "r")])
    assert store.retention(30, now=now) == 1
    assert [r.run_id for r in store.runs()] == ["new"]
    assert store.run("old") is None
    assert [e.run_id for e in store.escalations()] == ["new"]
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM events WHERE run_id = 'old'").fetchone() == (0,)
    assert store.retention(30, now=now) == 0
    with pytest.raises(ValueError, match="days must be >= 0"):
        store.retention(-1)


def test_an_old_store_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:  # the version-0 layout: tables, no user_version
        conn.executescript(
            "CREATE TABLE runs (run_id TEXT PRIMARY KEY, graph TEXT NOT NULL, tenant TEXT NOT "
            "NULL, mode TEXT NOT NULL, text TEXT NOT NULL, status TEXT NOT NULL, answer TEXT NOT "
            "NULL, error TEXT, cost_usd REAL NOT NULL, frontier_only_usd REAL NOT NULL, "
            "latency_s REAL NOT NULL, escalations INTEGER NOT NULL, flags TEXT NOT NULL, "
            "started_at REAL NOT NULL);"
            "CREATE TABLE events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,"
            " node TEXT, at REAL NOT NULL, body TEXT NOT NULL, PRIMARY KEY (run_id, seq));"
            "INSERT INTO runs VALUES ('r','g','t','hybrid','x','ok','a',NULL,0,0,0,1,'[]',5);"
        )
    store = RunStore(path)
    assert store.schema_version == SCHEMA_VERSION
    assert [r.run_id for r in store.runs(escalated=True)] == ["r"]
    with sqlite3.connect(path) as conn:
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    assert {"runs_status", "runs_escalated", "events_node"} <= indexes
    with pytest.raises(RuntimeError, match="newer than this brickwork"):
        RunStore(path)


async def test_stats_of_real_runs_agree_with_their_events(tmp_path: Path) -> None:
    def answer(body: dict[str, Any]) -> str:
        if body["model"] == "fake-frontier":
            return '{"n": 8}'
        return '{"n": -1}' if "bad" in body["messages"][1]["content"] else '{"n": 7}'

    store = RunStore(tmp_path / "runs.sqlite")
    async with FunctionModel(answer).pool() as pool:
        app = App.from_graph(GRAPH, pool=pool, store=store)
        results = [await app.ainvoke(t) for t in ("seven", "bad", "seven")]
        await app.aclose()
    stats = {s.node: s for s in store.node_stats()}
    assert stats["number"].calls == 3 and stats["number"].escalations == 1
    assert stats["number"].validation_failures == 1 and stats["supervisor"].calls == 1
    calls = [e for r in results for e in r.events if e.kind == "model_call"]
    assert sum(s.cost_usd for s in stats.values()) == pytest.approx(sum(c.cost_usd for c in calls))
    assert stats["number"].model_calls == 4  # two accepted, then a try and a repair
    totals = store.totals()
    assert totals.runs == 3 and totals.escalated == 1
    assert totals.cost_usd == pytest.approx(sum(r.cost.cost_usd for r in results))
    [escalation] = store.escalations()
    assert escalation.run_id == results[1].run_id and escalation.reason == "validation_failed"
