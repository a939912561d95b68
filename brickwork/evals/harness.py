"""`brickwork eval`: accuracy, escalations, cost and latency of a graph or a skill, per node.

    report = run_eval("graphs.smart_home", "evals/smart_home.jsonl", mode="hybrid", pool=pool)
    report = run_eval("../shared/data/banking8", None, compare_modes=["slm", "hybrid"])

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
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from brickwork.errors import ConfigError
from brickwork.escalation import Mode
from brickwork.evals.data import EvalRow, EvalTarget, Expectation, load_rows, load_target
from brickwork.evals.report import (
    EvalReport,
    ModeReport,
    NodeOutcome,
    RowOutcome,
    compare_table,
    mode_table,
    summarise,
    to_jsonable,
)
from brickwork.events import Escalation, Event, ModelCallEvent, NodeFinished, RunFinished

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from brickwork.serving.pool import ModelPool
    from brickwork.store import RunStore

__all__ = [
    "EvalReport",
    "ModeReport",
    "add_eval_arguments",
    "arun_eval",
    "eval_main",
    "run_eval",
    "score_events",
]

MODES: tuple[Mode, ...] = ("slm", "hybrid", "frontier")
TENANT = "eval"
_SUPERVISOR = "supervisor"


def run_eval(
    target: str,
    data_path: str | Path | None,
    *,
    mode: Mode = "hybrid",
    concurrency: int = 8,
    limit: int | None = None,
    pool: ModelPool | None = None,
    compare_modes: Sequence[Mode] | None = None,
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
    mode: Mode = "hybrid",
    concurrency: int = 8,
    limit: int | None = None,
    pool: ModelPool | None = None,
    compare_modes: Sequence[Mode] | None = None,
    timeout_s: float = 120.0,
    store: RunStore | None = None,
    console: Console | None = None,
    knn: bool = False,
) -> EvalReport:
    """Run every row of `data_path` through `target` in one mode, or in each of `compare_modes`.

    Args:
        target: A graph reference (`graphs.smart_home`, `support`, a `.py` file) or a skill
            folder (`job_description.json` + train file; run with its agent, leave-one-out).
        data_path: JSONL/CSV rows with `question` and `answer` (None: the skill's train file).
        mode: slm, hybrid or frontier (ignored when `compare_modes` is given).
        concurrency: Runs in flight at once.
        limit: Evaluate at most this many rows, spread evenly over the file.
        pool: The model pool (None: the embedded model, started or reused locally).
        compare_modes: Run each of these modes on the same rows.
        timeout_s: Each run is stopped after this long (and counted as failed).
        store: Save every run here (tenant "eval"), for the TUI.
        console: Where the progress bar goes (None: a rich console on stderr).
        knn: An intent skill folder's examples vote first (MiniLM kNN, the row left out), as
            in the example graphs' intent nodes.

    Raises:
        ConfigError: Unknown target or mode, no data, or concurrency below 1.
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
    rows = load_rows(data, limit)
    if not rows:
        raise ConfigError(f"{str(data)!r} holds no rows")
    local = None
    if pool is None:
        from brickwork.serving.local import LocalServing

        local = await asyncio.to_thread(LocalServing(progress=False).start)
        pool = local.pool()
    if console is None:
        from rich.console import Console

        console = Console(stderr=True)
    try:
        reports: dict[str, ModeReport] = {}
        for each in modes:
            reports[each] = await _run_mode(
                evaluated, rows, each, concurrency, pool, timeout_s, store, console
            )
    finally:
        if local is not None:
            await pool.aclose()
            await asyncio.to_thread(local.stop)
    from brickwork._trace import counterfactual_label

    return EvalReport(target, str(data), concurrency, reports, counterfactual_label(pool))


async def _run_mode(
    target: EvalTarget,
    rows: list[EvalRow],
    mode: Mode,
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
    )
    gate = asyncio.Semaphore(concurrency)
    started = time.perf_counter()
    columns = (
        TextColumn(f"{target.graph.name} [{mode}]"),
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
                outcome = await _run_row(app, target, row, mode, timeout_s)
            _advance(progress, task, outcome)
            return outcome

        try:
            outcomes = await asyncio.gather(*(one(row) for row in rows))
        finally:
            await app.aclose()
    return summarise(mode, outcomes, time.perf_counter() - started)


def _advance(progress: Progress, task: TaskID, outcome: RowOutcome) -> None:
    fields = progress.tasks[[t.id for t in progress.tasks].index(task)].fields
    progress.update(
        task,
        advance=1,
        right=fields["right"] + outcome.correct,
        failed=fields["failed"] + outcome.failed,
    )


async def _run_row(
    app: Any, target: EvalTarget, row: EvalRow, mode: Mode, timeout_s: float
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
    try:
        correct, outcome.nodes = await asyncio.to_thread(score_events, result.events, expectation)
    except Exception as exc:  # e.g. the gold SQL fails: a data problem, shown on the row
        outcome.status, outcome.error = "scoring_error", f"{type(exc).__name__}: {exc}"[:500]
        return outcome
    outcome.correct = correct and result.status == "ok"
    return outcome


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
    parser.add_argument("--compare", help="comma-separated modes to run side by side")
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
        help="intent skill folders: the examples vote first (MiniLM kNN, the row left out) "
        "and the small model decides only when unsure, as the example graphs' intent nodes do",
    )


def eval_main(args: argparse.Namespace) -> int:
    """Run `brickwork eval` from parsed arguments; print tables, write the JSON report."""
    return asyncio.run(_eval_main(args))


async def _eval_main(args: argparse.Namespace) -> int:
    from rich.console import Console

    from brickwork._settings import cache_dir
    from brickwork.serving.pool import ModelPool
    from brickwork.store import RunStore

    modes: list[Mode] | None = None
    if args.compare:
        modes = [cast(Mode, m.strip()) for m in args.compare.split(",") if m.strip()]
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
