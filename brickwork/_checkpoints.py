"""The default durable checkpointer: LangGraph's SQLite saver, called inline from async code.

LangGraph's `AsyncSqliteSaver` sends every checkpoint read and write through `aiosqlite`,
one hop to a worker thread and back per statement. A run of a one-node graph makes about ten
of them, and on a busy 2-core machine each hop costs milliseconds of waiting for the thread to
be scheduled: in `benchmarks/overhead.py` the checkpointer was most of a one-node run's wall
time. The statements themselves take tens of microseconds on a WAL database with
`synchronous=NORMAL`, so `InlineSqliteSaver` runs them directly on the event loop instead,
through the synchronous `SqliteSaver` (which serialises access with its own lock).

WAL checkpoints (copying the log back into the database, with its fsyncs) are the one slow
thing left: SQLite runs them inside whichever commit crosses `wal_autocheckpoint`, which put a
5-10 ms stall on the event loop every few hundred runs (the one-node run's p99 in
`benchmarks/overhead.py`: 9.7 ms with them, 2.7 ms without). So the writing connection has
automatic checkpoints off, and a daemon thread (`brickwork.store._wal`) with its own connection
runs a PASSIVE checkpoint (which never blocks the writer) whenever the log has grown past
`WAL_CHECKPOINT_BYTES`, and a final one when the saver closes.

Commits are grouped. `SqliteSaver` commits after every statement: five or six commits for a
one-node run, each a write to the log, half a millisecond apiece on a busy machine. Called from
an event loop, `InlineSqliteSaver` commits at most every `COMMIT_WINDOW_S` instead (a timer on
the loop, set by the first write after a commit), every write in between sharing the commit;
called outside one, it commits at once, like `SqliteSaver`. `App` commits at once for a run
that keeps its checkpoints (interrupted, failed with an exception, timed out, or
`keep_checkpoints`), before its `RunFinished`; a run that finished deletes its checkpoints, and
that deletion rides on the next commit. One saver (one connection, one transaction) serves
every App in the process that uses the same file: two connections on one event loop would
wait on each other's open transaction with the loop blocked.

The statements wait for the commit too: `put` and `put_writes` serialise the state at once
(what is written is the state as it was then) but keep their rows in memory, per thread, until
the commit runs them; the saver's own reads of a thread run its kept rows first. A thread
deleted before its commit never reaches the database: that is a finished run of a one-node
graph, whose one checkpoint LangGraph writes as the run exits (`App`'s default durability
"exit" for such graphs, see `brickwork.graphs.builder.default_durability`), so such a run
costs the checkpoint file one SELECT and nothing else.

Durability: WAL with `synchronous=NORMAL` survives a crash of the process (the case
`App.aresume` exists for). What a crash can lose is the last `COMMIT_WINDOW_S` of checkpoint
writes of runs still in flight, which then resume from their checkpoint before that (the
guarantee of LangGraph's own `durability="async"`); a run that `ainvoke` returned is not
affected (its trace is in the run store; an interrupted run's state was committed before it
returned). A power loss can drop the last transactions before the next WAL checkpoint. Use
PostgreSQL (`checkpoints="postgresql://..."`) where that matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.sqlite import SqliteSaver

from brickwork.store._wal import WAL_CHECKPOINT_BYTES, WalCheckpointer

__all__ = ["COMMIT_WINDOW_S", "WAL_CHECKPOINT_BYTES", "InlineSqliteSaver", "WalCheckpointer"]

log = logging.getLogger(__name__)

#: Longest a checkpoint write made on an event loop waits for its commit.
COMMIT_WINDOW_S = 0.01


#: Most threads remembered as having nothing in the database (past it, the memory is reset).
_MAX_UNWRITTEN = 10_000

#: Marks a kept `put` among a thread's pending statements (see `InlineSqliteSaver.put`).
_PUT: Any = object()


def _on_a_loop() -> bool:
    """True when called from a running event loop (where commits are grouped)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _Deferred:
    """What `InlineSqliteSaver.cursor` gives a writer: it keeps the statements for the commit."""

    def __init__(self, saver: InlineSqliteSaver) -> None:
        self._saver = saver

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._saver._defer(sql, params, many=False)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._saver._defer(sql, rows, many=True)


#: The savers open in this process, by resolved path (see `InlineSqliteSaver.open`).
_OPEN: dict[str, InlineSqliteSaver] = {}
_OPEN_LOCK = threading.Lock()


