"""What the local tiers serve on this machine, measured once: the price book's capacities.

A self-hosted tier is priced as its hardware's cost spread over the tokens it can serve
(`cost.SelfHostedPrice.tokens_per_s_capacity`). The default capacities were measured on one
machine; another machine serves both tiers at other speeds, and in another ratio (a 1.5B
token cost 4.7x a 135M token on one machine here, 7.3x on an AVX2-only EPYC). So the ladder's
capacities are measured where it runs: requests kept in flight on each tier for a few seconds,
tokens (prompt + completion) per second of wall time, saved in `<cache>/tier-capacity.json`
with the processor's signature (`serving.cpu_dtype.cpu_signature`), and read back only on the
same kind of processor. `brickwork run` measures on first use of a local ladder;
`BRICKWORK_CAPACITY=off` keeps the defaults.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from brickwork._settings import cache_dir
from brickwork.cost.prices import LocalCapacity
from brickwork.errors import ConfigError, ServingError
from brickwork.serving.cpu_dtype import cpu_signature

__all__ = [
    "CAPACITY_ENV",
    "CAPACITY_FILE",
    "Target",
    "capacity_enabled",
    "load_capacity",
    "measure_capacity",
    "save_capacity",
    "tokens_per_s",
]

#: `off` keeps the default capacities (nothing measured, nothing read).
CAPACITY_ENV = "BRICKWORK_CAPACITY"
CAPACITY_FILE = "tier-capacity.json"


@dataclass(frozen=True)
class Target:
    """One tier to measure: its server's base URL (ending in /v1) and the model name to send."""

    base_url: str
    model: str


def capacity_enabled() -> bool:
    """False when `BRICKWORK_CAPACITY=off`: the default capacities are used."""
    return os.environ.get(CAPACITY_ENV, "").strip().lower() not in {"off", "0", "false", "no"}


def load_capacity(cache: Path | None = None) -> LocalCapacity | None:
    """The capacities measured on this kind of processor (None: not measured, or disabled)."""
    if not capacity_enabled():
        return None
    try:
        data = json.loads(((cache or cache_dir()) / CAPACITY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("cpu") != cpu_signature():
        return None
    large = data.get("large_tokens_per_s")
    try:
        return LocalCapacity(
            small_tokens_per_s=float(data["small_tokens_per_s"]),
            large_tokens_per_s=None if large is None else float(large),
            measured_at=float(data.get("measured_at", 0.0)),
        )
    except (KeyError, TypeError, ValueError, ConfigError):
        return None  # a damaged file is measured over, never trusted


def save_capacity(capacity: LocalCapacity, cache: Path | None = None) -> Path:
    """Write the measurement for this kind of processor (atomically); returns the path."""
    path = (cache or cache_dir()) / CAPACITY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "cpu": cpu_signature(),
        "small_tokens_per_s": capacity.small_tokens_per_s,
        "large_tokens_per_s": capacity.large_tokens_per_s,
        "measured_at": capacity.measured_at,
    }
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(record, indent=2), encoding="utf-8")
    partial.replace(path)
    return path


async def tokens_per_s(
    target: Target,
    bodies: Sequence[Mapping[str, Any]],
    *,
    in_flight: int,
    requests: int,
    warm_up: int = 1,
    timeout_s: float = 900.0,
) -> float:
    """Tokens per second (prompt + completion) served with `in_flight` requests kept going.

    `bodies` are chat-completion bodies without "model" (cycled through, `requests` in all,
    after `warm_up` untimed ones).

    Raises:
        ServingError: The server refused a request or did not answer.
    """
    if not bodies or in_flight < 1 or requests < 1:
        raise ValueError("give bodies, in_flight >= 1 and requests >= 1")
    async with httpx2.AsyncClient(
        base_url=target.base_url, timeout=httpx2.Timeout(timeout_s)
    ) as http:

        async def one(body: Mapping[str, Any]) -> int:
            try:
                response = await http.post(
                    "/chat/completions", json={**body, "model": target.model}
                )
                response.raise_for_status()
                usage = response.json()["usage"]
                return int(usage["prompt_tokens"]) + int(usage["completion_tokens"])
            except (httpx2.HTTPError, KeyError, TypeError, ValueError) as exc:
                raise ServingError(
                    f"measuring {target.model} at {target.base_url} failed: {exc}"
                ) from exc

        for body in list(itertools.islice(itertools.cycle(bodies), warm_up)):
            await one(body)
        gate = asyncio.Semaphore(in_flight)

        async def bounded(body: Mapping[str, Any]) -> int:
            async with gate:
                return await one(body)

        started = time.perf_counter()
        counts = await asyncio.gather(
            *(bounded(b) for b in itertools.islice(itertools.cycle(bodies), requests))
        )
        return sum(counts) / (time.perf_counter() - started)


async def measure_capacity(
    small: Target,
    large: Target | None,
    bodies: Sequence[Mapping[str, Any]],
    *,
    in_flight: int = 8,
    small_requests: int = 16,
    large_requests: int = 8,
) -> LocalCapacity:
    """Both tiers at once (each on its own cores), `in_flight` requests kept on each."""
    jobs = [tokens_per_s(small, bodies, in_flight=in_flight, requests=small_requests)]
    if large is not None:
        jobs.append(tokens_per_s(large, bodies, in_flight=in_flight, requests=large_requests))
    measured = await asyncio.gather(*jobs)
    return LocalCapacity(
        small_tokens_per_s=measured[0],
        large_tokens_per_s=measured[1] if large is not None else None,
        measured_at=time.time(),
    )
