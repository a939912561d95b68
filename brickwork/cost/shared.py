"""Budgets shared across processes, in PostgreSQL (psycopg 3, the `postgres` extra).

    book = BudgetBook({"acme": 50.0}, shared="postgresql://postgres@127.0.0.1:5432/brickwork")

Every API replica that opens the same table counts against the same tenant limits. Two
tables (created on first use): `<table>` holds each budget's limit and what it spent,
`<table>_holds` the amounts held for calls under way, each with an expiry. A hold is one
transaction that locks the budget's row (an upsert, which also records the limit this process
is configured with), drops expired holds, and adds the new hold only if `limit - spent - held`
covers it: concurrent reservers on one budget take turns on its row, so no two of them can
both see the same money left, whichever process they run in.

Settling a hold (delete it, add what the call cost to `spent`) and charging unreserved calls
are written by a background thread, in batches: a run never waits for them. That is safe for
the limit: a hold stays in the table, counted, until its settlement commits in the same
transaction that adds the spending. A process that dies with holds still open leaks nothing
for long: holds expire after `hold_s` (default 15 minutes, longer than a run may last), and
only unexpired holds count.
"""

from __future__ import annotations

import atexit
import logging
import queue
import re
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from brickwork.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresBudgets"]

log = logging.getLogger("brickwork.cost")

#: Float slack when comparing dollar sums (as in `brickwork.cost.budget`).
_EPSILON_USD = 1e-9

_TABLE = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")

#: Idle connections kept for holds from concurrent runs.
_MAX_IDLE = 4


