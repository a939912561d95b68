"""One OpenAI-compatible endpoint: its config, its shared HTTP client, and a single attempt.

Each `EndpointClient` owns one shared async HTTP client (injectable, so tests can pass a
`MockTransport`) and sends the OpenAI chat-completions wire format on it directly: one JSON
body out, one JSON body in. Retries, circuit breaking and failover are the pool's job, done
once, in one place.

Why not `openai.AsyncOpenAI` here: the SDK walks every request's JSON schema through its
type-driven transform and builds typed response models on every call, which was about 40 % of
a one-node run's CPU in `benchmarks/overhead.py`; the wire format is small and stable. The
client is an `httpx2.AsyncClient` (httpx's successor with the same API, which the openai SDK
3.x is also built on), so one connection pool serves both when an application shares it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping
from typing import Any, Literal

import httpx2
from pydantic import BaseModel, ConfigDict, Field, field_validator

from brickwork.errors import ConfigError, ModelCallError, ModelTimeoutError
from brickwork.serving.resilience import CircuitBreaker, CircuitPolicy
from brickwork.serving.types import ChatRequest, Completion, TokenLogprob, Usage

__all__ = ["EndpointClient", "EndpointConfig", "TransientError"]

_CHOICE_KEY = "choice"
_VALUE_KEY = "value"


class EndpointConfig(BaseModel):
    """Where one replica of a logical model is served.

    Attributes:
        name: Unique name, shown in traces and the TUI.
        base_url: OpenAI-compatible base URL, e.g. http://127.0.0.1:8321/v1.
        model: Model name to send (the served name for vLLM).
        kind: "vllm" (ours or external; adapters and vLLM structured outputs) or "openai"
            (any OpenAI-compatible API).
        api_key_env: Environment variable holding the API key; None for no key.
        max_concurrency: Requests in flight at once on this endpoint.
        connect_timeout_s: Time to establish a connection.
        read_timeout_s: Time to wait for an answer.
        stand_in: A local model playing the frontier role; every output says so.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    base_url: str
    model: str = Field(min_length=1)
    kind: Literal["vllm", "openai"] = "vllm"
    api_key_env: str | None = None
    max_concurrency: int = Field(default=64, ge=1)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=120.0, gt=0)
    stand_in: bool = False

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    def api_key(self) -> str:
        """The API key from `api_key_env` (a placeholder when the endpoint needs none)."""
        if self.api_key_env is None:
            return "EMPTY"
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigError(
                f"endpoint {self.name!r} reads its API key from ${self.api_key_env}, which is "
                "not set; export it or remove api_key_env"
            )
        return key


class TransientError(Exception):
    """An attempt failed in a way worth retrying (connection error, 429, 5xx)."""

    def __init__(self, message: str, *, counts_against_endpoint: bool) -> None:
        self.counts_against_endpoint = counts_against_endpoint
        super().__init__(message)


