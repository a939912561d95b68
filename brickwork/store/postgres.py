"""The run store on PostgreSQL (psycopg 3, the `postgres` extra).

The same tables as SQLite, with `jsonb` event bodies and the same indexes; the schema version
lives in a `schema_version` table of the schema the URL's `search_path` selects (so
`?options=-csearch_path%3Dmy_schema` keeps a store in its own schema). Migrations run in one
transaction under an advisory lock, so processes opening the store together do not race.

Connections are kept between calls (a few idle ones, checked with a ping before reuse), so a
server restart or a terminated backend costs one failed write, which the write-behind retries.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brickwork.errors import ConfigError, MissingDependencyError
from brickwork.store.base import SCHEMA_VERSION, Connection, Cursor, JsonKind, RunStore

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
        return flushed

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
