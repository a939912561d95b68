"""The model pool: logical model names -> replicas, with retries, circuit breakers and failover.

Logical names are what agents ask for: `slm`, `slm:<adapter>` (the same vLLM replicas, with the
adapter's name sent as the model), `large`, `frontier`. Every model call in brickwork goes
through `ModelPool.complete`.

Tiers: `PoolConfig.tiers` orders logical names from the cheapest to the top of the ladder
(`("slm", "large", "frontier")`); an escalation climbs one tier at a time (`next_tier`). By
default the ladder is every name of `DEFAULT_LADDER` the pool serves, in that order, skipping a
name served by exactly the same endpoints as the tier below it (`frontier` played by the local
`large` model is the same tier, not a step).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx2
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from brickwork.errors import (
    ConfigError,
    EndpointUnavailableError,
    ModelCallError,
    UnknownModelError,
)
from brickwork.serving.client import EndpointClient, EndpointConfig, TransientError
from brickwork.serving.resilience import CircuitPolicy, RetryPolicy
from brickwork.serving.types import ChatRequest, Completion, Message
from brickwork.serving.vllm_metrics import DEFAULT_TIMEOUT_S, ServerState, read_server_state

__all__ = ["DEFAULT_LADDER", "ModelPool", "PoolConfig", "label_confidence"]

#: The conventional tier names, cheapest first.
DEFAULT_LADDER: tuple[str, ...] = ("slm", "large", "frontier")


class PoolConfig(BaseModel):
    """Which endpoints serve which logical model, and the client policy for all of them.

    Example (TOML):

        [[models.slm]]
        name = "local"
        base_url = "http://127.0.0.1:8321/v1"
        model = "smollm2-135m-instruct"
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: dict[str, list[EndpointConfig]] = Field(min_length=1)
    #: Logical names from the cheapest tier to the top; empty: derived from DEFAULT_LADDER.
    tiers: tuple[str, ...] = ()
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    circuit: CircuitPolicy = Field(default_factory=CircuitPolicy)

    @model_validator(mode="after")
    def _check(self) -> Self:
        # One endpoint may back several logical names, but one name means one endpoint.
        seen: dict[str, EndpointConfig] = {}
        for logical, endpoints in self.models.items():
            if not logical or logical != logical.strip() or " " in logical:
                raise ValueError(f"logical model name {logical!r} must be non-empty, no spaces")
            if not endpoints:
                raise ValueError(f"logical model {logical!r} has no endpoints")
            for endpoint in endpoints:
                if seen.setdefault(endpoint.name, endpoint) != endpoint:
                    raise ValueError(f"endpoint name {endpoint.name!r} names two endpoints")
        for tier in self.tiers:
            if tier not in self.models:
                raise ValueError(
                    f"tier {tier!r} is not a logical model of this pool "
                    f"(known: {', '.join(sorted(self.models))})"
                )
        if len(set(self.tiers)) != len(self.tiers):
            raise ValueError(f"tiers {self.tiers!r} name a tier twice")
        return self

    @property
    def ladder(self) -> tuple[str, ...]:
        """The tiers, cheapest first (`tiers`, or derived from `DEFAULT_LADDER`)."""
        if self.tiers:
            return self.tiers
        ladder: list[str] = []
        for name in DEFAULT_LADDER:
            if name not in self.models:
                continue
            below = self.models[ladder[-1]] if ladder else None
            if below is not None and [e.name for e in below] == [e.name for e in self.models[name]]:
                continue  # the same endpoints under another name: not a step up
            ladder.append(name)
        return tuple(ladder)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> PoolConfig:
        """Validate a mapping; raises `ConfigError` that lists every problem."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigError(f"invalid pool config: {problems}") from exc

    @classmethod
    def load(cls, path: str | Path) -> PoolConfig:
        """Read a pool config from a .toml or .json file."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read pool config {str(path)!r}: {exc}") from exc
        try:
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, ValueError) as exc:
            raise ConfigError(f"pool config {str(path)!r} is not valid: {exc}") from exc
        return cls.parse(data)


