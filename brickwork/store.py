"""The run store: runs and their events (node spans, model calls, escalations), in SQLite.

Writes happen once per run, after it ends, on a worker thread; a failing write is logged and
never fails the run. Reads serve the CLI, the HTTP front and the TUI:

```
store = RunStore("runs.sqlite")
store.runs(graph="smart_home", status="failed", escalated=True)   # newest first
store.run(run_id)                       # (RunSummary, events as dicts)
store.totals(since=time.time() - 60)    # runs, cost, frontier-only cost, escalated runs
store.node_stats(graph="smart_home")    # per node: calls, p50/p95, failure and escalation rates
store.escalations(reason="validation_failed")
store.retention(days=30)                # delete runs started more than 30 days ago
```

The schema is versioned with `PRAGMA user_version`; `_MIGRATIONS[i]` takes a database from
version i to i + 1, so an older file is brought up to date when it is opened.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brickwork._settings import cache_dir

__all__ = ["EscalationRecord", "NodeStats", "RunStore", "RunSummary", "Totals", "percentile"]

log = logging.getLogger(__name__)

_MIGRATIONS: tuple[str, ...] = (
    """
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
    """,
    # The TUI's filters: by status, escalated runs only, and node statistics by kind and node.
    """
    CREATE INDEX IF NOT EXISTS runs_status ON runs (status, started_at DESC);
    CREATE INDEX IF NOT EXISTS runs_escalated ON runs (started_at DESC) WHERE escalations > 0;
    CREATE INDEX IF NOT EXISTS events_node ON events (kind, node);
    """,
)

#: The schema version this code writes (`PRAGMA user_version`).
SCHEMA_VERSION = len(_MIGRATIONS)

_DAY_S = 86_400.0


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


@dataclass(frozen=True)
class Totals:
    """Sums over a set of runs.

    Attributes:
        runs: Number of runs.
        ok: Runs that finished with an answer.
        escalated: Runs with at least one escalated node.
        cost_usd: What the runs cost.
        frontier_only_usd: What they would have cost with every node on the frontier model.
        first_at: Start time of the oldest run (None without runs).
        last_at: Start time of the newest run (None without runs).
    """

    runs: int = 0
    ok: int = 0
    escalated: int = 0
    cost_usd: float = 0.0
    frontier_only_usd: float = 0.0
    first_at: float | None = None
    last_at: float | None = None

    @property
    def cost_avoided_usd(self) -> float:
        """Saving over the frontier-only world (negative when hybrid cost more)."""
        return self.frontier_only_usd - self.cost_usd

    @property
    def escalation_rate(self) -> float:
        """Share of runs with an escalation (0.0 without runs)."""
        return self.escalated / self.runs if self.runs else 0.0


@dataclass(frozen=True)
class NodeStats:
    """What one node of one graph did, over a set of runs.

    Costs follow `brickwork.ledger.RunCost`: small calls of a node that escalated in a run do
    not count in the frontier-only counterfactual (that node is counted once, through its
    frontier call on the supervisor), so an escalated node shows a negative cost avoided.

    Attributes:
        graph: Graph name.
        node: Node name ("supervisor" holds the frontier calls of escalated nodes).
        calls: Times the node ran (finished node spans).
        failed: Spans that ended without an output (escalated or failed).
        validation_failures: Spans where an output failed its validators at least once
            (including outputs a repair turn then fixed).
        escalations: Escalate decisions for the node.
        p50_s: Median span latency in seconds (NaN without spans).
        p95_s: 95th percentile span latency in seconds (NaN without spans).
        model_calls: Model calls the node made.
        prompt_tokens: Prompt tokens of those calls.
        completion_tokens: Completion tokens of those calls.
        cost_usd: What those calls cost.
        frontier_only_usd: What the node would have cost on the frontier model.
    """

    graph: str
    node: str
    calls: int = 0
    failed: int = 0
    validation_failures: int = 0
    escalations: int = 0
    p50_s: float = math.nan
    p95_s: float = math.nan
    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    frontier_only_usd: float = 0.0

    @property
    def validation_failure_rate(self) -> float:
        """Share of spans with invalid output: validation_failures / calls (0.0 without calls)."""
        return self.validation_failures / self.calls if self.calls else 0.0

    @property
    def escalation_rate(self) -> float:
        """Share of spans that escalated: escalations / calls (0.0 without calls)."""
        return self.escalations / self.calls if self.calls else 0.0

    @property
    def cost_avoided_usd(self) -> float:
        """Saving over the frontier-only world: frontier_only_usd - cost_usd."""
        return self.frontier_only_usd - self.cost_usd


@dataclass(frozen=True)
class EscalationRecord:
    """One escalation decision, with the signals it was made from."""

    run_id: str
    graph: str
    node: str
    action: str
    reason: str | None
    detail: str
    signals: tuple[tuple[str, str], ...]
    at: float


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of `values`, interpolating linearly between ranks; NaN if empty."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be between 0 and 1, got {q!r}")
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class RunStore:
    """Runs and events in a SQLite file (`<cache>/runs.sqlite` by default)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else cache_dir() / "runs.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._lock, self._connect() as conn:
            _migrate(conn)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection for one unit of work: committed on success, always closed."""
        with closing(sqlite3.connect(self.path, timeout=30)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            with conn:
                yield conn

    @property
    def schema_version(self) -> int:
        """The file's schema version (`SCHEMA_VERSION` once opened by this code)."""
        with self._connect() as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    # -- writing ------------------------------------------------------------------------------

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

    def retention(self, days: float, *, now: float | None = None) -> int:
        """Delete runs (and their events) started more than `days` days ago; returns how many."""
        if not days >= 0:
            raise ValueError(f"days must be >= 0, got {days!r}; pass how many days to keep")
        cutoff = (time.time() if now is None else now) - days * _DAY_S
        with self._lock, self._connect() as conn:
            conn.execute(
                "DELETE FROM events WHERE run_id IN (SELECT run_id FROM runs WHERE started_at < ?)",
                (cutoff,),
            )
            return conn.execute("DELETE FROM runs WHERE started_at < ?", (cutoff,)).rowcount

    # -- reading ------------------------------------------------------------------------------

    def runs(
        self,
        *,
        limit: int = 100,
        graph: str | None = None,
        status: str | None = None,
        escalated: bool | None = None,
        since: float | None = None,
    ) -> list[RunSummary]:
        """Newest runs first, optionally only one graph's, one status, (not) escalated ones."""
        where, args = _run_filter(graph, status, escalated, since)
        query = f"SELECT * FROM runs{where} ORDER BY started_at DESC LIMIT ?"
        with self._connect() as conn:
            rows = conn.execute(query, [*args, limit]).fetchall()
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

    def graphs(self) -> list[str]:
        """Names of the graphs that have runs in the store."""
        with self._connect() as conn:
            rows = conn.execute("SELECT DISTINCT graph FROM runs ORDER BY graph").fetchall()
        return [str(r[0]) for r in rows]

    def totals(self, *, graph: str | None = None, since: float | None = None) -> Totals:
        """Counts and costs over the runs of one graph (or all), started since `since`."""
        where, args = _run_filter(graph, None, None, since)
        query = (
            "SELECT COUNT(*), COALESCE(SUM(status = 'ok'), 0), COALESCE(SUM(escalations > 0), 0),"
            " COALESCE(SUM(cost_usd), 0), COALESCE(SUM(frontier_only_usd), 0),"
            f" MIN(started_at), MAX(started_at) FROM runs{where}"
        )
        with self._connect() as conn:
            row = conn.execute(query, args).fetchone()
        return Totals(int(row[0]), int(row[1]), int(row[2]), *row[3:])

    def node_stats(
        self, *, graph: str | None = None, since: float | None = None
    ) -> list[NodeStats]:
        """Per (graph, node) statistics over runs started since `since`, sorted by graph, node."""
        where, args = _run_filter(graph, None, None, since, table="r.")
        where = where.replace(" WHERE ", " AND ", 1)
        query = f"{_NODE_EVENTS}{where} ORDER BY e.run_id, e.seq"
        with self._connect() as conn:
            rows = conn.execute(query, args).fetchall()
        return _aggregate_nodes(rows)

    def escalations(
        self,
        *,
        graph: str | None = None,
        node: str | None = None,
        reason: str | None = None,
        actions: Sequence[str] = ("escalate",),
        limit: int = 200,
    ) -> list[EscalationRecord]:
        """Escalation decisions, newest first (by default only the nodes that were escalated)."""
        clauses = ["e.kind = 'escalation'"]
        args: list[Any] = []
        if actions:
            clauses.append(f"json_extract(e.body, '$.action') IN ({','.join('?' * len(actions))})")
            args += list(actions)
        for column, value in (
            ("r.graph", graph),
            ("e.node", node),
            ("json_extract(e.body, '$.reason')", reason),
        ):
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        query = (
            "SELECT e.run_id, r.graph, e.node, e.at, e.body FROM events e"
            f" JOIN runs r ON r.run_id = e.run_id WHERE {' AND '.join(clauses)}"
            " ORDER BY e.at DESC LIMIT ?"
        )
        with self._connect() as conn:
            rows = conn.execute(query, [*args, limit]).fetchall()
        records = []
        for run_id, graph_name, node_name, at, body in rows:
            event = json.loads(body)
            records.append(
                EscalationRecord(
                    run_id=run_id,
                    graph=graph_name,
                    node=node_name,
                    action=event.get("action", ""),
                    reason=event.get("reason"),
                    detail=event.get("detail", ""),
                    signals=tuple((str(k), str(v)) for k, v in event.get("signals") or ()),
                    at=at,
                )
            )
        return records