class InlineSqliteSaver(SqliteSaver):
    """`SqliteSaver` whose async methods run its synchronous ones in place."""

    def __init__(
        self, conn: sqlite3.Connection, *, serde: SerializerProtocol | None = None
    ) -> None:
        super().__init__(conn, serde=serde)
        #: Writers' statements waiting for the next commit, by thread (see `cursor`).
        self._pending: dict[str, list[tuple[str, Any, bool]]] = {}
        #: Threads known to have nothing in the database (deleting them needs no statement).
        self._unwritten: set[str] = set()
        #: Threads their caller has just made up (see `expect_new`): nothing to read yet.
        self._new: set[str] = set()
        #: Threads whose checkpoints are serialised at the commit, not at `put` (`expect_new`).
        self._lazy: set[str] = set()
        #: The thread running `_flush`'s kept puts (its cursor writes at once, under the lock).
        self._flushing: int | None = None

    @classmethod
    def open(cls, path: str | Path) -> InlineSqliteSaver:
        """The saver of the checkpoint database at `path` (created if needed).

        Savers are shared: opening a file this process has open gives the same saver, which
        closes when every opener has closed it.
        """
        key = str(Path(path).resolve())
        with _OPEN_LOCK:
            saver = _OPEN.get(key)
            if saver is not None and type(saver) is cls:
                saver._users += 1
                return saver
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint=0")  # the WalCheckpointer thread does it
            saver = cls(conn)
            saver.setup()
            saver.wal = WalCheckpointer(Path(path)).start()
            saver._key, saver._users = key, 1
            _OPEN[key] = saver
            return saver

    wal: WalCheckpointer | None = None
    #: The event loop a commit is scheduled on (the writes since the last one are pending).
    _commit_due: asyncio.AbstractEventLoop | None = None
    _closed = False
    _key = ""
    _users = 1

    @contextlib.contextmanager
    def cursor(self, transaction: bool = True) -> Iterator[sqlite3.Cursor]:
        """As `SqliteSaver.cursor`; a writing cursor keeps its statements for the next commit.

        `put` and `put_writes` are the only writers that use it: their rows (serialised
        already) wait in memory, per thread, for the commit, so a thread deleted before then
        never reaches the database.
        """
        if transaction and self._flushing == threading.get_ident():
            cur = self.conn.cursor()  # `_flush` running a kept put: it holds the lock
            try:
                yield cur
            finally:
                cur.close()
            return
        if transaction:
            yield cast(sqlite3.Cursor, _Deferred(self))
            self._commit_soon()
            return
        with self.lock:
            self.setup()
            cur = self.conn.cursor()
            try:
                yield cur
            finally:
                cur.close()

    def _defer(self, sql: str, params: Any, many: bool) -> None:
        """Keep one statement of a writer for the commit, under its thread."""
        rows = list(params) if many else params
        if many and not rows:
            return
        thread = str(rows[0][0] if many else rows[0])  # every writer's first column
        with self.lock:
            self._pending.setdefault(thread, []).append((sql, rows, many))

    def _flush(self, thread: str | None = None) -> None:
        """Under the lock: run the kept statements (of one thread, or all) in their order."""
        threads = list(self._pending) if thread is None else [thread]
        for name in threads:
            statements = self._pending.pop(name, None)
            if not statements:
                continue
            self._unwritten.discard(name)
            self._lazy.discard(name)
            self.setup()
            for sql, params, many in statements:
                if sql is _PUT:  # a checkpoint kept as it was put: serialised and written now
                    self._flushing = threading.get_ident()
                    try:
                        SqliteSaver.put(self, *params)
                    finally:
                        self._flushing = None
                elif many:
                    self.conn.executemany(sql, params)
                else:
                    self.conn.execute(sql, params)

    def _commit_soon(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a synchronous caller: commit now
            self.commit()
            return
        # A commit scheduled on another loop (one that may stop before running it) does not
        # count.
        if self._commit_due is not loop:
            self._commit_due = loop
            loop.call_later(COMMIT_WINDOW_S, self._commit_in_background)

    def _commit_in_background(self) -> None:
        try:
            self.commit()
        except sqlite3.Error:  # the next commit tries again; the runs themselves go on
            log.exception("could not commit checkpoint writes to %s", self._key)

    def commit(self) -> None:
        """Write and commit what was written since the last commit (a no-op when nothing was)."""
        with self.lock:
            self._commit_due = None
            if self._closed:
                return
            self._flush()
            if self.conn.in_transaction:
                self.conn.commit()

    def expect_new(self, thread_id: str, *, once: bool = False) -> None:
        """Say that `thread_id` is new (a run id just made up): its first read needs no SELECT.

        `App` calls it for the ids it mints, never for one a caller passed in. LangGraph reads
        a thread's latest checkpoint as every run starts; for a new thread that read finds
        nothing, and skipping it saves a statement a run.

        `once`: the thread's run checkpoints only as it stops (LangGraph's durability "exit"),
        and nothing changes its state after that. Its checkpoint is then kept as it was put
        and serialised only if it is committed: a finished run's is deleted first and never
        serialised at all. (`App` commits at once a run that keeps its checkpoint.)
        """
        thread = str(thread_id)
        with self.lock:
            if len(self._new) >= _MAX_UNWRITTEN or len(self._lazy) >= _MAX_UNWRITTEN:
                self._new.clear()  # forgetting only costs the SELECT
                self._lazy.clear()  # and serialising at `put`
            self._new.add(thread)
            if once:
                self._lazy.add(thread)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """As `SqliteSaver.put`; a thread's checkpoint taken `once` is serialised at the commit."""
        configurable = config["configurable"]
        thread = str(configurable["thread_id"])
        if thread not in self._lazy or not _on_a_loop():
            return super().put(config, checkpoint, metadata, new_versions)
        with self.lock:
            kept = (config, checkpoint, metadata, new_versions)
            self._pending.setdefault(thread, []).append((_PUT, kept, False))
        self._commit_soon()
        return {
            "configurable": {
                "thread_id": configurable["thread_id"],
                "checkpoint_ns": configurable["checkpoint_ns"],
                "checkpoint_id": checkpoint["id"],
            }
        }

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """As `SqliteSaver.get_tuple`, with the thread's writes not yet committed."""
        configurable = config["configurable"]
        thread = str(configurable["thread_id"])
        fresh = not configurable.get("checkpoint_ns") and not get_checkpoint_id(config)
        with self.lock:
            if thread in self._new:
                self._new.discard(thread)
                if fresh and thread not in self._pending:
                    self._remember_unwritten(thread)
                    return None
            self._flush(thread)
        found = super().get_tuple(config)
        if found is None and fresh:
            with self.lock:  # a thread with nothing in the database (a new run, so far)
                self._remember_unwritten(thread)
        return found

    def _remember_unwritten(self, thread: str) -> None:
        """Under the lock: `thread` has nothing in the database (so far)."""
        if len(self._unwritten) >= _MAX_UNWRITTEN:
            self._unwritten.clear()  # forgetting only costs a DELETE later
        self._unwritten.add(thread)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """As `SqliteSaver.list`, with the writes not yet committed."""
        with self.lock:
            self._flush()
        yield from super().list(config, filter=filter, before=before, limit=limit)

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, Any]:
        """As `SqliteSaver.get_delta_channel_history`, with the writes not yet committed."""
        with self.lock:
            self._flush(str(config["configurable"]["thread_id"]))
        return super().get_delta_channel_history(config=config, channels=channels)

    def delete_thread(self, thread_id: str) -> None:
        """Delete a thread's checkpoints and writes: those kept for the commit, and any stored.

        A thread that has nothing in the database (a run whose writes were all still waiting
        for the commit) costs no statement at all.
        """
        thread = str(thread_id)
        with self.lock:
            self._pending.pop(thread, None)
            self._new.discard(thread)
            self._lazy.discard(thread)
            if thread in self._unwritten:
                self._unwritten.discard(thread)
                return
            self.setup()
            self.conn.execute("DELETE FROM checkpoints WHERE thread_id = ?", (thread,))
            self.conn.execute("DELETE FROM writes WHERE thread_id = ?", (thread,))
        self._commit_soon()

    def close(self) -> None:
        """Commit; then, once every opener has closed it, stop the WAL thread and close.

        The WAL thread checkpoints the log one last time before the connection closes.
        """
        with contextlib.suppress(sqlite3.Error):
            self.commit()
        with _OPEN_LOCK:
            self._users -= 1
            if self._users > 0 or self._closed:
                return
            if _OPEN.get(self._key) is self:
                del _OPEN[self._key]
        self._closed = True
        if self.wal is not None:
            with contextlib.suppress(sqlite3.Error):
                self.wal.stop(final=self.conn)
            self.wal = None
        self.conn.close()

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """See `get_tuple`."""
        return self.get_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """See `list`."""
        for item in self.list(config, filter=filter, before=before, limit=limit):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """See `put`."""
        return self.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """See `put_writes`."""
        self.put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        """See `delete_thread`."""
        self.delete_thread(thread_id)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, Any]:
        """See `get_delta_channel_history`."""
        return self.get_delta_channel_history(config=config, channels=channels)


# LangGraph asks, as every run starts, whether the saver's `put_writes` takes `task_path`
# (`inspect.signature` of the bound method: 30-50 microseconds a run here). A signature set
# on the functions answers that at once.
for _name in ("put_writes", "aput_writes"):
    _method = getattr(InlineSqliteSaver, _name)
    _method.__signature__ = inspect.signature(_method)
