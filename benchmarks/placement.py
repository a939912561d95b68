"""Two vLLM instances side by side, each on its own cores: does each keep its solo throughput?

    .venv/bin/python -m benchmarks.placement [--cores 0 1] [--in-flight 16] [--requests 64]
        [--default]

Starts two private servers of the embedded model, the first on the first core set and the
second on the second (`--default`: both left to vLLM's own placement, three processes each
with the worker bound to core 0, to show what placement fixes). Measures each one's throughput
alone (schema-constrained smart-home requests, `--in-flight` at once), then both at the same
time, and prints each instance's concurrent/solo ratio (target: >= 0.8 each) with the load
average beside it. Writes benchmarks/results/placement.json. Other work on the machine makes
the figures noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from brickwork.serving.launcher import ServerSpec, VLLMServer, parse_cores, plan_placement
from brickwork.serving.local import pool_config_for
from brickwork.serving.models import EMBEDDED_MODEL, ensure_embedded_model
from brickwork.serving.pool import ModelPool

RESULTS = Path(__file__).parent / "results"
SCHEMA = {
    "type": "object",
    "properties": {"device": {"type": "string"}, "state": {"enum": ["on", "off"]}},
    "required": ["device", "state"],
}


async def _throughput(url: str, served: str, in_flight: int, total: int) -> float:
    """Requests per second for `total` requests, `in_flight` at a time (after a warm-up)."""
    gate = asyncio.Semaphore(in_flight)
    async with ModelPool(pool_config_for(url, served)) as pool:

        async def one(i: int) -> None:
            messages = [{"role": "user", "content": f"Turn the lamp {i} on"}]
            async with gate:
                await pool.complete("slm", messages, json_schema=SCHEMA, max_tokens=24)

        await asyncio.gather(*(one(-i) for i in range(1, in_flight + 1)))  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(total)))
        return total / (time.perf_counter() - started)


async def _measure(servers: list[VLLMServer], in_flight: int, total: int) -> dict[str, Any]:
    names = [s.spec.served_name for s in servers]
    solo: dict[str, float] = {}
    loads: dict[str, float] = {}
    for server in servers:
        loads[f"solo {server.spec.served_name}"] = os.getloadavg()[0]
        solo[server.spec.served_name] = await _throughput(
            server.base_url, server.spec.served_name, in_flight, total
        )
    loads["together"] = os.getloadavg()[0]
    together = await asyncio.gather(
        *(_throughput(s.base_url, s.spec.served_name, in_flight, total) for s in servers)
    )
    loads["after"] = os.getloadavg()[0]
    both = dict(zip(names, together, strict=True))
    return {
        "solo_rps": solo,
        "together_rps": both,
        "ratios": {n: both[n] / solo[n] for n in names},
        "load": loads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", nargs=2, default=["0", "1"], metavar="LIST")
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--default", action="store_true", help="vLLM's own placement instead")
    args = parser.parse_args()
    model = ensure_embedded_model(quiet=True)
    if args.default:
        cores: dict[str, tuple[int, ...] | None] = {"a": None, "b": None}
    else:
        wants = {"a": parse_cores(args.cores[0]), "b": parse_cores(args.cores[1])}
        cores = dict(plan_placement(wants))  # refuses overlapping core sets
    servers = [
        VLLMServer(
            ServerSpec(
                model=model,
                served_name=f"{EMBEDDED_MODEL.served_name}-{name}",
                cores=c,
                kv_cache_gib=1,
                worker_in_engine=not args.default,  # vLLM's own way: worker bound to core 0
            ),
            progress=False,
            ready_timeout_s=900,
        )
        for name, c in cores.items()
    ]
    try:
        for server in servers:
            server.start()
        row = asyncio.run(_measure(servers, args.in_flight, args.requests))
    finally:
        for server in servers:
            server.stop()
    row["placement"] = {s.spec.served_name: s.spec.placement for s in servers}
    for server in servers:
        name = server.spec.served_name
        print(
            f"{name} on {server.spec.placement}: solo {row['solo_rps'][name]:.2f} req/s, "
            f"together {row['together_rps'][name]:.2f} req/s, ratio {row['ratios'][name]:.2f} "
            "(target >= 0.8)"
        )
    print("load average: " + ", ".join(f"{k} {v:.1f}" for k, v in row["load"].items()))
    RESULTS.mkdir(exist_ok=True)
    name = "placement_default.json" if args.default else "placement.json"
    (RESULTS / name).write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
