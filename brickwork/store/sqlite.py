"""The run store in a SQLite file (the default: `<cache>/runs.sqlite`).

WAL mode, a busy wait of up to `timeout_s`, `PRAGMA user_version` for the schema version.

Writes share one connection, kept open between them: a connection per write made every
`save` the last connection to close, and SQLite then checkpoints the log into the database
and deletes it (copies and an fsync), about 2 ms of a one-node run's 3 ms save. The kept
connection is re-opened when the file at the path is no longer the one it opened (moved,
deleted, replaced), so a write never goes to a file that has left its path; and after any
error. Reads open their own connection each time.

The writers' connection never checkpoints the log itself (`wal_autocheckpoint=0`): SQLite
would do it inside whichever save made the log cross 1,000 pages, about one save in a hundred
here, and that save took 5-6 ms instead of 0.2 (the p99 of a durable one-node run). A
`brickwork.store._wal.WalCheckpointer` thread checkpoints it once it has grown past 4 MB instead;
the last connection to close checkpoints and removes it, as before.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from pathlib import Path

from brickwork._settings import cache_dir
from brickwork.store._wal import WalCheckpointer
from brickwork.store.base import SCHEMA_VERSION, Connection, JsonKind, RunStore, _Row

__all__ = ["SQLiteRunStore"]

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
    # Where each run came from (cli, api, app, eval, playground); older rows are "unknown"
    # except eval runs, which always had tenant "eval".
    """
    ALTER TABLE runs ADD COLUMN source TEXT NOT NULL DEFAULT 'unknown';
    UPDATE runs SET source = 'eval' WHERE tenant = 'eval';
    CREATE INDEX IF NOT EXISTS runs_source ON runs (source, started_at DESC);
    """,
)
assert len(_MIGRATIONS) == SCHEMA_VERSION

#: Errors retrying cannot fix: the data (or the SQL) is wrong, not the database's health.
_PERMANENT = (
    sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError, sqlite3.ProgrammingError,
    TypeError, ValueError, OverflowError,
)  # fmt: skip


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration script, one by one (`executescript` would commit)."""
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending.strip()
            pending = ""


class SQLiteRunStore(RunStore, file_backend=True):
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
        # The writers' connection and the (device, inode) of the file it opened.
        self._writer: sqlite3.Connection | None = None
        self._writer_file: tuple[int, int] | None = None
        #: The busy timeout the writers' connection has now (`_write_now` sets it to 0).
        self._writer_busy_ms = 0
        #: Checkpoints the log for the writers' connection (started with it).
        self._wal: WalCheckpointer | None = None
        self._start(
            where=str(path),
            max_buffered_runs=max_buffered_runs,
            max_buffered_bytes=max_buffered_bytes,
            retry_max_s=retry_max_s,
        )

    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[Connection]:
        """A connection for one unit of work: committed on success, rolled back on error.

        Writes take turns on the kept writers' connection; reads get one of their own.
        """
        if not write:
            with closing(self._open()) as conn, conn:
                yield conn
            return
        with self._lock:
            conn = self._writer_connection()
            try:
                self._busy_wait(conn, int(self.timeout_s * 1000))
                with conn:
                    yield conn
            except BaseException:
                self._close_writer()  # the next write starts from a fresh connection
                raise

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._file, timeout=self.timeout_s, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL cannot corrupt the file; a power cut may lose the last runs.
            conn.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    def _identity(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self._file)
        except OSError:
            return None
        return info.st_dev, info.st_ino

    def _writer_connection(self) -> sqlite3.Connection:
        """Under the lock: the kept connection, re-opened if the path's file changed."""
        if self._writer is not None and self._identity() != self._writer_file:
            self._close_writer()
        if self._writer is None:
            self._writer = self._open()
            self._writer.execute("PRAGMA wal_autocheckpoint=0")  # see the module docstring
            self._writer_file = self._identity()
            self._writer_busy_ms = int(self.timeout_s * 1000)
            if self._wal is None:
                self._wal = WalCheckpointer(self._file).start()
                weakref.finalize(self, self._wal.cancel)  # a store dropped unclosed
        return self._writer

    def _close_writer(self) -> None:
        writer, self._writer, self._writer_file = self._writer, None, None
        if writer is not None:
            # A connection to a file that has gone: there is nothing left to keep.
            with suppress(sqlite3.Error):
                writer.close()

    def _busy_wait(self, conn: sqlite3.Connection, ms: int) -> None:
        """Under the lock: set the writers' connection's busy timeout, if it is not `ms`."""
        if self._writer_busy_ms != ms:
            conn.execute(f"PRAGMA busy_timeout = {ms}")
            self._writer_busy_ms = ms

    def _write_now(self, rows: Sequence[_Row]) -> bool:
        """Write on this thread (the event loop's, for `asave`) unless that would wait.

        A one-run transaction on the kept connection is 0.1-0.2 ms of CPU, less than the hop
        to a worker thread and back; so it runs where it is asked, as the checkpointer's writes
        do. It never waits: not for this store's other writers (the lock is only tried), not
        for another connection's write lock (a busy timeout of 0 for this attempt). Whatever
        stops it (busy, any error) rolls it back and returns False: the caller then writes
        through the worker thread, with the normal busy wait, retries and outage buffer.
        """
        if not self._lock.acquire(blocking=False):
            return False
        try:
            conn = self._writer_connection()
            self._busy_wait(conn, 0)
            with conn:
                self._write_rows(conn, rows)
        except sqlite3.OperationalError:  # busy or locked: the thread will wait for it
            return False
        except Exception:  # anything else: the thread's write reports or buffers it
            self._close_writer()
            return False
        finally:
            self._lock.release()
        return True

    def close(self, timeout_s: float = 10.0) -> bool:
        """Flush and stop (see `RunStore.close`), then close the writers' connection."""
        flushed = super().close(timeout_s)
        with self._lock:
            self._close_writer()
            wal, self._wal = self._wal, None
        if wal is not None:
            wal.stop()
        return flushed

    def _migrate(self, conn: Connection) -> None:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"run store schema version {version!r} is newer than this brickwork "
                f"({SCHEMA_VERSION!r}); upgrade brickwork or use another store file"
            )
        if version == SCHEMA_VERSION:
            return
        # Stores opened together (threads, processes) migrate one at a time: the write lock is
        # taken before the version is read again, so a second opener finds the work done.
        conn.execute("BEGIN IMMEDIATE")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        for number in range(version, SCHEMA_VERSION):
            for statement in _statements(_MIGRATIONS[number]):
                conn.execute(statement)
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
