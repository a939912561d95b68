"""The wire layer of the OpenAI-compatible HTTP front: bodies, responses, chunks, errors, auth.

`brickwork.http.server` owns the routes and the server; this module owns what goes over the wire.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError
from starlette.exceptions import HTTPException

from brickwork.escalation import Mode
from brickwork.events import Event, RunStatus

__all__ = [
    "ApiError",
    "ChatCompletionRequest",
    "ChatMessage",
    "ConfirmRequest",
    "RunOutcome",
    "SafeJSONResponse",
    "add_error_handlers",
    "authorizer",
    "chunk",
    "completion_body",
    "error_body",
    "failure_cause",
    "parse_body",
    "parse_request",
    "read_body",
    "request_text",
]

ErrorType = Literal[
    "invalid_request_error", "authentication_error", "server_error", "rate_limit_error"
]
#: Why a run that did not finish well stopped, as far as the HTTP status is concerned.
Cause = Literal["model_unavailable", "model_refused", "model_timeout"]
#: Deepest JSON nesting a request body may have (OpenAI bodies need fewer than ten levels).
MAX_JSON_DEPTH = 64

BodyT = TypeVar("BodyT", bound=BaseModel)


class ApiError(Exception):
    """An error the API answers with an OpenAI-style body and a status code."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: ErrorType = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        """The JSON body: `{"error": {...}}` plus any extra top-level fields."""
        return {**error_body(self.message, self.type, self.param, self.code), **self.extra}


class SafeJSONResponse(JSONResponse):
    """A JSON response that any stored text can go through: never a 500 from encoding.

    Lone UTF-16 surrogates (kept by old stored runs, or from anywhere else) become U+FFFD and
    non-finite floats become null, instead of `UnicodeEncodeError`/`ValueError` at render time.
    """

    def render(self, content: Any) -> bytes:
        """Serialise `content` as compact UTF-8 JSON."""
        try:
            text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except ValueError:
            text = json.dumps(_finite(content), ensure_ascii=False, separators=(",", ":"))
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def error_body(
    message: str, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """`{"error": {"message", "type", "param", "code"}}`, the shape OpenAI clients parse."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def add_error_handlers(api: FastAPI) -> None:
    """Answer `ApiError`, unknown routes and query-parameter errors in OpenAI's error shape."""

    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return SafeJSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        body = error_body(str(exc.detail), "invalid_request_error", code=f"http_{exc.status_code}")
        return SafeJSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0]
        param = str(first["loc"][-1])
        message = f"invalid {param!r}: {first['msg']}; got {first.get('input')!r}"
        body = error_body(message, "invalid_request_error", param, "invalid_value")
        return SafeJSONResponse(body, status_code=400)

    api.add_exception_handler(ApiError, api_error)
    api.add_exception_handler(HTTPException, http_error)
    api.add_exception_handler(RequestValidationError, validation_error)


def authorizer(api_key: str | None) -> Callable[[Request], None]:
    """A route dependency that checks `Authorization: Bearer <api_key>` (none: open)."""

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(
                401,
                "missing API key; send 'Authorization: Bearer <key>'",
                type="authentication_error",
                code="invalid_api_key",
            )
        if not hmac.compare_digest(given.strip().encode(), api_key.encode()):
            raise ApiError(
                401,
                "wrong API key; use the key this server was started with",
                type="authentication_error",
                code="invalid_api_key",
            )

    return authorize


# -- requests ---------------------------------------------------------------------------------


class ContentPart(BaseModel):
    """One part of a multi-part message content; only text parts are understood."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    """One conversation message; `content` is a string or a list of text parts."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        """The content as plain text (text parts joined with newlines)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text or "" for part in self.content if part.type == "text")

    def to_dict(self) -> dict[str, Any]:
        """`{"role", "content", ...}` with the content flattened to text."""
        extra = {k: v for k, v in (self.model_extra or {}).items() if v is not None}
        return {**extra, "role": self.role, "content": self.text()}


class StreamOptions(BaseModel):
    """OpenAI's `stream_options`."""

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The body of `POST /v1/chat/completions`; unknown OpenAI fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    messages: list[ChatMessage]
    stream: bool = False
    stream_options: StreamOptions | None = None
    mode: Mode = "hybrid"
    tenant: str = Field(default="default", min_length=1, max_length=200)
    budget_usd: float | None = Field(default=None, ge=0)


