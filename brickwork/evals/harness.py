"""`brickwork eval`: accuracy, escalations, cost and latency of a graph or a skill, per node.

    report = run_eval("graphs.smart_home", "evals/smart_home.jsonl", mode="hybrid", pool=pool)
    report = run_eval("../shared/data/banking8", None, compare_modes=["slm", "hybrid"])
    report = run_eval(folder, None, compare_modes=["hybrid", "routed"], margins=[0, 0.1],
                      split=Split("test"))

Modes: slm, hybrid and frontier are the App's modes; `routed` is hybrid with the target's
trained routers (`brickwork.routing.Routing.for_graph`) as a run resource, once per knob value
(`margins`; one row each, named `routed@<margin>` when there are several: the cost/quality
curve). With a `store`, each row's verdict (per scored node, and overall) is appended to its
stored run as `eval_verdict` events, the labels `brickwork route train --source eval` reads;
with a `split`, only that part of the data runs, so a router trained on the train part's runs
is measured on the test part.

Every row runs through `App` (so the runs land in the run store when one is given, tenant
"eval"), and its events are read back: which nodes ran, which escalated, what the small model
answered before the escalation (to tell a fixing escalation from an unnecessary one), what each
node cost and how long it took. A row whose run fails (model error, timeout, a node that failed
even on the frontier model, or an exception) counts as wrong and is listed, never dropped.
How rows are read and what "right" means per graph: `brickwork.evals.data`; the arithmetic of
the report: `brickwork.evals.report`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from brickwork.errors import ConfigError
from brickwork.escalation import Mode
from brickwork.evals.data import EvalRow, EvalTarget, Expectation, Split, load_rows, load_target
from brickwork.evals.report import (
    DEFAULT_PRICES,
    EvalReport,
    ModeReport,
    NodeOutcome,
    RowOutcome,
    compare_table,
    mode_table,
    summarise,
    to_jsonable,
)
from brickwork.events import (
    Escalation,
    Event,
    ModelCallEvent,
    NodeFinished,
    RouteDecision,
    RunFinished,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from brickwork.cost.prices import LocalCapacity
    from brickwork.routing import Routing
    from brickwork.serving.pool import ModelPool
    from brickwork.store import RunStore

__all__ = [
    "EvalReport",
    "ModeReport",
    "add_eval_arguments",
    "arun_eval",
    "eval_main",
    "record_verdicts",
    "run_eval",
    "score_events",
]

#: An eval mode: one of the App's, or `routed` (hybrid with the target's trained routers).
EvalMode = Literal["slm", "hybrid", "frontier", "routed"]
MODES: tuple[EvalMode, ...] = ("slm", "hybrid", "frontier", "routed")
TENANT = "eval"
_SUPERVISOR = "supervisor"


def run_eval(
    target: str,
    data_path: str | Path | None,
    *,
    mode: EvalMode = "hybrid",
    concurrency: int = 8,
    limit: int | None = None,
    pool: ModelPool | None = None,
    compare_modes: Sequence[EvalMode] | None = None,
    **options: Any,
) -> EvalReport:
    """Synchronous `arun_eval` (do not call it from a running event loop)."""
    return asyncio.run(
        arun_eval(
            target,
            data_path,
            mode=mode,
            concurrency=concurrency,
            limit=limit,
            pool=pool,
            compare_modes=compare_modes,
            **options,
        )
    )


async def arun_eval(
    target: str,
    data_path: str | Path | None,
    *,
    mode: EvalMode = "hybrid",
    concurrency: int = 8,
    limit: int | None = None,
    pool: ModelPool | None = None,
    compare_modes: Sequence[EvalMode] | None = None,
    timeout_s: float = 120.0,
    store: RunStore | None = None,
    console: Console | None = None,
    knn: bool = False,
    margins: Sequence[float] | None = None,
    split: Split | None = None,
    routers: Path | None = None,
) -> EvalReport:
    """Run every row of `data_path` through `target` in one mode, or in each of `compare_modes`.

    Args:
        target: A graph reference (`graphs.smart_home`, `support`, a `.py` file) or a skill
            folder (`job_description.json` + train file; run with its agent, leave-one-out).
        data_path: JSONL/CSV rows with `question` and `answer` (None: the skill's train file).
        mode: slm, hybrid, frontier or routed (ignored when `compare_modes` is given).
        concurrency: Runs in flight at once.
        limit: Evaluate at most this many rows, spread evenly over the file.
        pool: The model pool (None: the embedded model, started or reused locally).
        compare_modes: Run each of these modes on the same rows.
        timeout_s: Each run is stopped after this long (and counted as failed).
        store: Save every run here (tenant "eval", source "eval"), for the TUI, each with
            its verdict events (the labels of `brickwork route train --source eval`).
        console: Where the progress bar goes (None: a rich console on stderr).
        knn: An intent or tool-call skill folder's examples vote first (MiniLM kNN, the row
            left out): on the intent, as in the example graphs' intent nodes; on the tool,
            narrowing what the small tier may call (see `agents.toolcall`).
        margins: The knob values of the routed mode, one routed run of the rows each
            (default: `brickwork.routing.DEFAULT_MARGIN`).
        split: Evaluate only this part of the rows (`Split("train")` / `Split("test")`).
        routers: Where the routers live (default: beside the adapter bindings).

    Raises:
        ConfigError: Unknown target or mode, no data, concurrency below 1, or routed mode
            for a target without a trained router.
    """
    modes = list(compare_modes or (mode,))
    bad = [m for m in modes if m not in MODES]
    if bad or concurrency < 1:
        raise ConfigError(
            f"modes must be among {MODES} and concurrency >= 1; got {bad or modes!r}, "
            f"concurrency={concurrency!r}"
        )
    evaluated = load_target(target, knn=knn)
    data = data_path if data_path is not None else evaluated.default_data
    if data is None:
        raise ConfigError(f"give the rows to evaluate {target!r} on: --data FILE.jsonl|.csv")
    if margins and "routed" not in modes:
        raise ConfigError("margins are the routed mode's knob: add routed to the modes")
    runs = _plan(modes, margins, evaluated.graph.name, target, routers)
    rows = load_rows(data, limit, split)
    if not rows:
        part = f" in the {split.part} part (seed {split.seed})" if split is not None else ""
        raise ConfigError(f"{str(data)!r} holds no rows{part}")
    local = None
    capacity = None
    if pool is None:
        from brickwork.serving.capacity import load_capacity
        from brickwork.serving.local import LocalServing

        local = await asyncio.to_thread(LocalServing(progress=False).start)
        pool = local.pool()
        capacity = load_capacity()  # the local tiers' prices as measured on this machine
    if console is None:
        from rich.console import Console

        console = Console(stderr=True)
    try:
        reports: dict[str, ModeReport] = {}
        for each in runs:
            reports[each.label] = await _run_mode(
                capacity, evaluated, rows, each, concurrency, pool, timeout_s, store, console
            )
    finally:
        if local is not None:
            await pool.aclose()
            await asyncio.to_thread(local.stop)
    from brickwork._trace import counterfactual_label

    shown = str(data)
    if split is not None:
        shown += f" ({split.part} part, seed {split.seed}, {len(rows)} rows)"
    prices = DEFAULT_PRICES if capacity is None else capacity.describe()
    return EvalReport(target, shown, concurrency, reports, counterfactual_label(pool), prices)


@dataclass(frozen=True)
class _ModeRun:
    """One pass over the rows: its name in the report, the App's mode, and its routing."""

    label: str
    mode: Mode
    margin: float | None = None
    routing: Routing | None = None


