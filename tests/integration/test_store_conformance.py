"""One suite, every run store backend: SQLite (a file) and PostgreSQL (the server on 127.0.0.1).

Each test gets a fresh store: a new SQLite file, or a new PostgreSQL schema (dropped after).
The outage tests break the real database under a live store (the SQLite folder moved away,
the PostgreSQL database renamed, backends terminated, a closed port) and check that runs go on,
return promptly, and all land in the store once it is back.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from brickwork.app import App
from brickwork.store import (
    SCHEMA_VERSION,
    PostgresRunStore,
    RunStore,
    RunSummary,
    SQLiteRunStore,
    open_store,
)
from brickwork.store import postgres as _store_pg
from brickwork.store import sqlite as store_module
from brickwork.testing import FunctionModel

PG_URL = os.environ.get("BRICKWORK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
GRAPH = str(Path(__file__).resolve().parents[1] / "fixtures" / "two_step_graph.py")
DAY = 86_400.0
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
#: Fast retries, so the tests wait on the store, not on its backoff.
FAST = {"retry_max_s": 0.5}


def _psycopg() -> Any:
    return pytest.importorskip("psycopg", reason="psycopg is not installed (extra: postgres)")


def _admin(sql: str, *args: Any, database: str | None = None) -> list[tuple[Any, ...]]:
    """Run one statement as the admin user on the `test` database (or `database`)."""
    psycopg = _psycopg()
    url = PG_URL if database is None else PG_URL.rsplit("/", 1)[0] + "/" + database
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql, args or None)
        return cursor.fetchall() if cursor.description else []


@dataclass
class Backend:
    """Where a test's store lives, and how to look at it directly."""

    name: str
    where: str

    def open(self, **options: Any) -> RunStore:
        return open_store(self.where, **{**FAST, **options})

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Query the store's database directly (SQL with ? placeholders)."""
        if self.name == "sqlite":
            with sqlite3.connect(self.where) as conn:
                return conn.execute(sql, args).fetchall()
        psycopg = _psycopg()
        with psycopg.connect(self.where, autocommit=True) as conn:
            cursor = conn.execute(sql.replace("?", "%s"), args or None)
            return cursor.fetchall() if cursor.description else []

    def script(self, sql: str) -> None:
        """Run several statements directly."""
        if self.name == "sqlite":
            with sqlite3.connect(self.where) as conn:
                conn.executescript(sql)
            return
        psycopg = _psycopg()
        with psycopg.connect(self.where, autocommit=True) as conn:
            conn.execute(sql)

    def indexes(self) -> set[str]:
        if self.name == "sqlite":
            return {r[0] for r in self.rows("SELECT name FROM sqlite_master WHERE type='index'")}
        return {
            r[0]
            for r in self.rows(
                "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
            )
        }

    def set_version(self, version: int) -> None:
        if self.name == "sqlite":
            self.script(f"PRAGMA user_version = {version}")
        else:
            self.rows("UPDATE schema_version SET version = ?", version)


