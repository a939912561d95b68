"""The OpenAI-compatible HTTP front: `POST /v1/chat/completions` where `model` names a graph.

    from brickwork.http.server import serve_api
    serve_api({"smart_home": App.from_graph("graphs.smart_home")}, port=8080)

    client = openai.OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="-")
    reply = client.chat.completions.create(
        model="smart_home",
        messages=[{"role": "user", "content": "turn on the kitchen lights"}],
        extra_body={"mode": "hybrid", "tenant": "acme", "budget_usd": 0.01},
    )
    reply.model_extra["brickwork"]  # run_id, status, cost_usd, frontier_only_usd, ...

Routes: `/v1/chat/completions`, `/v1/models`, `/v1/models/{id}`, `/v1/runs`,
`/v1/runs/{run_id}`, `/v1/runs/{run_id}/confirm`, `/v1/runs/{run_id}/resume`, `/health`,
`/metrics`. Errors use OpenAI's `{"error": {message, type, param, code}}`.

A run whose server died under it (a store that records starts, PostgreSQL: see
`brickwork.store.postgres`) shows as `interrupted` in `GET /v1/runs/{run_id}`; `POST
/v1/runs/{run_id}/resume` (no body) continues it from its last checkpoint on any replica, with
the chat completion's outcome mapping; a run that was not interrupted is 409
`not_interrupted`, one running on another replica 409 `run_in_progress`.

Retries: a client that sends `Idempotency-Key: <key>` with a chat completion, and the same key
again when it retries (after a 5xx, a dropped connection, a replica killed under it), never
starts a second run: the key names one run of its tenant, and a retry gets that run's stored
outcome, or resumes it if it was interrupted, or 409 `run_in_progress` with `Retry-After`
while it still runs (see `brickwork.http.idempotency`). `create_api(run_lock=...)` makes
that hold across replicas (`brickwork.deploy.locks.run_lock`).

A run that stopped before a sensitive action (409 `needs_confirmation`) is answered with
`POST /v1/runs/{run_id}/confirm` and `{"confirm": true}` (run it and go on) or `false`
(decline: the run ends failed, nothing is done). The run is found in the run store and
resumed from its checkpoint on its own graph (`App.aresume`); the reply is a chat completion
with the same outcome mapping (200 ok, 422 failed, 409 when it stops for another question).
An unknown run is 404; a run that is not waiting for a confirmation (finished, already
answered, being answered right now) is 409 `not_waiting_for_confirmation`.

`/metrics` is the Prometheus text format (see `brickwork.http.metrics` for the series): runs
by status, runs in flight, node latency histograms, escalations by reason, cost and its
frontier-only counterfactual, per graph. It needs the API key like `/v1` when one is set
(Prometheus sends it with `authorization: {credentials: ...}` in the scrape config), unless
the server is made with `public_metrics=True`; `/health` never needs it.

How run outcomes map to HTTP (see `brickwork.http.outcomes` for the table): only an `ok` run
answers 200. A failed run is 422, over budget 402, a run stopped before a sensitive action
409, a model that is unavailable 503 (502 when it answered with an error), a timeout 504, an
exception inside the run 500, and a request refused by admission control 429 with
`Retry-After`. Every error body is OpenAI's shape plus `brickwork` with the run id; messages
say nothing internal (`brickwork.http.redact`). A stream cannot change its status code once started:
there the failure arrives as one OpenAI error event, then the stream closes (the openai
client raises it). Errors known before the run starts (bad body, 429) are plain responses.

Admission: each App holds a gate (`brickwork.admission`), sized from its pool unless given;
`create_api(admission=AdmissionLimits(...))` puts one shared gate in front of every served
graph (what `brickwork api --max-in-flight/--max-queue/--max-wait` does).

The event loop matters: an `App` (its pool's HTTP connections) belongs to the loop that first
runs it. `serve_api` runs uvicorn in the calling thread; `ApiServer` runs it in a background
thread and can build the apps inside that thread's loop (`apps_factory`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

from brickwork.errors import AdmissionRefused, ConfigError, MissingDependencyError

try:
    import uvicorn
    from fastapi import APIRouter, Depends, FastAPI, Query, Request
    from fastapi.responses import Response, StreamingResponse
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingDependencyError(exc.name or "fastapi", "api", "the HTTP front") from exc

import brickwork.app as _app_module
from brickwork.admission import Admission, AdmissionLimits
from brickwork.app import App
from brickwork.events import Event
from brickwork.http import idempotency
from brickwork.http.metrics import CONTENT_TYPE, ApiMetrics
from brickwork.http.models import (
    ApiError,
    ChatCompletionRequest,
    ConfirmRequest,
    RunOutcome,
    SafeJSONResponse,
    add_error_handlers,
    authorizer,
    chunk,
    completion_body,
    parse_body,
    parse_request,
    read_body,
    request_text,
)
from brickwork.http.outcomes import NO_RETRY, exception_error, outcome_error
from brickwork.store import RunStore, RunSummary
from brickwork.store.base import INTERRUPTED, RUNNING, storable

__all__ = ["ApiServer", "create_api", "serve_api"]

log = logging.getLogger(__name__)

#: Seconds between SSE keep-alive comments while a streamed run has nothing to say.
_KEEPALIVE_S = 10.0

#: Seconds a client is asked to wait before retrying a request whose run is running now.
_KEYED_RETRY_AFTER_S = 1

#: Takes a run's cross-replica lock for a block; yields whether it got it.
RunLocker = Callable[[str], AbstractAsyncContextManager[bool]]


@dataclass
class _Front:
    """What the routes share: the apps, the stores, limits and the runs still in flight."""

    apps: dict[str, App]
    stores: list[RunStore]
    max_body_bytes: int
    timeout_s: float
    metrics: ApiMetrics = field(default_factory=ApiMetrics)
    created: int = field(default_factory=lambda: int(time.time()))
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    #: Runs whose confirmation is being answered now (a second answer is refused, not run).
    confirming: set[str] = field(default_factory=set)
    #: Runs named by an idempotency key whose request (or streamed run) is under way here.
    keyed: set[str] = field(default_factory=set)
    #: The cross-replica lock a keyed request holds (None: this process's `keyed` only).
    run_lock: RunLocker | None = None

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
    public_metrics: bool = False,
    admission: AdmissionLimits | None = None,
    run_lock: RunLocker | None = None,
) -> FastAPI:
    """The FastAPI application serving `apps` (graph name -> App).

    Args:
        apps: The graphs to serve; the keys are the `model` names clients send.
        store: Where `/v1/runs` reads runs (default: the apps' own stores).
        api_key: When set, every `/v1` request needs `Authorization: Bearer <api_key>`.
        max_body_bytes: Larger request bodies are refused with 413 before parsing.
        timeout_s: Each run's time limit; a run past it answers 504.
        close_apps: Close every App and its pool when the server shuts down.
        public_metrics: `/metrics` answers without the API key (for scrapers that cannot
            send one); by default it needs the key whenever `api_key` is set.
        admission: One admission gate shared by every served graph, replacing the apps' own
            (default: each App keeps its own, sized from its pool).
        run_lock: Takes a run's lock across replicas for a request with an `Idempotency-Key`
            (`brickwork.deploy.locks.run_lock(url)`, the lock `POST /v1/runs/{id}/resume`
            takes there); default: requests are kept apart within this process only.
    """
    if not apps:
        raise ConfigError("no graphs to serve; pass at least one App, e.g. {'smart_home': app}")
    stores = [store] if store is not None else []
    for candidate in apps.values():
        if candidate.store is not None and all(candidate.store is not s for s in stores):
            stores.append(candidate.store)
    front = _Front(dict(apps), stores, max_body_bytes, timeout_s, run_lock=run_lock)
    if admission is not None:
        shared = Admission(admission)
        for served in front.apps.values():
            served.admission = shared

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

    api = FastAPI(
        title="brickwork",
        summary="OpenAI-compatible front over brickwork graphs",
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
    )
    add_error_handlers(api)
    router = APIRouter(prefix="/v1", dependencies=[Depends(authorizer(api_key))])
    _add_routes(router, front)
    api.include_router(router)
    _document_chat_request(api)

    @api.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "graphs": sorted(front.apps)}

    metrics_auth = authorizer(None if public_metrics else api_key)

    @api.get("/metrics", dependencies=[Depends(metrics_auth)], response_model=None)
    async def metrics() -> Response:
        return Response(front.metrics.render(), media_type=CONTENT_TYPE)

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
    public_metrics: bool = False,
    admission: AdmissionLimits | None = None,
) -> None:
    """Serve `apps` over HTTP until interrupted (blocking); the apps are closed on shutdown.

    The apps must not have run on another event loop: uvicorn runs them on its own.
    """
    if api_key is None and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %r without an API key: anyone who can reach it can spend", host)
    api = create_api(
        apps,
        store=store,
        api_key=api_key,
        max_body_bytes=max_body_bytes,
        timeout_s=timeout_s,
        close_apps=True,
        public_metrics=public_metrics,
        admission=admission,
    )
    uvicorn.run(api, host=host, port=port, log_level=log_level)


# -- routes -----------------------------------------------------------------------------------


def _add_routes(router: APIRouter, front: _Front) -> None:
    @router.post(
        "/chat/completions",
        response_model=None,
        openapi_extra=_CHAT_REQUEST,
        responses=_CHAT_ERRORS,
    )
    async def chat_completions(request: Request) -> Response:
        key = idempotency.parse_key(request.headers.getlist(idempotency.HEADER))
        body = parse_request(await read_body(request, front.max_body_bytes))
        app = front.app(body.model)
        text = request_text(body, _app_module.MAX_TEXT_CHARS)
        options = _run_options(body, front.timeout_s)
        if key is None:
            return await _chat(front, app, body, text, options)
        run_id = options["run_id"] = idempotency.run_id_for(body.tenant, key)
        async with _keyed(front, run_id) as keep_until:
            found = await _lookup(front, run_id) if front.stores else None
            if found is not None:
                return await _answer_stored(front, app, body, text, *found)
            return await _chat(front, app, body, text, options, keep_until)

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

    @router.post(
        "/runs/{run_id}/confirm",
        response_model=None,
        openapi_extra=_CONFIRM_REQUEST,
        responses=_CONFIRM_ERRORS,
    )
    async def confirm(run_id: str, request: Request) -> Response:
        answer = parse_body(await read_body(request, front.max_body_bytes), ConfirmRequest)
        summary = await _stored_run(front, run_id)
        name, app = _graph_app(front, summary)
        busy = run_id in front.confirming
        if busy or summary.status != "needs_confirmation":
            why = "it is being answered now" if busy else f"its status is {summary.status!r}"
            raise _not_waiting(run_id, why)
        front.confirming.add(run_id)
        try:
            if await app.apending(run_id) is None:  # the checkpoint is the ground truth
                raise _not_waiting(run_id, "it has no pending question in its checkpoint")
            created = int(time.time())
            events = await _resume(front, app, summary, answer.confirm)
        finally:
            front.confirming.discard(run_id)
        outcome = RunOutcome.from_events(events)
        failure = outcome_error(outcome, front.timeout_s)
        if failure is not None:
            raise failure
        return SafeJSONResponse(completion_body(outcome, name, created))

    @router.post("/runs/{run_id}/resume", response_model=None, responses=_RESUME_ERRORS)
    async def resume(run_id: str) -> Response:
        summary, _ = await _find_run(front, run_id)
        name, app = _graph_app(front, summary)
        if summary.status != INTERRUPTED:
            raise ApiError(
                409,
                f"run {run_id} was not interrupted (its status is {summary.status!r}); nothing "
                f"was run. Its trace: GET /v1/runs/{run_id}",
                param="run_id",
                code="not_interrupted",
                headers=NO_RETRY,
            )
        created = int(time.time())
        events = await _resume(front, app, summary, None)
        outcome = RunOutcome.from_events(events)
        failure = outcome_error(outcome, front.timeout_s)
        if failure is not None:
            raise failure
        return SafeJSONResponse(completion_body(outcome, name, created))

    @router.get("/runs/{run_id}")
    async def run(run_id: str) -> dict[str, Any]:
        summary, events = await _find_run(front, run_id)
        return {**_summary(summary), "object": "run", "events": events}


#: The chat route parses its body itself (413 before parsing, 400s in OpenAI's shape), so
#: FastAPI cannot derive its schema: it is declared here and added to the components.
_CHAT_REQUEST: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}}
        },
    }
}
_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        },
        "brickwork": {"type": "object", "description": "the run: run_id, status, cost, ..."},
    },
}
_CHAT_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
    for code, text in {
        400: "invalid body (JSON, encoding, fields)",
        401: "missing or wrong API key",
        402: "the run's budget ran out",
        404: "unknown graph",
        409: "the run stopped before a sensitive action; confirm to resume",
        413: "body or request text too large",
        422: "the run failed: the request could not be done",
        429: "admission refused: at capacity; see Retry-After",
        500: "an exception inside the run",
        502: "the model server answered with an error",
        503: "the model is unavailable",
        504: "the run or the model timed out",
    }.items()
}


_CONFIRM_REQUEST: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ConfirmRequest"}}
        },
    }
}
_CONFIRM_ERRORS: dict[int | str, dict[str, Any]] = {
    **{code: _CHAT_ERRORS[code] for code in (400, 401, 402, 413, 422, 429, 500, 502, 503, 504)},
    404: {**_CHAT_ERRORS[404], "description": "unknown run"},
    409: {
        **_CHAT_ERRORS[409],
        "description": "the run is not waiting for a confirmation (finished, already "
        "answered, being answered), its graph is not served here, or it stopped again "
        "before another sensitive action",
    },
    501: {**_CHAT_ERRORS[500], "description": "this server keeps no run store"},
}
_RESUME_ERRORS: dict[int | str, dict[str, Any]] = {
    **_CONFIRM_ERRORS,
    409: {
        **_CHAT_ERRORS[409],
        "description": "the run was not interrupted (running, finished, waiting for a "
        "confirmation), it is running on another replica, or its graph is not served here",
    },
}


def _document_chat_request(api: FastAPI) -> None:
    """Add the request bodies the routes parse themselves to the OpenAPI components."""
    default = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is not None:
            return api.openapi_schema
        schema = default()
        request = ChatCompletionRequest.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(request.pop("$defs", {}))
        components["ChatCompletionRequest"] = request
        components["ConfirmRequest"] = ConfirmRequest.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        return schema

    api.openapi = openapi  # type: ignore[method-assign]


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
        raise ApiError(
            501,
            "this server keeps no run store; start it with a RunStore to read runs",
            code="no_run_store",
        )
    return front.stores


async def _stored_run(front: _Front, run_id: str) -> RunSummary:
    """The run's summary from the first store that has it, or a 404."""
    return (await _find_run(front, run_id))[0]


async def _find_run(front: _Front, run_id: str) -> tuple[RunSummary, list[dict[str, Any]]]:
    """The run and its events from the first store that has it, or a 404.

    A run still "running" whose process is gone (a replica killed mid-run) is marked
    interrupted first (`RunStore.recover`), so it is never shown running forever.
    """
    found = await _lookup(front, run_id)
    if found is None:
        raise ApiError(
            404, f"no run {run_id!r} in the run store", param="run_id", code="run_not_found"
        )
    return found


async def _lookup(front: _Front, run_id: str) -> tuple[RunSummary, list[dict[str, Any]]] | None:
    """`_find_run`, with None for a run no store has."""
    for store in _stores(front):
        found = await asyncio.to_thread(store.run, run_id)
        if found is not None:
            if found[0].status == RUNNING:
                recovered = await asyncio.to_thread(store.recover, run_id)
                if recovered:
                    found = await asyncio.to_thread(store.run, run_id) or found
            return found
    return None


def _graph_app(front: _Front, summary: RunSummary) -> tuple[str, App]:
    """The served name and App of the run's own graph, or a 409 when this server lacks it."""
    for name, app in front.apps.items():
        if app.graph.name == summary.graph:
            return name, app
    known = ", ".join(sorted(front.apps))
    raise ApiError(
        409,
        f"run {summary.run_id} belongs to graph {summary.graph!r}, which this server does not "
        f"serve (it serves: {known}); answer it where that graph is served",
        param="run_id",
        code="graph_not_served",
    )


def _not_waiting(run_id: str, why: str) -> ApiError:
    return ApiError(
        409,
        f"run {run_id} is not waiting for a confirmation ({why}); nothing was run. Its trace: "
        f"GET /v1/runs/{run_id}",
        param="run_id",
        code="not_waiting_for_confirmation",
        headers=NO_RETRY,
    )


async def _resume(
    front: _Front,
    app: App,
    summary: RunSummary,
    confirm: bool | None,
    budget_usd: float | None = None,
) -> list[Event]:
    """Resume a run (with the user's answer, if any: `App.aresume`), counted like any run."""
    graph = app.graph.name
    in_flight = front.metrics.in_flight.labels(graph)
    in_flight.inc()
    try:
        result = await app.aresume(
            summary.run_id,
            confirm=confirm,
            mode=summary.mode,
            tenant=summary.tenant,
            budget_usd=budget_usd,
            timeout_s=front.timeout_s,
        )
    except Exception as exc:  # refused, or the resume could not run
        if isinstance(exc, AdmissionRefused):
            front.metrics.run_failed(graph, "refused")
        else:
            front.metrics.run_failed(graph)
            log.exception("run %s could not be resumed", summary.run_id)
        raise exception_error(exc, summary.run_id) from exc
    finally:
        in_flight.dec()
    for event in result.events:
        front.metrics.observe(graph, event)
    return list(result.events)


async def _chat(
    front: _Front,
    app: App,
    body: ChatCompletionRequest,
    text: str,
    options: dict[str, Any],
    keep_until: Callable[[asyncio.Task[Any]], None] | None = None,
) -> Response:
    """Run a chat completion and answer it (a stream, or one response once the run ends).

    `keep_until(task)`, for a keyed request: its run stays marked as under way in this process
    until the streamed run's task ends, not only while the request is answered.
    """
    created = int(time.time())
    if body.stream:
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        # The run is its own task: it finishes and is recorded even if the client goes away.
        task = asyncio.create_task(_run(front, app, text, options, queue))
        front.tasks.add(task)
        task.add_done_callback(front.tasks.discard)
        if keep_until is not None:
            keep_until(task)
        # Until the run has started, its failures (admission refused, no model) can still
        # be a plain error response with its own status code. (Once it has, a store that
        # records starts holds its row and its process's claim on it.)
        if await queue.get() is None:
            await task  # raises the ApiError
        return StreamingResponse(
            _stream(front, task, queue, options["run_id"], body, created),
            media_type="text/event-stream",
            headers=_STREAM_HEADERS,
        )
    events = await _run(front, app, text, options, None)
    outcome = RunOutcome.from_events(events)
    failure = outcome_error(outcome, front.timeout_s)
    if failure is not None:
        raise failure
    return SafeJSONResponse(completion_body(outcome, body.model, created))


_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@asynccontextmanager
async def _keyed(front: _Front, run_id: str) -> AsyncIterator[Callable[[asyncio.Task[Any]], None]]:
    """Hold run `run_id` for a keyed request: in this process, and across replicas if set up.

    Yields `keep_until(task)`: keep the run marked here until `task` ends (a streamed run
    outlives its request). Raises the 409 `run_in_progress` when another request holds it.
    """
    if run_id in front.keyed:
        raise _key_in_use(run_id)
    front.keyed.add(run_id)
    kept: list[asyncio.Task[Any]] = []

    def keep_until(task: asyncio.Task[Any]) -> None:
        kept.append(task)
        task.add_done_callback(lambda _: front.keyed.discard(run_id))

    try:
        if front.run_lock is None:
            yield keep_until
            return
        async with front.run_lock(run_id) as held:
            if not held:
                raise _key_in_use(run_id)
            yield keep_until
    finally:
        if not kept:
            front.keyed.discard(run_id)


async def _answer_stored(
    front: _Front,
    app: App,
    body: ChatCompletionRequest,
    text: str,
    summary: RunSummary,
    events: list[dict[str, Any]],
) -> Response:
    """Answer a keyed request whose run is in the store: replay it, resume it, or 409."""
    run_id = summary.run_id
    same = (
        summary.graph == app.graph.name
        and summary.tenant == body.tenant
        and summary.mode == body.mode
        and summary.text in (text, storable(text).replace("\x00", "\ufffd"))
    )
    if not same:
        raise ApiError(
            422,
            f"this {idempotency.HEADER} was already used for another request (run {run_id}: "
            "another graph, mode or text); nothing was run. Send a new key for a new request",
            param=idempotency.HEADER,
            code="idempotency_key_reused",
            headers=NO_RETRY,
        )
    if summary.status == RUNNING:  # its process is alive: recovery left it running
        raise _key_in_use(run_id)
    created = int(time.time())
    if summary.status == INTERRUPTED:  # its replica died: go on from its last checkpoint
        resumed = await _resume(front, app, summary, None, body.budget_usd)
        outcome, headers = RunOutcome.from_events(resumed), {}
    else:
        outcome = _stored_outcome(summary, events)
        headers = {idempotency.REPLAYED_HEADER: "true"}
    failure = outcome_error(outcome, front.timeout_s)
    if body.stream:
        return StreamingResponse(
            _replay(front, outcome, body, created),
            media_type="text/event-stream",
            headers={**_STREAM_HEADERS, **headers},
        )
    if failure is not None:
        failure.headers.update(headers)
        raise failure
    return SafeJSONResponse(completion_body(outcome, body.model, created), headers=headers)


def _stored_outcome(summary: RunSummary, events: list[dict[str, Any]]) -> RunOutcome:
    """A finished run's outcome, from its stored trace (from its row if it has none)."""
    if events and events[-1].get("kind") == "run_finished":
        return RunOutcome.from_events(events)
    return RunOutcome(
        summary.run_id,
        summary.status,  # type: ignore[arg-type]  # a stored status
        summary.answer,
        summary.error,
        0,
        0,
        summary.cost_usd,
        summary.frontier_only_usd,
        (),
        summary.flags,
    )


async def _replay(
    front: _Front, outcome: RunOutcome, body: ChatCompletionRequest, created: int
) -> AsyncIterator[str]:
    """A finished run as the stream it would have been (its end only, no progress)."""
    chunk_id = f"chatcmpl-{outcome.run_id}"
    yield chunk(chunk_id, body.model, created, delta={"role": "assistant", "content": ""})
    for line in _stream_end(front, outcome, body, created, chunk_id):
        yield line


def _stream_end(
    front: _Front, outcome: RunOutcome, body: ChatCompletionRequest, created: int, chunk_id: str
) -> list[str]:
    """The last SSE lines of a streamed run: its answer and `[DONE]`, or its error event."""
    failure = outcome_error(outcome, front.timeout_s)
    if failure is not None:
        return [f"data: {json.dumps(failure.body())}\n\n"]
    lines = [
        chunk(chunk_id, body.model, created, delta={"content": outcome.content}),
        chunk(chunk_id, body.model, created, finish_reason="stop", brickwork=outcome.extras()),
    ]
    if body.stream_options is not None and body.stream_options.include_usage:
        lines.append(chunk(chunk_id, body.model, created, choices=(), usage=outcome.usage()))
    lines.append("data: [DONE]\n\n")
    return lines


def _key_in_use(run_id: str) -> ApiError:
    """409 for a keyed request whose run is being run or answered now: retry shortly."""
    return ApiError(
        409,
        f"run {run_id}, named by this {idempotency.HEADER}, is running right now (a request "
        f"with the same key is under way); nothing was run. Retry with the same key in "
        f"{_KEYED_RETRY_AFTER_S} s to get its outcome; its status: GET /v1/runs/{run_id}",
        param=idempotency.HEADER,
        code="run_in_progress",
        headers={"retry-after": str(_KEYED_RETRY_AFTER_S), "x-should-retry": "true"},
        extra={"brickwork": {"run_id": run_id, "status": RUNNING}},
    )


def _run_options(body: ChatCompletionRequest, timeout_s: float) -> dict[str, Any]:
    last_user = max(i for i, m in enumerate(body.messages) if m.role == "user")
    return {
        "mode": body.mode,
        "tenant": body.tenant,
        "budget_usd": body.budget_usd,
        "timeout_s": timeout_s,
        "run_id": uuid.uuid4().hex[:16],
        # The conversation up to the request (the last user turn), for multi-turn graphs.
        "messages": [m.to_dict() for m in body.messages[: last_user + 1]],
    }


async def _run(
    front: _Front,
    app: App,
    text: str,
    options: dict[str, Any],
    sink: asyncio.Queue[Event | None] | None,
) -> list[Event]:
    events: list[Event] = []
    graph = app.graph.name
    in_flight = front.metrics.in_flight.labels(graph)
    in_flight.inc()
    try:
        async for event in app.astream(text, **options):
            events.append(event)
            front.metrics.observe(graph, event)
            if sink is not None:
                sink.put_nowait(event)
    except Exception as exc:  # the run never finished: refused, or a server-side failure
        if isinstance(exc, AdmissionRefused):
            front.metrics.run_failed(graph, "refused")
            log.info("run %s refused: %s", options["run_id"], exc)
        else:
            front.metrics.run_failed(graph)
            log.exception("run %s could not run", options["run_id"])
        raise exception_error(exc, options["run_id"]) from exc
    finally:
        in_flight.dec()
        if sink is not None:
            sink.put_nowait(None)
    return events


async def _stream(
    front: _Front,
    task: asyncio.Task[list[Event]],
    queue: asyncio.Queue[Event | None],
    run_id: str,
    body: ChatCompletionRequest,
    created: int,
) -> AsyncIterator[str]:
    chunk_id = f"chatcmpl-{run_id}"
    yield chunk(chunk_id, body.model, created, delta={"role": "assistant", "content": ""})
    getter: asyncio.Task[Event | None] | None = None
    try:
        while True:
            getter = getter or asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter}, timeout=_KEEPALIVE_S)
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
        for line in _stream_end(front, outcome, body, created, chunk_id):
            yield line
    finally:
        if getter is not None:
            getter.cancel()