class PostgresBudgets:
    """A `BudgetBackend` in PostgreSQL: holds, settlements and charges of shared budgets.

    Args:
        url: A libpq URL (`postgresql://user@host:5432/db`).
        table: The budgets table (`<table>_holds` beside it); lower-case letters, digits, `_`.
        hold_s: How long a hold counts if it is never settled (its process died).
        timeout_s: Connect and statement timeout of each transaction.
    """

    def __init__(
        self,
        url: str,
        *,
        table: str = "brickwork_budgets",
        hold_s: float = 900.0,
        timeout_s: float = 5.0,
    ) -> None:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - the extra is installed in CI
            raise MissingDependencyError("psycopg", "postgres", "shared budgets") from exc
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"shared budgets need a postgresql:// URL, got {url!r}")
        if not _TABLE.match(table):
            raise ConfigError(
                f"budget table {table!r} must be lower-case letters, digits and _ (at most 48)"
            )
        if not hold_s > 0:
            raise ConfigError(f"hold_s must be > 0 seconds, got {hold_s!r}")
        self.url = url
        self.table = table
        self.hold_s = hold_s
        self.timeout_s = timeout_s
        self._psycopg = psycopg
        self._idle: list[psycopg.Connection[Any]] = []
        self._idle_lock = threading.Lock()
        self._ready = False
        self._writes: queue.Queue[tuple[str, str, str | None, float] | None] = queue.Queue()
        self._unwritten = 0  # queued or being written, under _done
        self._done = threading.Condition()
        self._writer: threading.Thread | None = None
        #: Settlements and charges given up on (the database refused them for good).
        self.dropped = 0
        _LIVE.add(self)

    # -- BudgetBackend ---------------------------------------------------------------------

    def hold(
        self, key: str, limit_usd: float, amount_usd: float
    ) -> tuple[str | None, float, float]:
        """Hold `amount_usd` on `key` if `limit_usd` covers it; (id or None, spent, held)."""
        t = self.table
        with self._transaction() as conn:
            # The upsert locks the budget's row until commit: holders of one budget take turns.
            row = conn.execute(
                f"INSERT INTO {t} (key, limit_usd, spent_usd) VALUES (%s, %s, 0)"
                f" ON CONFLICT (key) DO UPDATE SET limit_usd = excluded.limit_usd"
                f" RETURNING spent_usd",
                (key, limit_usd),
            ).fetchone()
            spent = float(row[0]) if row else 0.0
            now = time.time()
            conn.execute(f"DELETE FROM {t}_holds WHERE key = %s AND expires_at <= %s", (key, now))
            held_row = conn.execute(
                f"SELECT coalesce(sum(amount_usd), 0) FROM {t}_holds WHERE key = %s", (key,)
            ).fetchone()
            held = float(held_row[0]) if held_row else 0.0
            if amount_usd > limit_usd - spent - held + _EPSILON_USD:
                return None, spent, held
            hold = uuid.uuid4().hex
            conn.execute(
                f"INSERT INTO {t}_holds (id, key, amount_usd, expires_at) VALUES (%s, %s, %s, %s)",
                (hold, key, amount_usd, now + self.hold_s),
            )
        return hold, spent, held + amount_usd

    def settle(self, key: str, hold: str, actual_usd: float) -> None:
        """Drop `hold` and charge `actual_usd` (in the background, one transaction)."""
        self._submit(("settle", key, hold, actual_usd))

    def charge(self, key: str, amount_usd: float) -> None:
        """Charge `amount_usd` without a hold (in the background)."""
        self._submit(("charge", key, None, amount_usd))

    def state(self, key: str) -> tuple[float, float]:
        """(spent, held) dollars of `key` as the database has them now."""
        t = self.table
        with self._transaction() as conn:
            row = conn.execute(f"SELECT spent_usd FROM {t} WHERE key = %s", (key,)).fetchone()
            held = conn.execute(
                f"SELECT coalesce(sum(amount_usd), 0) FROM {t}_holds"
                f" WHERE key = %s AND expires_at > %s",
                (key, time.time()),
            ).fetchone()
        return (float(row[0]) if row else 0.0, float(held[0]) if held else 0.0)

    # -- lifecycle -------------------------------------------------------------------------

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every settlement and charge is written; False if time ran out."""
        deadline = time.monotonic() + timeout_s
        with self._done:
            while self._unwritten:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._done.wait(remaining)
        return True

    def close(self, timeout_s: float = 10.0) -> bool:
        """Flush, stop the writer and close the connections; True if nothing was lost."""
        flushed = self.flush(timeout_s)
        writer = self._writer
        if writer is not None:
            self._writes.put(None)
            writer.join(timeout=timeout_s)
            self._writer = None
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        _LIVE.discard(self)
        return flushed

    # -- internals -------------------------------------------------------------------------

    def _submit(self, write: tuple[str, str, str | None, float]) -> None:
        with self._done:
            self._unwritten += 1
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name=f"brickwork-budgets[{self.table}]", daemon=True
                )
                self._writer.start()
        self._writes.put(write)

    def _write_loop(self) -> None:
        delay = 0.1
        while True:
            first = self._writes.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < 200:
                try:
                    more = self._writes.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._writes.put(None)  # stop after this batch
                    break
                batch.append(more)
            for attempt in range(6):
                try:
                    self._write(batch)
                    break
                except self._psycopg.Error as exc:
                    if attempt == 5 or isinstance(exc, self._psycopg.DataError):
                        self.dropped += len(batch)
                        log.error(
                            "shared budgets %s: could not write %d settlements/charges (%s: %s)",
                            self.table, len(batch), type(exc).__name__, exc,
                        )  # fmt: skip
                        break
                    time.sleep(delay * 2**attempt)
            with self._done:
                self._unwritten -= len(batch)
                self._done.notify_all()

    def _write(self, batch: list[tuple[str, str, str | None, float]]) -> None:
        t = self.table
        with self._transaction() as conn:
            # Rows in one order in every process: two batches cannot deadlock on them.
            for kind, key, hold, amount in sorted(batch, key=lambda write: write[1]):
                # The spending is added before the hold goes, in the same transaction.
                conn.execute(
                    f"INSERT INTO {t} (key, limit_usd, spent_usd) VALUES (%s, NULL, %s)"
                    f" ON CONFLICT (key) DO UPDATE SET spent_usd = {t}.spent_usd + %s",
                    (key, amount, amount),
                )
                if kind == "settle":
                    conn.execute(f"DELETE FROM {t}_holds WHERE id = %s", (hold,))

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        conn = self._checkout()
        try:
            if not self._ready:
                # In a transaction of its own: creating the index locks the tables, and
                # holding that lock into a hold deadlocked against other processes' holds.
                with conn.transaction():
                    self._setup(conn)
                self._ready = True
            with conn.transaction():
                timeout_ms = max(1, round(self.timeout_s * 1000))
                conn.execute(
                    "SELECT set_config('statement_timeout', %s, true)", (f"{timeout_ms}ms",)
                )
                yield conn
        except BaseException:
            conn.close()
            raise
        with self._idle_lock:
            if len(self._idle) < _MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def _checkout(self) -> psycopg.Connection[Any]:
        with self._idle_lock:
            if self._idle:
                return self._idle.pop()
        return self._psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=max(2, round(self.timeout_s)),
            application_name="brickwork-budgets",
        )

    def _setup(self, conn: psycopg.Connection[Any]) -> None:
        t = self.table
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('brickwork:budgets:' || %s))", (t,))
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {t} (key text PRIMARY KEY,"
            " limit_usd double precision, spent_usd double precision NOT NULL DEFAULT 0)"
        )
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {t}_holds (id text PRIMARY KEY, key text NOT NULL,"
            " amount_usd double precision NOT NULL, expires_at double precision NOT NULL)"
        )
        conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_holds_key ON {t}_holds (key, expires_at)")


_LIVE: weakref.WeakSet[PostgresBudgets] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    """Give settlements and charges a last chance to reach the database."""
    for budgets in list(_LIVE):
        budgets.flush(2.0)
