"""How a run's outcome becomes an HTTP answer: a status an OpenAI client raises on, never a 200.

- `ok`: 200, a `chat.completion`.
- `failed` (a step could not be done): 422, `run_failed`.
- `over_budget`: 402, `budget_exhausted`.
- `needs_confirmation` (stopped before a sensitive tool call; nothing was done): 409,
  `needs_confirmation`; the message names the route that resumes it with the user's answer,
  `POST /v1/runs/{run_id}/confirm` with `{"confirm": true}` (do it) or `false` (decline).
- the model is unavailable (no replica answers, circuit open): 503, `model_unavailable`;
  it answered with an error: 502, `model_error`.
- a model timeout: 504, `model_timeout`; the run's own time limit: 504, `run_timeout`.
- `error` (an exception inside the run): 500, `run_error`.
- admission refused (nothing ran): 429, `overloaded`, with `Retry-After`.
- the run is running in another process (an API replica) right now (nothing ran): 409,
  `run_in_progress`.

4xx bodies have `type` `invalid_request_error` (429: `rate_limit_error`), 5xx `server_error`.
Every body is OpenAI's `{"error": {message, type, param, code}}` plus `brickwork` (run id,
status, cost, escalations, flags), so the trace is one `GET /v1/runs/{run_id}` away. Messages
are for users: passed through `brickwork.http.redact.redact` (no internal URLs, hosts, ports, paths
or exception names); the run's trace keeps the full detail. Every run outcome carries
`x-should-retry: false` (the openai client would otherwise re-run the graph, and its tool
calls, on 409/5xx); only the 429, sent before anything ran, invites a retry with `Retry-After`.
"""

from __future__ import annotations

import math
from typing import Any

from brickwork.errors import AdmissionRefused, BrickworkError, RunInProgress, ServingError
from brickwork.http.models import ApiError, ErrorType, RunOutcome
from brickwork.http.redact import redact

__all__ = ["NO_RETRY", "admission_error", "confirm_route", "exception_error", "outcome_error"]

NO_RETRY = {"x-should-retry": "false"}


def _where(run_id: str) -> str:
    return f"run {run_id}; its trace: GET /v1/runs/{run_id}"


def confirm_route(run_id: str) -> str:
    """The route that answers run `run_id`'s confirmation question."""
    return f"POST /v1/runs/{run_id}/confirm"


def _detail(error: str | None) -> str:
    text = redact(error or "")
    return f": {text}" if text else ""


def outcome_error(outcome: RunOutcome, timeout_s: float) -> ApiError | None:
    """The error a finished run answers with, or None for an `ok` run.

    Args:
        outcome: The run, read from its events.
        timeout_s: The server's run time limit (named in the 504 message).
    """
    status = str(outcome.status)
    if status == "ok":
        return None
    where = _where(outcome.run_id)
    status_code, code, kind, message = 422, f"run_{status}", "invalid_request_error", ""
    error_type: ErrorType = "invalid_request_error"
    if outcome.cause == "model_unavailable":
        status_code, code, error_type = 503, "model_unavailable", "server_error"
        message = f"the model is unavailable right now; try again later ({where})"
    elif outcome.cause == "model_refused":
        status_code, code, error_type = 502, "model_error", "server_error"
        message = f"the model server answered with an error ({where})"
    elif outcome.cause == "model_timeout":
        status_code, code, error_type = 504, "model_timeout", "server_error"
        message = f"the model did not answer in time; try again later ({where})"
    elif status == "timeout":
        status_code, code, error_type = 504, "run_timeout", "server_error"
        message = (
            f"the request did not finish within its {timeout_s:g} s limit; try again later or "
            f"ask for less ({where})"
        )
    elif status == "error":
        status_code, code, error_type = 500, "run_error", "server_error"
        message = f"the request stopped on an internal error ({where})"
    elif status == "failed":
        code = "run_failed"
        message = f"the request could not be completed{_detail(outcome.error)} ({where})"
    elif status == "over_budget":
        status_code, code = 402, "budget_exhausted"
        message = (
            f"the budget ran out before the request was done{_detail(outcome.error)}; "
            f"raise budget_usd or the tenant's budget ({where})"
        )
    elif status == "needs_confirmation":
        status_code, code = 409, "needs_confirmation"
        message = (
            f"the request asks for an action that needs confirmation"
            f"{_detail(outcome.error or outcome.answer)}; nothing was done. Ask the user, then "
            f'answer with {confirm_route(outcome.run_id)} and {{"confirm": true}} to do it or '
            f'{{"confirm": false}} to decline ({where})'
        )
    else:
        kind = status.replace("_", " ")
        message = f"the request ended with status {kind!r}{_detail(outcome.error)} ({where})"
    return ApiError(
        status_code,
        message,
        type=error_type,
        code=code,
        headers=NO_RETRY,
        extra={"brickwork": outcome.extras()},
    )


def exception_error(exc: BaseException, run_id: str) -> ApiError:
    """The error for a run that could not run at all (an exception before its end)."""
    brickwork = {"brickwork": {"run_id": run_id, "status": "error"}}
    if isinstance(exc, AdmissionRefused):
        return admission_error(exc)
    if isinstance(exc, RunInProgress):
        return ApiError(
            409,
            f"run {run_id} is running on another replica right now; nothing was run. "
            f"Its status: GET /v1/runs/{run_id}",
            param="run_id",
            code="run_in_progress",
            headers=NO_RETRY,
            extra=brickwork,
        )
    if isinstance(exc, ServingError):
        return ApiError(
            503,
            f"the model is unavailable right now; try again later (run {run_id})",
            type="server_error",
            code="model_unavailable",
            headers=NO_RETRY,
            extra=brickwork,
        )
    if isinstance(exc, BrickworkError):
        return ApiError(
            500,
            f"the request could not run: {redact(str(exc))} (run {run_id})",
            type="server_error",
            code="run_error",
            headers=NO_RETRY,
            extra=brickwork,
        )
    return ApiError(
        500,
        f"the request stopped on an internal error (run {run_id}); the server log has the detail",
        type="server_error",
        code="run_error",
        headers=NO_RETRY,
        extra=brickwork,
    )


def admission_error(exc: AdmissionRefused) -> ApiError:
    """429 with `Retry-After`: the server is at its limit and did not start the run."""
    retry_after = max(1, math.ceil(exc.retry_after_s))
    headers: dict[str, Any] = {"retry-after": str(retry_after)}
    return ApiError(
        429,
        f"the server is at capacity ({exc.reason}); nothing was run. Retry in about "
        f"{retry_after} s",
        type="rate_limit_error",
        code="overloaded",
        headers=headers,
    )
