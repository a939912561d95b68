"""Framework overhead: brickwork side by side with the raw client and bare LangGraph, in one run.

    .venv/bin/python -m benchmarks.overhead [--requests 200] [--concurrency 1,32]
    .venv/bin/python -m benchmarks.overhead --server vllm [--url URL] [--concurrency 1,8,32]

Against the instant server (`benchmarks.instant_server`, a subprocess that answers at once),
so what is measured is the cost of everything around the model call; with `--server vllm`,
against the real local vLLM (the running `brickwork serve`, or `--url`, or one started for the
benchmark), where the question is whether brickwork keeps the model server's throughput.

Every leg sends the same request body (the messages, JSON schema and max_tokens of the one-node
graph's `ExtractAgent`) to the same server. The legs, and the client each one uses:

- raw_openai: `openai.AsyncOpenAI().chat.completions.create`, nothing else (openai SDK);
- raw_httpx: the same body as JSON bytes, `httpx2.AsyncClient.post`, the answer's JSON read
  (httpx2 directly: the client path brickwork's `serving/client.py` uses);
- langgraph_openai: a one-node LangGraph `StateGraph`, compiled with no checkpointer, whose
  node makes the raw_openai call and `json.loads` the content into the state (openai SDK);
- langgraph_httpx: the same graph, its node making the raw_httpx call (httpx2 directly);
- brickwork: `App` over a graph with one `ExtractAgent` node (schema-checked JSON, ledger,
  events, escalation decision), mode slm, with the App's defaults: the durable SQLite
  checkpointer (durability "exit" for a one-node graph, or `--durability`) and a SQLite run
  store (both in a temporary directory) (httpx2 directly);
- brickwork_memory: the same with `checkpoints=None, store=None` (httpx2 directly);
- smart_home (only with `--graphs smart_home`): the full example graph, no run store.

brickwork's client is httpx2, so its added cost is read against the legs on the same client
path (raw_httpx, langgraph_httpx); the openai-SDK legs show what a LangGraph application that
calls the SDK pays (the SDK's own per-call cost is most of the difference between the two).
Earlier versions of this benchmark subtracted the SDK leg's latency from brickwork's runs,
which hid that much of brickwork's cost.

Every latency is timed the same way, by the benchmark around one awaited call
(`App.ainvoke` for brickwork: admission, the graph, events, the checkpoint and the run store's
write included). Added p50 = brickwork's p50 - the baseline's p50 (likewise p99) at the same
concurrency. Every leg makes one untimed call first (the Apps start then, and freeze the
start-up heap after their first run: `brickwork.app.freeze_startup_heap`), so every timed leg
runs in the same process state. Per concurrency level every leg runs twice with half the
requests each, in A-B-B-A order (legs 1..n, then n..1), or 2 x `--rounds` times with a share
each, so a load that drifts during the run (these machines are shared) does not favour the legs
that ran first; the garbage collector runs before each part.
CPU ms/run = this process's CPU time over a leg / its runs (the instant server is another
process). Throughput ratio = brickwork runs/s / the raw leg's requests/s on the same client
path. The load average is recorded before and after. Writes benchmarks/results/overhead.json
(overhead_vllm.json with --server vllm).

Targets, printed as verdicts (read on an idle machine; a busy one inflates every leg):
brickwork adds <= 0.25 ms p50 over bare LangGraph and <= 3 ms p99 over raw at concurrency 1,
and keeps >= 0.9x the raw throughput at concurrency 32. Each is judged twice: against the
baselines on brickwork's own client path (raw_httpx, langgraph_httpx) and against those the
issue named (raw_openai, langgraph_openai: the raw openai client, bare LangGraph calling it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import tempfile
import time
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypedDict

from rich.console import Console
from rich.table import Table

from benchmarks.instant_server import InstantServer
from brickwork.agents.extract import ExtractAgent
from brickwork.app import App
from brickwork.evals.report import percentile
from brickwork.graphs import GraphModule, load_graph
from brickwork.serving.client import EndpointConfig
from brickwork.serving.pool import ModelPool, PoolConfig
from brickwork.skills.skill import JSONContract, Skill
from brickwork.store import RunStore

RESULTS = Path(__file__).parent / "results"
TEXT = "Turn on the kitchen lights"
SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer", "minimum": 0}},
    "required": ["n"],
    "additionalProperties": False,
}
#: Every leg, and the client it sends its requests with.
CLIENTS = {
    "raw_openai": "openai SDK",
    "raw_httpx": "httpx2",
    "langgraph_openai": "openai SDK",
    "langgraph_httpx": "httpx2",
    "brickwork": "httpx2 (serving/client.py)",
    "brickwork_memory": "httpx2 (serving/client.py)",
    "smart_home": "httpx2 (serving/client.py)",
}
#: The baselines on brickwork's own client path, and those on the openai SDK's.
SAME_CLIENT = {"raw": "raw_httpx", "langgraph": "langgraph_httpx"}
SDK_CLIENT = {"raw": "raw_openai", "langgraph": "langgraph_openai"}
BRICKWORK_LEGS = ("brickwork", "brickwork_memory", "smart_home")
DEFAULT_LEGS = "raw_openai,raw_httpx,langgraph_openai,langgraph_httpx,brickwork,brickwork_memory"
#: The issue's targets: (p50 over bare LangGraph at c=1, p99 over raw at c=1, throughput at 32).
TARGET_P50_OVER_LANGGRAPH_MS = 0.25
TARGET_P99_OVER_RAW_MS = 3.0
TARGET_THROUGHPUT_RATIO = 0.9

#: One timed call of a leg: returns True when it produced an answer.
Call = Callable[[], Awaitable[bool]]


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


def request_body(model: str) -> dict[str, Any]:
    """The exact body the one-node graph's agent sends (what every baseline leg sends too)."""
    agent = _agent()
    return {
        "model": model,
        "messages": agent.messages(TEXT),
        "max_tokens": agent.max_tokens,
        "temperature": 0.0,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": agent.skill.name, "schema": SCHEMA},
        },
    }


