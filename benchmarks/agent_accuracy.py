"""Accuracy of each specialist agent on the small model: zero-shot, few-shot, and with kNN.

    .venv/bin/python -m benchmarks.agent_accuracy [--url http://127.0.0.1:8321/v1] [--limit N]
        [--sets banking8,ecommerce,smart_home,bank_voice,text2sql,own] [--concurrency 8]

Sets are read at run time from ../shared/data (never copied) and from the project's own
example skills. Every row is scored with the examples shown to the model taken from the same set
*without* that row (leave-one-out), so few-shot never sees its answer:

- banking8, ecommerce: `IntentAgent`, exact label; few_shot=0, one example per label, and the
  embedding kNN over the other rows with the model choosing among its candidates.
- smart_home, bank_voice: `ToolCallAgent(execute=False)`, `tool_call_equivalent` on the call
  after the last user turn (gold history before it); 0 vs 6 examples.
- text2sql: `SQLAgent` on an SQLite database built per row from its DDL (`database_from_ddl`),
  `execution_match` against the gold query; 0 vs 3 examples.
- own: `banking_intent_skill` (as the intent sets), `banking_transfer_extraction_skill`
  (correct when `field_match` is 1.0), `smart_home_skill`, `analytics_skill` on
  `create_sample_db`.

An example that raises is counted as wrong (column `err`), never dropped. Latency is the wall
time of one `agent.run` (repairs included) at the given concurrency. Writes
benchmarks/results/agent_accuracy.json with the summary and every row's outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from brickwork.agents.base import AgentResult
from brickwork.agents.extract import ExtractAgent
from brickwork.agents.intent import IntentAgent
from brickwork.agents.scoring import exact_label, field_match, tool_call_equivalent
from brickwork.agents.toolcall import ToolCallAgent
from brickwork.serving.local import pool_config_for
from brickwork.serving.models import EMBEDDED_MODEL
from brickwork.serving.pool import ModelPool
from brickwork.skills import examples as own
from brickwork.skills.loaders import load_skill
from brickwork.skills.skill import LabelSet, Skill, ToolContract
from brickwork.tools.sql import Database

RESULTS = Path(__file__).parent / "results"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = ("banking8", "ecommerce", "smart_home", "bank_voice", "text2sql", "own")
DEFAULT_URL = "http://127.0.0.1:8321/v1"
#: Signals that mean the endpoint failed, not the model: counted as errors (and as wrong).
_ENDPOINT_FAILURES = ("model_error", "model_timeout")

#: One row's outcome, and what produced it.
Runner = Callable[[Skill, int, str], Awaitable["Outcome"]]


@dataclass
class Outcome:
    correct: bool
    repaired: bool = False
    signalled: bool = False
    latency_s: float = 0.0
    method: str = ""
    signals: list[str] = field(default_factory=list)
    error: str | None = None
    index: int = -1
    field_share: float | None = None  # extraction: the share of gold fields right
    predicted: str | None = None  # the value, or the last raw output when none validated
    gold_empty: bool | None = None  # text-to-SQL: the gold query returned no (non-null) value


@dataclass
class Job:
    """One (set, agent, mode) cell: a skill, the rows to score, and how to score one."""

    set: str
    agent: str
    mode: str
    skill: Skill
    rows: list[int]
    runner: Runner
    outcomes: list[Outcome] = field(default_factory=list)


# --- scoring one row ---------------------------------------------------------------------------


def _without(skill: Skill, index: int) -> Skill:
    """The skill with row `index` removed from its examples (leave-one-out)."""
    kept = [e for i, e in enumerate(skill.examples) if i != index]
    return dataclasses.replace(skill, examples=kept)


def _predicted(result: AgentResult[Any]) -> str | None:
    value = result.value
    if value is None:
        outputs = [a.output for a in result.attempts if a.output is not None]
        return outputs[-1][:300] if outputs else None
    for attribute in ("label", "sql"):
        if hasattr(value, attribute):
            return str(getattr(value, attribute))
    if hasattr(value, "to_json"):
        return str(value.to_json())
    if hasattr(value, "model_dump_json"):
        return str(value.model_dump_json())
    return json.dumps(value, default=str)[:300]


def _outcome(result: AgentResult[Any], correct: bool, started: float) -> Outcome:
    failed = [s for s in result.signals if s.kind in _ENDPOINT_FAILURES]
    return Outcome(
        correct=correct,
        repaired=len(result.attempts) > 1,
        signalled=bool(result.signals),
        latency_s=time.perf_counter() - started,
        method=result.method,
        signals=[s.kind for s in result.signals],
        error=f"{failed[0].kind}: {failed[0].detail}"[:300] if failed else None,
        predicted=_predicted(result),
    )


class _Encoder:
    """The MiniLM encoder, its example vectors computed once per set, queries under a lock."""

    def __init__(self, skill: Skill) -> None:
        from brickwork.agents.embeddings import minilm_encoder, query_text

        self._encode = minilm_encoder()
        self._lock = threading.Lock()
        self.vectors = self([query_text(e.input) for e in skill.examples])

    def __call__(self, texts: list[str]) -> Any:
        with self._lock:
            return self._encode(texts)


def intent_runner(pool: ModelPool, encoders: dict[str, _Encoder]) -> Runner:
    async def run(skill: Skill, index: int, mode: str) -> Outcome:
        from brickwork.agents.embeddings import EmbeddingKNN

        example = skill.examples[index]
        row_skill = _without(skill, index)
        knn = None
        if mode == "knn":
            encoder = encoders[skill.name]
            labels = [str(e.output) for e in row_skill.examples]
            vectors = [v for i, v in enumerate(encoder.vectors) if i != index]
            knn = EmbeddingKNN(labels, _stack(vectors), encoder=encoder)
        agent = IntentAgent(row_skill, knn=knn, few_shot=0 if mode == "zero-shot" else None)
        started = time.perf_counter()
        result = await agent.run(example.input, pool=pool)
        label = result.value.label if result.value is not None else None
        return _outcome(result, exact_label(label, str(example.output)), started)

    return run


def toolcall_runner(pool: ModelPool) -> Runner:
    async def run(skill: Skill, index: int, mode: str) -> Outcome:
        assert isinstance(skill.contract, ToolContract)
        example = skill.examples[index]
        few = 0 if mode == "zero-shot" else 6
        agent = ToolCallAgent(_without(skill, index), execute=False, few_shot=few)
        started = time.perf_counter()
        result = await agent.run(example.input, pool=pool)
        correct = tool_call_equivalent(result.value, example.output, skill.contract.registry)
        return _outcome(result, correct, started)

    return run


def extract_runner(pool: ModelPool) -> Runner:
    async def run(skill: Skill, index: int, mode: str) -> Outcome:
        example = skill.examples[index]
        agent = ExtractAgent(_without(skill, index), few_shot=0 if mode == "zero-shot" else 3)
        started = time.perf_counter()
        result = await agent.run(example.input, pool=pool)
        value = result.value
        pred = value.model_dump() if hasattr(value, "model_dump") else value
        share = field_match(pred, example.output)
        outcome = _outcome(result, share >= 1.0, started)
        outcome.field_share = share
        return outcome

    return run


def sql_runner(pool: ModelPool, databases: Callable[[int], Database]) -> Runner:
    async def run(skill: Skill, index: int, mode: str) -> Outcome:
        from brickwork.agents.sql import SQLAgent
        from brickwork.tools.sql_exec import execute_unchecked, execution_match

        example = skill.examples[index]
        database = databases(index)
        few = 0 if mode == "zero-shot" else 3
        agent = SQLAgent(_without(skill, index), database=database, few_shot=few)
        started = time.perf_counter()
        result = await agent.run(str(example.input), pool=pool)
        latency = time.perf_counter() - started
        correct = result.value is not None and await asyncio.to_thread(
            execution_match, database, str(example.output), result.value.sql
        )
        outcome = _outcome(result, correct, started)
        outcome.latency_s = latency
        gold = await asyncio.to_thread(execute_unchecked, database, str(example.output))
        outcome.gold_empty = all(v is None for row in gold.rows for v in row)
        return outcome

    return run


def _stack(vectors: list[Any]) -> Any:
    import numpy as np

    return np.stack(vectors)


# --- building the jobs -------------------------------------------------------------------------


def _rows(total: int, limit: int | None) -> list[int]:
    """Every row, or `limit` rows spread evenly (the data files are grouped by label)."""
    if limit is None or limit >= total:
        return list(range(total))
    return sorted({math.floor(i * total / limit) for i in range(limit)})


def _text2sql_databases(skill: Skill, folder: Path) -> Callable[[int], Database]:
    from brickwork.agents.sql import split_schema_question
    from brickwork.tools.sample_db import database_from_ddl

    built: dict[int, Database] = {}

    def database(index: int) -> Database:
        if index not in built:
            ddl, _ = split_schema_question(str(skill.examples[index].input))
            if ddl is None:
                raise ValueError(
                    f"row {index} has no 'Schema:' part: {skill.examples[index]!r:.80}"
                )
            built[index] = Database.sqlite(database_from_ddl(ddl, folder / f"t2s_{index}.sqlite"))
        return built[index]

    return database


def _always(database: Database) -> Callable[[int], Database]:
    return lambda _: database


def build_jobs(names: list[str], limit: int | None, pool: ModelPool, folder: Path) -> list[Job]:
    jobs: list[Job] = []
    encoders: dict[str, _Encoder] = {}

    def intent(set_name: str, skill: Skill) -> None:
        assert isinstance(skill.contract, LabelSet)
        encoders[skill.name] = _Encoder(skill)
        runner = intent_runner(pool, encoders)
        rows = _rows(len(skill.examples), limit)
        for mode in ("zero-shot", "few-shot", "knn"):
            jobs.append(Job(set_name, "intent", mode, skill, rows, runner))

    def pair(set_name: str, agent: str, skill: Skill, runner: Runner) -> None:
        rows = _rows(len(skill.examples), limit)
        for mode in ("zero-shot", "few-shot"):
            jobs.append(Job(set_name, agent, mode, skill, rows, runner))

    for name in names:
        if name in ("banking8", "ecommerce"):
            intent(name, load_skill(DATA / name))
        elif name in ("smart_home", "bank_voice"):
            pair(name, "toolcall", load_skill(DATA / name), toolcall_runner(pool))
        elif name == "text2sql":
            skill = load_skill(DATA / name)
            pair(name, "sql", skill, sql_runner(pool, _text2sql_databases(skill, folder)))
        elif name == "own":
            from brickwork.tools.sample_db import create_sample_db

            intent("own:banking_intent", own.banking_intent_skill())
            extraction = own.banking_transfer_extraction_skill()
            pair("own:banking_transfer", "extract", extraction, extract_runner(pool))
            pair("own:smart_home", "toolcall", own.smart_home_skill(), toolcall_runner(pool))
            shop = Database.sqlite(create_sample_db(folder / "shop.sqlite"))
            analytics = own.analytics_skill(database=shop)
            pair("own:analytics", "sql", analytics, sql_runner(pool, _always(shop)))
        else:
            raise SystemExit(f"unknown set {name!r}; choose from {', '.join(SETS)}")
    return jobs


# --- running and reporting ---------------------------------------------------------------------


async def run_jobs(jobs: list[Job], concurrency: int, console: Console) -> None:
    gate = asyncio.Semaphore(concurrency)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        by_set: dict[str, list[Job]] = {}
        for job in jobs:
            by_set.setdefault(job.set, []).append(job)
        tasks = {
            name: progress.add_task(name, total=sum(len(j.rows) for j in group))
            for name, group in by_set.items()
        }

        async def one(job: Job, index: int) -> None:
            async with gate:
                started = time.perf_counter()
                try:
                    outcome = await job.runner(job.skill, index, job.mode)
                except Exception as exc:  # counted as wrong, never dropped
                    outcome = Outcome(
                        correct=False,
                        latency_s=time.perf_counter() - started,
                        error=f"{type(exc).__name__}: {exc}"[:300],
                    )
            outcome.index = index
            job.outcomes.append(outcome)
            progress.advance(tasks[job.set])

        # One queue for every set: a slow row of one set never leaves the slots idle.
        await asyncio.gather(*(one(job, i) for job in jobs for i in job.rows))


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarise(job: Job) -> dict[str, Any]:
    outs = job.outcomes
    n = len(outs)
    correct = sum(o.correct for o in outs)
    low, high = wilson(correct, n)
    return {
        "set": job.set,
        "agent": job.agent,
        "mode": job.mode,
        "skill": job.skill.name,
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else math.nan,
        "ci95": [low, high],
        "repair_share": sum(o.repaired for o in outs) / n if n else math.nan,
        "signal_share": sum(o.signalled for o in outs) / n if n else math.nan,
        "errors": sum(o.error is not None for o in outs),
        "p50_latency_s": statistics.median(o.latency_s for o in outs) if outs else math.nan,
        "methods": dict(Counter(o.method for o in outs if o.error is None)),
        "signal_kinds": dict(Counter(k for o in outs for k in o.signals)),
        "first_errors": sorted({o.error for o in outs if o.error})[:3],
        "mean_field_share": (
            statistics.fmean(o.field_share or 0.0 for o in outs) if job.agent == "extract" else None
        ),
        "gold_empty": sum(o.gold_empty is True for o in outs) if job.agent == "sql" else None,
    }


def table(rows: list[dict[str, Any]]) -> Table:
    out = Table(title="Agent accuracy on the small model (leave-one-out examples)")
    for name in ("set", "agent", "mode", "n", "accuracy (95% CI)", "repair", "signal", "err"):
        out.add_column(name, justify="right" if name in ("n", "err") else "left")
    out.add_column("p50 ms", justify="right")
    for r in rows:
        low, high = r["ci95"]
        out.add_row(
            r["set"],
            r["agent"],
            r["mode"],
            str(r["n"]),
            f"{r['accuracy']:6.1%} [{low:.0%}-{high:.0%}]",
            f"{r['repair_share']:.0%}",
            f"{r['signal_share']:.0%}",
            str(r["errors"]),
            f"{1000 * r['p50_latency_s']:.0f}",
        )
    return out


async def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="brickwork-accuracy-") as tmp:
        async with ModelPool(pool_config_for(args.url, args.served_name)) as pool:
            jobs = build_jobs(names, args.limit, pool, Path(tmp))
            await run_jobs(jobs, args.concurrency, console)
    rows = [summarise(job) for job in jobs]
    return {
        "url": args.url,
        "served_name": args.served_name,
        "concurrency": args.concurrency,
        "limit": args.limit,
        "duration_s": time.perf_counter() - started,
        "summary": rows,
        "outcomes": {
            f"{j.set}/{j.agent}/{j.mode}": [
                dataclasses.asdict(o) for o in sorted(j.outcomes, key=lambda o: o.index)
            ]
            for j in jobs
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="base URL of a running vLLM")
    parser.add_argument("--served-name", default=EMBEDDED_MODEL.served_name)
    parser.add_argument("--limit", type=int, help="score at most N rows per set (spread evenly)")
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated set names")
    parser.add_argument("--concurrency", type=int, default=8, help="agent runs in flight")
    args = parser.parse_args()
    console = Console()
    if not console.is_terminal:  # a log file: do not squeeze the table into 80 columns
        console = Console(width=132)
    report = asyncio.run(run(args, console))
    console.print(table(report["summary"]))
    console.print(
        f"{sum(r['n'] for r in report['summary'])} scored runs in {report['duration_s']:.0f} s "
        f"at concurrency {args.concurrency}"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "agent_accuracy.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
