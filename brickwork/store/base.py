"""What every run store shares: the row types, the queries, the aggregation, the write-behind.

`RunStore` holds the logic; a backend (`SQLiteRunStore` in `brickwork.store.sqlite`,
`PostgresRunStore` in `brickwork.store.postgres`) gives it connections, its migrations and a few
SQL fragments that differ between dialects (reading a JSON field, casting to JSON). Queries are
written once, with `?` placeholders, in SQL both dialects accept.

Backends register themselves by subclassing (`class X(RunStore, schemes=("x://",))`, or
`file_backend=True` for the one that takes a file path), so this module never imports them:
`RunStore(where)` and `backend_for(where)` pick among the registered ones.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import re
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from brickwork.errors import ConfigError
from brickwork.store.buffer import WriteBehind

__all__ = [
    "INTERRUPTED",
    "RUNNING",
    "SCHEMA_VERSION",
    "SOURCES",
    "EscalationRecord",
    "NodeStats",
    "RunStore",
    "RunSummary",
    "Totals",
    "backend_for",
    "percentile",
    "storable",
]

log = logging.getLogger("brickwork.store")

#: The schema version this code writes; every backend has this many migrations.
SCHEMA_VERSION = 3

#: Where a run came from: the command line, the HTTP front, the embedded `App`, `brickwork
#: eval`, the TUI's playground ("unknown": stored before sources were recorded).
SOURCES = ("cli", "api", "app", "eval", "playground")

#: The status of a run's row while it runs, in a store that records starts
#: (`RunStore.records_starts`), and of one whose process ended before it did (`recover`).
RUNNING = "running"
INTERRUPTED = "interrupted"

_DAY_S = 86_400.0

JsonKind = Literal["text", "number", "bool"]


@dataclass(frozen=True)
class RunSummary:
    """One row of the runs table (`source`: one of `SOURCES`, where the run came from)."""

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
    source: str = "app"


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

    Costs follow `brickwork.cost.RunCost`: small calls of a node that escalated in a run do
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
        frontier_only_usd: What the node would have cost on the frontier model (steps the
            kNN decided without a call included: the top tier would have made that call).
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
    text: str = ""
    status: str = ""
    source: str = ""
    fixed: bool | None = None

    @property
    def signature(self) -> tuple[str, str, str | None, tuple[tuple[str, str], ...]]:
        """What identical escalations share: graph, node, reason and signals."""
        return (self.graph, self.node, self.reason, self.signals)


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


class Cursor(Protocol):
    """The part of a DB-API cursor the store uses."""

    @property
    def rowcount(self) -> int:
        """Rows the last statement changed."""
        ...

    def fetchone(self) -> Any:
        """The next row, or None."""
        ...

    def fetchall(self) -> list[Any]:
        """The remaining rows."""
        ...


class Connection(Protocol):
    """A connection taking `?` placeholders (sqlite3's, or an adapter over psycopg's)."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        """Run one statement."""
        ...

    def executemany(self, sql: str, seq_of_parameters: Sequence[Sequence[Any]], /) -> Any:
        """Run one statement per parameter row."""
        ...


@dataclass(frozen=True)
class _Row:
    """A run ready to write: the runs row and the events rows, JSON already encoded."""

    run: tuple[Any, ...]
    events: list[tuple[Any, ...]]
    #: A start row (status running): it sets the status of an existing row, nothing else.
    start: bool = False


@dataclass
class _SaveGroup:
    """The saves of one event loop waiting for the write under way (see `RunStore.asave`)."""

    waiting: list[tuple[RunSummary, Sequence[dict[str, Any]], asyncio.Future[None]]] = field(
        default_factory=list
    )
    writer: asyncio.Task[None] | None = None


_RUN_COLUMNS = (
    "run_id", "graph", "tenant", "mode", "text", "status", "answer", "error", "cost_usd",
    "frontier_only_usd", "latency_s", "escalations", "flags", "started_at", "source",
)  # fmt: skip


class RunStore:
    """Runs and their events, in SQLite (a file) or PostgreSQL (a URL).

    `RunStore(where)` opens the backend `where` names, like `open_store`: a
    `postgresql://` or `postgres://` URL opens a `PostgresRunStore`, anything else (a path,
    or None for `<cache>/runs.sqlite`) a `SQLiteRunStore`. Both take the same options.

    `save` never raises for a store outage and never waits on one for long: a run that cannot
    be written is kept in memory and retried in the background (see `pending`, `flush`,
    `close`). Reads go to the database and raise if it is down; runs still in memory are not
    in their results until written.

    Args:
        where: A SQLite file path, or a PostgreSQL URL (see above).
        timeout_s: How long one write may wait for the database (SQLite busy timeout;
            PostgreSQL connect timeout and the write's statement timeout) before the run
            goes to the buffer.
        max_buffered_runs: Most runs kept in memory during an outage (then the oldest go).
        max_buffered_bytes: Most bytes of runs kept in memory during an outage.
        retry_max_s: Longest wait between two retries during an outage.
    """

    #: The SQLite file (None for a PostgreSQL store).
    path: Path | None = None
    #: Where the store is, for messages: the file, or the URL without its password.
    where: str
    #: The SQL for a JSON parameter (`?` in SQLite; cast to jsonb in PostgreSQL).
    _json_param: ClassVar[str] = "?"
    #: True when `start` writes a run's row as it starts (status "running") and `recover`
    #: can tell a running run whose process is gone (the PostgreSQL store replicas share).
    records_starts: ClassVar[bool] = False
    #: URL prefixes each registered backend answers for, and the backend for file paths.
    _by_scheme: ClassVar[dict[str, type[RunStore]]] = {}
    _file_backend: ClassVar[type[RunStore] | None] = None

    def __init_subclass__(
        cls, *, schemes: tuple[str, ...] = (), file_backend: bool = False, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        for scheme in schemes:
            RunStore._by_scheme[scheme] = cls
        if file_backend:
            RunStore._file_backend = cls

    def __new__(cls, where: str | Path | None = None, **options: Any) -> RunStore:
        """`RunStore(where)` makes the registered backend's store for `where`."""
        if cls is RunStore:
            cls = backend_for(where)
        return super().__new__(cls)

    def __init__(
        self,
        where: str | Path | None = None,
        *,
        timeout_s: float = 5.0,
        max_buffered_runs: int = 10_000,
        max_buffered_bytes: int = 512 * 1024 * 1024,
        retry_max_s: float = 30.0,
    ) -> None:
        raise TypeError(f"{type(self).__name__} is abstract; use RunStore(where) or open_store")

    def _start(
        self,
        *,
        where: str,
        max_buffered_runs: int,
        max_buffered_bytes: int,
        retry_max_s: float,
    ) -> None:
        """Set up the buffer and bring the schema up to date (later, if the store is down)."""
        self.where = where
        self._schema_ready = False
        #: Per event loop, the saves gathered for the next group commit (`asave`).
        self._groups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SaveGroup] = (
            weakref.WeakKeyDictionary()
        )
        self._buffer: WriteBehind[_Row] = WriteBehind(
            self._write,
            permanent=self._is_permanent,
            name=where,
            max_items=max_buffered_runs,
            max_bytes=max_buffered_bytes,
            retry_initial_s=min(0.25, retry_max_s),
            retry_max_s=retry_max_s,
        )
        try:
            with self._session(write=True):
                pass
        except Exception as exc:
            if isinstance(exc, RuntimeError) or self._is_permanent(exc):
                raise
            log.warning(
                "run store %s is unavailable (%s: %s); its schema will be checked on the "
                "first write that gets through",
                where, type(exc).__name__, exc,
            )  # fmt: skip

    # -- what a backend provides -----------------------------------------------------------

    def _connect(self, *, write: bool) -> AbstractContextManager[Connection]:
        """A connection for one unit of work: committed on success, rolled back on error."""
        raise NotImplementedError

    def _migrate(self, conn: Connection) -> None:
        """Bring the schema up to `SCHEMA_VERSION` (raise RuntimeError if it is newer)."""
        raise NotImplementedError

    def _is_permanent(self, exc: BaseException) -> bool:
        """True if retrying a write that raised `exc` cannot help (bad data, not an outage)."""
        raise NotImplementedError

    def _json(self, column: str, key: str, kind: JsonKind) -> str:
        """SQL reading the top-level `key` of the JSON in `column`, as text/number/bool."""
        raise NotImplementedError

    def _json_text(self, column: str) -> str:
        """SQL giving the JSON in `column` as text."""
        raise NotImplementedError

    def _attempts_have_errors(self, column: str) -> str:
        """SQL: 1 if some `attempts[*].errors` list in `column` is not empty, else 0."""
        raise NotImplementedError

    def _limit_statements(self, conn: Connection) -> None:
        """Bound how long the statements of a write may wait (e.g. on a lock)."""

    def _clean(self, text: str) -> str:
        """Make a string storable (PostgreSQL cannot keep NUL characters)."""
        return text

    def _clean_json(self, text: str) -> str:
        """Make a JSON document storable (PostgreSQL's jsonb refuses escaped NUL characters)."""
        return text

    @property
    def schema_version(self) -> int:
        """The database's schema version (`SCHEMA_VERSION` once opened by this code)."""
        raise NotImplementedError

    @contextmanager
    def _session(self, *, write: bool) -> Iterator[Connection]:
        try:
            with self._connect(write=write) as conn:
                if not self._schema_ready:
                    self._migrate(conn)
                    self._schema_ready = True
                yield conn
        except BaseException:
            # The database may have been replaced or restored meanwhile: check it next time.
            self._schema_ready = False
            raise

    # -- writing ---------------------------------------------------------------------------

    def save(self, summary: RunSummary, events: Sequence[dict[str, Any]]) -> None:
        """Write a finished run and its events (replacing an earlier copy of the same run).

        Never raises because the store is down or slow: the run is then kept in memory and
        written when the store is back (`pending` counts such runs). Raises TypeError only
        for events that are not JSON-serialisable.
        """
        [error] = self.save_many([(summary, events)])
        if error is not None:
            raise error

    def save_many(
        self, runs: Sequence[tuple[RunSummary, Sequence[dict[str, Any]]]]
    ) -> list[Exception | None]:
        """`save` several runs in one transaction; per run, the error `save` would raise.

        A run whose events cannot be stored (not JSON-serialisable: TypeError) is left out,
        its error returned in its place; the others are written.
        """
        errors, batch = self._rows(runs)
        self._buffer.submit_many(batch)
        self._release_saved(runs, errors)
        return errors

    async def asave(self, summary: RunSummary, events: Sequence[dict[str, Any]]) -> None:
        """`save` from a coroutine: returns once the run is written (or kept, as `save`).

        Group commit: the saves that arrive while one is being written wait for it and then go
        together, one transaction for the lot, instead of one each (at 32 runs in flight the
        per-run thread hops and the writers' lock took more CPU than the runs). A backend that
        can write without waiting (SQLite, `_write_now`) writes on the loop; otherwise the
        batch goes through a worker thread. Nothing returns before its own run is committed,
        so a returned run is as durable as with `save`. A cancelled caller does not cancel its
        save.
        """
        loop = asyncio.get_running_loop()
        group = self._groups.get(loop)
        if group is None:
            group = self._groups[loop] = _SaveGroup()
        done: asyncio.Future[None] = loop.create_future()
        group.waiting.append((summary, events, done))
        if group.writer is None:
            group.writer = loop.create_task(self._write_groups(group))
        await asyncio.shield(done)

    def _rows(
        self, runs: Sequence[tuple[RunSummary, Sequence[dict[str, Any]]]]
    ) -> tuple[list[Exception | None], list[tuple[_Row, str, int]]]:
        """Per run, the error that keeps it out (or None); and the rows of the others."""
        errors: list[Exception | None] = []
        batch: list[tuple[_Row, str, int]] = []
        for summary, events in runs:
            try:
                row, size = self._row(summary, events)
            except Exception as exc:  # this run's events only; the others still go
                errors.append(exc)
                continue
            errors.append(None)
            batch.append((row, summary.run_id, size))
        return errors, batch

    def _release_saved(
        self,
        runs: Sequence[tuple[RunSummary, Sequence[dict[str, Any]]]],
        errors: Sequence[Exception | None],
    ) -> None:
        if self.records_starts:
            for (summary, _), error in zip(runs, errors, strict=True):
                if error is None:
                    self._release(summary.run_id)

    def _save_now(
        self, runs: Sequence[tuple[RunSummary, Sequence[dict[str, Any]]]]
    ) -> list[Exception | None] | None:
        """`save_many` on this thread, if the backend can write without waiting.

        None, nothing written, if it cannot (`_write_now`), or while runs wait in the buffer
        for an outage.
        """
        if not self._schema_ready or self._buffer.pending:
            return None
        errors, batch = self._rows(runs)
        if batch and not self._write_now([row for row, _, _ in batch]):
            return None
        self._release_saved(runs, errors)
        return errors

    async def _write_groups(self, group: _SaveGroup) -> None:
        """Write what `group` has gathered, batch after batch, until nothing waits."""
        try:
            while group.waiting:
                batch, group.waiting = group.waiting, []
                runs = [(summary, events) for summary, events, _ in batch]
                errors: list[Exception | None] | Exception | None
                try:
                    errors = self._save_now(runs)
                    if errors is None:
                        errors = await asyncio.to_thread(self.save_many, runs)
                except Exception as exc:  # neither raises; if one ever does, every caller hears
                    errors = exc
                for i, (_, _, done) in enumerate(batch):
                    if done.done():
                        continue
                    error = errors if isinstance(errors, Exception) else errors[i]
                    if error is None:
                        done.set_result(None)
                    else:
                        done.set_exception(error)
        finally:
            group.writer = None

    def start(self, summary: RunSummary) -> None:
        """Record that a run starts now in this process (when `records_starts`; else a no-op).

        A new run's row is written with status "running"; a resumed run's existing row only
        changes status (its request and trace stay). The run is claimed for this process until
        `save` (or `interrupt`) ends it, so another process's `recover` knows it is alive.

        Raises:
            RunInProgress: Another live process is running this run right now.
        """
        if not self.records_starts or self._buffer.pending:  # an outage: the end row will do
            return
        self._claim(summary.run_id)
        run = self._run_row(summary)
        size = sum(len(v) for v in run if isinstance(v, str))
        self._buffer.submit(_Row(run, [], start=True), key=summary.run_id, size=size, keep=False)

    def interrupt(self, run_id: str, error: str) -> None:
        """Mark a running run of this process interrupted (cancelled), and let it go."""

    def recover(self, run_id: str | None = None) -> list[str]:
        """Mark "interrupted" the running runs whose process is gone; returns their ids.

        Only a store that `records_starts` has such runs (one run, or every one).
        """
        return []

    def _claim(self, run_id: str) -> None:
        """Hold run `run_id` for this process (see `start`)."""

    def _release(self, run_id: str) -> None:
        """Stop holding run `run_id`."""

    def _row(self, summary: RunSummary, events: Sequence[dict[str, Any]]) -> tuple[_Row, int]:
        """A finished run's row and event rows, and their size in bytes (for the buffer)."""
        run = self._run_row(summary)
        rows = []
        size = sum(len(v) for v in run if isinstance(v, str))
        for seq, event in enumerate(events):
            body = self._clean_json(_dumps(event))
            node = event.get("node")
            node = None if node is None else self._clean(storable(str(node)))
            rows.append((run[0], seq, str(event["kind"]), node, float(event["at"]), body))
            size += len(body) + 64
        return _Row(run, rows), size

    def _run_row(self, summary: RunSummary) -> tuple[Any, ...]:
        def clean(text: str) -> str:
            return self._clean(storable(text))

        flags = self._clean_json(_dumps([str(f) for f in summary.flags]))
        return (
            clean(summary.run_id), clean(summary.graph), clean(summary.tenant),
            clean(summary.mode), clean(summary.text), clean(summary.status),
            clean(summary.answer), None if summary.error is None else clean(summary.error),
            float(summary.cost_usd), float(summary.frontier_only_usd), float(summary.latency_s),
            int(summary.escalations), flags, float(summary.started_at), clean(summary.source),
        )  # fmt: skip

    def _write(self, rows: Sequence[_Row]) -> None:
        """Write runs in one transaction (one run when saving; a batch after an outage)."""
        with self._session(write=True) as conn:
            self._limit_statements(conn)
            self._write_rows(conn, rows)

    def _write_now(self, rows: Sequence[_Row]) -> bool:
        """Write `rows` on the calling thread if that cannot wait on anything; else False.

        For `asave` on the event loop: a backend whose write is a few local statements (SQLite)
        tries it there, giving up at once (and returning False, nothing written) if the write
        would wait for a lock or fails; the caller then writes through `save_many` on a worker
        thread. Others always return False.
        """
        return False

    def _write_rows(self, conn: Connection, rows: Sequence[_Row]) -> None:
        """The statements of `_write`, in the caller's transaction."""
        start_sql, run_sql, events_sql = self._write_sql
        for row in rows:
            if row.start:  # a resumed run keeps its request, start and trace
                conn.execute(start_sql, row.run)
                continue
            # The upsert locks the run's row first, so two writers of one run take turns.
            conn.execute(run_sql, row.run)
            conn.execute("DELETE FROM events WHERE run_id = ?", (row.run[0],))
            if row.events:
                conn.executemany(events_sql, row.events)

    @functools.cached_property
    def _write_sql(self) -> tuple[str, str, str]:
        """The upserts of a start row and of a finished run, and the events' insert."""
        columns = ", ".join(_RUN_COLUMNS)
        values = ", ".join(self._json_param if c == "flags" else "?" for c in _RUN_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in _RUN_COLUMNS[1:])
        insert = f"INSERT INTO runs ({columns}) VALUES ({values}) ON CONFLICT (run_id)"
        return (
            f"{insert} DO UPDATE SET status = excluded.status, error = excluded.error",
            f"{insert} DO UPDATE SET {updates}",
            "INSERT INTO events (run_id, seq, kind, node, at, body)"
            f" VALUES (?, ?, ?, ?, ?, {self._json_param})",
        )

    @property
    def pending(self) -> int:
        """Runs saved while the store was unavailable and not written yet."""
        return self._buffer.pending

    @property
    def dropped(self) -> int:
        """Runs given up on: buffer overflow, data the database refused, or lost at close."""
        return self._buffer.dropped

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Retry now and wait until every pending run is written; False if time ran out."""
        return self._buffer.flush(timeout_s)

    def close(self, timeout_s: float = 10.0) -> bool:
        """Flush (waiting up to `timeout_s`), then stop; True if no run was lost.

        Runs still pending after the wait are logged and dropped. Saving after close writes
        directly and drops (with an error log) what cannot be written.
        """
        return self._buffer.close(timeout_s)

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def retention(self, days: float, *, now: float | None = None) -> int:
        """Delete runs (and their events) started more than `days` days ago; returns how many."""
        if not days >= 0:
            raise ValueError(f"days must be >= 0, got {days!r}; pass how many days to keep")
        cutoff = (time.time() if now is None else now) - days * _DAY_S
        with self._session(write=True) as conn:
            conn.execute(
                "DELETE FROM events WHERE run_id IN (SELECT run_id FROM runs WHERE started_at < ?)",
                (cutoff,),
            )
            return conn.execute("DELETE FROM runs WHERE started_at < ?", (cutoff,)).rowcount

    # -- reading ---------------------------------------------------------------------------

    def _run_columns(self, table: str = "") -> str:
        return ", ".join(
            self._json_text(table + c) if c == "flags" else table + c for c in _RUN_COLUMNS
        )

    def runs(
        self,
        *,
        limit: int = 100,
        graph: str | None = None,
        status: str | None = None,
        escalated: bool | None = None,
        since: float | None = None,
        source: str | None = None,
        mode: str | None = None,
        search: str | None = None,
        exclude_sources: Sequence[str] = (),
    ) -> list[RunSummary]:
        """Newest runs first, optionally filtered.

        Args:
            limit: Most runs returned.
            graph: Only this graph's runs.
            status: Only runs with this status.
            escalated: Only runs with (True) or without (False) an escalated node.
            since: Only runs started at or after this Unix time.
            source: Only runs from this source (see `SOURCES`).
            mode: Only runs in this mode (slm, hybrid, frontier).
            search: Only runs whose request, answer or error contains this text (any case).
            exclude_sources: Leave out runs from these sources.
        """
        where, args = _run_filter(
            graph, status, escalated, since, source=source, mode=mode, search=search,
            exclude_sources=exclude_sources,
        )  # fmt: skip
        query = f"SELECT {self._run_columns()} FROM runs{where} ORDER BY started_at DESC LIMIT ?"
        with self._session(write=False) as conn:
            rows = conn.execute(query, [*args, limit]).fetchall()
        return [_summary(r) for r in rows]

    def run(self, run_id: str) -> tuple[RunSummary, list[dict[str, Any]]] | None:
        """A run and its events, or None."""
        with self._session(write=False) as conn:
            row = conn.execute(
                f"SELECT {self._run_columns()} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is None:
                return None
            events = conn.execute(
                f"SELECT {self._json_text('body')} FROM events WHERE run_id = ? ORDER BY seq",
                (run_id,),
            ).fetchall()
        return _summary(row), [_loads(e[0]) for e in events]

    def graphs(self) -> list[str]:
        """Names of the graphs that have runs in the store."""
        with self._session(write=False) as conn:
            rows = conn.execute("SELECT DISTINCT graph FROM runs ORDER BY graph").fetchall()
        return [str(r[0]) for r in rows]

    def totals(
        self,
        *,
        graph: str | None = None,
        since: float | None = None,
        source: str | None = None,
        exclude_sources: Sequence[str] = (),
    ) -> Totals:
        """Counts and costs over the runs of one graph (or all), started since `since`.

        `source` keeps one source's runs; `exclude_sources` leaves some out (the dashboard
        leaves out "eval", whose runs are not traffic).
        """
        where, args = _run_filter(
            graph, None, None, since, source=source, exclude_sources=exclude_sources
        )
        query = (
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN status = 'ok' THEN 1 ELSE 0 END), 0),"
            " COALESCE(SUM(CASE WHEN escalations > 0 THEN 1 ELSE 0 END), 0),"
            " COALESCE(SUM(cost_usd), 0), COALESCE(SUM(frontier_only_usd), 0),"
            f" MIN(started_at), MAX(started_at) FROM runs{where}"
        )
        with self._session(write=False) as conn:
            row = conn.execute(query, args).fetchone()
        first, last = row[5], row[6]
        return Totals(
            int(row[0]), int(row[1]), int(row[2]), float(row[3]), float(row[4]),
            None if first is None else float(first), None if last is None else float(last),
        )  # fmt: skip

    def node_stats(
        self,
        *,
        graph: str | None = None,
        since: float | None = None,
        source: str | None = None,
        exclude_sources: Sequence[str] = (),
    ) -> list[NodeStats]:
        """Per (graph, node) statistics over runs started since `since`, sorted by graph, node.

        `source` and `exclude_sources` select runs as in `totals`.
        """
        where, args = _run_filter(
            graph, None, None, since, table="r.", source=source, exclude_sources=exclude_sources
        )
        where = where.replace(" WHERE ", " AND ", 1)
        query = f"{self._node_events()}{where} ORDER BY e.run_id, e.seq"
        with self._session(write=False) as conn:
            rows = conn.execute(query, args).fetchall()
        return _aggregate_nodes(rows)

    def cache_lookups(
        self,
        *,
        graph: str | None = None,
        since: float | None = None,
        exclude_sources: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Response-cache lookup events (`CacheLookup`) of runs started since `since`.

        Each is `{"kind", "graph", "node", "hit", "semantic", "rejected", "error",
        "saved_usd", "saved_latency_s", "lookup_s"}` (`brickwork.caching` sums them).
        """
        where, args = _run_filter(
            graph, None, None, since, table="r.", exclude_sources=exclude_sources
        )
        where = where.replace(" WHERE ", " AND ", 1)

        def field(key: str, kind: JsonKind) -> str:
            return self._json("e.body", key, kind)

        query = f"""
SELECT r.graph, e.node, {field("hit", "bool")}, {field("semantic", "bool")},
    {field("rejected", "text")}, {field("error", "text")}, {field("saved_usd", "number")},
    {field("saved_latency_s", "number")}, {field("lookup_s", "number")}
FROM events e JOIN runs r ON r.run_id = e.run_id
WHERE e.kind = 'cache_lookup'{where}"""
        with self._session(write=False) as conn:
            rows = conn.execute(query, args).fetchall()
        names = ("graph", "node", "hit", "semantic", "rejected", "error", "saved_usd")
        return [
            {"kind": "cache_lookup", **dict(zip(names, row[:7], strict=True)),
             "saved_latency_s": row[7], "lookup_s": row[8]}
            for row in rows
        ]  # fmt: skip

    def _node_events(self) -> str:
        """The node-statistics query: one row per node span, model call and decision."""

        def field(key: str, kind: JsonKind) -> str:
            return self._json("e.body", key, kind)

        return f"""
SELECT r.graph, e.run_id, e.kind, e.node,
    {field("latency_s", "number")}, {field("ok", "bool")},
    CASE WHEN e.kind = 'node_finished' THEN {self._attempts_have_errors("e.body")} ELSE 0 END,
    {field("action", "text")}, {field("model", "text")},
    {field("stand_in", "bool")}, {field("escalated", "bool")},
    {field("prompt_tokens", "number")}, {field("completion_tokens", "number")},
    {field("cost_usd", "number")}, {field("frontier_cost_usd", "number")}
FROM events e JOIN runs r ON r.run_id = e.run_id
WHERE e.kind IN ('node_finished', 'model_call', 'model_skipped', 'escalation')
    AND e.node IS NOT NULL"""

    def escalations(
        self,
        *,
        graph: str | None = None,
        node: str | None = None,
        reason: str | None = None,
        actions: Sequence[str] = ("escalate",),
        limit: int = 200,
        source: str | None = None,
        exclude_sources: Sequence[str] = (),
    ) -> list[EscalationRecord]:
        """Escalation decisions, newest first (by default only the nodes that were escalated).

        Each record carries its run's request text, status and source, and whether the node
        ended with an output (`fixed`: the escalation fixed it).
        """
        clauses = ["e.kind = 'escalation'"]
        args: list[Any] = []
        if source:
            clauses.append("r.source = ?")
            args.append(source)
        if exclude_sources:
            clauses.append(f"r.source NOT IN ({', '.join('?' * len(exclude_sources))})")
            args += list(exclude_sources)
        if actions:
            action = self._json("e.body", "action", "text")
            clauses.append(f"{action} IN ({', '.join('?' * len(actions))})")
            args += list(actions)
        for column, value in (
            ("r.graph", graph),
            ("e.node", node),
            (self._json("e.body", "reason", "text"), reason),
        ):
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        # Did the escalation fix the node? The supervisor's first finish after the decision
        # (it re-runs that node on the top tier) ended with an output.
        fixed = (
            "(SELECT CASE WHEN " + self._json("f.body", "ok", "bool") + " THEN 1 ELSE 0 END"
            " FROM events f WHERE f.run_id = e.run_id AND f.seq > e.seq"
            " AND f.kind = 'node_finished' AND f.node = 'supervisor' ORDER BY f.seq LIMIT 1)"
        )
        query = (
            f"SELECT e.run_id, r.graph, e.node, e.at, {self._json_text('e.body')},"
            f" r.text, r.status, r.source, {fixed} FROM events e"
            f" JOIN runs r ON r.run_id = e.run_id WHERE {' AND '.join(clauses)}"
            " ORDER BY e.at DESC LIMIT ?"
        )
        with self._session(write=False) as conn:
            rows = conn.execute(query, [*args, limit]).fetchall()
        records = []
        for run_id, graph_name, node_name, at, body, text, status, source_name, ok in rows:
            event = _loads(body)
            records.append(
                EscalationRecord(
                    run_id=run_id,
                    graph=graph_name,
                    node=node_name,
                    action=event.get("action", ""),
                    reason=event.get("reason"),
                    detail=event.get("detail", ""),
                    signals=tuple((str(k), str(v)) for k, v in event.get("signals") or ()),
                    at=float(at),
                    text=str(text),
                    status=str(status),
                    source=str(source_name),
                    fixed=(None if ok is None else bool(ok))
                    if event.get("action") == "escalate"
                    else False,
                )
            )
        return records