class _State(TypedDict, total=False):
    text: str
    output: dict[str, Any]


def bare_langgraph(send: Callable[[], Awaitable[str]]) -> Any:
    """One-node LangGraph graph, no checkpointer: the node sends the request, parses the JSON."""
    from langgraph.graph import END, START, StateGraph

    async def extract(state: _State) -> _State:
        return {"output": json.loads(await send())}

    builder = StateGraph(_State)
    builder.add_node("extract", extract)
    builder.add_edge(START, "extract")
    builder.add_edge("extract", END)
    return builder.compile()


@contextlib.asynccontextmanager
async def _clients(base_url: str, model: str) -> AsyncIterator[dict[str, Callable[[], Any]]]:
    """The two ways to send the body: the openai SDK and httpx2 (each returns the content)."""
    import httpx2
    from openai import AsyncOpenAI

    body = request_body(model)
    # Generous timeouts: on a loaded machine a connect can wait seconds for the accept.
    sdk = AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=600.0)
    http = httpx2.AsyncClient(
        timeout=httpx2.Timeout(600.0, connect=60.0),
        limits=httpx2.Limits(max_connections=256, max_keepalive_connections=256),
    )
    url = f"{base_url}/chat/completions"
    headers = {"Authorization": "Bearer none", "Content-Type": "application/json"}

    async def via_openai() -> str:
        completion = await sdk.chat.completions.create(**body)
        return completion.choices[0].message.content or ""

    async def via_httpx() -> str:
        response = await http.post(url, content=json.dumps(body).encode(), headers=headers)
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"]["content"])

    try:
        yield {"openai": via_openai, "httpx": via_httpx}
    finally:
        await sdk.close()
        await http.aclose()


