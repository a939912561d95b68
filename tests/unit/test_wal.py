"""The SQLite run store's log is checkpointed by a thread of its own, never inside a save."""

from __future__ import annotations

import time
from pathlib import Path

from brickwork.store import RunSummary
from brickwork.store._wal import WalCheckpointer
from brickwork.store.sqlite import SQLiteRunStore


def _summary(i: int) -> RunSummary:
    return RunSummary(
        f"run{i:06d}", "g", "default", "slm", "seven", "ok", "n=7", None, 0.0, 0.0, 0.01, 0,
        (), time.time(), "app",
    )  # fmt: skip


def test_the_run_stores_log_is_checkpointed_off_its_writers(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    store = SQLiteRunStore(path)
    try:
        writer = store._writer
        assert writer is not None and store._wal is not None
        assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        store._wal.stop()  # replaced by one with a small threshold, polling fast
        wal = store._wal = WalCheckpointer(path, threshold_bytes=64 * 1024, interval_s=0.01)
        wal.start()
        events = [{"kind": "node_started", "node": "n", "at": time.time(), "pad": "x" * 2000}]
        deadline = time.monotonic() + 30
        i = 0
        while wal.checkpoints == 0:
            assert time.monotonic() < deadline, "the log was never checkpointed"
            store.save(_summary(i), events * 4)
            i += 1
        assert store.run(_summary(0).run_id) is not None
    finally:
        store.close()
    assert not wal._thread.is_alive()  # closing the store stops its thread
