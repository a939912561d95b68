"""Framework overhead: the same requests raw, through a one-node graph, and through smart_home.

    .venv/bin/python -m benchmarks.overhead [--requests 256] [--concurrency 1,8,32,128]
    .venv/bin/python -m benchmarks.overhead --server vllm [--url URL] [--concurrency 1,8,32]

Against the instant server (`benchmarks.instant_server`, a subprocess that answers at once),
so what is measured is brickwork's own cost; with `--server vllm`, against the real local vLLM
(the running `brickwork serve`, or `--url`, or one started for the benchmark), where the
question is whether brickwork keeps the model server's throughput. Per concurrency level, in
one run:

- raw: `openai.AsyncOpenAI` chat completions straight to the server, with exactly the body the
  one-node graph's agent sends (same messages, JSON schema and max_tokens);
- one_node: `App` over a graph with one `ExtractAgent` node (schema-checked JSON);
- smart_home: `App.from_graph("graphs.smart_home")` (plan gate, MiniLM kNN intent, then the
  grounded tool call executed on the simulated hub), mode "slm", no run store.

Per-node overhead of a run = (run wall time - model calls x raw p50 latency at the same
concurrency) / nodes that finished; above concurrency 1 it includes waiting for this process's
own CPU. CPU ms per run = this process's CPU time over the batch / runs (the raw client's own
CPU is not subtracted); framework CPU ms per node = (CPU per run - model calls x the raw
client's CPU per call) / nodes, brickwork's own cost whatever the concurrency (wall-time
overhead above concurrency 1 is mostly runs queueing for this one process's CPU).
Throughput ratio = brickwork model calls/s / raw requests/s.
The pool's endpoint allows 256 requests in flight (the default is 64) so the pool's own
limit is not what is measured at concurrency 128. Writes benchmarks/results/overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import types
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.instant_server import InstantServer
from brickwork.agents.extract import ExtractAgent
from brickwork.app import App
from brickwork.evals.report import percentile
from brickwork.events import ModelCallEvent, NodeFinished
from brickwork.graphs import GraphModule
from brickwork.serving.client import EndpointConfig
from brickwork.serving.pool import ModelPool, PoolConfig
from brickwork.skills.skill import JSONContract, Skill

RESULTS = Path(__file__).parent / "results"
TEXT = "Turn on the kitchen lights"
SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer", "minimum": 0}},
    "required": ["n"],
    "additionalProperties": False,
}


def instant_pool(base_url: str, model: str = "instant") -> ModelPool:
    """A pool whose `slm` and `frontier` both answer from one server (`model` on it)."""

    def endpoint(name: str, stand_in: bool) -> EndpointConfig:
        return EndpointConfig(
            name=name, base_url=base_url, model=model, kind="vllm", stand_in=stand_in,
            max_concurrency=256, read_timeout_s=600, connect_timeout_s=60,
        )  # fmt: skip

    return ModelPool(
        PoolConfig(models={"slm": [endpoint("instant", False)], "frontier": [endpoint("f", True)]})
    )


def _agent() -> ExtractAgent:
    skill = Skill(name="number", instructions="Give the number.", contract=JSONContract(SCHEMA))
    return ExtractAgent(skill, max_tokens=16)


def one_node_graph() -> GraphModule:
    """A graph with one extraction node and nothing else."""
    from brickwork.graphs.builder import END, Specialist, build_graph

    module = types.ModuleType("one_node")
    module.build = lambda *, checkpointer=None: build_graph(  # type: ignore[attr-defined]
        [Specialist("number", _agent(), lambda s: s["text"], next=END)],
        checkpointer=checkpointer,
    )
    return GraphModule("one_node", module)


async def _raw(base_url: str, model: str, total: int, concurrency: int) -> dict[str, Any]:
    from openai import AsyncOpenAI

    # Generous timeouts: on a loaded machine a connect can wait seconds for the accept.
    client = AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=600.0)
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    agent = _agent()
    messages: Any = agent.messages(TEXT)
    response_format: Any = {
        "type": "json_schema",
        "json_schema": {"name": agent.skill.name, "schema": SCHEMA},
    }

    async def one() -> None:
        async with gate:
            started = time.perf_counter()
            await client.chat.completions.create(
                model=model,
                messages=messages,
                response_format=response_format,
                max_tokens=agent.max_tokens,
                temperature=0.0,
            )
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(one() for _ in range(8)))  # warm the connections
    latencies.clear()
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one() for _ in range(total)))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    await client.close()
    return {"calls": total, "wall_s": wall, "cpu_s": cpu, "latencies": latencies}


async def _app(app: App, total: int, concurrency: int, raw_p50_ms: float) -> dict[str, Any]:
    gate = asyncio.Semaphore(concurrency)
    overheads: list[float] = []
    calls = errors = node_count = 0

    async def one() -> None:
        nonlocal calls, errors, node_count
        async with gate:
            result = await app.ainvoke(TEXT, mode="slm")
        made = sum(isinstance(e, ModelCallEvent) for e in result.events)
        nodes = sum(isinstance(e, NodeFinished) for e in result.events)
        node_count += nodes
        calls += made
        errors += not result.ok
        overheads.append((result.latency_s * 1000 - made * raw_p50_ms) / max(nodes, 1))

    await asyncio.gather(*(one() for _ in range(8)))  # warm up (loads MiniLM for smart_home)
    overheads.clear()
    calls = errors = node_count = 0
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one() for _ in range(total)))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"runs": total, "calls": calls, "nodes": node_count, "wall_s": wall, "cpu_s": cpu,
            "errors": errors, "overheads": overheads}  # fmt: skip


def _raw_summary(legs: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [x for leg in legs for x in leg["latencies"]]
    return {
        "calls_per_s": sum(leg["calls"] for leg in legs) / sum(leg["wall_s"] for leg in legs),
        "cpu_ms_per_call": sum(leg["cpu_s"] for leg in legs)
        / sum(leg["calls"] for leg in legs)
        * 1000,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def _app_summary(legs: list[dict[str, Any]], raw_cpu_ms_per_call: float) -> dict[str, Any]:
    runs, calls = sum(leg["runs"] for leg in legs), sum(leg["calls"] for leg in legs)
    nodes = sum(leg["nodes"] for leg in legs)
    wall, cpu = sum(leg["wall_s"] for leg in legs), sum(leg["cpu_s"] for leg in legs)
    overheads = [x for leg in legs for x in leg["overheads"]]
    return {
        "cpu_ms_per_run": cpu / runs * 1000,  # this process: graph, agents, client, threads
        # brickwork's own CPU per node: what the raw client spends on the same calls removed.
        # Unlike the wall-time overhead it does not grow with queueing at high concurrency.
        "framework_cpu_ms_per_node": (cpu * 1000 - calls * raw_cpu_ms_per_call) / max(nodes, 1),
        "runs_per_s": runs / wall,
        "calls_per_s": calls / wall,
        "calls_per_run": calls / runs,
        "errors": sum(leg["errors"] for leg in legs),
        "node_overhead_p50_ms": percentile(overheads, 50),
        "node_overhead_p99_ms": percentile(overheads, 99),
    }


async def _level(
    apps: dict[str, App], base_url: str, model: str, total: int, level: int
) -> dict[str, Any]:
    """One concurrency level, legs in A-B-B-A order (raw, apps, apps reversed, raw).

    Each leg sends half the requests; the order cancels a load that drifts during the run
    (these machines are shared), which would otherwise favour whichever leg ran first.
    """
    half = max(total // 2, level)
    raw_legs = [await _raw(base_url, model, half, level)]
    p50 = _raw_summary(raw_legs)["p50_ms"]
    app_legs: dict[str, list[dict[str, Any]]] = {name: [] for name in apps}
    for name in [*apps, *reversed(apps)]:
        app_legs[name].append(await _app(apps[name], half, level, p50))
    raw_legs.append(await _raw(base_url, model, half, level))
    row: dict[str, Any] = {"raw": _raw_summary(raw_legs)}
    for name, legs in app_legs.items():
        row[name] = _app_summary(legs, row["raw"]["cpu_ms_per_call"])
        row[name]["throughput_ratio"] = row[name]["calls_per_s"] / row["raw"]["calls_per_s"]
    return row


async def run(args: argparse.Namespace) -> dict[str, Any]:
    levels = [int(c) for c in args.concurrency.split(",")]
    graphs = args.graphs.split(",")
    results: dict[str, Any] = {
        "server": args.server, "requests": args.requests, "graphs": graphs, "levels": {},
    }  # fmt: skip
    with contextlib.ExitStack() as stack:
        if args.server == "instant":
            base_url, model = stack.enter_context(InstantServer()).base_url, "instant"
        else:
            base_url, model = _vllm(args.url, stack)
        results["base_url"] = base_url
        async with instant_pool(base_url, model) as pool:
            apps = {
                name: App(one_node_graph(), pool=pool)
                if name == "one_node"
                else App.from_graph(f"graphs.{name}", pool=pool)
                for name in graphs
            }
            for level in levels:
                total = max(args.requests, 4 * level)
                results["levels"][str(level)] = await _level(apps, base_url, model, total, level)
            for app in apps.values():
                await app.aclose()
    return results


def _vllm(url: str | None, stack: contextlib.ExitStack) -> tuple[str, str]:
    """The real local vLLM: `url`, the running `brickwork serve`, or one started here."""
    from brickwork.serving.local import LocalServing
    from brickwork.serving.models import EMBEDDED_MODEL

    if url:
        return url.rstrip("/"), EMBEDDED_MODEL.served_name
    local = stack.enter_context(LocalServing(large=False))
    return local.base_url, local.served_name


def table(results: dict[str, Any]) -> Table:
    against = (
        "an instant OpenAI-compatible server"
        if results["server"] == "instant"
        else (f"the real local vLLM ({results['base_url']})")
    )
    out = Table(title=f"brickwork overhead against {against}")
    for name in ("conc", "graph", "runs/s", "calls/s", "raw calls/s", "ratio", "node p50 ms",
                 "node p99 ms", "cpu ms/run", "fw cpu ms/node", "errors"):  # fmt: skip
        out.add_column(name, justify="right")
    for level, row in results["levels"].items():
        raw = row["raw"]
        for name in results["graphs"]:
            r = row[name]
            out.add_row(
                level, name, f"{r['runs_per_s']:.3g}", f"{r['calls_per_s']:.3g}",
                f"{raw['calls_per_s']:.3g}", f"{r['throughput_ratio']:.2f}",
                f"{r['node_overhead_p50_ms']:.2f}", f"{r['node_overhead_p99_ms']:.2f}",
                f"{r['cpu_ms_per_run']:.1f}", f"{r['framework_cpu_ms_per_node']:.2f}",
                str(r["errors"]),
            )  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=256, help="requests per level (min 4x)")
    parser.add_argument("--concurrency", default="1,8,32,128")
    parser.add_argument("--server", choices=("instant", "vllm"), default="instant")
    parser.add_argument("--url", help="with --server vllm: a running vLLM's /v1 URL")
    parser.add_argument(
        "--graphs",
        default=None,
        help="comma-separated (default one_node,smart_home; vllm: one_node)",
    )
    args = parser.parse_args()
    if args.graphs is None:
        args.graphs = "one_node,smart_home" if args.server == "instant" else "one_node"
    results = asyncio.run(run(args))
    console = Console(width=140)
    console.print(table(results))
    RESULTS.mkdir(exist_ok=True)
    name = "overhead.json" if args.server == "instant" else "overhead_vllm.json"
    (RESULTS / name).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
