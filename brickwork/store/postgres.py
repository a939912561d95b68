"""The run store on PostgreSQL (psycopg 3, the `postgres` extra).

The same tables as SQLite, with `jsonb` event bodies and the same indexes; the schema version
lives in a `schema_version` table of the schema the URL's `search_path` selects (so
`?options=-csearch_path%3Dmy_schema` keeps a store in its own schema). Migrations run in one
transaction under an advisory lock, so processes opening the store together do not race.

Connections are kept between calls (a few idle ones, checked with a ping before reuse), so a
server restart or a terminated backend costs one failed write, which the write-behind retries.

Runs are recorded when they start (`records_starts`): the row says "running" until the run's
end replaces it. While it runs, its process holds a session advisory lock on the run
(`brickwork:live:<run_id>`) on a connection of its own; the lock ends with the process or its
connection. A row that says "running" whose lock is free belongs to a process that is gone
(an API replica killed mid-run): `recover` marks it "interrupted", with an error that says
how to resume it, and another replica can resume it from its checkpoint. The lock also keeps
two processes from running one run at once (`RunInProgress`). Caveat: if the liveness
connection itself drops (a server restart) while runs are under way, their locks go with it;
another replica may then mark them interrupted, and their end still writes the real outcome.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brickwork.errors import ConfigError, MissingDependencyError, RunInProgress
from brickwork.store.base import (
    INTERRUPTED,
    RUNNING,
    SCHEMA_VERSION,
    Connection,
    Cursor,
    JsonKind,
    RunStore,
)

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresRunStore"]

_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS runs (
        run_id text PRIMARY KEY, graph text NOT NULL, tenant text NOT NULL, mode text NOT NULL,
        text text NOT NULL, status text NOT NULL, answer text NOT NULL, error text,
        cost_usd double precision NOT NULL, frontier_only_usd double precision NOT NULL,
        latency_s double precision NOT NULL, escalations integer NOT NULL, flags jsonb NOT NULL,
        started_at double precision NOT NULL
    );
    CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at DESC);
    CREATE INDEX IF NOT EXISTS runs_graph ON runs (graph, started_at DESC);
    CREATE TABLE IF NOT EXISTS events (
        run_id text NOT NULL, seq integer NOT NULL, kind text NOT NULL, node text,
        at double precision NOT NULL, body jsonb NOT NULL, PRIMARY KEY (run_id, seq)
    );
    CREATE INDEX IF NOT EXISTS events_kind ON events (kind, at);
    """,
    # The TUI's filters: by status, escalated runs only, and node statistics by kind and node.
    """
    CREATE INDEX IF NOT EXISTS runs_status ON runs (status, started_at DESC);
    CREATE INDEX IF NOT EXISTS runs_escalated ON runs (started_at DESC) WHERE escalations > 0;
    CREATE INDEX IF NOT EXISTS events_node ON events (kind, node);
    """,
    # Where each run came from (cli, api, app, eval, playground); older rows are "unknown"
    # except eval runs, which always had tenant "eval".
    """
    ALTER TABLE runs ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT 'unknown';
    UPDATE runs SET source = 'eval' WHERE tenant = 'eval';
    CREATE INDEX IF NOT EXISTS runs_source ON runs (source, started_at DESC);
    """,
)
assert len(_MIGRATIONS) == SCHEMA_VERSION

_CASTS = {"text": "", "number": "::double precision", "bool": "::boolean"}

#: Idle connections kept for reuse; more are opened when calls overlap, and closed after.
_MAX_IDLE = 4

log = logging.getLogger("brickwork.store")

#: The advisory lock key of a running run (its process holds it while the run runs).
_LIVE_KEY = "hashtextextended('brickwork:live:' || {}, 0)"

#: After the liveness connection failed, runs go unclaimed this long (no wait on a dead server).
_LIVE_RETRY_S = 5.0

#: What a run whose process is gone says, before and after its id.
_ORPHANED = (
    "interrupted: the process running it ended before the run did (its replica was killed "
    "or lost its database connection); resume it from its last checkpoint with POST "
    "/v1/runs/",
    "/resume or App.aresume",
)