class EndpointClient:
    """Sends single attempts to one endpoint; owns its HTTP client and circuit breaker."""

    def __init__(
        self,
        config: EndpointConfig,
        *,
        http_client: httpx2.AsyncClient | None = None,
        circuit: CircuitPolicy | None = None,
    ) -> None:
        self.config = config
        self.breaker = CircuitBreaker(circuit or CircuitPolicy())
        self.in_flight = 0
        self.calls = 0
        self.failures = 0
        self._semaphore = asyncio.Semaphore(config.max_concurrency)
        self._owns_http = http_client is None
        self._http = http_client or httpx2.AsyncClient(
            timeout=self.timeout,
            limits=httpx2.Limits(
                max_connections=config.max_concurrency,
                max_keepalive_connections=config.max_concurrency,
            ),
        )
        self._url = f"{config.base_url}/chat/completions"
        self._headers: dict[str, str] | None = None

    @property
    def timeout(self) -> httpx2.Timeout:
        """Connect and read timeouts of this endpoint."""
        cfg = self.config
        return httpx2.Timeout(cfg.read_timeout_s, connect=cfg.connect_timeout_s)

    def payload(self, request: ChatRequest, served_model: str) -> dict[str, Any]:
        """The exact JSON body sent to `/chat/completions`."""
        body: dict[str, Any] = {
            "model": served_model,
            "messages": [dict(m) for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if request.seed is not None:
            body["seed"] = request.seed
        if request.logprobs:
            body["logprobs"] = True
            if request.top_logprobs:
                body["top_logprobs"] = request.top_logprobs
        schema = request.json_schema
        if request.choices is not None:
            if self.config.kind == "vllm":
                body["structured_outputs"] = {"choice": list(request.choices)}
            else:
                schema = {
                    "type": "object",
                    "properties": {_CHOICE_KEY: {"type": "string", "enum": list(request.choices)}},
                    "required": [_CHOICE_KEY],
                    "additionalProperties": False,
                }
        if schema is not None and self.config.kind == "openai" and _needs_wrapping(schema):
            # OpenAI-style APIs want an object at the root of a response schema.
            schema = {
                "type": "object",
                "properties": {_VALUE_KEY: dict(schema)},
                "required": [_VALUE_KEY],
                "additionalProperties": False,
            }
        if schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": request.schema_name, "schema": dict(schema)},
            }
        return body

    def headers(self) -> dict[str, str]:
        """Request headers (the API key is read from the environment once)."""
        if self._headers is None:
            self._headers = {
                "Authorization": f"Bearer {self.config.api_key()}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            }
        return self._headers

    async def attempt(self, request: ChatRequest, *, served_model: str, logical: str) -> Completion:
        """One attempt, no retries.

        Raises:
            TransientError: connection error, 429 or 5xx (the pool may retry or fail over).
            ModelTimeoutError: no answer within the read timeout.
            ModelCallError: any other error answer (4xx), or an answer that is not a chat
                completion: retrying would not help.
        """
        content = json.dumps(self.payload(request, served_model)).encode()
        headers = self.headers()
        async with self._semaphore:
            self.in_flight += 1
            self.calls += 1
            started = time.perf_counter()
            try:
                response = await self._http.post(
                    self._url, content=content, headers=headers, timeout=self.timeout
                )
            except httpx2.ConnectTimeout as exc:
                self.failures += 1
                raise TransientError(
                    f"{self._where()}: connect timeout", counts_against_endpoint=True
                ) from exc
            except httpx2.TimeoutException as exc:
                self.failures += 1
                raise ModelTimeoutError(
                    f"{self._where()} gave no answer within {self.config.read_timeout_s:.0f} s; "
                    "raise read_timeout_s or lower max_tokens"
                ) from exc
            except httpx2.TransportError as exc:
                self.failures += 1
                raise TransientError(
                    f"{self._where()}: cannot connect ({exc})", counts_against_endpoint=True
                ) from exc
            finally:
                self.in_flight -= 1
            latency = time.perf_counter() - started
            if response.status_code >= 400:
                self.failures += 1
                raise self._status_error(response, served_model)
        return self._completion(response, request, served_model, logical, latency)

    def _status_error(self, response: httpx2.Response, served_model: str) -> Exception:
        status, detail = response.status_code, _error_detail(response)
        if status == 429 or status >= 500:
            return TransientError(
                f"{self._where()}: HTTP {status}: {detail}",
                counts_against_endpoint=status >= 500,
            )
        hint = ""
        if status == 404:
            hint = f" (does the endpoint serve a model named {served_model!r}?)"
        return ModelCallError(
            f"{self._where()} refused the request with HTTP {status}: {detail}{hint}",
            status_code=status,
        )

    def _completion(
        self,
        response: httpx2.Response,
        request: ChatRequest,
        served_model: str,
        logical: str,
        latency: float,
    ) -> Completion:
        try:
            data = response.json()
            choice = data["choices"][0]
            message = choice["message"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ModelCallError(
                f"{self._where()} answered with something that is not a chat completion: "
                f"{response.text[:200]!r}"
            ) from exc
        text = message.get("content") or ""
        if request.choices is not None and self.config.kind != "vllm":
            text = _unwrap_choice(text, request.choices, self._where())
        elif (
            request.json_schema is not None
            and self.config.kind == "openai"
            and _needs_wrapping(request.json_schema)
        ):
            text = _unwrap_value(text, self._where())
        usage = data.get("usage") or {}
        return Completion(
            text=text,
            model=logical,
            served_model=served_model,
            endpoint=self.config.name,
            usage=Usage(
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
            ),
            latency_s=latency,
            finish_reason=choice.get("finish_reason"),
            logprobs=_logprobs(choice) if request.logprobs else None,
            endpoint_kind=self.config.kind,
            stand_in=self.config.stand_in,
        )

    def _where(self) -> str:
        return f"endpoint {self.config.name!r} ({self.config.base_url})"

    async def aclose(self) -> None:
        """Close the HTTP client if this endpoint created it."""
        if self._owns_http:
            await self._http.aclose()


def _logprobs(choice: Mapping[str, Any]) -> tuple[TokenLogprob, ...]:
    content = (choice.get("logprobs") or {}).get("content") or []
    return tuple(
        TokenLogprob(
            token=item["token"],
            logprob=float(item["logprob"]),
            top=tuple(
                (alt["token"], float(alt["logprob"])) for alt in item.get("top_logprobs") or ()
            ),
        )
        for item in content
    )


def _unwrap_choice(text: str, choices: Any, where: str) -> str:
    try:
        value = json.loads(text)[_CHOICE_KEY]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelCallError(
            f"{where} did not answer with a choice object: {text[:200]!r}"
        ) from exc
    if value not in choices:
        raise ModelCallError(f"{where} chose {value!r}, which is not one of {list(choices)!r}")
    return str(value)


def _needs_wrapping(schema: Mapping[str, Any]) -> bool:
    return schema.get("type") != "object"


def _unwrap_value(text: str, where: str) -> str:
    try:
        return json.dumps(json.loads(text)[_VALUE_KEY])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelCallError(f"{where} did not answer with a value object: {text[:200]!r}") from exc


def _error_detail(response: httpx2.Response) -> str:
    try:
        body: Mapping[str, Any] = response.json()
    except ValueError:
        return response.text[:300]
    error = body.get("error", body)
    if isinstance(error, Mapping):
        return str(error.get("message", error))[:300]
    return str(error)[:300]
