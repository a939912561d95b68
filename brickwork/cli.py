"""The `brickwork` command line.

brickwork serve [--port P] [--cores LIST] [--large] [--lora NAME=PATH ...] [--merged NAME ...]
brickwork run [GRAPH] [TEXT ...] [--url URL]       the main job (see README)
brickwork confirm RUN_ID yes|no [--store URL]       answer a run waiting for a confirmation
brickwork tune SKILL [--data FILE ...] [--promote]  train, serve and evaluate a LoRA adapter
brickwork skill list|show|rollback [SKILL]          skills, their adapters and bindings
brickwork route train NODE|GRAPH|FOLDER | show     per-node routers from the run store
brickwork plan REPORT [--volume N] [--hardware cpu|h100]  GPUs and $/month per mode
brickwork deploy k8s --render DIR | ray | status | down   scale out (brickwork.deploy)
brickwork store prune --days N [--store URL]        delete runs older than N days
brickwork version
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brickwork import __version__
from brickwork._settings import DEFAULT_SERVE_PORT
from brickwork.errors import BrickworkError, ConfigError, ServingError
from brickwork.serving.profiles import LORA_RANKS

if TYPE_CHECKING:
    from rich.console import Console

    from brickwork.app import RunResult
    from brickwork.cost.prices import LocalCapacity
    from brickwork.routing import Routing
    from brickwork.serving.capacity import Target
    from brickwork.serving.launcher import ServerSpec, VLLMServer
    from brickwork.serving.pool import ModelPool

__all__ = ["exit_code", "main"]

STORE_HELP = "run store: a SQLite file or a postgresql:// URL (default: a file in the cache)"
URL_HELP = (
    "base URL of any OpenAI-compatible model server (e.g. http://127.0.0.1:8321/v1); its "
    "model is the slm tier (default: a healthy `brickwork serve`, else a private vLLM)"
)
#: The graph `brickwork run` uses when its first argument is not a graph.
DEFAULT_GRAPH = "smart_home"


def _lora(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {value!r}")
    return name, Path(path)


def _cores(value: str) -> tuple[int, ...]:
    from brickwork.serving.launcher import parse_cores

    try:
        return parse_cores(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="brickwork", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the shared local vLLM server until Ctrl-C")
    serve.add_argument("--port", type=int, default=DEFAULT_SERVE_PORT)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--model", type=Path, help="model folder (default: the embedded model)")
    serve.add_argument(
        "--large",
        action="store_true",
        help="serve the bundled large model, the local top tier (Qwen2.5-Coder-1.5B), instead "
        "of the small one; run it beside a plain `brickwork serve` on another port",
    )
    serve.add_argument("--served-name", help="name clients use (default: the model's)")
    serve.add_argument("--lora", type=_lora, action="append", default=[], metavar="NAME=PATH")
    serve.add_argument(
        "--enable-lora",
        action="store_true",
        help="start with LoRA support even when no adapter is registered, so `brickwork tune` "
        "can add one without a restart (it slows base-model requests; LoRA is on anyway "
        "when adapters are registered)",
    )
    serve.add_argument(
        "--merged",
        action="append",
        default=[],
        metavar="NAME",
        help="also serve registered adapter NAME merged into its own copy of the weights, "
        "on its own instance (port P+1, P+2, ...); the pool routes slm:NAME there",
    )
    serve.add_argument("--ready-timeout", type=float, default=600.0, metavar="SECONDS")
    serve.add_argument(
        "--max-lora-rank",
        type=int,
        choices=LORA_RANKS,
        metavar="R",
        help="largest LoRA rank loaded at runtime (default: 16, or the largest registered "
        "adapter's); `brickwork tune --rank 32` and `--search 3` need 32",
    )
    serve.add_argument(
        "--cores",
        type=_cores,
        metavar="LIST",
        help="CPU cores of the instance, like '0', '0,1' or '2-3' (default: one free core "
        "per instance, --merged ones included); refused when another instance holds one",
    )

    run = sub.add_parser(
        "run",
        help="run requests on a graph and print answers and traces",
        description="brickwork run [GRAPH] [TEXT ...]: GRAPH is smart_home, graphs.support or "
        "path/to/file.py; when the first argument is not a graph, every argument is a request "
        f"to {DEFAULT_GRAPH}. No request: a demo set for smart_home.",
    )
    run.add_argument("words", nargs="*", metavar="[GRAPH] TEXT", help="graph, then requests")
    run.add_argument("--mode", choices=("slm", "hybrid", "frontier"), default="hybrid")
    run.add_argument("--tenant", default="default")
    run.add_argument("--budget", type=float, metavar="USD", help="budget of each run")
    run.add_argument("--pool", type=Path, help="pool config (.toml/.json) instead of local vLLM")
    run.add_argument("--store", help=STORE_HELP)
    run.add_argument("--json", action="store_true", help="one JSON object per run on stdout")
    run.add_argument(
        "-v", "--verbose", action="store_true", help="full node table and the raw errors"
    )
    run.add_argument("--url", help=URL_HELP)
    from brickwork.routing import DEFAULT_MARGIN

    run.add_argument(
        "--route",
        nargs="?",
        const=DEFAULT_MARGIN,
        type=float,
        metavar="MARGIN",
        help="hybrid mode: start each node on the tier its trained router picks (`brickwork "
        f"route train`), within MARGIN of the best predicted tier (default {DEFAULT_MARGIN}); "
        "off by default",
    )

    graph = sub.add_parser("graph", help="inspect graphs")
    graph_sub = graph.add_subparsers(dest="graph_command", required=True)
    graph_sub.add_parser("list", help="list the example graphs")
    show = graph_sub.add_parser("show", help="print a graph's topology as Mermaid")
    show.add_argument("graph")

    api = sub.add_parser("api", help="serve graphs over an OpenAI-compatible HTTP API")
    api.add_argument("--graph", action="append", default=[], help="graph to serve (repeatable)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8080)
    api.add_argument("--pool", type=Path, help="pool config (.toml/.json) instead of local vLLM")
    api.add_argument("--url", help=URL_HELP)
    api.add_argument("--store", help=STORE_HELP)
    api.add_argument("--api-key-env", help="environment variable holding the API key to require")
    api.add_argument(
        "--public-metrics", action="store_true", help="serve /metrics without the API key"
    )
    api.add_argument("--max-in-flight", type=int, help="runs at once (default: pool capacity)")
    api.add_argument("--max-queue", type=int, help="runs waiting (default: half of in-flight)")
    api.add_argument("--max-wait", type=float, help="seconds a run may wait (default: 10)")

    tui = sub.add_parser("tui", help="the operator TUI (runs, escalations, models, playground)")
    tui.add_argument("--store", help=STORE_HELP)
    tui.add_argument(
        "--graph",
        action="append",
        default=[],
        help="graph(s) for the playground (default: every graph found)",
    )
    tui.add_argument("--pool", type=Path, help="pool config (.toml/.json) instead of local vLLM")
    tui.add_argument("--url", help=URL_HELP)

    from brickwork.evals import add_eval_arguments

    add_eval_arguments(sub.add_parser("eval", help="accuracy, escalations, cost and latency"))

    from brickwork.tune import add_skill_arguments, add_tune_arguments

    add_tune_arguments(
        sub.add_parser("tune", help="fine-tune a LoRA adapter for a skill, evaluate, promote")
    )
    add_skill_arguments(sub.add_parser("skill", help="skills, their adapters and bindings"))

    from brickwork.routing import add_route_arguments

    add_route_arguments(
        sub.add_parser("route", help="per-node routers: train from the run store, show")
    )

    from brickwork.caching.commands import add_cache_arguments

    add_cache_arguments(
        sub.add_parser("cache", help="the response cache: per-node statistics, clear")
    )

    from brickwork.planning import add_plan_arguments

    add_plan_arguments(sub.add_parser("plan", help="instances and $/month per mode, from an eval"))

    from brickwork.deploy import add_deploy_arguments

    add_deploy_arguments(
        sub.add_parser("deploy", help="replicas on Ray Serve, Kubernetes manifests")
    )

    store = sub.add_parser("store", help="maintain the run store")
    store_sub = store.add_subparsers(dest="store_command", required=True)
    prune = store_sub.add_parser("prune", help="delete runs (and their events) older than N days")
    prune.add_argument(
        "--days", type=float, required=True, help="keep runs started in the last N days"
    )
    prune.add_argument("--store", help=STORE_HELP)

    confirm = sub.add_parser("confirm", help="answer a run that waits for a confirmation")
    confirm.add_argument("run_id", help="the run (as `brickwork run` printed it)")
    confirm.add_argument(
        "answer", type=str.lower, choices=("yes", "no"), help="yes runs the action, no declines"
    )
    confirm.add_argument("--store", help=STORE_HELP)
    confirm.add_argument(
        "--pool", type=Path, help="pool config (.toml/.json) instead of local vLLM"
    )

    sub.add_parser("version", help="print the version")
    return parser


def _store(args: argparse.Namespace) -> int:
    from rich.console import Console

    from brickwork.store import RunStore

    if not args.days >= 0:
        raise ConfigError(f"--days {args.days!r} must be 0 or more")
    store = RunStore(args.store)
    try:
        deleted = store.retention(args.days)
        left = store.totals().runs
    finally:
        store.close()
    Console().print(
        f"deleted {deleted} run(s) started more than {args.days:g} day(s) ago; {left} left"
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from rich.console import Console

    from brickwork.serving.launcher import ServerSpec, VLLMServer, plan_placement
    from brickwork.serving.local import embedded_spec, large_spec, sync_adapters
    from brickwork.serving.models import EMBEDDED_MODEL, ensure_embedded_model
    from brickwork.serving.registry import (
        ServeLease,
        ServeRecord,
        held_cores,
        placement_lock,
        running_servers,
    )

    console = Console(stderr=True)
    # Ctrl-C or SIGTERM while the instances start stops them too. A handler of our own, not
    # Python's default: a process started in the background by a non-interactive shell (CI,
    # nohup) inherits SIGINT ignored, and the start went on through Ctrl-C (seen in CI).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupted)
    lease = ServeLease(args.port)
    lease.acquire()
    servers: list[VLLMServer] = []
    try:
        if args.large:
            if (
                args.model is not None
                or args.lora
                or args.merged
                or args.enable_lora
                or args.max_lora_rank is not None
            ):
                raise ConfigError(
                    "--large serves the bundled large model alone: drop "
                    "--model, --lora, --merged, --enable-lora and --max-lora-rank"
                )
            spec = large_spec()
            if args.served_name:
                spec = dataclasses.replace(spec, served_name=args.served_name)
        elif args.model is not None:
            spec = ServerSpec(
                model=args.model,
                served_name=args.served_name or EMBEDDED_MODEL.served_name,
                lora_modules=dict(args.lora),
                runtime_lora=True,
            )
        else:
            ensure_embedded_model()
            registered = embedded_spec().lora_modules
            modules = {**registered, **dict(args.lora)}
            spec = embedded_spec(lora_modules=modules)
            if args.served_name:
                spec = dataclasses.replace(spec, served_name=args.served_name)
        spec = dataclasses.replace(spec, host=args.host, port=args.port)
        if args.enable_lora:
            spec = dataclasses.replace(spec, enable_lora=True)
        if args.max_lora_rank is not None:
            rank = max(args.max_lora_rank, spec.max_lora_rank)
            spec = dataclasses.replace(spec, max_lora_rank=rank, enable_lora=True)
        wants = {spec.served_name: args.cores or 1, **dict.fromkeys(args.merged, 1)}
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        merged: dict[str, str] = {}

        def said(line: str) -> None:  # restarts: when and why
            console.print(f"[yellow]{datetime.now():%H:%M:%S}[/] {line}")

        def record(adapters: tuple[str, ...], *, ready: bool = True) -> ServeRecord:
            return ServeRecord(
                pid=os.getpid(),
                host=spec.host,
                port=server.port,
                served_name=spec.served_name,
                adapters=adapters,
                model=str(spec.model),
                log=str(server.log_path),
                started_at=started_at,
                merged=merged,
                cores={name: list(cores) for name, cores in plan.items()},
                ready=ready,
                max_lora_rank=spec.max_lora_rank if spec.lora_enabled else None,
            )

        adapters = tuple(sorted(spec.lora_modules))
        # Choose the cores and record them before the (long) start, under a lock, so that a
        # second serve started meanwhile places its instances elsewhere.
        with placement_lock():
            plan = plan_placement(wants, taken=held_cores(running_servers(starting=True)))
            spec = dataclasses.replace(spec, cores=plan[spec.served_name])
            server = VLLMServer(spec, ready_timeout_s=args.ready_timeout, on_event=said)
            lease.publish(record(adapters, ready=False))
        console.print(f"placement: {', '.join(f'{n} on cores {list(c)}' for n, c in plan.items())}")
        servers.append(server)  # stopped in `finally` even when interrupted while starting
        server.start()
        for offset, name in enumerate(args.merged, 1):
            merged_spec = dataclasses.replace(spec, cores=plan[name])
            merged_server = _start_merged(
                name, merged_spec, args.port + offset, args.ready_timeout, said
            )
            servers.append(merged_server)
            merged[name] = merged_server.base_url
        lease.publish(record(adapters))
        names = [*spec.model_names, *(f"{n} (merged)" for n in merged)]
        console.print(
            f"[green]serving[/] {', '.join(names)} at {server.base_url} "
            f"(ready in {server.ready_after_s or 0:.1f} s; log {server.log_path}). "
            "Ctrl-C stops."
        )
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        while not done.wait(5.0):
            if any(s.status == "failed" for s in servers):
                failed = next(s for s in servers if s.status == "failed")
                console.print(f"[red]server failed for good[/]:\n{failed.log_tail()}")
                return 1
            if server.status == "ready" and not args.large:
                # Adapters registered by `brickwork tune` meanwhile are loaded at runtime.
                now = sync_adapters(server)
                if now != adapters:
                    adapters = now
                    lease.publish(record(adapters))
                    console.print(f"adapters now served: {', '.join(adapters) or 'none'}")
    finally:
        console.print("stopping...")
        for each in reversed(servers):
            each.stop()
        lease.release()
    return 0


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _start_merged(
    name: str,
    base: ServerSpec,
    port: int,
    ready_timeout: float,
    on_event: Callable[[str], None] | None = None,
) -> VLLMServer:
    """Serve adapter `name` (registered or shipped) merged into its own weights."""
    from brickwork.serving.launcher import VLLMServer
    from brickwork.serving.local import merged_spec

    spec = merged_spec(name, base, port=port, on_event=on_event)
    return VLLMServer(spec, ready_timeout_s=ready_timeout, on_event=on_event).start()


def _split_run_words(words: Sequence[str]) -> tuple[str, tuple[str, ...], bool]:
    """(graph, requests, defaulted) from `brickwork run`'s words.

    The first word is a graph when it names one (`smart_home`, a module path, a `.py`
    file); otherwise, when it has a space or is the only word, every word is a request to
    `DEFAULT_GRAPH`. A one-word first argument followed by requests is taken as a graph, so a
    mistyped graph name is an error rather than a request.
    """
    from brickwork.graphs import available_graphs

    if not words:
        return DEFAULT_GRAPH, (), True
    first, rest = words[0], tuple(words[1:])
    looks_like_graph = (
        first in available_graphs()
        or first.endswith(".py")
        or first.startswith(("graphs.", "brickwork.graphs."))
        or (rest != () and not any(c.isspace() for c in first))
    )
    if looks_like_graph:
        return first, rest, False
    return DEFAULT_GRAPH, tuple(words), True


def _pool_for(args: argparse.Namespace, say: Callable[[str], None], progress: bool) -> Any:
    """(pool, LocalServing or None, where) from --pool, --url or the local servers."""
    from brickwork.serving.local import LocalServing, pool_config_for_url
    from brickwork.serving.pool import ModelPool

    if getattr(args, "pool", None) is not None and getattr(args, "url", None):
        raise ConfigError("give --pool or --url, not both")
    if getattr(args, "pool", None) is not None:
        say(f"model: pool config {args.pool}")
        return ModelPool.from_config(args.pool), None, f"the pool in {args.pool}"
    if getattr(args, "url", None):
        config = pool_config_for_url(args.url)
        served = config.models["slm"][0].model
        say(f"model: {served} at {args.url} (--url)")
        return ModelPool(config), None, f"{served} at {args.url}"
    local = LocalServing(progress=progress).start()
    say(f"model: {local.choice}")
    where = "a running brickwork serve" if local.record is not None else "a private vLLM"
    return local.pool(), local, where


async def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from brickwork._trace import (
        DEMO_REQUESTS,
        STAND_IN_NOTE,
        counterfactual_label,
        print_batch,
        print_trace,
        result_json,
    )
    from brickwork.app import App
    from brickwork.graphs import load_graph
    from brickwork.store import RunStore

    err = Console(stderr=True, highlight=False)

    def say(line: str) -> None:
        err.print(line, markup=False)

    ref, texts, defaulted = _split_run_words(args.words)
    graph = load_graph(ref)  # a bad graph fails before any model starts
    if defaulted and args.words:
        say(
            f"graph: {graph.name} (the default; to choose one, name it first: "
            'brickwork run support "...")'
        )
    texts = texts or (DEMO_REQUESTS if graph.name == "smart_home" else ())
    if not texts:
        raise ConfigError(f'give the request text: brickwork run {ref} "..."')
    routing = _routing_for(graph.name, args.route, say)
    pool, local, where = await asyncio.to_thread(_pool_for, args, say, not args.json)
    capacity = await _local_capacity(pool, say) if local is not None else None
    app = App(
        graph,
        pool=pool,
        store=RunStore(args.store),
        source="cli",
        routing=routing,
        capacity=capacity,
    )
    label = counterfactual_label(pool)
    console = Console(stderr=args.json)
    results = []
    try:
        await app.astart(progress=say)
        for text in texts:
            result = await app.ainvoke(
                text, mode=args.mode, tenant=args.tenant, budget_usd=args.budget
            )
            results.append(result)
            if args.json:
                print(result_json(result), flush=True)
            else:
                console.rule(text, characters="─")
                print_trace(result, console, verbose=args.verbose, label=label)
            _ask_to_confirm(result, args.store, console)
        if not args.json and len(results) > 1:
            console.print()
            print_batch(results, console, origin=where, label=label)
        if any("frontier_stand_in" in r.flags for r in results):
            err.print(STAND_IN_NOTE, style="dim", markup=False)
    finally:
        await app.aclose()
        if app.store is not None:
            await asyncio.to_thread(app.store.close)
        await pool.aclose()
        if local is not None:
            await asyncio.to_thread(local.stop)
    return exit_code(results)


async def _local_capacity(pool: ModelPool, say: Callable[[str], None]) -> LocalCapacity | None:
    """The local ladder's capacities on this machine: read, else measured once and saved.

    None (the default capacities) when `BRICKWORK_CAPACITY=off` or the measurement failed.
    """
    from brickwork._demo import tool_call_bodies
    from brickwork.serving.capacity import (
        capacity_enabled,
        load_capacity,
        measure_capacity,
        save_capacity,
    )

    if not capacity_enabled():
        say("prices: the default capacities (BRICKWORK_CAPACITY=off)")
        return None
    capacity = await asyncio.to_thread(load_capacity)
    if capacity is None:
        small, large = _capacity_targets(pool)
        say(
            "prices: measuring what each local tier serves on this machine, both at once "
            "(once per processor kind; 2-7 minutes on 2 cores, the large tier being the "
            "slow one; BRICKWORK_CAPACITY=off skips it)..."
        )
        bodies = tool_call_bodies()
        started = time.monotonic()
        try:
            capacity = await measure_capacity(small, large, bodies)
        except ServingError as exc:
            say(f"prices: the default capacities (the measurement failed: {exc})")
            return None
        path = await asyncio.to_thread(save_capacity, capacity)
        say(f"prices: measured in {time.monotonic() - started:.0f} s, saved in {path}")
    say(f"prices: {capacity.describe()}")
    return capacity


def _capacity_targets(pool: ModelPool) -> tuple[Target, Target | None]:
    """The small tier's busiest instance (a merged specialist, else the base) and the large."""
    from brickwork.serving.capacity import Target

    merged = [
        config
        for name in pool.logical_names
        if name.startswith("slm:")
        for config in pool.tier_endpoints(name)
        if config.name.startswith("merged:")
    ]
    busiest = merged[0] if merged else pool.tier_endpoints("slm")[0]
    small = Target(busiest.base_url, busiest.model)
    large = None
    if "large" in pool.logical_names:
        config = pool.tier_endpoints("large")[0]
        large = Target(config.base_url, config.model)
    return small, large


