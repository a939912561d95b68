"""Framework overhead: the same requests raw, through a one-node graph, and through smart_home.

    .venv/bin/python -m benchmarks.overhead [--requests 256] [--concurrency 1,8,32,128]

Against the instant server (`benchmarks.instant_server`, a subprocess that answers at once),
so what is measured is brickwork's own cost. Per concurrency level, in one run:

- raw: `openai.AsyncOpenAI` chat completions straight to the server;
- one_node: `App` over a graph with one `ExtractAgent` node (schema-checked JSON);
- smart_home: `App.from_graph("graphs.smart_home")` (plan gate, MiniLM kNN intent, then the
  grounded tool call executed on the simulated hub), mode "slm", no run store.

Per-node overhead of a run = (run wall time - model calls x raw p50 latency at the same
concurrency) / nodes that finished; above concurrency 1 it includes waiting for this process's
own CPU. CPU ms per run = this process's CPU time over the batch / runs (the raw client's own
CPU is not subtracted). Throughput ratio = brickwork model calls/s / raw requests/s.
The pool's endpoint allows 256 requests in flight (the default is 64) so the pool's own
limit is not what is measured at concurrency 128. Writes benchmarks/results/overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import types
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.instant_server import InstantServer
from brickwork._eval_report import percentile
from brickwork.app import App
from brickwork.events import ModelCallEvent, NodeFinished
from brickwork.graphs import GraphModule
from brickwork.serving.client import EndpointConfig
from brickwork.serving.pool import ModelPool, PoolConfig

RESULTS = Path(__file__).parent / "results"
TEXT = "Turn on the kitchen lights"
SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer", "minimum": 0}},
    "required": ["n"],
    "additionalProperties": False,
}


def instant_pool(base_url: str) -> ModelPool:
    """A pool whose `slm` and `frontier` both answer from the instant server."""

    def endpoint(name: str, stand_in: bool) -> EndpointConfig:
        return EndpointConfig(
            name=name, base_url=base_url, model="instant", kind="vllm", stand_in=stand_in,
            max_concurrency=256,
        )  # fmt: skip

    return ModelPool(
        PoolConfig(models={"slm": [endpoint("instant", False)], "frontier": [endpoint("f", True)]})
    )


def one_node_graph() -> GraphModule:
    """A graph with one extraction node and nothing else."""
    from brickwork.agents.extract import ExtractAgent
    from brickwork.graphs.builder import END, Specialist, build_graph
    from brickwork.skills.skill import JSONContract, Skill

    skill = Skill(name="number", instructions="Give the number.", contract=JSONContract(SCHEMA))
    module = types.ModuleType("one_node")
    module.build = lambda *, checkpointer=None: build_graph(  # type: ignore[attr-defined]
        [Specialist("number", ExtractAgent(skill), lambda s: s["text"], next=END)],
        checkpointer=checkpointer,
    )
    return GraphModule("one_node", module)


async def _raw(base_url: str, total: int, concurrency: int) -> dict[str, Any]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0)
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one() -> None:
        async with gate:
            started = time.perf_counter()
            await client.chat.completions.create(
                model="instant", messages=[{"role": "user", "content": TEXT}], max_tokens=16
            )
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(one() for _ in range(8)))  # warm the connections
    latencies.clear()
    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(total)))
    wall = time.perf_counter() - started
    await client.close()
    return {"calls_per_s": total / wall, "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000}  # fmt: skip


async def _app(app: App, total: int, concurrency: int, raw_p50_ms: float) -> dict[str, Any]:
    gate = asyncio.Semaphore(concurrency)
    overheads: list[float] = []
    calls = errors = 0

    async def one() -> None:
        nonlocal calls, errors
        async with gate:
            result = await app.ainvoke(TEXT, mode="slm")
        made = sum(isinstance(e, ModelCallEvent) for e in result.events)
        nodes = sum(isinstance(e, NodeFinished) for e in result.events)
        calls += made
        errors += not result.ok
        overheads.append((result.latency_s * 1000 - made * raw_p50_ms) / max(nodes, 1))

    await asyncio.gather(*(one() for _ in range(8)))  # warm up (loads MiniLM for smart_home)
    overheads.clear()
    calls = errors = 0
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one() for _ in range(total)))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "cpu_ms_per_run": cpu / total * 1000,  # this process: graph, agents, client, threads
        "runs_per_s": total / wall,
        "calls_per_s": calls / wall,
        "calls_per_run": calls / total,
        "errors": errors,
        "node_overhead_p50_ms": percentile(overheads, 50),
        "node_overhead_p99_ms": percentile(overheads, 99),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    levels = [int(c) for c in args.concurrency.split(",")]
    results: dict[str, Any] = {"requests": args.requests, "levels": {}}
    with InstantServer() as server:
        async with instant_pool(server.base_url) as pool:
            apps = {
                "one_node": App(one_node_graph(), pool=pool),
                "smart_home": App.from_graph("graphs.smart_home", pool=pool),
            }
            for level in levels:
                total = max(args.requests, 4 * level)
                raw = await _raw(server.base_url, total, level)
                row: dict[str, Any] = {"raw": raw}
                for name, app in apps.items():
                    row[name] = await _app(app, total, level, raw["p50_ms"])
                    row[name]["throughput_ratio"] = row[name]["calls_per_s"] / raw["calls_per_s"]
                results["levels"][str(level)] = row
            for app in apps.values():
                await app.aclose()
    return results


def table(results: dict[str, Any]) -> Table:
    out = Table(title="brickwork overhead against an instant OpenAI-compatible server")
    for name in ("conc", "graph", "runs/s", "calls/s", "raw calls/s", "ratio", "node p50 ms",
                 "node p99 ms", "cpu ms/run", "errors"):  # fmt: skip
        out.add_column(name, justify="right")
    for level, row in results["levels"].items():
        raw = row["raw"]
        for name in ("one_node", "smart_home"):
            r = row[name]
            out.add_row(
                level, name, f"{r['runs_per_s']:.0f}", f"{r['calls_per_s']:.0f}",
                f"{raw['calls_per_s']:.0f}", f"{r['throughput_ratio']:.2f}",
                f"{r['node_overhead_p50_ms']:.2f}", f"{r['node_overhead_p99_ms']:.2f}",
                f"{r['cpu_ms_per_run']:.1f}", str(r["errors"]),
            )  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=256, help="requests per level (min 4x)")
    parser.add_argument("--concurrency", default="1,8,32,128")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    console = Console(width=140)
    console.print(table(results))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "overhead.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
