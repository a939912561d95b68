"""The run store's logic without a database server: percentiles, backend choice, write-behind.

The queries themselves run against SQLite and PostgreSQL in
tests/integration/test_store_conformance.py.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from brickwork.errors import ConfigError
from brickwork.store import RunStore, RunSummary, SQLiteRunStore, backend_for, percentile
from brickwork.store.buffer import WriteBehind
from brickwork.store.postgres import PostgresRunStore, _redact, _without_nul


class Flaky:
    """A write function that fails (transiently or for good) until told otherwise."""

    def __init__(self) -> None:
        self.down = False
        self.reject: set[str] = set()
        self.written: list[str] = []
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, items: Sequence[str]) -> None:
        with self.lock:
            self.calls += 1
            for item in items:
                if item in self.reject:
                    raise ValueError(f"cannot store {item!r}")
            if self.down:
                raise ConnectionError("database is down")
            self.written += items


def _buffer(flaky: Flaky, **options: int) -> WriteBehind[str]:
    return WriteBehind(
        flaky,
        permanent=lambda exc: isinstance(exc, ValueError),
        name="test-store",
        retry_initial_s=0.01,
        retry_max_s=0.05,
        **options,
    )


def _wait_for(condition: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.5) == pytest.approx(2.5)
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.95) == pytest.approx(4.8)
    assert percentile([7.0], 0.95) == 7.0
    assert math.isnan(percentile([], 0.5))
    with pytest.raises(ValueError, match="between 0 and 1"):
        percentile([1.0], 95)


def test_backend_for_paths_and_urls(tmp_path: Path) -> None:
    assert backend_for(None) is SQLiteRunStore
    assert backend_for(tmp_path / "runs.sqlite") is SQLiteRunStore
    assert backend_for("runs.sqlite") is SQLiteRunStore
    assert backend_for("postgresql://u@h/db") is PostgresRunStore
    assert backend_for("postgres://u@h/db") is PostgresRunStore
    with pytest.raises(ConfigError, match="unsupported run store URL 'mysql://h/db'"):
        backend_for("mysql://h/db")
    with pytest.raises(ConfigError, match="pass the URL as a str"):
        backend_for(Path("postgresql://u@h/db"))
    store = RunStore(tmp_path / "runs.sqlite")
    assert isinstance(store, SQLiteRunStore) and store.path == tmp_path / "runs.sqlite"
    assert store.close()


def test_postgres_urls_are_checked_and_redacted() -> None:
    pytest.importorskip("psycopg", reason="psycopg is not installed (extra: postgres)")
    assert _redact("postgresql://me:s3cret@db:5432/x?password=p&sslmode=require") == (
        "postgresql://me@db:5432/x?sslmode=require"
    )
    with pytest.raises(ConfigError, match="bad PostgreSQL URL"):
        PostgresRunStore("postgresql://h/db?no_such_option=1")
    assert _without_nul({"a\x00": ["b\x00", 1, None]}) == {"a\ufffd": ["b\ufffd", 1, None]}


def test_a_healthy_store_writes_at_once_without_a_thread() -> None:
    flaky = Flaky()
    buffer = _buffer(flaky)
    buffer.submit("a", key="a", size=1)
    assert flaky.written == ["a"] and buffer.pending == 0
    assert buffer._thread is None
    assert buffer.flush(0.0) and buffer.close(0.0)


def test_an_outage_keeps_order_logs_once_and_recovers_by_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky = Flaky()
    buffer = _buffer(flaky)
    flaky.down = True
    with caplog.at_level(logging.WARNING, logger="brickwork.store"):
        for key in "abcde":
            buffer.submit(key, key=key, size=1)
        assert buffer.pending == 5
        calls_during_outage = flaky.calls
        assert not buffer.flush(0.1)
        assert flaky.calls > calls_during_outage  # the retry thread keeps trying
        flaky.down = False
        _wait_for(lambda: buffer.pending == 0)  # no flush needed: the retries get it through
    assert flaky.written == list("abcde")
    unavailable = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(unavailable) == 1
    assert any(
        "is back; wrote the runs kept during the outage (5 queued, 0 dropped" in r.getMessage()
        for r in caplog.records
    )
    assert buffer.recovered == 5 and buffer.dropped == 0
    buffer.submit("f", key="f", size=1)  # healthy again: straight through
    assert flaky.written[-1] == "f" and buffer.pending == 0


def test_saves_during_an_outage_do_not_touch_the_database() -> None:
    flaky = Flaky()
    buffer = _buffer(flaky)
    buffer.retry_initial_s = buffer.retry_max_s = 60.0  # no retry during the test
    flaky.down = True
    buffer.submit("a", key="a", size=1)
    calls = flaky.calls
    started = time.monotonic()
    for i in range(1000):
        buffer.submit(f"r{i}", key=f"r{i}", size=1)
    assert time.monotonic() - started < 1.0
    assert flaky.calls == calls == 1 and buffer.pending == 1001
    flaky.down = False
    assert buffer.flush(5.0)
    assert flaky.written == ["a"] + [f"r{i}" for i in range(1000)]
    assert flaky.calls == calls + 11  # written back in batches of 100


def test_data_the_database_refuses_is_dropped_not_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky = Flaky()
    buffer = _buffer(flaky)
    flaky.reject = {"bad", "bad-later"}
    with caplog.at_level(logging.ERROR, logger="brickwork.store"):
        buffer.submit("bad", key="bad", size=1)
        assert buffer.pending == 0 and buffer.dropped == 1
        flaky.down = True
        for key in ("x", "bad-later", "y"):
            buffer.submit(key, key=key, size=1)
        flaky.down = False
        assert buffer.flush(5.0)
    assert flaky.written == ["x", "y"] and buffer.dropped == 2
    assert sum("could not take run" in r.getMessage() for r in caplog.records) == 2


@pytest.mark.parametrize(
    ("bound", "sizes"), [({"max_items": 3}, [1] * 5), ({"max_bytes": 30}, [10] * 5)]
)
def test_a_full_buffer_drops_the_oldest_and_says_so(
    bound: dict[str, int], sizes: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    flaky = Flaky()
    buffer = _buffer(flaky, **bound)
    buffer.retry_initial_s = buffer.retry_max_s = 60.0
    flaky.down = True
    with caplog.at_level(logging.ERROR, logger="brickwork.store"):
        for key, size in zip("abcde", sizes, strict=True):
            buffer.submit(key, key=key, size=size)
    assert buffer.pending == 3 and buffer.dropped == 2
    [full] = [r.getMessage() for r in caplog.records if "buffer full" in r.getMessage()]
    assert "3 runs" in full and "1 so far in this outage, the last a" in full
    flaky.down = False
    assert buffer.flush(5.0)
    assert flaky.written == ["c", "d", "e"]


def test_close_reports_what_it_could_not_write(caplog: pytest.LogCaptureFixture) -> None:
    flaky = Flaky()
    buffer = _buffer(flaky)
    flaky.down = True
    for key in ("a", "b"):
        buffer.submit(key, key=key, size=1)
    with caplog.at_level(logging.ERROR, logger="brickwork.store"):
        assert not buffer.close(0.1)
        assert buffer.pending == 0 and buffer.dropped == 2
        assert any("2 runs still unwritten (a, b)" in r.getMessage() for r in caplog.records)
        buffer.submit("c", key="c", size=1)  # after close: one try, then given up on
    assert buffer.pending == 0 and buffer.dropped == 3 and buffer._thread is None
    flaky.down = False
    buffer.submit("d", key="d", size=1)
    assert flaky.written == ["d"]


def test_a_batch_is_one_write_and_a_refused_item_costs_only_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky = Flaky()
    buffer = _buffer(flaky)
    buffer.submit_many([(key, key, 1) for key in "abc"])
    assert flaky.written == list("abc") and flaky.calls == 1
    flaky.reject = {"bad"}
    with caplog.at_level(logging.ERROR, logger="brickwork.store"):
        buffer.submit_many([(key, key, 1) for key in ("d", "bad", "e")])
    # The batch failed as a whole, then went again item by item: only "bad" is lost.
    assert flaky.written == list("abcde") and buffer.dropped == 1 and buffer.pending == 0
    assert [r.getMessage() for r in caplog.records if "could not take run bad" in r.getMessage()]
    flaky.down = True
    buffer.submit_many([(key, key, 1) for key in "fg"])  # an outage: the whole batch waits
    assert buffer.pending == 2
    flaky.down = False
    assert buffer.flush(5.0) and flaky.written[-2:] == ["f", "g"]


def _summary(run_id: str) -> RunSummary:
    return RunSummary(run_id, "g", "t", "slm", "x", "ok", "a", None, 0.0, 0.0, 0.1, 0, (), 1.0)


def _event(seq: int, **extra: object) -> dict[str, object]:
    return {"kind": "node_finished", "node": "n", "at": 1.0 + seq, **extra}


async def test_concurrent_asaves_are_committed_together_before_any_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteRunStore(tmp_path / "runs.sqlite")
    transactions: list[int] = []
    write_rows = store._write_rows

    def counting(conn: Any, rows: Sequence[Any]) -> None:
        transactions.append(len(rows))
        write_rows(conn, rows)

    monkeypatch.setattr(store, "_write_rows", counting)

    async def save(i: int) -> int:
        await store.asave(_summary(f"r{i:02d}"), [_event(0), _event(1)])
        # Returned: the run is committed, readable from another connection.
        stored = store.run(f"r{i:02d}")
        assert stored is not None
        return len(stored[1])

    assert await asyncio.gather(*(save(i) for i in range(32))) == [2] * 32
    assert sum(transactions) == 32 and len(transactions) < 32  # grouped, none lost
    assert store.close()


async def test_an_asave_of_unserialisable_events_fails_alone(tmp_path: Path) -> None:
    store = SQLiteRunStore(tmp_path / "runs.sqlite")
    results = await asyncio.gather(
        store.asave(_summary("good"), [_event(0)]),
        store.asave(_summary("bad"), [_event(0, data=object())]),
        store.asave(_summary("also-good"), [_event(0)]),
        store.asave(_summary("no-kind"), [{"at": 1.0}]),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], TypeError) and isinstance(results[3], KeyError)
    assert sorted(r.run_id for r in store.runs()) == ["also-good", "good"]
    assert store.close()


async def test_a_cancelled_caller_does_not_cancel_its_save(tmp_path: Path) -> None:
    store = SQLiteRunStore(tmp_path / "runs.sqlite")
    first = asyncio.ensure_future(store.asave(_summary("first"), [_event(0)]))
    second = asyncio.ensure_future(store.asave(_summary("second"), [_event(0)]))
    await asyncio.sleep(0)
    second.cancel()
    await first
    with pytest.raises(asyncio.CancelledError):
        await second
    assert sorted(r.run_id for r in store.runs()) == ["first", "second"]
    assert store.close()


async def test_asave_never_blocks_the_loop_on_another_writers_lock(tmp_path: Path) -> None:
    """The event-loop write gives up at once on a locked file; the thread waits for it."""
    store = SQLiteRunStore(tmp_path / "runs.sqlite", timeout_s=10.0)
    await store.asave(_summary("before"), [])  # the schema is ready, the loop path warm
    other = sqlite3.connect(tmp_path / "runs.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's write, under way
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticking = asyncio.ensure_future(ticker())
    saving = asyncio.ensure_future(store.asave(_summary("during"), [_event(0)]))
    await asyncio.sleep(0.5)
    assert not saving.done()  # waiting for the lock, in the worker thread
    assert ticks >= 20  # while the loop went on running everything else
    other.execute("COMMIT")
    await asyncio.wait_for(saving, 10.0)
    ticking.cancel()
    other.close()
    assert sorted(r.run_id for r in store.runs()) == ["before", "during"]
    assert store.pending == 0 and store.close()


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="max_items and max_bytes must be >= 1"):
        WriteBehind(Flaky(), permanent=lambda exc: False, name="x", max_items=0)
    with pytest.raises(ValueError, match="retry_initial_s <= retry_max_s"):
        WriteBehind(
            Flaky(), permanent=lambda exc: False, name="x", retry_initial_s=5.0, retry_max_s=1.0
        )


def test_sqlite_store_buffers_while_its_folder_is_gone(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    store = RunStore(folder / "runs.sqlite", retry_max_s=0.05)
    summary = RunSummary("r", "g", "t", "hybrid", "x", "ok", "a", None, 0.0, 0.0, 0.1, 0, (), 1.0)
    folder.rename(tmp_path / "away")
    store.save(summary, [])
    assert store.pending == 1
    (tmp_path / "away").rename(folder)
    assert store.flush(5.0)
    assert [r.run_id for r in store.runs()] == ["r"]
    assert store.close()


def test_store_prune_command_deletes_old_runs_and_says_how_many(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from brickwork.cli import main

    path = tmp_path / "runs.sqlite"
    store = SQLiteRunStore(path)
    now = time.time()
    for run_id, age_days in (("old", 40), ("older", 400), ("new", 1)):
        started = now - age_days * 86400
        store.save(
            RunSummary(
                run_id, "g", "t", "hybrid", "x", "ok", "a", None, 0.0, 0.0, 0.1, 0, (), started
            ),
            [],
        )
    assert store.flush(5.0)
    store.close()

    assert main(["store", "prune", "--days", "30", "--store", str(path)]) == 0
    assert "deleted 2 run(s) started more than 30 day(s) ago; 1 left" in capsys.readouterr().out
    again = SQLiteRunStore(path)
    assert [r.run_id for r in again.runs()] == ["new"]
    again.close()

    assert main(["store", "prune", "--days", "-1", "--store", str(path)]) == 2
    assert "--days -1.0 must be 0 or more" in capsys.readouterr().err