def _routing_for(graph: str, margin: float | None, say: Callable[[str], None]) -> Routing | None:
    """`run --route [MARGIN]`: the graph's trained routers as the run resource (None: off)."""
    if margin is None:
        return None
    from brickwork.routing import Routing, list_routers

    if not 0.0 <= margin <= 1.0:
        raise ConfigError(f"--route MARGIN must be between 0 and 1, got {margin!r}")
    nodes = [entry.node for entry in list_routers(graph)]
    if not nodes:
        say(
            f"routing: no router trained for {graph} (train one: brickwork route train "
            f"{graph}); every node starts on the small tier"
        )
    else:
        say(f"routing: margin {margin:g}, routers for {', '.join(nodes)}")
    return Routing.for_graph(graph, margin=margin)


def _ask_to_confirm(result: RunResult, store: str | None, console: Console) -> None:
    """For a run waiting for a confirmation: its question and the command that answers it."""
    if result.status != "needs_confirmation":
        return
    from rich.markup import escape

    command = f"brickwork confirm {result.run_id} yes"
    if store is not None:
        import shlex

        command += f" --store {shlex.quote(store)}"
    console.print(
        f"[yellow]run {result.run_id} needs your confirmation:[/] {escape(result.answer)}\n"
        f"answer it with: {escape(command)}   (or [bold]no[/] instead of yes to decline)",
        highlight=False,
    )