_NODE_EVENTS = """
SELECT r.graph, e.run_id, e.kind, e.node,
    json_extract(e.body, '$.latency_s'), json_extract(e.body, '$.ok'),
    CASE WHEN e.kind = 'node_finished' THEN EXISTS (
        SELECT 1 FROM json_each(e.body, '$.attempts') AS a
        WHERE json_array_length(a.value, '$.errors') > 0
    ) ELSE 0 END,
    json_extract(e.body, '$.action'), json_extract(e.body, '$.model'),
    json_extract(e.body, '$.stand_in'), json_extract(e.body, '$.escalated'),
    json_extract(e.body, '$.prompt_tokens'), json_extract(e.body, '$.completion_tokens'),
    json_extract(e.body, '$.cost_usd'), json_extract(e.body, '$.frontier_cost_usd')
FROM events e JOIN runs r ON r.run_id = e.run_id
WHERE e.kind IN ('node_finished', 'model_call', 'escalation') AND e.node IS NOT NULL"""


def _aggregate_nodes(rows: Sequence[Sequence[Any]]) -> list[NodeStats]:
    """Fold `_NODE_EVENTS` rows into one `NodeStats` per (graph, node)."""
    escalated_nodes = {(r[1], r[3]) for r in rows if r[2] == "escalation" and r[7] == "escalate"}
    latencies: dict[tuple[str, str], list[float]] = {}
    counts: dict[tuple[str, str], dict[str, float]] = {}
    for graph, run_id, kind, node, latency, ok, invalid, action, model, *call in rows:
        key = (graph, node)
        total = counts.setdefault(key, dict.fromkeys(_COUNTERS, 0.0))
        if kind == "node_finished":
            latencies.setdefault(key, []).append(float(latency or 0.0))
            total["failed"] += not ok
            total["validation_failures"] += bool(invalid)
        elif kind == "escalation":
            total["escalations"] += action == "escalate"
        else:
            stand_in, escalated, prompt, completion, cost, frontier_cost = call
            total["model_calls"] += 1
            total["prompt_tokens"] += prompt or 0
            total["completion_tokens"] += completion or 0
            total["cost_usd"] += cost or 0.0
            if stand_in or str(model).split(":", 1)[0] == "frontier":
                total["frontier_only_usd"] += cost or 0.0
            elif not escalated and (run_id, node) not in escalated_nodes:
                total["frontier_only_usd"] += frontier_cost or 0.0
    stats = []
    for (graph, node), total in sorted(counts.items()):
        spans = latencies.get((graph, node), [])
        stats.append(
            NodeStats(
                graph=graph,
                node=node,
                calls=len(spans),
                p50_s=percentile(spans, 0.5),
                p95_s=percentile(spans, 0.95),
                cost_usd=total.pop("cost_usd"),
                frontier_only_usd=total.pop("frontier_only_usd"),
                **{name: int(value) for name, value in total.items()},
            )
        )
    return stats


_COUNTERS = (
    "failed", "validation_failures", "escalations", "model_calls", "prompt_tokens",
    "completion_tokens", "cost_usd", "frontier_only_usd",
)  # fmt: skip


def _migrate(conn: sqlite3.Connection) -> None:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"run store schema version {version!r} is newer than this brickwork "
            f"({SCHEMA_VERSION!r}); upgrade brickwork or use another store file"
        )
    for number in range(version, SCHEMA_VERSION):
        conn.executescript(_MIGRATIONS[number])
        conn.execute(f"PRAGMA user_version = {number + 1}")


def _run_filter(
    graph: str | None,
    status: str | None,
    escalated: bool | None,
    since: float | None,
    *,
    table: str = "",
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if graph:
        clauses.append(f"{table}graph = ?")
        args.append(graph)
    if status:
        clauses.append(f"{table}status = ?")
        args.append(status)
    if escalated is not None:
        clauses.append(f"{table}escalations {'>' if escalated else '='} 0")
    if since is not None:
        clauses.append(f"{table}started_at >= ?")
        args.append(since)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def _summary(row: Sequence[Any]) -> RunSummary:
    values = list(row)
    values[12] = tuple(json.loads(values[12]))
    return RunSummary(*values)
