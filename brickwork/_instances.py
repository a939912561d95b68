"""What an operator sees of the models: endpoints (`Instance`) and registered serves (`Serve`).

`Instance` is one model endpoint (what `App.instances()` returns); `Serve` is one registered
`brickwork serve` with its restarts and their reasons from its log (what `App.serves()` returns).

It joins three views of an endpoint: this process's client (circuit, calls in flight, failures),
the server's own (`/health`, `/v1/models`, `/metrics`: see `brickwork.serving.vllm_metrics`),
and, for a vLLM server this process launched, its supervisor (status, restarts).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brickwork.serving.pool import ModelPool
    from brickwork.serving.vllm_metrics import ServerState

__all__ = ["Instance", "Serve", "instances_of", "registered_serves", "restart_events"]


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
        events: The launched server's life events (why it died, when it was back), oldest
            first; empty for servers this process did not launch (see `App.serves()`).
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
    events: tuple[str, ...] = ()


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
                events=tuple(getattr(server, "events", ())) if launched else (),
            )
        )
    return found


@dataclass(frozen=True)
class Serve:
    """One registered `brickwork serve`, as an operator sees it.

    Attributes:
        port: Its port (its key in the registry).
        pid: The `brickwork serve` process.
        base_url: Its OpenAI base URL.
        served_name: The model name it answers to.
        adapters: The LoRA adapters it serves by name.
        merged: Merged adapters served by instances of their own -> their base URL.
        started_at: When it started (ISO 8601).
        health: "ok", or why it cannot be used now (dead, restarting).
        restarts: Restarts its log records.
        events: Its life events from its log (deaths, restarts and why, back and ready),
            oldest first, the last few.
        log: Its log file.
    """

    port: int
    pid: int
    base_url: str
    served_name: str
    adapters: tuple[str, ...]
    merged: dict[str, str]
    started_at: str
    health: str
    restarts: int
    events: tuple[str, ...]
    log: str


#: The launcher's own lines in an instance's log (`VLLMServer._event`, start banners).
_EVENT = re.compile(r"^=== brickwork: (.*) ===$")
#: Bytes read from the end of a log for its events.
_LOG_TAIL = 256 * 1024


def restart_events(log: str | Path, *, keep: int = 5) -> tuple[int, tuple[str, ...]]:
    """Restarts recorded in a vLLM instance's log, and its last `keep` life events.

    Start banners ("starting on port ...") are not events; a missing log has none.
    """
    path = Path(log)
    text = ""
    with contextlib.suppress(OSError), path.open("rb") as handle:
        size = path.stat().st_size
        handle.seek(max(0, size - _LOG_TAIL))
        text = handle.read().decode("utf-8", "replace")
    events = []
    for line in text.splitlines():
        found = _EVENT.match(line.strip())
        if found and not found.group(1).startswith("starting on port"):
            events.append(found.group(1))
    restarts = sum("restarting in" in e for e in events)
    return restarts, tuple(events[-keep:])


def registered_serves() -> list[Serve]:
    """Every live `brickwork serve` on this machine, newest first, with health and restarts."""
    from brickwork.serving.local import _unhealthy_because
    from brickwork.serving.registry import running_servers

    found = []
    for record in running_servers():
        problem = _unhealthy_because(record)
        restarts, events = restart_events(record.log)
        found.append(
            Serve(
                port=record.port,
                pid=record.pid,
                base_url=record.base_url,
                served_name=record.served_name,
                adapters=record.adapters,
                merged=dict(record.merged),
                started_at=record.started_at,
                health=problem or "ok",
                restarts=restarts,
                events=events,
                log=record.log,
            )
        )
    return found
