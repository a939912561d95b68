"""The default durable checkpointer: LangGraph's SQLite saver, called inline from async code.

LangGraph's `AsyncSqliteSaver` sends every checkpoint read and write through `aiosqlite`,
one hop to a worker thread and back per statement. A run of a one-node graph makes about ten
of them, and on a busy 2-core machine each hop costs milliseconds of waiting for the thread to
be scheduled: in `benchmarks/overhead.py` the checkpointer was most of a one-node run's wall
time. The statements themselves take tens of microseconds on a WAL database with
`synchronous=NORMAL`, so `InlineSqliteSaver` runs them directly on the event loop instead,
through the synchronous `SqliteSaver` (which serialises access with its own lock).

Durability: WAL with `synchronous=NORMAL` survives a crash of the process (the case
`App.aresume` exists for); a power loss can drop the last transactions before the next WAL
checkpoint. Use PostgreSQL (`checkpoints="postgresql://..."`) where that matters.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.sqlite import SqliteSaver

__all__ = ["InlineSqliteSaver"]


class InlineSqliteSaver(SqliteSaver):
    """`SqliteSaver` whose async methods run its synchronous ones in place."""

    @classmethod
    def open(cls, path: str | Path) -> InlineSqliteSaver:
        """Open (creating if needed) the checkpoint database at `path`."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        saver = cls(conn)
        saver.setup()
        return saver

    def close(self) -> None:
        """Close the connection."""
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