async def _leg(call: Call, total: int, concurrency: int) -> dict[str, Any]:
    """`total` timed calls, `concurrency` at a time, after 8 untimed ones."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors = 0

    async def one() -> None:
        nonlocal errors
        async with gate:
            started = time.perf_counter()
            ok = await call()
            latencies.append(time.perf_counter() - started)
        errors += not ok

    await asyncio.gather(*(one() for _ in range(8)))  # warm the connections and the caches
    latencies.clear()
    errors = 0
    gc.collect()
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one() for _ in range(total)))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"runs": total, "wall_s": wall, "cpu_s": cpu, "errors": errors, "latencies": latencies}


def _summary(halves: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [x for half in halves for x in half["latencies"]]
    runs = sum(half["runs"] for half in halves)
    wall, cpu = sum(h["wall_s"] for h in halves), sum(h["cpu_s"] for h in halves)
    return {
        "runs": runs,
        "runs_per_s": runs / wall,
        "cpu_ms_per_run": cpu / runs * 1000,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "errors": sum(half["errors"] for half in halves),
    }


def added(row: dict[str, Any], leg: str, baselines: dict[str, str]) -> dict[str, Any] | None:
    """What leg `leg` adds over the raw and the LangGraph baselines of one client path."""
    raw, graph = row.get(baselines["raw"]), row.get(baselines["langgraph"])
    mine = row.get(leg)
    if mine is None:
        return None
    out: dict[str, Any] = {}
    if raw is not None:
        out["p50_over_raw_ms"] = mine["p50_ms"] - raw["p50_ms"]
        out["p99_over_raw_ms"] = mine["p99_ms"] - raw["p99_ms"]
        out["cpu_over_raw_ms"] = mine["cpu_ms_per_run"] - raw["cpu_ms_per_run"]
        out["throughput_ratio"] = mine["runs_per_s"] / raw["runs_per_s"]
    if graph is not None:
        out["p50_over_langgraph_ms"] = mine["p50_ms"] - graph["p50_ms"]
        out["p99_over_langgraph_ms"] = mine["p99_ms"] - graph["p99_ms"]
        out["cpu_over_langgraph_ms"] = mine["cpu_ms_per_run"] - graph["cpu_ms_per_run"]
    return out


async def _level(calls: dict[str, Call], total: int, level: int, rounds: int = 1) -> dict[str, Any]:
    """One concurrency level: every leg 2 x `rounds` times in A-B-B-A order, splitting `total`.

    More rounds interleave the legs more finely, so a slow spell of a noisy machine falls on
    every leg alike.
    """
    part = max(total // (2 * rounds), level)
    halves: dict[str, list[dict[str, Any]]] = {name: [] for name in calls}
    for name in [*calls, *reversed(calls)] * rounds:
        halves[name].append(await _leg(calls[name], part, level))
    row: dict[str, Any] = {name: _summary(h) for name, h in halves.items()}
    row["added"] = {
        leg: {
            "same_client": added(row, leg, SAME_CLIENT),
            "openai_sdk": added(row, leg, SDK_CLIENT),
        }
        for leg in calls
        if leg in BRICKWORK_LEGS
    }
    return row


def _app_call(app: App) -> Call:
    async def call() -> bool:
        return (await app.ainvoke(TEXT, mode="slm")).ok

    return call


def _graph_call(graph: Any) -> Call:
    async def call() -> bool:
        state = await graph.ainvoke({"text": TEXT})
        return isinstance(state.get("output"), dict)

    return call


def _sent_call(send: Callable[[], Awaitable[str]]) -> Call:
    async def call() -> bool:
        return bool(await send())

    return call


async def run(args: argparse.Namespace) -> dict[str, Any]:
    levels = [int(c) for c in args.concurrency.split(",")]
    legs = args.legs.split(",")
    unknown = sorted(set(legs) - set(CLIENTS))
    if unknown:
        raise SystemExit(f"unknown legs {unknown}; known: {', '.join(CLIENTS)}")
    results: dict[str, Any] = {
        "server": args.server, "requests": args.requests, "rounds": args.rounds, "legs": legs,
        "clients": {leg: CLIENTS[leg] for leg in legs}, "levels": {},
        "load_before": os.getloadavg(), "cpus": os.cpu_count(),
    }  # fmt: skip
    with contextlib.ExitStack() as stack:
        if args.server == "instant":
            base_url, model = stack.enter_context(InstantServer()).base_url, "instant"
        else:
            base_url, model = _vllm(args.url, stack)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bw-overhead-")))
        results["base_url"] = base_url
        async with instant_pool(base_url, model) as pool, _clients(base_url, model) as send:
            store = RunStore(tmp / "runs.sqlite")
            stack.callback(store.close)
            apps: dict[str, App] = {}

            def app(leg: str, graph: GraphModule, **options: Any) -> Call:
                apps[leg] = App(graph, pool=pool, **options)
                return _app_call(apps[leg])

            makers: dict[str, Callable[[], Call]] = {
                "raw_openai": lambda: _sent_call(send["openai"]),
                "raw_httpx": lambda: _sent_call(send["httpx"]),
                "langgraph_openai": lambda: _graph_call(bare_langgraph(send["openai"])),
                "langgraph_httpx": lambda: _graph_call(bare_langgraph(send["httpx"])),
                "brickwork": lambda: app(
                    "brickwork",
                    one_node_graph(),
                    checkpoints=tmp / "checkpoints.sqlite",
                    store=store,
                    durability=args.durability,
                ),
                "brickwork_memory": lambda: app(
                    "brickwork_memory", one_node_graph(), checkpoints=None, store=None
                ),
                "smart_home": lambda: app(
                    "smart_home",
                    load_graph("graphs.smart_home"),
                    store=None,
                    durability=args.durability,
                ),
            }
            calls = {leg: makers[leg]() for leg in legs}
            # Every leg once before anything is timed: the Apps start (and, after their first
            # run, freeze the start-up heap: `brickwork.app.freeze_startup_heap`), so every
            # timed leg runs in the same process state.
            for call in calls.values():
                await call()
            await asyncio.sleep(0)
            for level in levels:
                total = max(args.requests, 4 * level)
                results["levels"][str(level)] = await _level(calls, total, level, args.rounds)
            # What each App's runs passed to LangGraph (None: no checkpointer).
            results["durability"] = {leg: made._durability for leg, made in apps.items()}
            for made in apps.values():
                await made.aclose()
    results["load_after"] = os.getloadavg()
    results["verdicts"] = verdicts(results)
    return results


#: The baselines verdicts are read against: brickwork's own client path (httpx2, the strict
#: reading) and the issue's as written (the raw openai client, bare LangGraph calling it).
VERDICT_BASELINES = {"same_client": "httpx2 baselines", "openai_sdk": "openai SDK baselines"}


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets against this run, per brickwork leg and per client path."""
    rows: list[dict[str, Any]] = []
    for path in VERDICT_BASELINES:
        found = _verdicts(results, path)
        if any(row["measured"] is not None for row in found):  # its baselines ran
            rows += found
    return rows