def _aggregate_nodes(rows: Sequence[Sequence[Any]]) -> list[NodeStats]:
    """Fold node-event rows into one `NodeStats` per (graph, node)."""
    escalated_nodes = {(r[1], r[3]) for r in rows if r[2] == "escalation" and r[7] == "escalate"}
    latencies: dict[tuple[str, str], list[float]] = {}
    counts: dict[tuple[str, str], dict[str, float]] = {}
    for graph, run_id, kind, node, latency, ok, invalid, action, model, *call in rows:
        stand_in, escalated, prompt, completion, cost, frontier_cost = call
        key = (graph, node)
        total = counts.setdefault(key, dict.fromkeys(_COUNTERS, 0.0))
        if kind == "node_finished":
            latencies.setdefault(key, []).append(float(latency or 0.0))
            total["failed"] += not ok
            total["validation_failures"] += bool(invalid)
        elif kind == "escalation":
            total["escalations"] += action == "escalate"
        elif kind == "model_skipped":  # no call, but the top tier would have made one
            if (run_id, node) not in escalated_nodes:
                total["frontier_only_usd"] += float(frontier_cost or 0.0)
        else:
            total["model_calls"] += 1
            total["prompt_tokens"] += float(prompt or 0)
            total["completion_tokens"] += float(completion or 0)
            total["cost_usd"] += float(cost or 0.0)
            if stand_in or str(model).split(":", 1)[0] == "frontier":
                total["frontier_only_usd"] += float(cost or 0.0)
            elif not escalated and (run_id, node) not in escalated_nodes:
                total["frontier_only_usd"] += float(frontier_cost or 0.0)
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