def _schema_url(schema: str, base: str = PG_URL) -> str:
    return f"{base}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield Backend("sqlite", str(tmp_path / "runs.sqlite"))
        return
    _psycopg()
    schema = f"bw_store_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE SCHEMA "{schema}"')
    try:
        yield Backend("postgres", _schema_url(schema))
    finally:
        _admin(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def store(backend: Backend) -> Iterator[RunStore]:
    opened = backend.open()
    yield opened
    assert opened.close(5.0)


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


def _decision(run_id: str, node: str, action: str, reason: str | None, at: float = 1.5) -> dict:
    return {
        "run_id": run_id, "kind": "escalation", "node": node, "at": at, "action": action,
        "reason": reason, "detail": f"{action} detail", "signals": [["invalid_output", "bad"]],
    }  # fmt: skip


# -- queries -------------------------------------------------------------------------------


def test_factory_picks_the_backend(backend: Backend, store: RunStore) -> None:
    expected = SQLiteRunStore if backend.name == "sqlite" else PostgresRunStore
    assert type(store) is expected and type(RunStore(backend.where)) is expected
    assert store.schema_version == SCHEMA_VERSION


def test_save_and_read_back(store: RunStore) -> None:
    events = [
        _decision("r", "x", "escalate", "validation_failed"),
        _finished("r", "x", 0.2, False, ["e"]),
    ]
    first = _summary(
        "r", error="boom", flags=("degraded", "repaired"), cost_usd=0.125, escalations=1,
        started_at=1_700_000_000.123456,
    )  # fmt: skip
    store.save(first, events)
    assert store.pending == 0
    found = store.run("r")
    assert found is not None
    assert found[0] == first and found[1] == events
    assert store.run("missing") is None
    # Saving the same run again replaces it, events included.
    second = _summary("r", status="failed", answer="", started_at=first.started_at)
    store.save(second, events[:1])
    assert store.run("r") == (second, events[:1])
    assert [r.run_id for r in store.runs()] == ["r"]


def test_run_filters_newest_first_and_totals(store: RunStore) -> None:
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


def test_node_stats(store: RunStore) -> None:
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
         _call("b", "supervisor", "frontier", 0.02, 0.02, escalated=True),
         _finished("b", "supervisor", 0.5, True, [])],
    )  # fmt: skip
    store.save(
        _summary("c", started_at=3.0, graph="other"),
        [_call("c", "n", "slm:lora", 0.002, 0.03), _decision("c", "n", "accept", None),
         _finished("c", "n", 0.2, True, ["first try was bad"])],
    )  # fmt: skip
    stats = {(s.graph, s.node): s for s in store.node_stats()}
    assert list(stats) == [("g", "n"), ("g", "supervisor"), ("other", "n")]
    n = stats["g", "n"]
    assert (n.calls, n.failed, n.validation_failures, n.escalations) == (2, 1, 1, 1)
    assert n.validation_failure_rate == 0.5 and n.escalation_rate == 0.5
    assert n.p50_s == pytest.approx(0.2) and n.p95_s == pytest.approx(0.29)
    assert n.model_calls == 3 and (n.prompt_tokens, n.completion_tokens) == (30, 15)
    assert n.cost_usd == pytest.approx(0.003)
    assert n.frontier_only_usd == pytest.approx(0.01)  # run b's node went to the frontier
    supervisor = stats["g", "supervisor"]
    assert supervisor.calls == 1 and supervisor.escalations == 0
    assert supervisor.cost_usd == supervisor.frontier_only_usd == pytest.approx(0.02)
    other = stats["other", "n"]
    assert other.validation_failures == 1 and other.escalation_rate == 0.0
    assert other.frontier_only_usd == pytest.approx(0.03)
    assert [s.node for s in store.node_stats(graph="other")] == ["n"]
    assert [(s.graph, s.calls) for s in store.node_stats(since=2.5)] == [("other", 1)]
    assert store.node_stats(graph="nope") == []


def test_node_stats_count_a_step_decided_without_a_call_in_the_counterfactual_only(
    store: RunStore,
) -> None:
    # Run a: the kNN decided "n" (no call; the top tier would have made one). Run b: it did
    # too, but "n" escalated after all: the supervisor's call stands for it.
    skipped = {"kind": "model_skipped", "node": "n", "at": 1.0, "method": "knn",
               "prompt_tokens": 300, "completion_tokens": 3, "frontier_cost_usd": 0.004,
               "api_reference_usd": 0.0005}  # fmt: skip
    store.save(
        _summary("a", frontier_only_usd=0.004),
        [{**skipped, "run_id": "a"}, _finished("a", "n", 0.01, True, [])],
    )
    store.save(
        _summary("b", escalations=1),
        [{**skipped, "run_id": "b"}, _decision("b", "n", "escalate", "low_confidence"),
         _finished("b", "n", 0.01, False, [])],
    )  # fmt: skip
    [n] = store.node_stats()
    assert (n.calls, n.model_calls, n.prompt_tokens, n.cost_usd) == (2, 0, 0, 0.0)
    assert n.frontier_only_usd == pytest.approx(0.004)