# -- serving ------------------------------------------------------------------------------


async def _close_apps(apps: Any) -> None:
    pools: dict[int, Any] = {}
    for app in apps:
        with contextlib.suppress(ConfigError):  # an app that never started has no pool
            pools[id(app.pool)] = app.pool
        try:
            await app.aclose()
        except Exception:
            log.exception("could not close app %s", app.graph.name)
    for pool in pools.values():
        try:
            await pool.aclose()
        except Exception:
            log.exception("could not close a model pool")


class ApiServer:
    """Runs the API with uvicorn on a background thread, for tests and embedding.

        with ApiServer(apps_factory=lambda: {"smart_home": App.from_graph(...)}) as server:
            openai.OpenAI(base_url=server.base_url, api_key="-")

    Give `apps` already made (they must not have run on another event loop), or
    `apps_factory`, called inside the server's own loop; apps it makes are closed (with their
    pools) when the server stops. `port=0` picks a free port.
    """

    def __init__(
        self,
        apps: Mapping[str, App] | None = None,
        *,
        apps_factory: Callable[[], Mapping[str, App]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        store: RunStore | None = None,
        api_key: str | None = None,
        max_body_bytes: int = 1_000_000,
        timeout_s: float = 300,
        startup_timeout_s: float = 60,
        public_metrics: bool = False,
        admission: AdmissionLimits | None = None,
    ) -> None:
        if (apps is None) == (apps_factory is None):
            raise ConfigError("give ApiServer either apps or apps_factory (exactly one)")
        self._apps = apps
        self._factory = apps_factory
        self.host = host
        self.port = port
        self._options: dict[str, Any] = {
            "store": store,
            "api_key": api_key,
            "max_body_bytes": max_body_bytes,
            "timeout_s": timeout_s,
            "public_metrics": public_metrics,
            "admission": admission,
        }
        self._startup_timeout_s = startup_timeout_s
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """`http://host:port` (the port is known once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI `base_url`: `url` + `/v1`."""
        return f"{self.url}/v1"

    def __enter__(self) -> ApiServer:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((self.host, self.port))
        self.port = self._socket.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name="brickwork-api", daemon=True)
        self._thread.start()
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _wait_ready(self) -> None:
        import httpx

        from brickwork.errors import ServerStartError

        deadline = time.monotonic() + self._startup_timeout_s
        while time.monotonic() < deadline:
            assert self._thread is not None
            if not self._thread.is_alive():
                raise ServerStartError(
                    f"the API server on {self.url} stopped during start-up: {self._error!r}"
                ) from self._error
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise ServerStartError(
            f"the API server on {self.url} did not answer /health within "
            f"{self._startup_timeout_s:g} s"
        )

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            log.exception("the API server on %s failed", self.url)

    async def _serve(self) -> None:
        apps = self._apps
        if apps is None:
            assert self._factory is not None
            apps = self._factory()
        api = create_api(apps, close_apps=self._apps is None, **self._options)
        config = uvicorn.Config(api, log_level="warning", timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        assert self._socket is not None
        await self._server.serve(sockets=[self._socket])