async def _confirm(args: argparse.Namespace) -> int:
    """`brickwork confirm`: resume a waiting run on its own graph with the user's answer."""
    from rich.console import Console

    from brickwork._trace import print_trace
    from brickwork.app import App
    from brickwork.serving.pool import ModelPool
    from brickwork.store import RunStore

    store = RunStore(args.store)
    try:
        found = await asyncio.to_thread(store.run, args.run_id)
        if found is None:
            raise ConfigError(
                f"no run {args.run_id!r} in the run store; pass the --store it ran with"
            )
        summary = found[0]
        if summary.status != "needs_confirmation":
            raise ConfigError(
                f"run {args.run_id!r} is not waiting for a confirmation (its status is "
                f"{summary.status!r}); nothing was run"
            )
        pool = ModelPool.from_config(args.pool) if args.pool is not None else None
        app = App.from_graph(summary.graph, pool=pool, store=store, source="cli")
        try:
            result = await app.aresume(
                args.run_id,
                confirm=args.answer == "yes",
                mode=summary.mode,
                tenant=summary.tenant,
            )
        finally:
            await app.aclose()
            if pool is not None:
                await pool.aclose()
    finally:
        store.close()
    console = Console()
    console.rule(f"{summary.text} -> {args.answer}")
    print_trace(result, console)
    _ask_to_confirm(result, args.store, console)  # a later step may ask again
    return exit_code([result])


