"""Write-behind for the run store: a write that fails for want of the database waits here.

`WriteBehind.submit` writes at once while the database answers, so a run is readable as soon
as `save` returns. When a write fails for a transient reason (server down, file locked or
gone), the item is kept in memory, one warning is logged for the whole outage, and a daemon
thread retries the oldest items with exponential backoff (`flush` retries at once); items
submitted meanwhile queue behind them without touching the database, so callers never wait on
a dead server twice. Once the database answers, the queue is written back in batches, one
transaction each, and one line says how many items the outage held back.

Items that can never be written (the database rejects the data itself) are dropped with an
error naming them, so one bad row cannot stall the queue. The queue is bounded (by items and
by bytes); past the bound the oldest item is dropped, with an error log that says so.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, Generic, TypeVar

__all__ = ["WriteBehind"]

log = logging.getLogger("brickwork.store")

T = TypeVar("T")

#: How long the interpreter waits at exit for buffered runs to reach their store.
EXIT_FLUSH_S = 5.0


@dataclass(frozen=True)
class _Entry(Generic[T]):
    item: T
    key: str
    size: int


class WriteBehind(Generic[T]):
    """Write items now if possible, else keep them and retry in the background.

    Args:
        write: Writes a batch of items (all or none); raises when it cannot.
        permanent: True for an error that retrying will not fix (the item is dropped).
        name: What the log lines call the destination (a path or a URL without password).
        max_items: Most items kept during an outage.
        max_bytes: Most bytes (as sized by the caller) kept during an outage.
        retry_initial_s: First wait before a retry; doubles after each failure.
        retry_max_s: Longest wait between retries.
        batch: Most queued items written in one go once the database is back.
    """

    def __init__(
        self,
        write: Callable[[Sequence[T]], None],
        *,
        permanent: Callable[[BaseException], bool],
        name: str,
        max_items: int = 10_000,
        max_bytes: int = 512 * 1024 * 1024,
        retry_initial_s: float = 0.25,
        retry_max_s: float = 30.0,
        batch: int = 100,
    ) -> None:
        if max_items < 1 or max_bytes < 1:
            raise ValueError(
                f"max_items and max_bytes must be >= 1, got {max_items!r} and {max_bytes!r}"
            )
        if not 0 < retry_initial_s <= retry_max_s:
            raise ValueError(
                f"need 0 < retry_initial_s <= retry_max_s, got {retry_initial_s!r} "
                f"and {retry_max_s!r}"
            )
        self._write = write
        self._permanent = permanent
        self.name = name
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.batch = max(1, batch)
        self._queue: deque[_Entry[T]] = deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._wake = False
        self._closed = False
        self._held = 0  # items the current outage has queued, for the recovery log line
        self._overflowed = 0  # items the current outage has dropped for want of room
        #: Items dropped since creation (overflow or rejected by the database).
        self.dropped = 0
        #: Items that were queued and later written.
        self.recovered = 0
        _LIVE.add(self)

    @property
    def pending(self) -> int:
        """Items waiting for the database."""
        with self._cond:
            return len(self._queue)

    def submit(self, item: T, *, key: str, size: int, keep: bool = True) -> None:
        """Write `item` now, or queue it if the database is unavailable. Never raises.

        Args:
            item: What `write` takes.
            key: A short name for logs (the run id).
            size: Its size in bytes, for the byte bound.
            keep: False for an item worth writing only now (a run's start row, which its end
                row supersedes): during an outage it is dropped, not queued.
        """
        self.submit_many([(item, key, size)], keep=keep)

    def submit_many(self, items: Sequence[tuple[T, str, int]], *, keep: bool = True) -> None:
        """Write `(item, key, size)` triples in one go (one `write`), as `submit` does one.

        A batch the database rejects is written again one item at a time, so only the item
        it cannot take is dropped. Never raises.
        """
        entries = [_Entry(item, key, size) for item, key, size in items]
        if not entries:
            return
        with self._cond:
            closed = self._closed
            # During an outage new runs queue behind the old ones, without waiting on it.
            if self._queue and not closed:
                if keep:
                    for entry in entries:
                        self._enqueue(entry)
                return
        try:
            self._write([e.item for e in entries])
        except Exception as exc:  # a store failure must never reach the run
            if not keep:
                log.debug(
                    "run store %s: not written now, so not kept: %s",
                    self.name, ", ".join(e.key for e in entries),
                )  # fmt: skip
                return
            if (self._permanent(exc) or closed) and len(entries) > 1:
                for entry in entries:  # find the one it cannot take
                    self.submit(entry.item, key=entry.key, size=entry.size)
                return
            if self._permanent(exc) or closed:
                self._drop_rejected(entries[0], exc)
                return
            with self._cond:
                if not self._queue and not self._held:
                    log.warning(
                        "run store %s is unavailable (%s: %s); keeping runs in memory and "
                        "retrying",
                        self.name, type(exc).__name__, exc,
                    )  # fmt: skip
                for entry in entries:
                    self._enqueue(entry)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Retry now and wait until every queued item is written; False if time ran out."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            if self._queue:
                self._wake = True
                self._cond.notify_all()
            while self._queue:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout_s: float = 10.0) -> bool:
        """Flush, then stop retrying; logs what could not be written. True if nothing was lost."""
        flushed = self.flush(timeout_s)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread, lost = self._thread, len(self._queue)
            if lost:
                keys = ", ".join(e.key for e in list(self._queue)[:5])
                log.error(
                    "run store %s closed with %d runs still unwritten (%s%s); they are lost",
                    self.name, lost, keys, ", ..." if lost > 5 else "",
                )  # fmt: skip
                self.dropped += lost
                self._queue.clear()
                self._bytes = 0
        if thread is not None:
            thread.join(timeout=1.0)  # it stops at once unless a write is under way
        _LIVE.discard(self)
        return flushed

    # -- the retry thread ------------------------------------------------------------------

    def _enqueue(self, entry: _Entry[T]) -> None:
        """Queue under the lock, dropping the oldest past the bounds; starts the retrier."""
        self._queue.append(entry)
        self._bytes += entry.size
        self._held += 1
        while len(self._queue) > 1 and (
            len(self._queue) > self.max_items or self._bytes > self.max_bytes
        ):
            oldest = self._queue.popleft()
            self._bytes -= oldest.size
            self.dropped += 1
            self._overflowed += 1
            if self._overflowed == 1 or self._overflowed % 1000 == 0:
                log.error(
                    "run store %s: buffer full (%d runs, %d bytes); dropping the oldest runs "
                    "(%d so far in this outage, the last %s)",
                    self.name, len(self._queue), self._bytes, self._overflowed, oldest.key,
                )  # fmt: skip
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._retry_loop, name=f"brickwork-store-retry[{self.name}]", daemon=True
            )
            self._thread.start()
        self._cond.notify_all()

    def _retry_loop(self) -> None:
        delay = self.retry_initial_s
        failed = True  # the thread starts right after a failed write: wait before the first try
        singles = 0  # after a rejected batch, write its items one by one to find the bad one
        while True:
            with self._cond:
                if failed:
                    if self._closed:
                        self._thread = None
                        return
                    self._cond.wait_for(lambda: self._wake or self._closed, timeout=delay)
                    self._wake = False
                if not self._queue:
                    self._thread = None
                    return
                entries = list(islice(self._queue, 1 if singles else self.batch))
            try:
                self._write([e.item for e in entries])
            except Exception as exc:  # kept and retried: the runs are not lost
                if self._permanent(exc):
                    if len(entries) > 1:
                        singles = len(entries)
                    else:
                        self._drop_rejected(entries[0], exc)
                        with self._cond:
                            self._remove(entries)
                            self._end_outage_if_drained()
                        singles = max(0, singles - 1)
                    failed = False
                    continue
                log.debug("run store %s still unavailable: %s", self.name, exc)
                if failed:
                    delay = min(delay * 2, self.retry_max_s)
                failed = True
                continue
            failed, delay, singles = False, self.retry_initial_s, max(0, singles - len(entries))
            with self._cond:
                self.recovered += self._remove(entries)
                self._end_outage_if_drained()

    def _end_outage_if_drained(self) -> None:
        """Under the lock: if the queue is empty, log the outage's end and wake flushers."""
        if not self._queue and self._held:
            log.warning(
                "run store %s is back; wrote the runs kept during the outage (%d queued, "
                "%d dropped for want of room)",
                self.name, self._held, self._overflowed,
            )  # fmt: skip
            self._held = self._overflowed = 0
        self._cond.notify_all()

    def _remove(self, entries: list[_Entry[T]]) -> int:
        """Unqueue written entries; returns how many were still queued."""
        removed = 0
        for entry in entries:
            # The overflow rule may already have dropped some while they were being written.
            if self._queue and self._queue[0] is entry:
                self._queue.popleft()
                self._bytes -= entry.size
                removed += 1
        return removed

    def _drop_rejected(self, entry: _Entry[T], exc: BaseException) -> None:
        with self._cond:
            self.dropped += 1
            if self._held:
                self._held -= 1
        log.error(
            "run store %s could not take run %s (%s: %s); it is not saved",
            self.name, entry.key, type(exc).__name__, exc,
        )  # fmt: skip


_LIVE: weakref.WeakSet[WriteBehind[Any]] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    """Give buffered runs a last chance to reach their store before the process ends."""
    deadline = time.monotonic() + EXIT_FLUSH_S
    for buffer in list(_LIVE):
        if buffer.pending:
            buffer.close(max(0.0, deadline - time.monotonic()))