class _PgConnection:
    """A psycopg connection that takes the store's `?` placeholders."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        return self.raw.execute(sql.replace("?", "%s"), parameters or None)

    def executemany(self, sql: str, seq_of_parameters: Sequence[Sequence[Any]], /) -> None:
        with self.raw.cursor() as cursor:
            cursor.executemany(sql.replace("?", "%s"), seq_of_parameters)

    def script(self, sql: str) -> None:
        """Run several statements without parameters (the simple query protocol)."""
        self.raw.execute(sql)


class PostgresRunStore(RunStore, schemes=("postgresql://", "postgres://")):
    """Runs and events in PostgreSQL; see `RunStore` for the arguments.

    `where` is a libpq URL, e.g. `postgresql://postgres@127.0.0.1:5432/brickwork`; its
    `search_path` option picks the schema. The server may be down when the store is created:
    the schema is then checked on the first write that gets through.
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
        try:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict
        except ImportError as exc:  # pragma: no cover - the extra is installed in CI
            raise MissingDependencyError("psycopg", "postgres", "a PostgreSQL run store") from exc
        if not isinstance(where, str):
            raise ConfigError(f"a PostgreSQL run store needs a postgresql:// URL, got {where!r}")
        try:
            conninfo_to_dict(where)
        except psycopg.ProgrammingError as exc:
            raise ConfigError(f"bad PostgreSQL URL {_redact(where)!r}: {exc}") from exc
        self.url = where
        self.timeout_s = timeout_s
        self._psycopg = psycopg
        self._idle: list[psycopg.Connection[Any]] = []
        self._idle_lock = threading.Lock()
        # The connection holding this process's running runs' locks, and those runs.
        self._live: psycopg.Connection[Any] | None = None
        self._live_lock = threading.Lock()
        self._claimed: set[str] = set()
        self._live_retry_at = 0.0
        self._start(
            where=_redact(where),
            max_buffered_runs=max_buffered_runs,
            max_buffered_bytes=max_buffered_bytes,
            retry_max_s=retry_max_s,
        )

    # -- connections -----------------------------------------------------------------------

    def _checkout(self) -> psycopg.Connection[Any]:
        while True:
            with self._idle_lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._psycopg.connect(
                    self.url,
                    autocommit=True,
                    connect_timeout=max(2, round(self.timeout_s)),
                    application_name="brickwork-run-store",
                )
            try:  # a terminated backend or a restarted server shows here, not mid-write
                conn.execute("SELECT 1")
                return conn
            except self._psycopg.Error:
                conn.close()

    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[Connection]:
        conn = self._checkout()
        try:
            with conn.transaction():
                yield _PgConnection(conn)
        except BaseException:
            conn.close()
            raise
        with self._idle_lock:
            if len(self._idle) < _MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def close(self, timeout_s: float = 10.0) -> bool:
        """Flush (waiting up to `timeout_s`), stop, and close the idle connections."""
        flushed = super().close(timeout_s)
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        with self._live_lock:
            if self._live is not None:
                self._live.close()  # a run still claimed now shows as interrupted
                self._live = None
            self._claimed.clear()
        return flushed

    # -- runs under way --------------------------------------------------------------------

    records_starts = True

    def _claim(self, run_id: str) -> None:
        with self._live_lock:
            if run_id in self._claimed:  # session locks nest: check this process first
                raise RunInProgress(run_id)
            if time.monotonic() < self._live_retry_at:  # it failed just now: do not wait again
                return
            try:
                if self._live is None or self._live.closed:
                    self._live = self._psycopg.connect(
                        self.url,
                        autocommit=True,
                        connect_timeout=max(2, round(self.timeout_s)),
                        application_name="brickwork-runs-live",
                    )
                row = self._live.execute(
                    f"SELECT pg_try_advisory_lock({_LIVE_KEY.format('%s')})", (run_id,)
                ).fetchone()
            except self._psycopg.Error as exc:  # the run goes on; only recovery is weaker
                log.warning("could not claim run %s in %s: %s", run_id, self.where, exc)
                self._live = None
                self._live_retry_at = time.monotonic() + _LIVE_RETRY_S
                return
            if not (row and row[0]):
                raise RunInProgress(run_id)
            self._claimed.add(run_id)

    def _release(self, run_id: str) -> None:
        with self._live_lock:
            if run_id not in self._claimed:
                return
            self._claimed.discard(run_id)
            if self._live is None:
                return
            try:
                self._live.execute(
                    f"SELECT pg_advisory_unlock({_LIVE_KEY.format('%s')})", (run_id,)
                )
            except self._psycopg.Error:  # its locks went with it
                self._live = None

    def interrupt(self, run_id: str, error: str) -> None:
        """Mark a running run of this process interrupted (e.g. cancelled), and let it go."""
        try:
            with self._session(write=True) as conn:
                self._limit_statements(conn)
                conn.execute(
                    "UPDATE runs SET status = ?, error = ? WHERE run_id = ? AND status = ?",
                    (INTERRUPTED, error, run_id, RUNNING),
                )
        except self._psycopg.Error as exc:  # recover() will find it once it is released
            log.warning("could not mark run %s interrupted: %s", run_id, exc)
        finally:
            self._release(run_id)

    def recover(self, run_id: str | None = None) -> list[str]:
        """Mark "interrupted" the running runs whose process is gone; returns their ids.

        A run is gone when its row says "running" and no process holds its lock. The check
        takes the lock for the transaction, so a process cannot claim it meanwhile.
        """
        only = "" if run_id is None else " AND run_id = ?"
        free = f"pg_try_advisory_xact_lock({_LIVE_KEY.format('run_id')})"
        with self._session(write=True) as conn:
            self._limit_statements(conn)
            rows = conn.execute(
                "UPDATE runs SET status = ?, error = ? || run_id || ?"
                f" WHERE status = ?{only} AND {free} RETURNING run_id",
                (INTERRUPTED, *_ORPHANED, RUNNING, *(() if run_id is None else (run_id,))),
            ).fetchall()
        found = [str(r[0]) for r in rows]
        if found:
            log.warning("runs interrupted by a process that ended: %s", ", ".join(found))
        return found

    # -- schema ----------------------------------------------------------------------------

    def _migrate(self, conn: Connection) -> None:
        assert isinstance(conn, _PgConnection)
        if conn.execute("SELECT to_regclass('schema_version')").fetchone()[0] is not None:
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            if row[0] == SCHEMA_VERSION:
                return
        # One migrator per schema at a time; the lock ends with the transaction.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('brickwork:' || current_schema()))")
        conn.script("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        if row[0] is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        version = int(row[0] or 0)
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"run store schema version {version!r} is newer than this brickwork "
                f"({SCHEMA_VERSION!r}); upgrade brickwork or use another database or schema"
            )
        for number in range(version, SCHEMA_VERSION):
            conn.script(_MIGRATIONS[number])
            conn.execute("UPDATE schema_version SET version = ?", (number + 1,))

    @property
    def schema_version(self) -> int:
        """The schema's version (`SCHEMA_VERSION` once opened by this code)."""
        with self._session(write=False) as conn:
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    # -- dialect ---------------------------------------------------------------------------

    def _is_permanent(self, exc: BaseException) -> bool:
        errors = self._psycopg
        return isinstance(
            exc,
            (errors.DataError, errors.IntegrityError, errors.NotSupportedError, TypeError,
             ValueError, OverflowError),
        )  # fmt: skip

    _json_param = "CAST(? AS jsonb)"

    def _limit_statements(self, conn: Connection) -> None:
        # Not in the URL's options: those may carry the user's search_path.
        timeout_ms = max(1, round(self.timeout_s * 1000))
        conn.execute("SELECT set_config('statement_timeout', ?, true)", (f"{timeout_ms}ms",))

    def _json(self, column: str, key: str, kind: JsonKind) -> str:
        return f"({column} ->> '{key}'){_CASTS[kind]}"

    def _json_text(self, column: str) -> str:
        return f"{column}::text"

    def _attempts_have_errors(self, column: str) -> str:
        attempts = f"{column} -> 'attempts'"
        return (
            "(EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof("
            f"{attempts}) = 'array' THEN {attempts} ELSE '[]'::jsonb END) AS a(v)"
            " WHERE jsonb_typeof(a.v -> 'errors') = 'array'"
            " AND jsonb_array_length(a.v -> 'errors') > 0))::int"
        )

    def _clean(self, text: str) -> str:
        return text.replace("\x00", "\ufffd") if "\x00" in text else text

    def _clean_json(self, text: str) -> str:
        if "\\u0000" not in text:
            return text
        return json.dumps(_without_nul(json.loads(text)))


def _without_nul(value: Any) -> Any:
    """`value` with every NUL character in its strings replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    return value


def _redact(url: str) -> str:
    """The URL without its password (for logs and messages)."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}@{host}"
    query = urllib.parse.urlencode(
        [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "password"]
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))