class ModelPool:
    """Routes requests for logical models to healthy replicas.

    Policy, applied once here for every caller: per-endpoint concurrency limits (in the
    endpoint client), retries with jittered backoff on transient errors only, a circuit
    breaker per endpoint, and failover to another replica of the same logical model.
    """

    def __init__(
        self,
        config: PoolConfig,
        *,
        http_client_factory: Callable[[EndpointConfig], httpx2.AsyncClient] | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        rng: random.Random | None = None,
        metrics_http: httpx2.AsyncClient | None = None,
    ) -> None:
        """Create the pool's endpoint clients (no connection is opened yet).

        Args:
            config: The endpoints and the policy.
            http_client_factory: Makes each endpoint's HTTP client (tests pass MockTransports).
            sleep: The backoff sleep (tests pass a recorder).
            rng: Randomness for the backoff jitter.
            metrics_http: The client `server_metrics` reads with (default: one per server,
                from `http_client_factory` when given).
        """
        self.config = config
        self._metrics_http = metrics_http
        self._metrics_clients: dict[str, httpx2.AsyncClient] = {}
        self._http_client_factory = http_client_factory
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._clients: dict[str, EndpointClient] = {}
        for endpoints in config.models.values():
            for endpoint in endpoints:
                if endpoint.name not in self._clients:
                    http = http_client_factory(endpoint) if http_client_factory else None
                    self._clients[endpoint.name] = EndpointClient(
                        endpoint, http_client=http, circuit=config.circuit
                    )

    @classmethod
    def from_config(cls, config: PoolConfig | Mapping[str, Any] | str | Path) -> ModelPool:
        """Build a pool from a config object, a mapping, or a .toml/.json file."""
        if isinstance(config, PoolConfig):
            return cls(config)
        if isinstance(config, str | Path):
            return cls(PoolConfig.load(config))
        return cls(PoolConfig.parse(config))

    @property
    def logical_names(self) -> list[str]:
        """The logical model names this pool serves."""
        return sorted(self.config.models)

    def endpoints(self) -> list[EndpointClient]:
        """Every endpoint client (for health displays)."""
        return list(self._clients.values())

    @property
    def tiers(self) -> tuple[str, ...]:
        """The ladder of logical names, cheapest first (see `PoolConfig.ladder`)."""
        return self.config.ladder

    @property
    def top_tier(self) -> str:
        """The most capable tier (the last rung; `frontier` when the pool has no ladder)."""
        ladder = self.tiers
        return ladder[-1] if ladder else "frontier"

    def tier_of(self, model: str) -> str | None:
        """The tier a logical name belongs to (`slm:adapter` -> `slm`), or None if off the ladder.

        A name that is not itself a tier but is served by a tier's endpoints (`frontier`
        played by the local `large` model) belongs to that tier.
        """
        ladder = self.tiers
        base = model.split(":", 1)[0]
        if base in ladder:
            return base
        endpoints = self.config.models.get(base)
        if endpoints is None:
            return None
        names = [e.name for e in endpoints]
        for tier in ladder:
            if [e.name for e in self.config.models[tier]] == names:
                return tier
        return None

    def next_tier(self, model: str) -> str | None:
        """The tier one rung above `model`'s, or None at the top (or off the ladder)."""
        tier = self.tier_of(model)
        ladder = self.tiers
        if tier is None:
            return None
        index = ladder.index(tier)
        return ladder[index + 1] if index + 1 < len(ladder) else None

    def tier_endpoints(self, tier: str) -> list[EndpointConfig]:
        """The endpoint configs of one logical name (UnknownModelError if none)."""
        replicas, _ = self.resolve(tier)
        return [replica.config for replica in replicas]

    def resolve(self, model: str) -> tuple[list[EndpointClient], str | None]:
        """Replicas for a logical name and the adapter to send, if any.

        Raises:
            UnknownModelError: no such logical name (or base of `base:adapter`).
        """
        if model in self.config.models:
            return [self._clients[e.name] for e in self.config.models[model]], None
        base, sep, adapter = model.partition(":")
        if sep and adapter and base in self.config.models:
            replicas = [self._clients[e.name] for e in self.config.models[base]]
            if any(r.config.kind != "vllm" for r in replicas):
                raise UnknownModelError(
                    f"{model!r} names adapter {adapter!r}, but {base!r} is not served by vLLM; "
                    "adapters need a vLLM endpoint"
                )
            return replicas, adapter
        raise UnknownModelError(
            f"no endpoint serves model {model!r}; known: {', '.join(self.logical_names)} "
            "(adapters as 'base:adapter')"
        )

    async def complete(
        self,
        model: str,
        messages: Sequence[Message] | ChatRequest,
        **options: Any,
    ) -> Completion:
        """Send one chat request to `model`, with retries and failover.

        Args:
            model: A logical model name, e.g. "slm", "slm:intent" or "frontier".
            messages: The conversation, or a ready `ChatRequest`.
            **options: `ChatRequest` fields (json_schema, choices, logprobs, max_tokens...).

        Raises:
            UnknownModelError: no endpoint serves `model`.
            EndpointUnavailableError: every replica failed or has an open circuit.
            ModelCallError: the endpoint refused the request (4xx): fix the request.
            ModelTimeoutError: no answer within the read timeout.
        """
        if isinstance(messages, ChatRequest):
            request = messages
        else:
            request = ChatRequest(messages=list(messages), **options)
        replicas, adapter = self.resolve(model)
        policy = self.config.retry
        errors: list[str] = []
        last: EndpointClient | None = None
        for attempt in range(1, policy.max_retries + 2):
            client = self._pick(replicas, avoid=last)
            if client is None:
                break
            try:
                result = await client.attempt(
                    request, served_model=adapter or client.config.model, logical=model
                )
            except TransientError as exc:
                errors.append(str(exc))
                if exc.counts_against_endpoint:
                    client.breaker.record_failure()
                else:
                    client.breaker.record_success()
                last = client
                if attempt <= policy.max_retries:
                    await self._sleep(policy.delay(attempt, self._rng))
                continue
            except ModelCallError:
                client.breaker.record_success()  # the endpoint is well; the request is not
                raise
            except asyncio.CancelledError:
                client.breaker.record_abandoned()  # the caller gave up, not the endpoint
                raise
            except BaseException:
                client.breaker.record_failure()
                raise
            client.breaker.record_success()
            if attempt == 1:
                return result
            return _with_attempts(result, attempt)
        tried = "; ".join(errors[-3:]) or "every replica's circuit is open"
        raise EndpointUnavailableError(
            f"model {model!r} is unavailable after {len(errors)} failed attempt(s): {tried}. "
            "Check the server (brickwork serve / its log) or add a replica"
        )

    def _pick(
        self, replicas: Sequence[EndpointClient], avoid: EndpointClient | None
    ) -> EndpointClient | None:
        """The least-loaded replica whose circuit lets a call through, preferring a new one."""
        order = sorted(
            replicas, key=lambda r: (r is avoid, r.breaker.state != "closed", r.in_flight)
        )
        for client in order:
            if client.breaker.allow():
                return client
        return None

    async def choose(
        self, model: str, messages: Sequence[Message], labels: Sequence[str], **options: Any
    ) -> tuple[str, float, Completion]:
        """Constrained choice of one label; returns (label, confidence, completion).

        Confidence is the probability the model gave the chosen label's tokens (from logprobs);
        NaN when the endpoint returned none.
        """
        options.setdefault("max_tokens", 16)
        completion = await self.complete(
            model, messages, choices=list(labels), logprobs=True, **options
        )
        label = completion.text.strip()
        if label not in labels:
            raise ModelCallError(f"model {model!r} answered {label!r}, not one of {list(labels)!r}")
        return label, label_confidence(completion), completion

    async def complete_json(
        self, model: str, messages: Sequence[Message], schema: Mapping[str, Any], **options: Any
    ) -> tuple[Any, Completion]:
        """JSON-schema-constrained call; returns (parsed JSON, completion).

        Raises:
            ModelCallError: the output is not JSON (e.g. cut off by max_tokens).
        """
        completion = await self.complete(model, messages, json_schema=schema, **options)
        try:
            return json.loads(completion.text), completion
        except ValueError as exc:
            raise ModelCallError(
                f"model {model!r} returned text that is not JSON "
                f"(finish_reason={completion.finish_reason!r}): {completion.text[:200]!r}"
            ) from exc

    async def server_metrics(
        self, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> dict[str, ServerState]:
        """Each endpoint's server-side view: health, served adapters, running, queue, KV use.

        vLLM endpoints are read (`/health`, `/v1/models`, `/metrics`; once per server when
        several endpoints share one); other kinds have no such routes and get an "unknown"
        state. Never raises for an unreachable server: its state says "down".
        """
        reads: dict[str, asyncio.Future[ServerState]] = {}
        for client in self._clients.values():
            config = client.config
            if config.kind == "vllm" and config.base_url not in reads:
                reads[config.base_url] = asyncio.ensure_future(
                    read_server_state(
                        self._metrics_client(config),
                        config.base_url,
                        timeout_s=timeout_s,
                        headers=_auth(config),
                    )
                )
        if reads:
            await asyncio.gather(*reads.values())
        return {
            name: reads[c.config.base_url].result() if c.config.base_url in reads else ServerState()
            for name, c in self._clients.items()
        }

    def _metrics_client(self, config: EndpointConfig) -> httpx2.AsyncClient:
        """The client that reads a server's state.

        The injected one, else one per server made like the endpoints' clients (so a test's
        transport serves these reads too).
        """
        if self._metrics_http is not None:
            return self._metrics_http
        client = self._metrics_clients.get(config.base_url)
        if client is None:
            factory = self._http_client_factory
            client = factory(config) if factory is not None else httpx2.AsyncClient()
            self._metrics_clients[config.base_url] = client
        return client

    async def aclose(self) -> None:
        """Close every endpoint's HTTP client."""
        await asyncio.gather(*(c.aclose() for c in self._clients.values()))
        clients, self._metrics_clients = list(self._metrics_clients.values()), {}
        await asyncio.gather(*(c.aclose() for c in clients))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def label_confidence(completion: Completion) -> float:
    """Probability the model gave the generated tokens; NaN without logprobs."""
    if not completion.logprobs:
        return math.nan
    return math.exp(sum(t.logprob for t in completion.logprobs))


def _auth(config: EndpointConfig) -> dict[str, str]:
    """The bearer header for a vLLM started with `--api-key` (none when no key is set)."""
    if config.api_key_env is None:
        return {}
    try:
        return {"Authorization": f"Bearer {config.api_key()}"}
    except ConfigError:
        return {}


def _with_attempts(result: Completion, attempts: int) -> Completion:
    from dataclasses import replace

    return replace(result, attempts=attempts)
