"""What a vLLM server says about its own load: `/health`, `/v1/models` and `/metrics`.

`read_server_state` asks one server, with a short timeout, for its health, the models and
adapters it serves, and the scheduler and KV-cache gauges of its Prometheus `/metrics`:

- `vllm:num_requests_running`: requests in the running batch (in flight);
- `vllm:num_requests_waiting`: requests queued for it;
- `vllm:kv_cache_usage_perc` (0..1; `vllm:gpu_cache_usage_perc` / `vllm:cpu_cache_usage_perc`
  before vLLM 0.10).

Anything the server does not answer is None, never an exception: OpenAI-style APIs have no
`/metrics`, and a server being restarted answers nothing at all.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import httpx2

__all__ = [
    "KV_CACHE_METRICS",
    "RUNNING_METRIC",
    "WAITING_METRIC",
    "ServerState",
    "parse_gauges",
    "read_server_state",
    "server_root",
]

RUNNING_METRIC = "vllm:num_requests_running"
WAITING_METRIC = "vllm:num_requests_waiting"
#: KV-cache use, newest name first (the name changed in vLLM's V1 engine).
KV_CACHE_METRICS = (
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
    "vllm:cpu_cache_usage_perc",
)
#: Seconds to wait for each of the three reads.
DEFAULT_TIMEOUT_S = 2.0

Health = Literal["ok", "down", "unknown"]


@dataclass(frozen=True)
class ServerState:
    """One server's own view of itself; None where it did not say.

    Attributes:
        health: "ok" (`/health` answered 200), "down" (no answer or an error status), or
            "unknown" (not asked: not a vLLM server).
        models: Every model id `/v1/models` lists (base models and adapters).
        adapters: The LoRA adapters among them (entries with a `parent`).
        running: Requests being processed now.
        waiting: Requests queued.
        kv_cache_usage: Fraction of the KV cache in use, 0..1.
        error: Why a read failed, for display.
    """

    health: Health = "unknown"
    models: tuple[str, ...] | None = None
    adapters: tuple[str, ...] | None = None
    running: int | None = None
    waiting: int | None = None
    kv_cache_usage: float | None = None
    error: str | None = None


def server_root(base_url: str) -> str:
    """The server root of an OpenAI base URL: `http://h:p/v1` -> `http://h:p`."""
    base = base_url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def parse_gauges(text: str, names: Iterable[str]) -> dict[str, float]:
    """Values of the named metrics in Prometheus text format, summed over their label sets.

    A metric that does not appear is left out. Lines that do not parse are skipped (a
    server's exposition is not ours to validate).
    """
    wanted = set(names)
    found: dict[str, float] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        brace = line.find("{")
        if brace >= 0:
            name, rest = line[:brace], line[line.rfind("}") + 1 :]
        else:
            name, _, rest = line.partition(" ")
        if name not in wanted:
            continue
        fields = rest.split()
        if not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        if math.isnan(value):
            continue
        found[name] = found.get(name, 0.0) + value
    return found


async def read_server_state(
    http: httpx2.AsyncClient,
    base_url: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    headers: Mapping[str, str] | None = None,
) -> ServerState:
    """Ask one vLLM server for its health, models and load (the three reads run together).

    Args:
        http: The client to read with.
        base_url: The server's OpenAI base URL (ending in /v1) or its root.
        timeout_s: Time limit of each read.
        headers: Extra headers (e.g. an API key for a server started with one).
    """
    root = server_root(base_url)
    health, models, metrics = await asyncio.gather(
        _get(http, f"{root}/health", timeout_s, headers),
        _get(http, f"{root}/v1/models", timeout_s, headers),
        _get(http, f"{root}/metrics", timeout_s, headers),
    )
    errors = [r for r in (health, models, metrics) if isinstance(r, str)]
    state_health: Health = (
        "ok" if isinstance(health, httpx2.Response) and health.status_code == 200 else "down"
    )
    ids, adapters = _models(models)
    running = waiting = None
    kv = None
    if isinstance(metrics, httpx2.Response) and metrics.status_code == 200:
        gauges = parse_gauges(metrics.text, (RUNNING_METRIC, WAITING_METRIC, *KV_CACHE_METRICS))
        running = _int(gauges.get(RUNNING_METRIC))
        waiting = _int(gauges.get(WAITING_METRIC))
        kv = next((gauges[n] for n in KV_CACHE_METRICS if n in gauges), None)
    elif isinstance(metrics, httpx2.Response):
        errors.append(f"/metrics answered HTTP {metrics.status_code}")
    return ServerState(
        health=state_health,
        models=ids,
        adapters=adapters,
        running=running,
        waiting=waiting,
        kv_cache_usage=kv,
        error="; ".join(errors) or None,
    )


async def _get(
    http: httpx2.AsyncClient, url: str, timeout_s: float, headers: Mapping[str, str] | None
) -> httpx2.Response | str:
    try:
        return await http.get(url, timeout=timeout_s, headers=dict(headers or {}))
    except Exception as exc:  # whatever the transport raised, the server did not answer
        return f"{url}: {type(exc).__name__}"


def _models(
    response: httpx2.Response | str,
) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    if not isinstance(response, httpx2.Response) or response.status_code != 200:
        return None, None
    try:
        data = response.json()["data"]
        ids = tuple(str(m["id"]) for m in data)
        adapters = tuple(str(m["id"]) for m in data if m.get("parent"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, None
    return ids, adapters


def _int(value: float | None) -> int | None:
    return None if value is None else round(value)