def test_node_stats_without_spans_are_nan(store: RunStore) -> None:
    store.save(_summary("a"), [_call("a", "n", "slm", 0.001, 0.01)])
    [only] = store.node_stats()
    assert only.calls == 0 and only.model_calls == 1
    assert math.isnan(only.p50_s) and math.isnan(only.p95_s)


def test_escalation_filters_newest_first(store: RunStore) -> None:
    a = [
        _decision("a", "x", "escalate", "validation_failed", at=1.0),
        _decision("a", "y", "accept", None, at=2.0),
    ]
    b = [
        _decision("b", "y", "escalate", "tool_error", at=3.0),
        _decision("b", "x", "fail", "budget_exhausted", at=4.0),
    ]
    store.save(_summary("a", graph="g"), a)
    store.save(_summary("b", graph="h"), b)
    assert [(e.run_id, e.node) for e in store.escalations()] == [("b", "y"), ("a", "x")]
    assert [e.node for e in store.escalations(graph="h")] == ["y"]
    assert [e.run_id for e in store.escalations(node="x")] == ["a"]
    [tool] = store.escalations(reason="tool_error")
    assert tool.graph == "h" and tool.signals == (("invalid_output", "bad"),)
    assert tool.detail == "escalate detail" and tool.at == 3.0
    assert [e.reason for e in store.escalations(actions=("fail",))] == ["budget_exhausted"]
    everything = store.escalations(actions=("escalate", "fail", "accept"))
    assert [e.at for e in everything] == [4.0, 3.0, 2.0, 1.0]
    assert len(store.escalations(actions=("escalate", "fail", "accept"), limit=2)) == 2


def test_source_mode_and_text_filters(store: RunStore) -> None:
    store.save(_summary("c", source="cli", text="Dim the office lights", started_at=1.0), [])
    store.save(_summary("e", source="eval", mode="slm", text="lock 100%_door", started_at=2.0), [])
    store.save(
        _summary("a", source="app", answer="Not done: the OFFICE is dark", started_at=3.0), []
    )
    assert [r.source for r in store.runs()] == ["app", "eval", "cli"]
    assert [r.run_id for r in store.runs(source="eval")] == ["e"]
    assert [r.run_id for r in store.runs(mode="slm")] == ["e"]
    assert [r.run_id for r in store.runs(exclude_sources=("eval",))] == ["a", "c"]
    assert [r.run_id for r in store.runs(search="office")] == ["a", "c"]  # text or answer, any case
    assert [r.run_id for r in store.runs(search="100%_")] == ["e"]  # LIKE wildcards are literal
    assert store.runs(search="100%x") == []
    assert store.totals().runs == 3 and store.totals(exclude_sources=("eval",)).runs == 2
    assert store.totals(source="cli").runs == 1


def test_escalation_records_carry_the_request_and_whether_it_was_fixed(store: RunStore) -> None:
    def supervisor(run_id: str, ok: bool) -> dict:
        return {**_finished(run_id, "supervisor", 0.1, ok, []), "at": 3.0}

    store.save(
        _summary("fixed", text="Lock the door", source="api", status="ok"),
        [_decision("fixed", "x", "escalate", "invalid_tool_call"), supervisor("fixed", True)],
    )
    store.save(
        _summary("unfixed", text="Dim it", source="eval", status="failed"),
        [_decision("unfixed", "x", "escalate", "invalid_tool_call", at=2.0),
         supervisor("unfixed", False)],
    )  # fmt: skip
    by_run = {e.run_id: e for e in store.escalations()}
    assert by_run["fixed"].fixed is True and by_run["fixed"].text == "Lock the door"
    assert by_run["fixed"].source == "api" and by_run["fixed"].status == "ok"
    assert by_run["unfixed"].fixed is False and by_run["unfixed"].status == "failed"
    assert by_run["fixed"].signature == by_run["unfixed"].signature  # identical signals
    assert [e.run_id for e in store.escalations(exclude_sources=("eval",))] == ["fixed"]
    assert [e.run_id for e in store.escalations(source="eval")] == ["unfixed"]


