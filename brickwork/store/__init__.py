"""The run store: runs and their events (node spans, model calls, escalations), saved and queried.

This package owns where runs are saved: the shared query layer and row types (`base`), the
SQLite file backend (`sqlite`, the default), the PostgreSQL backend (`postgres`) and the
write-behind buffer that keeps runs in memory while a database is down (`buffer`). Backends
depend on `base`, never the other way; `RunStore(where)` picks one by the URL's scheme.

SQLite (a file, the default) or PostgreSQL (a URL); both answer the same queries:

```
store = open_store("runs.sqlite")        # or "postgresql://user@host/db"; RunStore(...) alike
store.runs(graph="smart_home", status="failed", escalated=True)   # newest first
store.run(run_id)                       # (RunSummary, events as dicts)
store.totals(since=time.time() - 60)    # runs, cost, frontier-only cost, escalated runs
store.node_stats(graph="smart_home")    # per node: calls, p50/p95, failure and escalation rates
store.escalations(reason="validation_failed")
store.retention(days=30)                # delete runs started more than 30 days ago
store.close()                           # write what an outage held back, then stop
```

Writes happen once per run, after it ends. `save` never raises and never waits long on a store
that is down: the run is kept in memory and written in the background once the store answers
again (`store.pending`, `store.flush()`); one warning marks the outage and one its end.

The schema is versioned: `PRAGMA user_version` in SQLite, a `schema_version` table in
PostgreSQL. `_MIGRATIONS[i]` takes a database from version i to i + 1, so an older database is
brought up to date when it is opened, and a newer one is refused.
"""

from __future__ import annotations

from pathlib import Path

from brickwork.store.base import (
    SCHEMA_VERSION,
    SOURCES,
    EscalationRecord,
    NodeStats,
    RunStore,
    RunSummary,
    Totals,
    backend_for,
    percentile,
)
from brickwork.store.postgres import PostgresRunStore
from brickwork.store.sqlite import SQLiteRunStore

__all__ = [
    "SCHEMA_VERSION",
    "SOURCES",
    "EscalationRecord",
    "NodeStats",
    "PostgresRunStore",
    "RunStore",
    "RunSummary",
    "SQLiteRunStore",
    "Totals",
    "backend_for",
    "open_store",
    "percentile",
]


def open_store(
    where: str | Path | None = None,
    *,
    timeout_s: float = 5.0,
    max_buffered_runs: int = 10_000,
    max_buffered_bytes: int = 512 * 1024 * 1024,
    retry_max_s: float = 30.0,
) -> RunStore:
    """Open the run store `where` names (the same as `RunStore(where, ...)`).

    Args:
        where: A `postgresql://` or `postgres://` URL, a SQLite file path, or None for
            `<cache>/runs.sqlite`.
        timeout_s: How long one write may wait for the database before the run is buffered.
        max_buffered_runs: Most runs kept in memory during an outage.
        max_buffered_bytes: Most bytes of runs kept in memory during an outage.
        retry_max_s: Longest wait between two retries during an outage.

    Raises:
        ConfigError: `where` is a URL of another kind.
        MissingDependencyError: a PostgreSQL URL without psycopg installed.
    """
    return RunStore(
        where,
        timeout_s=timeout_s,
        max_buffered_runs=max_buffered_runs,
        max_buffered_bytes=max_buffered_bytes,
        retry_max_s=retry_max_s,
    )
