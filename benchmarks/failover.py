"""Ray Serve front replicas under failure: kill -9 of one under load, and one budget for all.

    .venv/bin/python -m benchmarks.failover [--requests 300] [--concurrency 16] [--kill-after 50]
        [--attempts 5]

Against the instant server (`benchmarks.instant_server`: no model), over the real PostgreSQL
store, on a local Ray cluster started for the run (`brickwork deploy ray` with 2 replicas and
`--tenant-budget`, then `down`):

1. budgets: 50 concurrent `smart_home` runs in frontier mode (every node reserves an
   escalation) for one tenant whose limit covers a few escalations, spread over both
   replicas; how many answered 200 and 402, and what the tenant spent against its limit, read
   from the shared budgets table;
2. failover: `--requests` runs at `--concurrency` in flight, each request with an
   `Idempotency-Key` of its own, by clients that retry it with the same key the way the openai
   SDK does (`keyed_post`: a 5xx without `x-should-retry: false`, a 409 with
   `x-should-retry: true`, a dropped connection; up to `--attempts` tries, waiting
   `Retry-After` or 0.5 s doubling); once `--kill-after` have been answered, SIGKILL of the
   replica that answered the first; then the final HTTP statuses, how many requests needed a
   retry and what their first try got, every run the store recorded since the start (there
   must be exactly one per key: no duplicate, none missing; each ends ok or interrupted,
   never stays running), and `POST /v1/runs/{id}/resume` of any run still interrupted.

Writes benchmarks/results/failover.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import tempfile
import time
import uuid
from typing import Any

import httpx

from benchmarks.deploy import BODY, BRICKWORK, PG_URL, RESULTS
from benchmarks.instant_server import InstantServer, free_port
from brickwork.http.idempotency import run_id_for


async def keyed_post(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    key: str,
    *,
    attempts: int = 5,
) -> tuple[httpx.Response | None, list[int]]:
    """POST a chat completion with an `Idempotency-Key`, retrying as the openai SDK does.

    Retried with the same key: a 5xx unless `x-should-retry: false`, anything with
    `x-should-retry: true` (409 `run_in_progress`), and a dropped connection; the wait is
    `Retry-After` when given, else 0.5 s doubling. Returns the last response (None if every
    try lost its connection) and every try's status (0 for a dropped connection).
    """
    tried: list[int] = []
    reply: httpx.Response | None = None
    for attempt in range(attempts):
        try:
            reply = await client.post(url, json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError:
            reply = None
            tried.append(0)
        else:
            tried.append(reply.status_code)
            should = reply.headers.get("x-should-retry")
            if not (should == "true" or (reply.status_code >= 500 and should != "false")):
                return reply, tried
        if attempt + 1 < attempts:
            after = reply.headers.get("retry-after") if reply is not None else None
            await asyncio.sleep(float(after) if after else 0.5 * 2**attempt)
    return reply, tried


def _estimate(model_url: str) -> float:
    """What one escalation reserves on this pool (the replicas price it the same way)."""
    from brickwork.app import App
    from brickwork.cost.prices import estimate_cost
    from brickwork.run_context import ESCALATION_OUTPUT_TOKENS, ESCALATION_PROMPT_TOKENS

    async def read() -> float:
        app = App.from_graph(
            "smart_home", url=model_url, store=None, checkpoints=None, graph_options={"knn": False}
        )
        await app.astart()
        assert app.ledger is not None
        price = app.ledger.prices.top_tier_price
        await app.aclose()
        return estimate_cost(price, ESCALATION_PROMPT_TOKENS, ESCALATION_OUTPUT_TOKENS)

    return asyncio.run(read())


async def _budgets(url: str, tenant: str, limit: float) -> dict[str, Any]:
    from brickwork.cost.shared import PostgresBudgets

    body = {**BODY, "mode": "frontier", "tenant": tenant}
    async with httpx.AsyncClient(timeout=300) as client:
        replies = await asyncio.gather(
            *(client.post(f"{url}/v1/chat/completions", json=body) for _ in range(50))
        )
    backend = PostgresBudgets(PG_URL)
    deadline = time.monotonic() + 30
    spent, held = backend.state(f"tenant:{tenant}")
    while held > 0 and time.monotonic() < deadline:  # settlements are written behind
        await asyncio.sleep(0.2)
        spent, held = backend.state(f"tenant:{tenant}")
    backend.close()
    codes = [r.status_code for r in replies]
    return {
        "runs": len(codes),
        "statuses": {str(c): codes.count(c) for c in sorted(set(codes))},
        "replicas": len({r.headers.get("x-brickwork-replica") for r in replies}),
        "limit_usd": limit,
        "spent_usd": round(spent, 9),
        "held_usd": held,
        "within_limit": spent <= limit + 1e-9,
        "refusal": next((r.json()["error"]["code"] for r in replies if r.status_code == 402), None),
    }


async def _failover(
    url: str, requests: int, concurrency: int, kill_after: int, attempts: int
) -> dict[str, Any]:
    from brickwork.store import RunStore

    gate = asyncio.Semaphore(concurrency)
    answered: list[httpx.Response] = []
    keys = [f"bench-{uuid.uuid4()}" for _ in range(requests)]
    tenant = str(BODY.get("tenant", "default"))
    expected = {run_id_for(tenant, key) for key in keys}
    enough = asyncio.Event()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        await asyncio.gather(
            *(client.post(f"{url}/v1/chat/completions", json=BODY) for _ in range(32))
        )  # warm-up: both replicas have loaded the graph and the encoder
        t0 = time.time()

        async def one(key: str) -> tuple[httpx.Response | None, list[int]]:
            async with gate:
                reply, tried = await keyed_post(
                    client, f"{url}/v1/chat/completions", BODY, key, attempts=attempts
                )
            if reply is not None:
                answered.append(reply)
            if len(answered) >= kill_after:
                enough.set()
            return reply, tried

        tasks = [asyncio.create_task(one(key)) for key in keys]
        await enough.wait()
        victim = int(answered[0].headers["x-brickwork-replica"].rsplit(":", 1)[1])
        os.kill(victim, signal.SIGKILL)
        killed_at = time.time() - t0
        outcomes = await asyncio.gather(*tasks)
        store = RunStore(PG_URL)
        try:
            rows = store.runs(since=t0, source="api", limit=10_000)
        finally:
            store.close()
        started = {s.run_id: s.status for s in rows}
        settle_start = time.perf_counter()
        for run_id, status in list(started.items()):
            deadline = time.monotonic() + 60
            while status == "running" and time.monotonic() < deadline:
                status = (await client.get(f"{url}/v1/runs/{run_id}")).json()["status"]
                if status == "running":
                    await asyncio.sleep(0.2)
            started[run_id] = status
        settled_s = time.perf_counter() - settle_start
        interrupted = [r for r, s in started.items() if s == "interrupted"]
        resumed = [await client.post(f"{url}/v1/runs/{r}/resume") for r in interrupted]
    codes = [r.status_code if r is not None else 0 for r, _ in outcomes]
    # Answered: a final reply that names its run (200, or an error body with the run id).
    named = [_run_of(r) for r, _ in outcomes]
    retried = [tried for _, tried in outcomes if len(tried) > 1]
    first_tries = [tried[0] for tried in retried]
    ended = list(started.values())
    return {
        "requests": requests,
        "concurrency": concurrency,
        "attempts_per_request": attempts,
        "killed_after_s": round(killed_at, 2),
        "final_statuses": {str(c): codes.count(c) for c in sorted(set(codes))},
        "answered_with_their_run": sum(
            1 for n, k in zip(named, keys, strict=True) if n == run_id_for(tenant, k)
        ),
        "retried": len(retried),
        "retried_first_try": {str(c): first_tries.count(c) for c in sorted(set(first_tries))},
        "retried_tries": sorted(retried),
        "runs_in_store": len(rows),
        "runs_in_store_distinct": len(started),
        "runs_in_store_are_the_keys_runs": set(started) == expected,
        "runs_ended": {s: ended.count(s) for s in sorted(set(ended))},
        "interrupted_visible_after_s": round(settled_s, 2),
        "resumed_statuses": [r.status_code for r in resumed],
    }


def _run_of(reply: httpx.Response | None) -> str | None:
    """The run id a reply names in its `brickwork` object, if it has one."""
    if reply is None:
        return None
    try:
        return str(reply.json()["brickwork"]["run_id"])
    except (ValueError, KeyError, TypeError):
        return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()
    ray_port, http_port = free_port(), free_port()
    state = tempfile.mkdtemp(prefix="brickwork-bench-failover-")
    env = {**os.environ, "BRICKWORK_STATE_DIR": state}
    proxy = f"http://127.0.0.1:{http_port}"
    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    with InstantServer() as model:
        limit = round(5.5 * _estimate(model.base_url), 9)
        command = [BRICKWORK, "deploy", "ray", "--api-replicas", "2", "--store", PG_URL]
        command += ["--url", model.base_url, "--ray-port", str(ray_port)]
        command += ["--http-port", str(http_port), "--tenant-budget", f"{tenant}={limit}"]
        try:
            subprocess.run(command, env=env, check=True, timeout=600)
            budgets = asyncio.run(_budgets(proxy, tenant, limit))
            failover = asyncio.run(
                _failover(proxy, args.requests, args.concurrency, args.kill_after, args.attempts)
            )
        finally:
            down = [BRICKWORK, "deploy", "down", "--ray-port", str(ray_port)]
            subprocess.run(down, env=env, timeout=300)
    return {
        "cores": os.cpu_count(),
        "replicas": 2,
        "budgets": budgets,
        "failover": failover,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--kill-after", type=int, default=50)
    parser.add_argument("--attempts", type=int, default=5, help="tries per request, with its key")
    result = run(parser.parse_args(argv))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "failover.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