def test_retention_deletes_old_runs_and_their_events(backend: Backend, store: RunStore) -> None:
    now = 100 * DAY
    store.save(_summary("old", started_at=now - 31 * DAY), [_decision("old", "x", "escalate", "r")])
    store.save(_summary("new", started_at=now - 29 * DAY), [_decision("new", "x", "escalate", "r")])
    assert store.retention(30, now=now) == 1
    assert [r.run_id for r in store.runs()] == ["new"]
    assert store.run("old") is None
    assert [e.run_id for e in store.escalations()] == ["new"]
    assert backend.rows("SELECT COUNT(*) FROM events WHERE run_id = 'old'") == [(0,)]
    assert store.retention(30, now=now) == 0
    assert store.retention(0, now=now) == 1
    with pytest.raises(ValueError, match="days must be >= 0"):
        store.retention(-1)


_VERSION_1 = {
    "sqlite": store_module._MIGRATIONS[0] + "PRAGMA user_version = 1;",
    "postgres": _store_pg._MIGRATIONS[0]
    + "CREATE TABLE schema_version (version integer NOT NULL);"
    + "INSERT INTO schema_version VALUES (1);",
}


def test_an_older_schema_is_migrated_and_a_newer_refused(backend: Backend) -> None:
    backend.script(_VERSION_1[backend.name])
    flags = "'[]'" if backend.name == "sqlite" else "'[]'::jsonb"
    backend.script(
        f"INSERT INTO runs VALUES ('r','g','t','hybrid','x','ok','a',NULL,0,0,0,1,{flags},5)"
    )
    assert "runs_status" not in backend.indexes()
    backend.script(
        f"INSERT INTO runs VALUES ('e','g','eval','slm','x','ok','a',NULL,0,0,0,0,{flags},6)"
    )
    with backend.open() as store:
        assert store.schema_version == SCHEMA_VERSION
        assert [r.run_id for r in store.runs(escalated=True)] == ["r"]
        # Runs stored before sources: "unknown", except eval runs (tenant "eval").
        assert {r.run_id: r.source for r in store.runs()} == {"r": "unknown", "e": "eval"}
    assert {"runs_started", "runs_status", "runs_escalated", "events_node"} <= backend.indexes()
    backend.set_version(SCHEMA_VERSION + 1)
    with pytest.raises(RuntimeError, match="newer than this brickwork"):
        backend.open()


def test_stores_opened_together_migrate_once(backend: Backend) -> None:
    opened: list[RunStore] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        start.wait()
        try:
            opened.append(backend.open())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(opened) == 4
    for i, store in enumerate(opened):
        store.save(_summary(f"r{i}"), [])
        assert store.schema_version == SCHEMA_VERSION and store.close()
    assert len(opened[0].runs()) == 4


