"""Rich rendering of runs for the CLI: one run's trace, and the table of a batch of runs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from brickwork.app import RunResult
from brickwork.events import ModelCallEvent, NodeFinished

__all__ = ["DEMO_REQUESTS", "print_batch", "print_trace", "result_json"]

#: What `make run` sends: some the small model handles, some that must escalate, one plan.
DEMO_REQUESTS = (
    "Turn on the kitchen lights",
    "Lock the front door",
    "What's the weather going to be tomorrow?",
    "Is the garage door locked?",
    "Set the thermostat to 95 degrees",
    "Dim the office lights, lock the back door and tell me the thermostat mode",
)


def _money(value: float) -> str:
    return f"${value:.6f}"


def print_trace(result: RunResult, console: Console) -> None:
    """The answer, then one line per node: model, outcome, escalation, latency, tokens, cost."""
    table = Table(title=f"run {result.run_id} ({result.graph}): {result.status}", expand=False)
    for column in ("node", "model", "outcome", "latency", "tokens", "cost"):
        table.add_column(column, overflow="fold")
    calls: dict[str, list[ModelCallEvent]] = {}
    for event in result.events:
        if isinstance(event, ModelCallEvent):
            calls.setdefault(event.node, []).append(event)
    decisions = {e.node: e for e in result.events if e.kind == "escalation"}
    for event in result.events:
        if not isinstance(event, NodeFinished):
            continue
        node_calls = calls.get(event.node, [])
        models = sorted({f"{c.served_model}@{c.endpoint}" for c in node_calls}) or [event.method]
        decision = decisions.get(event.node)
        if event.ok:
            outcome = "[green]ok[/]"
            if decision is not None and decision.reason:
                outcome += f" ({decision.reason})"
        else:
            outcome = f"[yellow]{escape(event.error or 'failed')}[/]"
        tokens = sum(c.prompt_tokens + c.completion_tokens for c in node_calls)
        node_cost = sum(c.cost_usd for c in node_calls)
        table.add_row(
            event.node,
            ", ".join(models),
            outcome,
            f"{event.latency_s * 1000:.0f} ms",
            str(tokens),
            _money(node_cost),
        )
    console.print(table)
    console.print(
        f"[bold]answer:[/] {escape(result.answer or result.error or '(none)')}", highlight=False
    )
    if result.status == "needs_confirmation":
        console.print(
            "[yellow]waiting for the user's confirmation:[/] nothing sensitive ran. Resume with "
            f"App.aresume({result.run_id!r}, confirm=True) to run it, or confirm=False to "
            "decline.",
            highlight=False,
        )
    cost = result.cost
    console.print(
        f"cost {_money(cost.cost_usd)}; frontier-only {_money(cost.frontier_only_usd)}; "
        f"saved {_money(cost.saving_usd)}; {result.latency_s:.2f} s"
        + (f"; flags: {', '.join(result.flags)}" if result.flags else ""),
        highlight=False,
    )
    if "frontier_stand_in" in result.flags:
        console.print(
            "[dim]note: no frontier API is configured (BRICKWORK_FRONTIER_*); a local model "
            "stood in for it, so escalated answers are only as good as that model.[/]"
        )


def print_batch(results: Sequence[RunResult], console: Console) -> None:
    """One row per request, then the summary: calls kept on small models, cost, cost avoided."""
    table = Table(title="brickwork run: smart_home graph on the embedded small model")
    for column in ("request", "answer", "status", "escalations", "latency", "cost"):
        table.add_column(column, overflow="fold")
    for r in results:
        escalations = ", ".join(f"{e['node']}:{e['reason']}" for e in r.escalations) or "-"
        text = next((e.text for e in r.events if e.kind == "run_started"), "")
        table.add_row(
            escape(text),
            escape((r.answer or r.error or "")[:160]),
            r.status,
            escalations,
            f"{r.latency_s:.1f} s",
            _money(r.cost.cost_usd),
        )
    console.print(table)
    small = sum(r.cost.small_calls for r in results)
    total = sum(r.cost.calls for r in results)
    spent = sum(r.cost.cost_usd for r in results)
    frontier_only = sum(r.cost.frontier_only_usd for r in results)
    share = small / total if total else 0.0
    console.print(
        f"{len(results)} requests; {small}/{total} model calls kept on small models "
        f"({share:.0%}); cost {_money(spent)} vs frontier-only {_money(frontier_only)} "
        f"(avoided {_money(frontier_only - spent)})",
        highlight=False,
    )


def result_json(result: RunResult) -> str:
    """A run as JSON, for `--json`."""
    body: dict[str, Any] = {
        "run_id": result.run_id,
        "graph": result.graph,
        "status": result.status,
        "answer": result.answer,
        "error": result.error,
        "outputs": result.outputs,
        "escalations": result.escalations,
        "flags": list(result.flags),
        "latency_s": result.latency_s,
        "cost": {
            "cost_usd": result.cost.cost_usd,
            "frontier_only_usd": result.cost.frontier_only_usd,
            "saving_usd": result.cost.saving_usd,
            "calls": result.cost.calls,
            "small_calls": result.cost.small_calls,
        },
        "events": [e.to_dict() for e in result.events],
    }
    return json.dumps(body, default=str)
