"""One replica at a time per run: a PostgreSQL advisory lock around resuming a run.

New runs get a thread of their own, so the only ways two replicas could advance the same
LangGraph thread are two answers to one run's confirmation question, or two resumes of one
interrupted run, landing on two replicas (`POST /v1/runs/{run_id}/confirm|resume`): each
replica's in-memory guard sees only its own requests, and two workers on one thread fork its
checkpoint chain (LangGraph issue #8796). (The run store adds a second lock, held by the
process running the run for as long as it runs: `brickwork.store.postgres`.)
`RunLock` takes `pg_try_advisory_lock` on the run's key in the shared PostgreSQL for the
length of such a request; a second replica asked meanwhile answers 409
`not_waiting_for_confirmation` at once. The lock belongs to the request's own connection, so
a replica that dies mid-request releases it with its connection.

The front takes the same lock itself for a chat completion with an `Idempotency-Key`
(`hold_run`, given to `create_api(run_lock=...)`): the key names a run, so the request that
starts, replays or resumes it excludes a resume of that run, and a retry of it, on any replica.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any

__all__ = ["RESUME_PATH", "TRY_LOCK", "UNLOCK", "RunLock", "hold_run", "run_lock"]

#: The requests that advance an existing run's thread (answer its question, or resume it).
RESUME_PATH = re.compile(r"^/v1/runs/(?P<run_id>[^/]+)/(?P<action>confirm|resume)/?$")


#: Take / release a run's lock (a bigint key hashed from the run id, given as %s).
TRY_LOCK = "SELECT pg_try_advisory_lock(hashtextextended('brickwork:run:' || %s, 0))"
UNLOCK = "SELECT pg_advisory_unlock(hashtextextended('brickwork:run:' || %s, 0))"


@asynccontextmanager
async def hold_run(url: str, run_id: str) -> AsyncIterator[bool]:
    """Try to take run `run_id`'s lock in the PostgreSQL at `url`; yields whether it did.

    The lock is held on a connection of its own until the block ends (or the process dies).
    """
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(TRY_LOCK, (run_id,))
        row = await cursor.fetchone()
        held = bool(row and row[0])
        try:
            yield held
        finally:
            if held and not conn.closed:
                await conn.execute(UNLOCK, (run_id,))


def run_lock(url: str) -> Callable[[str], AbstractAsyncContextManager[bool]]:
    """`hold_run` bound to `url`: what `create_api(run_lock=...)` takes."""
    return partial(hold_run, url)


class RunLock:
    """ASGI middleware: resuming a run holds its advisory lock in the shared PostgreSQL."""

    def __init__(self, app: Any, url: str) -> None:
        self.app = app
        self.url = url

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run other requests as they are; a resume only while holding the run's lock."""
        match = RESUME_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        run_id = match["run_id"]
        async with hold_run(self.url, run_id) as held:
            if not held:
                await _busy(send, run_id, match["action"])
                return
            await self.app(scope, receive, send)


async def _busy(send: Any, run_id: str, action: str) -> None:
    """Answer as the front answers a run that is already being answered or resumed (409)."""
    from brickwork.http.models import ApiError
    from brickwork.http.outcomes import NO_RETRY

    if action == "confirm":
        message = (
            f"run {run_id} is not waiting for a confirmation (it is being answered on another "
            f"replica right now); nothing was run. Its trace: GET /v1/runs/{run_id}"
        )
        code = "not_waiting_for_confirmation"
    else:
        message = (
            f"run {run_id} is being resumed on another replica right now; nothing was run. "
            f"Its trace: GET /v1/runs/{run_id}"
        )
        code = "run_in_progress"
    error = ApiError(409, message, param="run_id", code=code, headers=NO_RETRY)
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    headers += [(k.lower().encode(), v.encode()) for k, v in NO_RETRY.items()]
    await send({"type": "http.response.start", "status": 409, "headers": headers})
    await send({"type": "http.response.body", "body": body})