def test_unicode_and_large_bodies(backend: Backend, store: RunStore) -> None:
    text = "Ünïcödé ✓ 🏠💡 日本語 עברית e\u0301 \"quoted\" back\\slash 'single' %s ? $1"
    big = "x" * 2_000_000 + "🏁"
    events = [
        {"kind": "node_finished", "node": "ñode", "at": 1.0, "ok": True, "latency_s": 0.1,
         "output": {"text": text, "big": big, "nested": [[{"deep": [1, 2.5, None, True]}]]},
         "attempts": []},
        {"kind": "model_call", "node": "ñode", "at": 1.5, "model": "slm", "prompt_tokens": 2**40,
         "completion_tokens": 1, "cost_usd": 1e-9, "frontier_cost_usd": 1e-7,
         "nul": "a\x00b"},
    ]  # fmt: skip
    summary = _summary("ü-1", text=text, answer=big, graph="グラフ", flags=("✓",))
    store.save(summary, events)
    assert store.pending == 0
    found = store.run("ü-1")
    assert found is not None
    assert found[0] == summary
    # PostgreSQL cannot keep NUL characters: they come back as U+FFFD, the rest intact.
    nul = "a\x00b" if backend.name == "sqlite" else "a\ufffdb"
    assert found[1] == [events[0], {**events[1], "nul": nul}]
    [stats] = store.node_stats(graph="グラフ")
    assert stats.node == "ñode" and stats.prompt_tokens == 2**40
    store.save(_summary("nul\x00run", text="a\x00b", started_at=2000.0), [])
    assert store.pending == 0 and store.dropped == 0
    assert store.runs(limit=1)[0].text == nul


def test_concurrent_writers(backend: Backend) -> None:
    stores = [backend.open(), backend.open()]
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for i in range(20):
                run_id = f"w{worker}-{i}"
                events = [_finished(run_id, f"n{j}", 0.01 * j, True, []) for j in range(i % 4)]
                stores[worker % 2].save(_summary(run_id, started_at=float(i)), events)
                # Everyone also rewrites one shared run: the writes of one run take turns.
                shared = [_finished("shared", "n", 0.1, True, [])] * (1 + worker % 3)
                stores[worker % 2].save(_summary("shared", answer=f"by {worker}"), shared)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for opened in stores:
        assert opened.flush(10.0) and opened.dropped == 0
        opened.close()
    with backend.open() as reader:
        assert reader.totals().runs == 6 * 20 + 1
        for worker in range(6):
            for i in range(20):
                found = reader.run(f"w{worker}-{i}")
                assert found is not None and len(found[1]) == i % 4
        shared = reader.run("shared")
        assert shared is not None
        writer = int(shared[0].answer.split()[-1])
        assert len(shared[1]) == 1 + writer % 3  # one writer's whole copy, not a mix


async def test_real_runs_land_in_the_store(store: RunStore) -> None:
    def answer(body: dict[str, Any]) -> str:
        if body["model"] == "fake-frontier":
            return '{"n": 8}'
        return '{"n": -1}' if "bad" in body["messages"][1]["content"] else '{"n": 7}'

    async with FunctionModel(answer).pool() as pool:
        app = App.from_graph(GRAPH, pool=pool, store=store)
        results = [await app.ainvoke(t) for t in ("seven", "bad", "seven")]
        await app.aclose()
    stats = {s.node: s for s in store.node_stats()}
    assert stats["number"].calls == 3 and stats["number"].escalations == 1
    assert stats["number"].validation_failures == 1 and stats["supervisor"].calls == 1
    calls = [e for r in results for e in r.events if e.kind == "model_call"]
    assert sum(s.cost_usd for s in stats.values()) == pytest.approx(sum(c.cost_usd for c in calls))
    totals = store.totals()
    assert totals.runs == 3 and totals.escalated == 1
    [escalation] = store.escalations()
    assert escalation.run_id == results[1].run_id and escalation.reason == "validation_failed"
    for result in results:
        found = store.run(result.run_id)
        assert found is not None
        assert found[1] == [json.loads(json.dumps(e.to_dict())) for e in result.events]


# -- outages -------------------------------------------------------------------------------


@dataclass
class Outage:
    """A store on a database that the test can take away and give back."""

    where: str
    take_away: Callable[[], None]
    give_back: Callable[[], None]