def exit_code(results: Sequence[RunResult]) -> int:
    """0 when every request's run is ok, else 1: a batch with one failure is not a success."""
    return 0 if all(r.ok for r in results) else 1


def _graph(args: argparse.Namespace) -> int:
    from brickwork.graphs import available_graphs, load_graph

    if args.graph_command == "list":
        for name in available_graphs():
            print(f"{name}: {load_graph(name).description}")
        return 0
    print(load_graph(args.graph).mermaid())
    return 0


def _tui(args: argparse.Namespace) -> int:
    from brickwork.graphs import available_graphs
    from brickwork.serving.capacity import load_capacity
    from brickwork.tui.app import run_tui

    say = _say()
    # One shared model for every graph: --pool, --url, or a healthy `brickwork serve` (else a
    # private vLLM started once); every graph found is offered in the playground.
    pool, local, _ = _pool_for(args, say, True)
    graphs = args.graph or available_graphs()
    try:
        _warm(graphs, say)
        capacity = load_capacity() if local is not None else None
        return run_tui(args.store, graphs, pool=pool, capacity=capacity)
    finally:
        if local is not None:
            local.stop()


def _say() -> Callable[[str], None]:
    """Print a progress line on stderr (plain text, no markup)."""
    from rich.console import Console

    err = Console(stderr=True, highlight=False)
    return lambda line: err.print(line, markup=False)


