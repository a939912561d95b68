"""The run store: runs and their events (node spans, model calls, escalations).

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

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager, nullcontext
from pathlib import Path

from brickwork._settings import cache_dir
from brickwork._store_pg import PostgresRunStore
from brickwork._store_sql import (
    SCHEMA_VERSION,
    Connection,
    EscalationRecord,
    JsonKind,
    NodeStats,
    RunStore,
    RunSummary,
    Totals,
    percentile,
)
from brickwork.errors import ConfigError

__all__ = [
    "SCHEMA_VERSION",
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

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


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


def backend_for(where: str | Path | None) -> type[RunStore]:
    """The store class for `where`: PostgreSQL for a postgres URL, SQLite for a path.

    Raises:
        ConfigError: `where` is a URL of another kind, or a postgres URL mangled into a Path.
    """
    text = str(where) if where is not None else ""
    if isinstance(where, str) and text.startswith(_POSTGRES_SCHEMES):
        return PostgresRunStore
    if isinstance(where, Path) and text.startswith(("postgresql:/", "postgres:/")):
        raise ConfigError(
            f"run store {where!r} looks like a PostgreSQL URL turned into a file path; "
            "pass the URL as a str (e.g. 'postgresql://user@host:5432/db')"
        )
    if "://" in text:
        raise ConfigError(
            f"unsupported run store URL {where!r}; pass a SQLite file path or a postgresql:// URL"
        )
    return SQLiteRunStore


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
assert len(_MIGRATIONS) == SCHEMA_VERSION

#: Errors retrying cannot fix: the data (or the SQL) is wrong, not the database's health.
_PERMANENT = (
    sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError, sqlite3.ProgrammingError,
    TypeError, ValueError, OverflowError,
)  # fmt: skip


class SQLiteRunStore(RunStore):
    """Runs and events in a SQLite file (`<cache>/runs.sqlite` by default).

    Writes of one store object take turns (a lock); other processes may share the file (WAL
    mode, and a busy wait of up to `timeout_s`).
    """

    def __init__(
        self,
        where: str | Path | None = None,
        *,
        timeout_s: float = 5.0,
        max_buffered_runs: int = 10_000,
        max_buffered_bytes: int = 512 * 1024 * 1024,
        retry_max_s: float = 30.0,
    ) -> None:
        path = Path(where).expanduser() if where is not None else cache_dir() / "runs.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = self._file = path
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._start(
            where=str(path),
            max_buffered_runs=max_buffered_runs,
            max_buffered_bytes=max_buffered_bytes,
            retry_max_s=retry_max_s,
        )

    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[Connection]:
        """A connection for one unit of work: committed on success, always closed."""
        with (
            self._lock if write else nullcontext(),
            closing(sqlite3.connect(self._file, timeout=self.timeout_s)) as conn,
        ):
            conn.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL cannot corrupt the file; a power cut may lose the last runs.
            conn.execute("PRAGMA synchronous=NORMAL")
            with conn:
                yield conn

    def _migrate(self, conn: Connection) -> None:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"run store schema version {version!r} is newer than this brickwork "
                f"({SCHEMA_VERSION!r}); upgrade brickwork or use another store file"
            )
        assert isinstance(conn, sqlite3.Connection)
        for number in range(version, SCHEMA_VERSION):
            conn.executescript(_MIGRATIONS[number])
            conn.execute(f"PRAGMA user_version = {number + 1}")

    @property
    def schema_version(self) -> int:
        """The file's schema version (`SCHEMA_VERSION` once opened by this code)."""
        with closing(sqlite3.connect(self._file, timeout=self.timeout_s)) as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def _is_permanent(self, exc: BaseException) -> bool:
        return isinstance(exc, _PERMANENT)

    def _json(self, column: str, key: str, kind: JsonKind) -> str:
        return f"json_extract({column}, '$.{key}')"

    def _json_text(self, column: str) -> str:
        return column

    def _attempts_have_errors(self, column: str) -> str:
        return (
            f"EXISTS (SELECT 1 FROM json_each({column}, '$.attempts') AS a"
            " WHERE json_array_length(a.value, '$.errors') > 0)"
        )