def _plan(
    modes: Sequence[EvalMode],
    margins: Sequence[float] | None,
    graph: str,
    target: str,
    routers: Path | None,
) -> list[_ModeRun]:
    """The passes to make: one per mode, and one per knob value for `routed`."""
    runs: list[_ModeRun] = []
    for mode in modes:
        if mode != "routed":
            runs.append(_ModeRun(mode, mode))
            continue
        from brickwork.routing import DEFAULT_MARGIN, Routing, list_routers

        if not list_routers(graph, routers):
            raise ConfigError(
                f"routed mode needs a trained router for {graph!r} and there is none; train "
                f"one from eval runs: `brickwork eval {target} --split train --store "
                f"runs.sqlite`, then `brickwork route train {target} --store runs.sqlite "
                "--source eval`"
            )
        knobs = list(margins) if margins else [DEFAULT_MARGIN]
        for knob in dict.fromkeys(knobs):
            label = "routed" if len(knobs) == 1 else f"routed@{knob:g}"
            routing = Routing.for_graph(graph, margin=knob, root=routers)
            runs.append(_ModeRun(label, "hybrid", knob, routing))
    return runs


async def _run_mode(
    capacity: LocalCapacity | None,
    target: EvalTarget,
    rows: list[EvalRow],
    run: _ModeRun,
    concurrency: int,
    pool: ModelPool,
    timeout_s: float,
    store: RunStore | None,
    console: Console,
) -> ModeReport:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from brickwork.app import App

    app = App(
        target.graph,
        graph_options=dict(target.graph_options),
        pool=pool,
        store=store,
        source="eval",
        routing=run.routing,
        capacity=capacity,
    )
    gate = asyncio.Semaphore(concurrency)
    started = time.perf_counter()
    columns = (
        TextColumn(f"{target.graph.name} [{run.label}]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[right]} right, {task.fields[failed]} failed"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("eval", total=len(rows), right=0, failed=0)

        async def one(row: EvalRow) -> RowOutcome:
            async with gate:
                outcome = await _run_row(app, target, row, run.mode, timeout_s, pool, store)
            _advance(progress, task, outcome)
            return outcome

        try:
            outcomes = await asyncio.gather(*(one(row) for row in rows))
        finally:
            await app.aclose()
    duration = time.perf_counter() - started
    return summarise(run.label, outcomes, duration, ladder=pool.tiers, margin=run.margin)


def _advance(progress: Progress, task: TaskID, outcome: RowOutcome) -> None:
    fields = progress.tasks[[t.id for t in progress.tasks].index(task)].fields
    progress.update(
        task,
        advance=1,
        right=fields["right"] + outcome.correct,
        failed=fields["failed"] + outcome.failed,
    )


async def _run_row(
    app: Any,
    target: EvalTarget,
    row: EvalRow,
    mode: Mode,
    timeout_s: float,
    pool: ModelPool,
    store: RunStore | None = None,
) -> RowOutcome:
    started = time.perf_counter()
    gold = row.answer
    try:
        expectation = target.expect(row)
        result = await app.ainvoke(
            row.text,
            mode=mode,
            tenant=TENANT,
            timeout_s=timeout_s,
            messages=list(row.messages) or None,
        )
    except Exception as exc:  # counted as a failed row, never dropped
        return RowOutcome(
            row.index, row.text[:200], gold, "error", False, time.perf_counter() - started,
            0.0, 0.0, error=f"{type(exc).__name__}: {exc}"[:500],
        )  # fmt: skip
    outcome = RowOutcome(
        row.index, row.text[:200], gold, result.status, False, result.latency_s,
        result.cost.cost_usd, result.cost.frontier_only_usd, result.answer[:300],
        result.error, result.run_id,
    )  # fmt: skip
    outcome.calls, outcome.routes = _calls_and_routes(result.events, pool)
    outcome.tokens = _tokens_by_tier(result.events, pool)
    try:
        correct, outcome.nodes = await asyncio.to_thread(score_events, result.events, expectation)
    except Exception as exc:  # e.g. the gold SQL fails: a data problem, shown on the row
        outcome.status, outcome.error = "scoring_error", f"{type(exc).__name__}: {exc}"[:500]
        return outcome
    outcome.correct = correct and result.status == "ok"
    if store is not None and result.run_id:
        verdicts = {n: bool(o.correct) for n, o in outcome.nodes.items() if o.correct is not None}
        await asyncio.to_thread(record_verdicts, store, result.run_id, verdicts, outcome.correct)
    return outcome


def _calls_and_routes(
    events: Sequence[Event], pool: ModelPool
) -> tuple[dict[str, int], list[tuple[str, str, str]]]:
    """A run's model calls by tier (cache hits excluded) and its route decisions."""
    calls: dict[str, int] = {}
    routes: list[tuple[str, str, str]] = []
    for event in events:
        if isinstance(event, ModelCallEvent) and not event.cached:
            tier = pool.tier_of(event.model) or event.model
            calls[tier] = calls.get(tier, 0) + 1
        elif isinstance(event, RouteDecision):
            routes.append((event.node, event.tier, event.reason))
    return calls, routes


def _tokens_by_tier(events: Sequence[Event], pool: ModelPool) -> dict[str, tuple[int, int]]:
    """A run's prompt and completion tokens by tier (cache hits excluded, as for calls)."""
    tokens: dict[str, tuple[int, int]] = {}
    for event in events:
        if isinstance(event, ModelCallEvent) and not event.cached:
            tier = pool.tier_of(event.model) or event.model
            prompt, completion = tokens.get(tier, (0, 0))
            tokens[tier] = (prompt + event.prompt_tokens, completion + event.completion_tokens)
    return tokens


def record_verdicts(store: RunStore, run_id: str, verdicts: dict[str, bool], overall: bool) -> bool:
    """Append an eval's verdicts to a stored run (replacing earlier ones); False if not found.

    One `eval_verdict` event per scored node (whether its final output was right), and one
    without a node for the whole run. `brickwork.routing.samples_from_run` reads them: an
    accepted answer the eval found wrong is a failure of the tier that gave it.
    """
    from brickwork.routing.labels import VERDICT, verdict_event

    found = store.run(run_id)
    if found is None:
        return False
    summary, events = found
    kept = [e for e in events if e.get("kind") != VERDICT]
    added = [verdict_event(run_id, node, ok) for node, ok in verdicts.items()]
    store.save(summary, [*kept, *added, verdict_event(run_id, None, overall)])
    return True


def score_events(
    events: Sequence[Event], expectation: Expectation
) -> tuple[bool, dict[str, NodeOutcome]]:
    """Score one run from its events: whether it is right overall, and per-node outcomes.

    An escalated node's output is the supervisor's output that followed it; the small
    model's answer before the escalation is the last attempt of the node's failed finish.
    """
    outputs, small, nodes = _trace(events)
    for name, output in outputs.items():
        nodes[name].output = output
    for name, check in expectation.checks.items():
        nodes.setdefault(name, NodeOutcome()).correct = name in outputs and check(outputs[name])
    for name, node in nodes.items():
        if not node.escalated:
            continue
        scorer = expectation.checks.get(name)
        if scorer is None or small.get(name) is None:
            node.escalation = "unscored"
            continue
        small_ok = scorer(small[name])
        final_ok = name in outputs and scorer(outputs[name])
        node.escalation = "unnecessary" if small_ok else ("fixed" if final_ok else "unfixed")
    return expectation.overall(outputs), nodes


def _trace(
    events: Sequence[Event],
) -> tuple[dict[str, Any], dict[str, str | None], dict[str, NodeOutcome]]:
    outputs: dict[str, Any] = {}
    small: dict[str, str | None] = {}
    nodes: dict[str, NodeOutcome] = {}
    pending: str | None = None  # the node whose escalation the supervisor is handling
    for event in events:
        if isinstance(event, Escalation) and event.action == "escalate":
            pending = event.node
            nodes.setdefault(event.node, NodeOutcome()).escalated = True
        elif isinstance(event, ModelCallEvent):
            owner = pending if event.node == _SUPERVISOR and pending else event.node
            nodes.setdefault(owner, NodeOutcome()).cost_usd += event.cost_usd
        elif isinstance(event, NodeFinished):
            owner = (pending or _SUPERVISOR) if event.node == _SUPERVISOR else event.node
            node = nodes.setdefault(owner, NodeOutcome())
            node.ran = True
            node.latency_s += event.latency_s
            if event.ok:
                outputs[owner] = event.output
                pending = None if owner == pending else pending
            elif event.model != "frontier" and node.escalated and event.attempts:
                # The small model's last try before the escalation (frontier tries excluded).
                small[owner] = event.attempts[-1].get("output")
        elif isinstance(event, RunFinished):
            break
    return outputs, small, nodes


# -- command line -------------------------------------------------------------------------------


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `brickwork eval` arguments to a (sub)parser."""
    parser.add_argument("target", help="graph (smart_home, graphs.support, x.py) or skill folder")
    parser.add_argument("--data", type=Path, help="JSONL/CSV rows (default: the skill's train)")
    parser.add_argument("--mode", choices=MODES, default="hybrid")
    parser.add_argument(
        "--compare",
        help="comma-separated modes to run side by side, e.g. slm,hybrid,routed,frontier "
        "(routed: hybrid with the target's routers from `brickwork route train`)",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="runs in flight (default 8)")
    parser.add_argument("--limit", type=int, help="at most K rows, spread over the file")
    parser.add_argument("--json-out", type=Path, help="report file (default: in the cache)")
    parser.add_argument("--pool", type=Path, help="pool config (.toml/.json)")
    parser.add_argument(
        "--url", help="base URL of any OpenAI-compatible server (its model is the slm tier)"
    )
    parser.add_argument(
        "--store", help="run store: SQLite file or postgresql:// URL (default: in the cache)"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per run")
    parser.add_argument(
        "--knn",
        action="store_true",
        help="intent and tool-call skill folders: the examples vote first (MiniLM kNN, the "
        "row left out). Intent: the small model decides only when unsure, as the example "
        "graphs' intent nodes do. Tool calls: the vote narrows the tools the small tier may "
        "call (to one when clear; a tool without parameters is then called with no model "
        "call); tiers above choose freely",
    )
    parser.add_argument(
        "--margin",
        type=_unit,
        help="routed mode: the knob (start on the cheapest tier predicted within MARGIN of "
        "the best; default 0.05)",
    )
    parser.add_argument(
        "--margins",
        type=_unit_list,
        help="routed mode: one routed pass per knob value, e.g. 0,0.05,0.1,0.2 (the "
        "cost/quality curve; rows named routed@<margin>)",
    )
    parser.add_argument(
        "--split",
        choices=("train", "test"),
        help="evaluate one part of the rows, split by a seeded hash of each question: train "
        "a router on the train part's stored runs, measure it on the test part",
    )
    parser.add_argument("--split-seed", type=int, default=0, help="seed of --split (default 0)")
    parser.add_argument(
        "--split-fraction",
        type=float,
        default=0.5,
        help="share of the rows in the train part (default 0.5)",
    )
    parser.add_argument(
        "--routers", type=Path, help="folder holding routers/ (default: beside the bindings)"
    )


def _unit(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 1")
    return value


def _unit_list(text: str) -> list[float]:
    return [_unit(part.strip()) for part in text.split(",") if part.strip()]


def eval_main(args: argparse.Namespace) -> int:
    """Run `brickwork eval` from parsed arguments; print tables, write the JSON report."""
    return asyncio.run(_eval_main(args))


async def _eval_main(args: argparse.Namespace) -> int:
    from rich.console import Console

    from brickwork._settings import cache_dir
    from brickwork.serving.pool import ModelPool
    from brickwork.store import RunStore

    modes: list[EvalMode] | None = None
    if args.compare:
        modes = [cast(EvalMode, m.strip()) for m in args.compare.split(",") if m.strip()]
    margins = args.margins or ([args.margin] if args.margin is not None else None)
    split = Split(args.split, args.split_seed, args.split_fraction) if args.split else None
    pool = None
    if args.pool is not None:
        pool = ModelPool.from_config(args.pool)
    elif args.url:  # its model is the slm tier, its adapters slm:<adapter> (promoted skills)
        from brickwork.serving.local import pool_config_for_url

        pool = ModelPool(pool_config_for_url(args.url))
    console = Console()
    if not console.is_terminal:  # a log file: do not squeeze the tables into 80 columns
        console = Console(width=140)
    try:
        report = await arun_eval(
            args.target, args.data, mode=args.mode, concurrency=args.concurrency,
            limit=args.limit, pool=pool, compare_modes=modes,
            timeout_s=args.timeout, store=RunStore(args.store), knn=args.knn,
            margins=margins, split=split, routers=args.routers,
        )  # fmt: skip
    finally:
        if pool is not None:
            await pool.aclose()
    if len(report.modes) > 1:  # one table, the mode on every row
        console.print(compare_table(report))
    else:
        for mode_report in report.modes.values():
            title = f"{report.target} [{mode_report.mode}]"
            console.print(mode_table(mode_report, title, report.counterfactual))
    console.print(f"prices: {report.prices}", highlight=False)
    for mode_report in report.modes.values():
        for row in mode_report.rows:
            if row.failed:
                console.print(
                    f"  [{mode_report.mode}] row {row.index} {row.status}: {row.error}",
                    highlight=False,
                    markup=False,
                )
    out = args.json_out or cache_dir() / "evals" / f"{_slug(args.target)}-{int(time.time())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(to_jsonable(report), indent=2, default=str))
    console.print(f"report: {out}", highlight=False)
    return 0


def _slug(target: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in Path(target).name.removesuffix(".py"))