def _verdicts(results: dict[str, Any], path: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    levels = results["levels"]
    for leg in ("brickwork", "brickwork_memory"):
        one = (levels.get("1", {}).get("added", {}).get(leg) or {}).get(path) or {}
        many = (levels.get("32", {}).get("added", {}).get(leg) or {}).get(path) or {}
        checks = [
            ("p50 added over bare LangGraph, c=1", one.get("p50_over_langgraph_ms"),
             TARGET_P50_OVER_LANGGRAPH_MS, True, "ms"),
            ("p99 added over raw, c=1", one.get("p99_over_raw_ms"),
             TARGET_P99_OVER_RAW_MS, True, "ms"),
            ("throughput / raw, c=32", many.get("throughput_ratio"),
             TARGET_THROUGHPUT_RATIO, False, "x"),
        ]  # fmt: skip
        for what, measured, limit, at_most, unit in checks:
            if leg not in results["legs"]:
                continue
            met = (
                None if measured is None else (measured <= limit if at_most else measured >= limit)
            )
            rows.append({"leg": leg, "baselines": path, "target": what, "measured": measured,
                         "limit": limit, "at_most": at_most, "unit": unit,
                         "met": met})  # fmt: skip
    return rows


def _vllm(url: str | None, stack: contextlib.ExitStack) -> tuple[str, str]:
    """The real local vLLM: `url`, the running `brickwork serve`, or one started here."""
    from brickwork.serving.local import LocalServing
    from brickwork.serving.models import EMBEDDED_MODEL

    if url:
        return url.rstrip("/"), EMBEDDED_MODEL.served_name
    local = stack.enter_context(LocalServing(large=False))
    return local.base_url, local.served_name


def _against(results: dict[str, Any]) -> str:
    if results["server"] == "instant":
        return "an instant OpenAI-compatible server"
    return f"the real local vLLM ({results['base_url']})"


def legs_table(results: dict[str, Any]) -> Table:
    """One row per concurrency level and leg: its client, rate, latency and CPU."""
    out = Table(title=f"every leg against {_against(results)}")
    for name in ("conc", "leg", "client", "runs/s", "p50 ms", "p99 ms", "cpu ms/run", "errors"):
        out.add_column(name, justify="right")
    for level, row in results["levels"].items():
        for leg in results["legs"]:
            r = row[leg]
            out.add_row(
                level, leg, CLIENTS[leg], f"{r['runs_per_s']:.0f}", f"{r['p50_ms']:.2f}",
                f"{r['p99_ms']:.2f}", f"{r['cpu_ms_per_run']:.2f}", str(r["errors"]),
            )  # fmt: skip
    return out


def added_table(results: dict[str, Any]) -> Table:
    """What each brickwork leg adds over raw and bare LangGraph, per client path."""
    out = Table(title="what brickwork adds (its leg minus the baseline, same concurrency)")
    for name in ("conc", "leg", "baselines' client", "+p50 vs raw", "+p99 vs raw",
                 "+p50 vs LangGraph", "+p99 vs LangGraph", "+cpu vs LangGraph",
                 "runs/s / raw"):  # fmt: skip
        out.add_column(name, justify="right")

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:+.2f}"

    for level, row in results["levels"].items():
        for leg, paths in row["added"].items():
            for path, label in (("same_client", "httpx2"), ("openai_sdk", "openai SDK")):
                a = paths[path]
                if not a:
                    continue
                ratio = a.get("throughput_ratio")
                out.add_row(
                    level, leg, label, ms(a.get("p50_over_raw_ms")), ms(a.get("p99_over_raw_ms")),
                    ms(a.get("p50_over_langgraph_ms")), ms(a.get("p99_over_langgraph_ms")),
                    ms(a.get("cpu_over_langgraph_ms")), "-" if ratio is None else f"{ratio:.2f}",
                )  # fmt: skip
    return out


