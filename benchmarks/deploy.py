"""Replicas of the HTTP front on Ray Serve: runs/s with N replicas against one, and the proxy hop.

    .venv/bin/python -m benchmarks.deploy [--replicas 2] [--requests 200] [--concurrency 16]

Against the instant server (`benchmarks.instant_server`: no model), over the real PostgreSQL
store, on a local Ray cluster started for the run (`brickwork deploy ray`, then `down`):

1. runs/s of `smart_home` through Serve's proxy with 1 replica, then with `--replicas`
   (the same cluster, redeployed), after a warm-up that reaches every replica;
2. the proxy's added hop: median latency of `/health` and of one run at concurrency 1
   through the proxy (1 replica) minus the same front served directly by uvicorn
   (`brickwork deploy replica`), same store and model.

The machine's load average is recorded before and after: on a shared machine it says how
much of the CPU the benchmark actually had. Writes benchmarks/results/deploy.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.instant_server import InstantServer, free_port

RESULTS = Path(__file__).parent / "results"
PG_URL = os.environ.get("BRICKWORK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BRICKWORK = str(Path(sys.executable).with_name("brickwork"))
BODY = {
    "model": "smart_home",
    "messages": [{"role": "user", "content": "turn on the kitchen lights"}],
}


async def _throughput(url: str, requests: int, concurrency: int) -> dict[str, Any]:
    gate = asyncio.Semaphore(concurrency)
    replicas: dict[str, int] = {}
    statuses: dict[int, int] = {}

    async def one(client: httpx.AsyncClient) -> None:
        async with gate:
            reply = await client.post(f"{url}/v1/chat/completions", json=BODY)
        statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
        who = reply.headers.get("x-brickwork-replica", "?")
        replicas[who] = replicas.get(who, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        warm = [one(client) for _ in range(4 * concurrency)]
        await asyncio.gather(*warm)  # every replica has loaded its graph and encoder
        replicas.clear()
        statuses.clear()
        start = time.perf_counter()
        await asyncio.gather(*(one(client) for _ in range(requests)))
        elapsed = time.perf_counter() - start
    return {
        "requests": requests,
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "runs_per_s": round(requests / elapsed, 2),
        "statuses": statuses,
        "per_replica": sorted(replicas.values(), reverse=True),
    }


def _latencies(url: str, n: int) -> dict[str, float]:
    health, runs = [], []
    with httpx.Client(timeout=120) as client:
        for _ in range(5):
            client.post(f"{url}/v1/chat/completions", json=BODY)
        for _ in range(n):
            start = time.perf_counter()
            client.get(f"{url}/health")
            health.append(time.perf_counter() - start)
            start = time.perf_counter()
            client.post(f"{url}/v1/chat/completions", json=BODY)
            runs.append(time.perf_counter() - start)
    return {
        "health_median_ms": round(statistics.median(health) * 1000, 2),
        "run_median_ms": round(statistics.median(runs) * 1000, 2),
    }


def _deploy(
    model_url: str, replicas: int, ray_port: int, http_port: int, env: dict[str, str]
) -> None:
    command = [BRICKWORK, "deploy", "ray", "--api-replicas", str(replicas), "--store", PG_URL]
    command += ["--url", model_url, "--ray-port", str(ray_port), "--http-port", str(http_port)]
    subprocess.run(command, env=env, check=True, timeout=600)


def _direct(model_url: str, env: dict[str, str], n: int) -> dict[str, float]:
    port = free_port()
    command = [BRICKWORK, "deploy", "replica", "--store", PG_URL, "--url", model_url]
    command += ["--port", str(port)]
    process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        return _latencies(f"http://127.0.0.1:{port}", n)
    finally:
        process.terminate()
        process.wait(timeout=30)


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()
    ray_port, http_port = free_port(), free_port()
    state = tempfile.mkdtemp(prefix="brickwork-bench-ray-")
    env = {**os.environ, "BRICKWORK_STATE_DIR": state}
    proxy = f"http://127.0.0.1:{http_port}"
    result: dict[str, Any] = {"cores": os.cpu_count(), "store": "postgresql (127.0.0.1)"}
    with InstantServer() as model:
        direct = _direct(model.base_url, env, args.latency_samples)
        try:
            _deploy(model.base_url, 1, ray_port, http_port, env)
            hop = _latencies(proxy, args.latency_samples)
            one = asyncio.run(_throughput(proxy, args.requests, args.concurrency))
            _deploy(model.base_url, args.replicas, ray_port, http_port, env)
            many = asyncio.run(_throughput(proxy, args.requests, args.concurrency))
        finally:
            down = [BRICKWORK, "deploy", "down", "--ray-port", str(ray_port)]
            subprocess.run(down, env=env, timeout=300)
    result.update(
        {
            "one_replica": one,
            f"{args.replicas}_replicas": many,
            "ratio": round(many["runs_per_s"] / one["runs_per_s"], 2),
            "target_ratio": round(0.8 * min(args.replicas, os.cpu_count() or 1), 2),
            "direct_uvicorn": direct,
            "through_serve_proxy": hop,
            "proxy_hop_ms": {
                "health": round(hop["health_median_ms"] - direct["health_median_ms"], 2),
                "run": round(hop["run_median_ms"] - direct["run_median_ms"], 2),
            },
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        }
    )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-samples", type=int, default=50)
    result = run(parser.parse_args(argv))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "deploy.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
