"""The run store: runs and their events (node spans, model calls, escalations), in SQLite.

Writes happen once per run, after it ends, on a worker thread; a failing write is logged and
never fails the run.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brickwork._settings import cache_dir

__all__ = ["RunStore", "RunSummary"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, graph TEXT NOT NULL, tenant TEXT NOT NULL, mode TEXT NOT NULL,
    text TEXT NOT NULL, status TEXT NOT NULL, answer TEXT NOT NULL, error TEXT,
    cost_usd REAL NOT NULL, frontier_only_usd REAL NOT NULL, latency_s REAL NOT NULL,
    escalations INTEGER NOT NULL, flags TEXT NOT NULL, started_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at DESC);
CREATE INDEX IF NOT EXISTS runs_graph ON runs (graph, started_at DESC);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, node TEXT,
    at REAL NOT NULL, body TEXT NOT NULL, PRIMARY KEY (run_id, seq)
);
CREATE INDEX IF NOT EXISTS events_kind ON events (kind, at);
"""


@dataclass(frozen=True)
class RunSummary:
    """One row of the runs table."""

    run_id: str
    graph: str
    tenant: str
    mode: str
    text: str
    status: str
    answer: str
    error: str | None
    cost_usd: float
    frontier_only_usd: float
    latency_s: float
    escalations: int
    flags: tuple[str, ...]
    started_at: float


class RunStore:
    """Runs and events in a SQLite file (`<cache>/runs.sqlite` by default)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else cache_dir() / "runs.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as conn:
            conn.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    def save(self, summary: RunSummary, events: Sequence[dict[str, Any]]) -> None:
        """Write a finished run and its events (replacing an earlier copy of the same run)."""
        row = (
            summary.run_id, summary.graph, summary.tenant, summary.mode, summary.text,
            summary.status, summary.answer, summary.error, summary.cost_usd,
            summary.frontier_only_usd, summary.latency_s, summary.escalations,
            json.dumps(list(summary.flags)), summary.started_at,
        )  # fmt: skip
        with self._lock, self._connect() as conn:
            conn.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row)
            conn.execute("DELETE FROM events WHERE run_id = ?", (summary.run_id,))
            conn.executemany(
                "INSERT INTO events VALUES (?,?,?,?,?,?)",
                [
                    (summary.run_id, i, e["kind"], e.get("node"), e["at"], json.dumps(e))
                    for i, e in enumerate(events)
                ],
            )

    def runs(self, *, limit: int = 100, graph: str | None = None) -> list[RunSummary]:
        """Newest runs first."""
        query = "SELECT * FROM runs"
        args: list[Any] = []
        if graph:
            query += " WHERE graph = ?"
            args.append(graph)
        query += " ORDER BY started_at DESC LIMIT ?"
        args.append(limit)
        with self._connect() as conn:
            rows = conn.execute(query, args).fetchall()
        return [_summary(r) for r in rows]

    def run(self, run_id: str) -> tuple[RunSummary, list[dict[str, Any]]] | None:
        """A run and its events, or None."""
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            events = conn.execute(
                "SELECT body FROM events WHERE run_id = ? ORDER BY seq", (run_id,)
            ).fetchall()
        return _summary(row), [json.loads(e[0]) for e in events]


def _summary(row: Sequence[Any]) -> RunSummary:
    values = list(row)
    values[12] = tuple(json.loads(values[12]))
    return RunSummary(*values)