def verdict_text(results: dict[str, Any]) -> str:
    """One line per target and brickwork leg, with the load average of the run."""
    lines = []
    path = None
    for row in results["verdicts"]:
        if row.get("baselines") != path:
            path = row.get("baselines")
            lines.append(f"against the {VERDICT_BASELINES.get(path or '', 'httpx2 baselines')}:")
        sign = "<=" if row["at_most"] else ">="
        value = "not measured" if row["measured"] is None else f"{row['measured']:.3g}"
        verdict = {True: "MET", False: "NOT MET", None: "-"}[row["met"]]
        lines.append(
            f"  {row['leg']:<17} {row['target']:<36} {value:>8} {row['unit']:<2} "
            f"(target {sign} {row['limit']:g})  {verdict}"
        )
    before, after = results["load_before"], results["load_after"]
    durability = ", ".join(f"{leg} {d}" for leg, d in results.get("durability", {}).items() if d)
    if durability:
        lines.append(f"checkpoint durability: {durability}")
    lines.append(
        f"load average (1/5/15 min) before {before[0]:.2f}/{before[1]:.2f}/{before[2]:.2f}, "
        f"after {after[0]:.2f}/{after[1]:.2f}/{after[2]:.2f} on {results['cpus']} CPUs; "
        "the targets are for an idle machine"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per leg and level")
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="A-B-B-A passes over the legs per level, the requests split among them",
    )
    parser.add_argument("--server", choices=("instant", "vllm"), default="instant")
    parser.add_argument("--url", help="with --server vllm: a running vLLM's /v1 URL")
    parser.add_argument(
        "--legs",
        default=None,
        help=f"comma-separated, from {', '.join(CLIENTS)} (default {DEFAULT_LEGS}; "
        "vllm: raw_httpx,langgraph_httpx,brickwork)",
    )
    parser.add_argument(
        "--durability",
        choices=("exit", "async", "sync"),
        help="the durable legs' App(durability=...) (default: the App's, per graph)",
    )
    parser.add_argument("--out", help="the JSON results file (default under benchmarks/results)")
    args = parser.parse_args()
    if args.legs is None:
        args.legs = (
            DEFAULT_LEGS if args.server == "instant" else "raw_httpx,langgraph_httpx,brickwork"
        )
    results = asyncio.run(run(args))
    console = Console(width=160)
    console.print(legs_table(results))
    console.print(added_table(results))
    console.print(verdict_text(results))
    RESULTS.mkdir(exist_ok=True)
    name = "overhead.json" if args.server == "instant" else "overhead_vllm.json"
    out = Path(args.out) if args.out else RESULTS / name
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
