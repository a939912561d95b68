"""`Instance`: one model endpoint as an operator sees it (what `App.instances()` returns).

It joins three views of an endpoint: this process's client (circuit, calls in flight, failures),
the server's own (`/health`, `/v1/models`, `/metrics`: see `brickwork.serving.vllm_metrics`),
and, for a vLLM server this process launched, its supervisor (status, restarts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brickwork.serving.pool import ModelPool
    from brickwork.serving.vllm_metrics import ServerState

__all__ = ["Instance", "instances_of"]


@dataclass(frozen=True)
class Instance:
    """A snapshot of one endpoint.

    Attributes:
        name: The endpoint's name in the pool.
        serves: The logical models it backs (`slm`, `frontier`).
        kind: "vllm" or "openai".
        base_url: Its OpenAI base URL.
        model: The model name sent to it.
        stand_in: A local model playing the frontier role.
        circuit: This process's circuit breaker state for it.
        in_flight: This process's requests in flight on it.
        max_concurrency: This process's limit of requests in flight.
        calls: Requests this process sent it.
        failures: Of those, the ones that failed.
        health: "ok", "down", or "unknown" (not a vLLM server: nothing to ask).
        adapters: LoRA adapters the server serves (None: unknown).
        running: Requests the server is processing, from every client (None: unknown).
        waiting: Requests queued at the server (None: unknown).
        kv_cache_usage: Fraction of the server's KV cache in use, 0..1 (None: unknown).
        launched: This process launched the server (and stops it on close).
        restartable: `App.restart_instance(name)` can restart it.
        status: The launched server's supervisor status ("ready", "restarting"...), else None.
        restarts: Restarts of the launched server (crashes and operator restarts), else None.
        origin: Who runs the server, for humans.
        error: Why part of the server's state is unknown.
    """

    name: str
    serves: tuple[str, ...]
    kind: str
    base_url: str
    model: str
    stand_in: bool
    circuit: str
    in_flight: int
    max_concurrency: int
    calls: int
    failures: int
    health: str = "unknown"
    adapters: tuple[str, ...] | None = None
    running: int | None = None
    waiting: int | None = None
    kv_cache_usage: float | None = None
    launched: bool = False
    restartable: bool = False
    status: str | None = None
    restarts: int | None = None
    origin: str = ""
    error: str | None = None


def instances_of(
    pool: ModelPool,
    states: dict[str, ServerState],
    *,
    server: Any = None,
    earlier_restarts: int = 0,
    origins: Mapping[str, str] | None = None,
) -> list[Instance]:
    """Join the pool's clients, the servers' states and the launched server, per endpoint.

    Args:
        pool: The pool whose endpoints to show.
        states: `pool.server_metrics()`.
        server: The `VLLMServer` this process launched, if any.
        earlier_restarts: Restarts of `server` before its current start (operator restarts
            through `App.restart_instance` and the crash restarts before them).
        origins: Who runs the server at a base URL, for humans (default: "external").
    """
    serves: dict[str, list[str]] = {}
    for logical, configs in pool.config.models.items():
        for config in configs:
            serves.setdefault(config.name, []).append(logical)
    launched_url = getattr(server, "base_url", None)
    found: list[Instance] = []
    for client in pool.endpoints():
        config = client.config
        state = states.get(config.name)
        launched = launched_url is not None and config.base_url == launched_url
        found.append(
            Instance(
                name=config.name,
                serves=tuple(serves.get(config.name, ())),
                kind=config.kind,
                base_url=config.base_url,
                model=config.model,
                stand_in=config.stand_in,
                circuit=str(client.breaker.state),
                in_flight=client.in_flight,
                max_concurrency=config.max_concurrency,
                calls=client.calls,
                failures=client.failures,
                health=state.health if state else "unknown",
                adapters=state.adapters if state else None,
                running=state.running if state else None,
                waiting=state.waiting if state else None,
                kv_cache_usage=state.kv_cache_usage if state else None,
                launched=launched,
                restartable=launched,
                status=str(server.status) if launched else None,
                restarts=int(server.restarts) + earlier_restarts if launched else None,
                origin=(origins or {}).get(
                    config.base_url, "external server" if config.kind == "vllm" else "remote API"
                ),
                error=state.error if state else None,
            )
        )
    return found
