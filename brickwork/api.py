"""The OpenAI-compatible HTTP front: `POST /v1/chat/completions` where `model` names a graph.

    from brickwork.api import serve_api
    serve_api({"smart_home": App.from_graph("graphs.smart_home")}, port=8080)

    client = openai.OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="-")
    reply = client.chat.completions.create(
        model="smart_home",
        messages=[{"role": "user", "content": "turn on the kitchen lights"}],
        extra_body={"mode": "hybrid", "tenant": "acme", "budget_usd": 0.01},
    )
    reply.model_extra["brickwork"]  # run_id, status, cost_usd, frontier_only_usd, ...

Routes: `/v1/chat/completions`, `/v1/models`, `/v1/models/{id}`, `/v1/runs`,
`/v1/runs/{run_id}`, `/health`. Errors use OpenAI's `{"error": {message, type, param, code}}`.

How run statuses map to HTTP: `ok`, `failed` and `over_budget` runs answer 200 (the run
happened, is recorded and may have cost money; the content says what stopped it and
`brickwork.status` says how it ended); `timeout` answers 504 and `error` (an exception inside
the run, e.g. no model endpoint) answers 500, both with `x-should-retry: false` so OpenAI
clients do not silently run the graph again. A stream cannot change its status code once
started, so there these two arrive as an OpenAI error event, which the openai client raises.

The event loop matters: an `App` (its pool's HTTP connections) belongs to the loop that first
runs it. `serve_api` runs uvicorn in the calling thread; `ApiServer` runs it in a background
thread and can build the apps inside that thread's loop (`apps_factory`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

import brickwork.app as _app_module
from brickwork._api_models import (
    ApiError,
    ChatCompletionRequest,
    RunOutcome,
    chunk,
    completion_body,
    error_body,
    parse_request,
    request_text,
)
from brickwork.app import App
from brickwork.errors import ConfigError, MissingDependencyError
from brickwork.events import Event
from brickwork.store import RunStore, RunSummary

try:
    import uvicorn
    from fastapi import APIRouter, Depends, FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.exceptions import HTTPException
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingDependencyError(exc.name or "fastapi", "api", "the HTTP front") from exc

__all__ = ["ApiServer", "create_api", "serve_api"]

log = logging.getLogger(__name__)

#: Seconds between SSE keep-alive comments while a streamed run has nothing to say.
KEEPALIVE_S = 10.0
_NO_RETRY = {"x-should-retry": "false"}


@dataclass
class _Front:
    """What the routes share: the apps, the stores, limits and the runs still in flight."""

    apps: dict[str, App]
    stores: list[RunStore]
    api_key: str | None
    max_body_bytes: int
    timeout_s: float
    created: int = field(default_factory=lambda: int(time.time()))
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def app(self, model: str) -> App:
        """The app serving a graph name, or a 404 naming the known ones."""
        try:
            return self.apps[model]
        except KeyError:
            known = ", ".join(sorted(self.apps))
            raise ApiError(
                404,
                f"unknown graph {model!r}; this server serves: {known}",
                param="model",
                code="model_not_found",
            ) from None


def create_api(
    apps: Mapping[str, App],
    *,
    store: RunStore | None = None,
    api_key: str | None = None,
    max_body_bytes: int = 1_000_000,
    timeout_s: float = 300,
    close_apps: bool = False,
) -> FastAPI:
    """The FastAPI application serving `apps` (graph name -> App).

    Args:
        apps: The graphs to serve; the keys are the `model` names clients send.
        store: Where `/v1/runs` reads runs (default: the apps' own stores).
        api_key: When set, every `/v1` request needs `Authorization: Bearer <api_key>`.
        max_body_bytes: Larger request bodies are refused with 413 before parsing.
        timeout_s: Each run's time limit; a run past it answers 504.
        close_apps: Close every App and its pool when the server shuts down.
    """
    if not apps:
        raise ConfigError("no graphs to serve; pass at least one App, e.g. {'smart_home': app}")
    stores = [store] if store is not None else []
    for candidate in apps.values():
        if candidate.store is not None and all(candidate.store is not s for s in stores):
            stores.append(candidate.store)
    front = _Front(dict(apps), stores, api_key, max_body_bytes, timeout_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            for task in list(front.tasks):
                task.cancel()
            await asyncio.gather(*front.tasks, return_exceptions=True)
            if close_apps:
                await _close_apps(front.apps.values())

    api = FastAPI(title="brickwork", summary="OpenAI-compatible front over brickwork graphs",
                  lifespan=lifespan)
    _add_error_handlers(api)
    router = APIRouter(prefix="/v1", dependencies=[Depends(_authorizer(api_key))])
    _add_routes(router, front)
    api.include_router(router)

    @api.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "graphs": sorted(front.apps)}

    return api


def serve_api(
    apps: Mapping[str, App],
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    store: RunStore | None = None,
    api_key: str | None = None,
    max_body_bytes: int = 1_000_000,
    timeout_s: float = 300,
    log_level: str = "info",
) -> None:
    """Serve `apps` over HTTP until interrupted (blocking); the apps are closed on shutdown.

    The apps must not have run on another event loop: uvicorn runs them on its own.
    """
    if api_key is None and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %r without an API key: anyone who can reach it can spend", host)
    api = create_api(apps, store=store, api_key=api_key, max_body_bytes=max_body_bytes,
                     timeout_s=timeout_s, close_apps=True)
    uvicorn.run(api, host=host, port=port, log_level=log_level)


# -- routes -----------------------------------------------------------------------------------


def _add_routes(router: APIRouter, front: _Front) -> None:
    @router.post("/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Response:
        body = parse_request(await _read_body(request, front.max_body_bytes))
        app = front.app(body.model)
        text = request_text(body, _app_module.MAX_TEXT_CHARS)
        options = _run_options(app, body, front.timeout_s)
        created = int(time.time())
        if body.stream:
            return StreamingResponse(
                _stream(front, app, text, options, body, created),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        events = await _run(app, text, options, None)
        outcome = RunOutcome.from_events(events)
        failure = _status_error(outcome)
        if failure is not None:
            raise failure
        return JSONResponse(completion_body(outcome, body.model, created))

    @router.get("/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model(front, n) for n in sorted(front.apps)]}

    @router.get("/models/{model}")
    async def model(model: str) -> dict[str, Any]:
        front.app(model)
        return _model(front, model)

    @router.get("/runs")
    async def runs(
        limit: Annotated[int, Query(ge=1, le=1000)] = 20, graph: str | None = None
    ) -> dict[str, Any]:
        found: list[RunSummary] = []
        for store in _stores(front):
            found += await asyncio.to_thread(store.runs, limit=limit, graph=graph)
        found.sort(key=lambda s: s.started_at, reverse=True)
        return {"object": "list", "data": [_summary(s) for s in found[:limit]]}

    @router.get("/runs/{run_id}")
    async def run(run_id: str) -> dict[str, Any]:
        for store in _stores(front):
            found = await asyncio.to_thread(store.run, run_id)
            if found is not None:
                summary, events = found
                return {**_summary(summary), "object": "run", "events": events}
        raise ApiError(404, f"no run {run_id!r} in the run store", param="run_id",
                       code="run_not_found")


def _model(front: _Front, name: str) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": front.created,
        "owned_by": "brickwork",
        "description": front.apps[name].graph.description,
    }


def _summary(summary: RunSummary) -> dict[str, Any]:
    return {**asdict(summary), "flags": list(summary.flags)}


def _stores(front: _Front) -> list[RunStore]:
    if not front.stores:
        raise ApiError(501, "this server keeps no run store; start it with a RunStore to read "
                       "runs", code="no_run_store")
    return front.stores


def _run_options(app: App, body: ChatCompletionRequest, timeout_s: float) -> dict[str, Any]:
    options: dict[str, Any] = {
        "mode": body.mode,
        "tenant": body.tenant,
        "budget_usd": body.budget_usd,
        "timeout_s": timeout_s,
        "run_id": uuid.uuid4().hex[:16],
    }
    # Multi-turn: pass the conversation when the App accepts one (`astream(..., messages=)`).
    if "messages" in inspect.signature(app.astream).parameters:
        options["messages"] = [m.to_dict() for m in body.messages]
    return options


async def _run(
    app: App, text: str, options: dict[str, Any], sink: asyncio.Queue[Event | None] | None
) -> list[Event]:
    events: list[Event] = []
    try:
        async for event in app.astream(text, **options):
            events.append(event)
            if sink is not None:
                sink.put_nowait(event)
    except Exception as exc:  # the run never finished: a server-side failure
        log.exception("run %s could not run", options["run_id"])
        raise ApiError(500, f"the run could not run: {type(exc).__name__}: {exc}",
                       type="server_error", code="run_error", headers=_NO_RETRY) from exc  # fmt: skip
    finally:
        if sink is not None:
            sink.put_nowait(None)
    return events


def _status_error(outcome: RunOutcome) -> ApiError | None:
    extra = {"brickwork": outcome.extras()}
    if outcome.status == "timeout":
        return ApiError(504, f"run {outcome.run_id} timed out: {outcome.error or 'no answer'}",
                        type="server_error", code="run_timeout", headers=_NO_RETRY, extra=extra)
    if outcome.status == "error":
        return ApiError(500, f"run {outcome.run_id} failed inside: {outcome.error or 'see the '
                        'run store'}", type="server_error", code="run_error", headers=_NO_RETRY,
                        extra=extra)
    return None


async def _stream(
    front: _Front,
    app: App,
    text: str,
    options: dict[str, Any],
    body: ChatCompletionRequest,
    created: int,
) -> AsyncIterator[str]:
    chunk_id = f"chatcmpl-{options['run_id']}"
    queue: asyncio.Queue[Event | None] = asyncio.Queue()
    # The run is its own task: it finishes and is recorded even if the client goes away.
    task = asyncio.create_task(_run(app, text, options, queue))
    front.tasks.add(task)
    task.add_done_callback(front.tasks.discard)
    yield chunk(chunk_id, body.model, created, delta={"role": "assistant", "content": ""})
    getter: asyncio.Task[Event | None] | None = None
    try:
        while True:
            getter = getter or asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter}, timeout=KEEPALIVE_S)
            if not done:
                yield ": keep-alive\n\n"
                continue
            event, getter = getter.result(), None
            if event is None:
                break
            if event.kind in ("node_started", "node_finished", "escalation"):
                yield f": {event.kind} {event.node}\n\n"  # progress, as SSE comments
        try:
            outcome = RunOutcome.from_events(await task)
        except ApiError as exc:
            yield f"data: {json.dumps(exc.body())}\n\n"
            return
        failure = _status_error(outcome)
        if failure is not None:
            yield f"data: {json.dumps(failure.body())}\n\n"
            return
        yield chunk(chunk_id, body.model, created, delta={"content": outcome.content})
        yield chunk(chunk_id, body.model, created, finish_reason="stop",
                    brickwork=outcome.extras())
        if body.stream_options is not None and body.stream_options.include_usage:
            yield chunk(chunk_id, body.model, created, choices=(), usage=outcome.usage())
        yield "data: [DONE]\n\n"
    finally:
        if getter is not None:
            getter.cancel()


# -- serving ------------------------------------------------------------------------------


async def _close_apps(apps: Any) -> None:
    pools: dict[int, Any] = {}
    for app in apps:
        try:
            pools[id(app.pool)] = app.pool
        except ConfigError:  # never started, no pool
            pass
        try:
            await app.aclose()
        except Exception:
            log.exception("could not close app %s", app.graph.name)
    for pool in pools.values():
        try:
            await pool.aclose()
        except Exception:
            log.exception("could not close a model pool")