def _run_filter(
    graph: str | None,
    status: str | None,
    escalated: bool | None,
    since: float | None,
    *,
    table: str = "",
    source: str | None = None,
    mode: str | None = None,
    search: str | None = None,
    exclude_sources: Sequence[str] = (),
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if source:
        clauses.append(f"{table}source = ?")
        args.append(source)
    if exclude_sources:
        clauses.append(f"{table}source NOT IN ({', '.join('?' * len(exclude_sources))})")
        args += list(exclude_sources)
    if mode:
        clauses.append(f"{table}mode = ?")
        args.append(mode)
    if search:
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", search.lower()) + "%"
        clauses.append(
            "(" + " OR ".join(
                f"LOWER(COALESCE({table}{c}, '')) LIKE ? ESCAPE '\\'"
                for c in ("text", "answer", "error")
            ) + ")"
        )  # fmt: skip
        args += [pattern] * 3
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


def storable(text: str) -> str:
    r"""`text` as every database can keep it: lone UTF-16 surrogates become U+FFFD.

    Python strings can hold surrogate code points (JSON's `"\\ud83d"` decodes to one) that
    are not Unicode text: UTF-8 cannot encode them, so SQLite refuses the row and
    PostgreSQL's jsonb the document. A surrogate pair split into two code points is joined.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _dumps(value: Any) -> str:
    """JSON text for a column: non-ASCII kept as is, so `storable` can see every surrogate."""
    return storable(json.dumps(value, ensure_ascii=False))


def _loads(text: str) -> Any:
    """A stored JSON document, with any escaped lone surrogate replaced by U+FFFD.

    Rows written before `storable` existed may hold them; such a run could not be answered
    as UTF-8 JSON.
    """
    value = json.loads(text)
    if _ESCAPED_SURROGATE.search(text):
        value = _storable_value(value)
    return value


_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def _storable_value(value: Any) -> Any:
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, list):
        return [_storable_value(v) for v in value]
    if isinstance(value, dict):
        return {storable(str(k)): _storable_value(v) for k, v in value.items()}
    return value


def _summary(row: Sequence[Any]) -> RunSummary:
    values = list(row)
    values[8:11] = [float(v) for v in values[8:11]]
    values[11] = int(values[11])
    values[12] = tuple(_loads(values[12]))
    values[13] = float(values[13])
    return RunSummary(*values)


def backend_for(where: str | Path | None) -> type[RunStore]:
    """The store class for `where`: the backend registered for a URL's scheme, else the file one.

    Raises:
        ConfigError: `where` is a URL no backend handles, or a URL mangled into a Path.
    """
    text = str(where) if where is not None else ""
    if isinstance(where, str):
        for scheme, backend in RunStore._by_scheme.items():
            if text.startswith(scheme):
                return backend
    if isinstance(where, Path) and any(
        text.startswith(scheme.rstrip("/")) for scheme in RunStore._by_scheme
    ):
        raise ConfigError(
            f"run store {where!r} looks like a URL turned into a file path; "
            "pass the URL as a str (e.g. 'postgresql://user@host:5432/db')"
        )
    if "://" in text:
        known = ", ".join(sorted(RunStore._by_scheme)) or "none registered"
        raise ConfigError(
            f"unsupported run store URL {where!r}; pass a SQLite file path or a URL "
            f"starting with one of: {known}"
        )
    if RunStore._file_backend is None:  # pragma: no cover - brickwork.store registers SQLite
        raise ConfigError("no file-backed run store is registered; import brickwork.store")
    return RunStore._file_backend