def _warm(graphs: Sequence[str], say: Callable[[str], None]) -> None:
    """Load what the graphs' agents need (the intent kNN's embedding model) before serving."""
    from brickwork.app import _warm_models
    from brickwork.graphs import load_graph

    for ref in graphs:
        asyncio.run(_warm_models(load_graph(ref), say))


def _api(args: argparse.Namespace) -> int:
    from brickwork.admission import default_limits
    from brickwork.app import App
    from brickwork.http.server import serve_api
    from brickwork.serving.capacity import load_capacity
    from brickwork.store import RunStore

    api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.api_key_env and not api_key:
        raise ConfigError(f"--api-key-env names ${args.api_key_env}, which is not set")
    say = _say()
    pool, local, _ = _pool_for(args, say, True)
    capacity = load_capacity() if local is not None else None
    store = RunStore(args.store)
    try:
        apps = {}
        for ref in args.graph or [DEFAULT_GRAPH]:
            app = App.from_graph(ref, pool=pool, store=store, source="api", capacity=capacity)
            apps[app.graph.name] = app
        _warm(args.graph or [DEFAULT_GRAPH], say)
        serve_api(
            apps,
            host=args.host,
            port=args.port,
            store=store,
            api_key=api_key,
            public_metrics=args.public_metrics,
            admission=default_limits(
                pool,
                max_in_flight=args.max_in_flight,
                max_queue=args.max_queue,
                max_wait_s=args.max_wait,
            ),
        )
    finally:
        if local is not None:
            local.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `brickwork` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "run":
            return asyncio.run(_run(args))
        if args.command == "confirm":
            return asyncio.run(_confirm(args))
        if args.command == "graph":
            return _graph(args)
        if args.command == "api":
            return _api(args)
        if args.command == "tui":
            return _tui(args)
        if args.command == "eval":
            from brickwork.evals import eval_main

            return eval_main(args)
        if args.command == "tune":
            from brickwork.tune import tune_main

            return tune_main(args)
        if args.command == "skill":
            from brickwork.tune import skill_main

            return skill_main(args)
        if args.command == "route":
            from brickwork.routing import route_main

            return route_main(args)
        if args.command == "cache":
            from brickwork.caching.commands import cache_main

            return cache_main(args)
        if args.command == "plan":
            from brickwork.planning import plan_main

            return plan_main(args)
        if args.command == "deploy":
            from brickwork.deploy import deploy_main

            return deploy_main(args)
        if args.command == "store":
            return _store(args)
        print(__version__)
        return 0
    except BrickworkError as exc:
        from rich.console import Console

        Console(stderr=True).print(f"[red]error:[/] {exc}", highlight=False)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