class ConfirmRequest(BaseModel):
    """The body of `POST /v1/runs/{run_id}/confirm`: the user's answer to the run's question."""

    model_config = ConfigDict(extra="forbid")

    confirm: StrictBool = Field(
        description="true runs the action the run asked about; false declines it (the run "
        "then ends failed, and nothing is done)"
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise _too_large(size, limit)
        parts.append(part)
    return b"".join(parts)


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        413,
        f"the request body is {size} bytes or more; the limit is {limit}. Send less",
        code="body_too_large",
    )


def parse_request(raw: bytes) -> ChatCompletionRequest:
    """Decode, parse and validate a chat completion request body (see `parse_body`)."""
    return parse_body(raw, ChatCompletionRequest)


def parse_body(raw: bytes, model: type[BodyT]) -> BodyT:
    """Decode, parse and validate a JSON request body as `model`.

    Raises:
        ApiError: 400 for invalid UTF-8, malformed or too deeply nested JSON, lone
            surrogates, or a body that fails validation.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400,
            f"the request body is not valid UTF-8 (byte {exc.start}); send UTF-8 encoded JSON",
            code="invalid_encoding",
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(
            400,
            f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}",
            code="invalid_json",
        ) from None
    except RecursionError:
        raise _too_deep() from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(data).__name__}")
    _check_values(data)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        got = "" if first["type"] == "missing" else f"; got {first.get('input')!r}"
        raise ApiError(
            400, f"invalid {param!r}: {first['msg']}{got}", param=param, code="invalid_value"
        ) from None


def _too_deep() -> ApiError:
    return ApiError(
        400,
        f"the request body nests JSON deeper than {MAX_JSON_DEPTH} levels; send a flatter body",
        code="invalid_json",
    )


def _check_values(data: dict[str, Any]) -> None:
    r"""Refuse bodies nested too deep or holding strings that are not Unicode text.

    JSON may escape lone UTF-16 surrogates (`"\\ud83d"`); Python decodes them into strings
    that cannot be encoded as UTF-8, so no model, store or response could take them.

    Raises:
        ApiError: 400 naming the first offending field.
    """
    stack: list[tuple[Any, tuple[str, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_JSON_DEPTH:
            raise _too_deep()
        if isinstance(value, str):
            found = _SURROGATE.search(value)
            if found is not None:
                param = ".".join(path) or None
                raise ApiError(
                    400,
                    f"{param or 'the body'!r} holds a lone UTF-16 surrogate "
                    f"(U+{ord(found.group()):04X} at character {found.start()}), which is not "
                    "text; send valid Unicode",
                    param=param,
                    code="invalid_encoding",
                )
        elif isinstance(value, dict):
            for key, item in value.items():
                stack.append((key, (*path, "<key>")))
                stack.append((item, (*path, str(key))))
        elif isinstance(value, list):
            stack.extend((item, (*path, str(i))) for i, item in enumerate(value))


_SURROGATE = re.compile("[\ud800-\udfff]")


def request_text(request: ChatCompletionRequest, max_chars: int) -> str:
    """The request's text: the last user message.

    Raises:
        ApiError: 400 when there are no messages or the text is empty, 413 when it is too long.
    """
    if not request.messages:
        raise ApiError(400, "'messages' is empty; send at least one user message", param="messages")
    users = [m for m in request.messages if m.role == "user"]
    if not users:
        raise ApiError(
            400, "'messages' has no user message; the last one is the request", param="messages"
        )
    text = users[-1].text()
    if not text.strip():
        raise ApiError(
            400, "the last user message is empty; send what the user asked", param="messages"
        )
    if len(text) > max_chars:
        raise ApiError(
            413,
            f"the request is {len(text)} characters; the limit is {max_chars}. Shorten it",
            param="messages",
            code="text_too_long",
        )
    return text


# -- responses --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOutcome:
    """What the HTTP front reports about one finished run (read from its events)."""

    run_id: str
    status: RunStatus
    answer: str
    error: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    frontier_only_usd: float
    escalations: tuple[dict[str, Any], ...]
    flags: tuple[str, ...]
    cause: Cause | None = None

    @classmethod
    def from_events(cls, events: Sequence[Event] | Sequence[Mapping[str, Any]]) -> RunOutcome:
        """Summarise a run from its events; the last one must be `RunFinished`.

        The events may be `Event`s or their stored form (`Event.to_dict()`, as `RunStore.run`
        gives them back), so a stored run answers as it did when it ran.
        """

        def get(event: Event | Mapping[str, Any], name: str) -> Any:
            return event[name] if isinstance(event, Mapping) else getattr(event, name)

        finished = events[-1]
        if get(finished, "kind") != "run_finished":
            raise ValueError(f"the last event is {get(finished, 'kind')!r}, not 'run_finished'")
        prompt = completion = 0
        escalations: list[dict[str, Any]] = []
        error = None
        signals: tuple[tuple[str, str], ...] = ()
        for event in events:
            kind = get(event, "kind")
            if kind == "model_call":
                prompt += get(event, "prompt_tokens")
                completion += get(event, "completion_tokens")
            elif kind == "escalation":
                signals = tuple((str(k), str(d)) for k, d in get(event, "signals"))
                if get(event, "action") == "escalate":
                    escalations.append({"node": get(event, "node"), "reason": get(event, "reason")})
            elif kind == "node_finished" and not get(event, "ok") and get(event, "error"):
                error = get(event, "error")
        status: RunStatus = get(finished, "status")
        final_error = None if status == "ok" else (get(finished, "error") or error)
        return cls(
            get(finished, "run_id"),
            status,
            get(finished, "answer"),
            final_error,
            prompt,
            completion,
            get(finished, "cost_usd"),
            get(finished, "frontier_only_usd"),
            tuple(escalations),
            tuple(get(finished, "flags")),
            None if status == "ok" else failure_cause(final_error or "", signals),
        )

    @property
    def content(self) -> str:
        """The assistant message: the answer, or what stopped the run."""
        if self.status == "ok":
            return self.answer
        reason = {"over_budget": "the budget ran out", "failed": "a step failed"}.get(
            self.status, f"status {self.status}"
        )
        detail = f": {self.error}" if self.error else ""
        return f"The request could not be completed ({reason}){detail}. Run {self.run_id}."

    def usage(self) -> dict[str, int]:
        """OpenAI `usage`, summed over the run's model calls."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    def extras(self) -> dict[str, Any]:
        """The `brickwork` object added to responses."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "cost_usd": self.cost_usd,
            "frontier_only_usd": self.frontier_only_usd,
            "escalations": list(self.escalations),
            "flags": list(self.flags),
        }


def failure_cause(error: str, signals: Sequence[tuple[str, str]] = ()) -> Cause | None:
    """Whether a run stopped because of its model, from its error text and last signals.

    Args:
        error: The run's error: an exception (`EndpointUnavailableError: ...`) or a node's
            failure (`intent failed: model_error (...)`, `... frontier model too: model_timeout:
            ...`).
        signals: The (kind, detail) signals of the run's last escalation decision.

    Returns:
        `model_unavailable` (no replica could take the call: connection refused, circuit
        open), `model_refused` (the model server answered with an error), `model_timeout`, or
        None when the model was not the cause.
    """
    kinds = {kind for kind, _ in signals}
    if error.startswith("EndpointUnavailableError") or (
        _MODEL_ERROR.search(error) and "unavailable" in error
    ):
        return "model_unavailable"
    if error.startswith("ModelTimeoutError") or _MODEL_TIMEOUT.search(error):
        return "model_timeout"
    if error.startswith(("ModelCallError", "ServingError", "ServerStartError")):
        return "model_refused"
    if _MODEL_ERROR.search(error):
        return "model_refused"
    if ": timeout (" in error and "model_timeout" in kinds:
        return "model_timeout"
    return None


_MODEL_ERROR = re.compile(r"\bmodel_error\b")
_MODEL_TIMEOUT = re.compile(r"\bmodel_timeout\b")


def completion_body(outcome: RunOutcome, model: str, created: int) -> dict[str, Any]:
    """An OpenAI `chat.completion` for a finished run."""
    return {
        "id": f"chatcmpl-{outcome.run_id}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": outcome.content},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": outcome.usage(),
        "brickwork": outcome.extras(),
    }


def chunk(
    chunk_id: str,
    model: str,
    created: int,
    *,
    delta: Mapping[str, Any] | None = None,
    finish_reason: str | None = None,
    choices: Iterable[int] = (0,),
    **extra: Any,
) -> str:
    """One SSE `data:` line holding an OpenAI `chat.completion.chunk`."""
    body = {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": i,
                "delta": dict(delta or {}),
                "logprobs": None,
                "finish_reason": finish_reason,
            }
            for i in choices
        ],
        **extra,
    }
    return f"data: {json.dumps(body)}\n\n"