@pytest.fixture(params=BACKENDS)
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outage]:
    if request.param == "sqlite":
        folder, away = tmp_path / "store", tmp_path / "store-away"
        folder.mkdir()
        yield Outage(
            str(folder / "runs.sqlite"), lambda: folder.rename(away), lambda: away.rename(folder)
        )
        return
    _psycopg()
    name = f"bw_outage_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')

    def rename(old: str, new: str) -> None:
        _admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            old,
        )
        _admin(f'ALTER DATABASE "{old}" RENAME TO "{new}"')

    try:
        yield Outage(
            PG_URL.rsplit("/", 1)[0] + "/" + name,
            lambda: rename(name, name + "_away"),
            lambda: rename(name + "_away", name),
        )
    finally:
        for candidate in (name, name + "_away"):
            _admin(f'DROP DATABASE IF EXISTS "{candidate}" WITH (FORCE)')


def _answer(body: dict[str, Any]) -> str:
    return '{"n": 8}' if body["model"] == "fake-frontier" else '{"n": 7}'


async def test_store_outage_during_runs_loses_no_run(outage: Outage) -> None:
    store = open_store(outage.where, **FAST)
    async with FunctionModel(_answer).pool() as pool:
        app = App.from_graph(GRAPH, pool=pool, store=store)
        before = [await app.ainvoke("seven") for _ in range(3)]
        assert store.pending == 0

        outage.take_away()
        during = []
        for _ in range(25):
            started = time.monotonic()
            result = await app.ainvoke("seven")
            assert time.monotonic() - started < 2.0  # the run did not wait on the store
            assert result.answer == "n=7"
            during.append(result)
        assert store.pending == 25
        assert not store.flush(0.3)  # still down: nothing written, nothing lost
        with pytest.raises(Exception):  # noqa: B017 - reads do fail while it is down
            store.runs()

        outage.give_back()
        assert await asyncio.to_thread(store.flush, 30.0)
        after = [await app.ainvoke("seven") for _ in range(2)]
        await app.aclose()
    assert store.pending == 0 and store.dropped == 0
    saved = {r.run_id for r in store.runs(limit=1000)}
    assert saved == {r.run_id for r in before + during + after}
    for result in during:
        found = store.run(result.run_id)
        assert found is not None
        assert found[1] == [json.loads(json.dumps(e.to_dict())) for e in result.events]
    assert store.close(5.0)


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_postgres_terminated_backends_are_replaced(store: RunStore) -> None:
    store.save(_summary("before"), [])
    killed = _admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'brickwork-run-store' AND pid <> pg_backend_pid()"
    )
    assert killed  # the store keeps a connection between calls
    store.save(_summary("after", started_at=2000.0), [])
    assert store.pending == 0
    assert [r.run_id for r in store.runs()] == ["after", "before"]


@pytest.mark.postgres
def test_postgres_unreachable_from_the_start() -> None:
    _psycopg()
    started = time.monotonic()
    store = open_store("postgresql://nobody:secret@127.0.0.1:1/none", timeout_s=2.0, **FAST)
    for i in range(50):
        store.save(_summary(f"r{i}"), [_decision(f"r{i}", "x", "escalate", "r")])
    assert time.monotonic() - started < 2.0
    assert store.pending == 50 and store.dropped == 0
    assert "secret" not in store.where
    assert not store.flush(0.3)
    assert not store.close(0.1)
    assert store.dropped == 50 and store.pending == 0


def test_a_locked_database_holds_a_save_at_most_the_timeout(backend: Backend) -> None:
    store = backend.open(timeout_s=0.3)
    store.save(_summary("first"), [])
    psycopg = _psycopg() if backend.name == "postgres" else None
    if psycopg is None:
        locker: Any = sqlite3.connect(backend.where, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
    else:
        locker = psycopg.connect(backend.where)
        locker.execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
    started = time.monotonic()
    for i in range(10):
        store.save(_summary(f"r{i}"), [])
    assert time.monotonic() - started < 1.5  # one wait, then straight to the buffer
    assert store.pending == 10
    locker.execute("COMMIT")
    locker.close()
    assert store.flush(10.0)
    assert len(store.runs()) == 11
    assert store.close()
