"""Rich rendering of runs for the CLI: one run's trace, and the table of a batch of runs.

Compact by default: one line per node, cut with an ellipsis (never silently) to the
terminal's width, so 80 columns read well; `verbose=True` shows the full table (served model
and endpoint, the validators' own words) and the raw error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, get_args

from rich.console import Console
from rich.table import Table
from rich.text import Text

from brickwork.app import RunResult
from brickwork.errors import BrickworkError
from brickwork.events import ModelCallEvent, NodeFinished, RouteDecision
from brickwork.http.redact import redact
from brickwork.routing.decision import RouteReason
from brickwork.serving.pool import ModelPool

__all__ = [
    "CASCADE_REASONS",
    "DEMO_REQUESTS",
    "FRONTIER_ONLY",
    "STAND_IN_NOTE",
    "TOP_TIER_ONLY",
    "cost_line",
    "counterfactual_label",
    "print_batch",
    "print_trace",
    "result_json",
    "route_text",
    "user_answer",
]

#: What `make run` sends: some the small model handles, some that must escalate, one plan.
DEMO_REQUESTS = (
    "Turn on the kitchen lights",
    "Lock the front door",
    "What's the weather going to be tomorrow?",
    "Is the garage door locked?",
    "Set the thermostat to cool mode",
    "Turn off the office lights, lock the back door and tell me the thermostat mode",
)

#: Label of `RunCost.frontier_only_usd` when the top of the ladder is a local model.
TOP_TIER_ONLY = "top-tier only"
#: Label of the same figure when the top of the ladder is a frontier API.
FRONTIER_ONLY = "frontier-only"

#: Said once per command when a local model played the frontier role.
STAND_IN_NOTE = (
    "note: no frontier API is configured (BRICKWORK_FRONTIER_*); a local model (model*) stood "
    "in for it, so escalated answers are only as good as that model."
)

#: Route reasons that leave a node to the plain cascade: the router did not choose its tier.
CASCADE_REASONS: frozenset[str] = frozenset(get_args(RouteReason)) - {"routed", "cheapest"}

_NOT_DONE = {
    "timeout": "Not done: it took too long and was stopped.",
    "error": "Not done: something went wrong inside brickwork (--verbose shows what).",
    "over_budget": "Not done: it would have gone over its budget.",
    "failed": "Not done: I could not work out a valid answer from your request.",
}


def _money(value: float) -> str:
    return f"${value:.6f}"


def user_answer(result: RunResult) -> str:
    """What the user is told: the answer, or a short sentence saying what was not done.

    Internal detail (addresses, paths, exception names) is removed; the raw error stays in
    the run's trace (`--verbose`, the run store).
    """
    if result.answer:
        return result.answer if result.ok else redact(result.answer)
    if result.ok:
        return "(no answer)"
    return _NOT_DONE.get(result.status, f"Not done ({result.status}).")


def counterfactual_label(pool: ModelPool) -> str:
    """What `RunCost.frontier_only_usd` is called for runs on `pool`.

    `TOP_TIER_ONLY` when the top of its ladder is a local model (or a stand-in), else
    `FRONTIER_ONLY`.
    """
    try:
        top = pool.tier_endpoints(pool.top_tier)
    except BrickworkError:
        return TOP_TIER_ONLY
    local = any(e.stand_in or e.kind == "vllm" for e in top)
    return TOP_TIER_ONLY if local else FRONTIER_ONLY


def cost_line(spent: float, counterfactual: float, label: str) -> str:
    """The cost against the counterfactual, saying plainly when the ladder cost more."""
    difference = counterfactual - spent
    if difference >= 0:
        verdict = f"saved {_money(difference)}"
    else:
        verdict = f"the ladder cost {_money(-difference)} more"
    return f"cost {_money(spent)}; {label} {_money(counterfactual)} ({verdict})"


def route_text(event: Mapping[str, Any], *, verbose: bool = False) -> str:
    """A route decision in words: node, tier, router or cascade, the knob, P per tier.

    `event` is a `RouteDecision` as a dict (`to_dict()`, or as the run store keeps it), so the
    CLI and the TUI word it alike. Most important first (a compact line is cut at the end):
    `number -> large by the router (routed), margin 0.05; P slm 0.03 large 0.97`.
    `verbose` adds the rule's own sentence, the decision's time and the router's revision.
    """
    node, tier, reason = event.get("node"), event.get("tier"), str(event.get("reason"))
    detail = str(event.get("detail") or "")
    why = f"{reason}: {detail}" if verbose and detail else reason
    if reason in CASCADE_REASONS:
        head = f"{node} -> {tier}, fell back to the cascade ({why})"
    else:
        head = f"{node} -> {tier} by the router ({why})"
    head += f", margin {float(event.get('margin') or 0.0):g}"
    chances = " ".join(f"{t} {float(p):.2f}" for t, p in event.get("probabilities") or ())
    text = f"{head}; P {chances}" if chances else head  # no router, no prediction
    if verbose:
        text += f"; {float(event.get('latency_s') or 0.0) * 1000:.2f} ms"
        if event.get("revision") is not None:
            text += f", router r{event['revision']}"
    return text


def _node_rows(result: RunResult) -> list[tuple[NodeFinished, list[ModelCallEvent], Any]]:
    """Each finished node span with its own calls and escalation decision.

    A node can run more than once in a run (the supervisor once per escalated node, a node
    again after a confirmation): each span takes the calls and the decision recorded for its
    node since that node's previous span finished.
    """
    calls: dict[str, list[ModelCallEvent]] = {}
    decisions: dict[str, Any] = {}
    rows = []
    for event in result.events:
        if isinstance(event, ModelCallEvent):
            calls.setdefault(event.node, []).append(event)
        elif event.kind == "escalation":
            decisions[event.node] = event
        elif isinstance(event, NodeFinished):
            rows.append((event, calls.pop(event.node, []), decisions.pop(event.node, None)))
    return rows


def _outcome(event: NodeFinished, decision: Any, *, verbose: bool) -> Text:
    if event.ok:
        text = Text("ok", style="green")
        if decision is not None and decision.reason:
            text.append(f" ({decision.reason})")
        return text
    error = event.error or "failed"
    if decision is not None and decision.action == "escalate" and not verbose:
        return Text(f"↑ {decision.reason or 'escalated'}", style="yellow")
    return Text(("✗ " if not verbose else "") + error, style="yellow" if verbose else "red")


#: (width, right-aligned) of each column; width 0 shares what the fixed columns leave.
_Columns = tuple[tuple[int, bool], ...]
_TRACE_COLUMNS: _Columns = ((11, False), (10, False), (0, False), (8, True), (8, True), (9, True))
_BATCH_HEADER: list[str | Text] = ["request", "status", "esc", "latency", "cost", "answer"]
_BATCH_COLUMNS: _Columns = ((0, False), (9, False), (3, True), (7, True), (9, True), (0, False))


def _line(cells: Sequence[str | Text], columns: _Columns, width: int, style: str = "") -> Text:
    """One line of cells in fixed columns; a cell that does not fit ends with an ellipsis."""
    fixed = sum(w for w, _ in columns) + len(columns) - 1
    shared = [i for i, (w, _) in enumerate(columns) if w == 0]
    spare = max(8 * len(shared), width - fixed)
    line = Text(style=style)
    for index, (cell, (size, right)) in enumerate(zip(cells, columns, strict=True)):
        if size == 0:
            size = spare // len(shared) + (1 if index == shared[0] else 0) * (spare % len(shared))
        text = cell.copy() if isinstance(cell, Text) else Text(cell)
        text.truncate(size, overflow="ellipsis", pad=False)
        pad = " " * (size - text.cell_len)
        if index:
            line.append(" ")
        if right:
            line.append(pad)
            line.append_text(text)
        else:
            line.append_text(text)
            if index < len(columns) - 1:
                line.append(pad)
    return line


def print_trace(
    result: RunResult,
    console: Console,
    *,
    verbose: bool = False,
    label: str = TOP_TIER_ONLY,
) -> None:
    """The run's nodes (one line each), its route decisions, answer, status, latency and cost.

    Args:
        result: The run.
        console: Where to print.
        verbose: The full table (served model@endpoint, the validators' words, wrapped) and
            the raw error, instead of one cut line per node.
        label: What the counterfactual is called (`TOP_TIER_ONLY` or `FRONTIER_ONLY`).
    """
    if verbose:
        table = Table(title=f"run {result.run_id} ({result.graph}): {result.status}")
        for column in ("node", "model", "outcome", "latency", "tokens", "cost"):
            table.add_column(column, overflow="fold")
    rows: list[list[str | Text]] = []
    for event, node_calls, decision in _node_rows(result):
        if verbose:
            names = {f"{c.served_model}@{c.endpoint}" for c in node_calls}
        else:
            names = {c.model + ("*" if c.stand_in else "") for c in node_calls}
        tokens = sum(c.prompt_tokens + c.completion_tokens for c in node_calls)
        rows.append(
            [
                event.node,
                ", ".join(sorted(names)) or event.method,
                _outcome(event, decision, verbose=verbose),
                f"{event.latency_s * 1000:.0f} ms",
                f"{tokens} tok" if tokens else "",
                _money(sum(c.cost_usd for c in node_calls)),
            ]
        )
    if verbose:
        for row in rows:
            table.add_row(*row)
        console.print(table)
    else:
        header: list[str | Text] = ["node", "model", "outcome", "latency", "tokens", "cost"]
        console.print(_line(header, _TRACE_COLUMNS, console.width, style="dim"))
        for row in rows:
            console.print(_line(row, _TRACE_COLUMNS, console.width), highlight=False)
    for route in result.events:
        if isinstance(route, RouteDecision):
            cascade = route.reason in CASCADE_REASONS
            line = Text.assemble(
                ("route ", "bold"),
                (route_text(route.to_dict(), verbose=verbose), "yellow" if cascade else "cyan"),
            )
            if not verbose:  # one line, cut with an ellipsis like the node lines
                line.truncate(console.width, overflow="ellipsis")
            console.print(line, highlight=False)
    answer = Text.assemble(("answer: ", "bold"), user_answer(result))
    console.print(answer, highlight=False)
    if verbose and result.error:
        console.print(Text.assemble(("error: ", "bold"), result.error), highlight=False)
    cost = result.cost
    style = "green" if result.ok else "red"
    line = Text.assemble(
        (result.status, style),
        f" · run {result.run_id} · {result.latency_s:.2f} s · ",
        cost_line(cost.cost_usd, cost.frontier_only_usd, label),
    )
    console.print(line, highlight=False)
    if verbose:
        console.print(
            f"frontier API at list price: {_money(cost.api_reference_usd)}"
            + (f"; flags: {', '.join(result.flags)}" if result.flags else ""),
            highlight=False,
        )


def print_batch(
    results: Sequence[RunResult],
    console: Console,
    *,
    origin: str = "",
    label: str = TOP_TIER_ONLY,
) -> None:
    """One line per request, then the summary: calls kept on small models, cost, counterfactuals.

    Args:
        results: The runs, in order (all on one graph).
        console: Where to print.
        origin: Where the models ran, for the title (e.g. "the embedded small model").
        label: What the counterfactual is called (`TOP_TIER_ONLY` or `FRONTIER_ONLY`).
    """
    graphs = sorted({r.graph for r in results})
    title = f"brickwork run: {', '.join(graphs)} graph" + (f" on {origin}" if origin else "")
    console.print(Text(title, style="bold"), highlight=False)
    console.print(_line(_BATCH_HEADER, _BATCH_COLUMNS, console.width, style="dim"))
    for r in results:
        text = next((e.text for e in r.events if e.kind == "run_started"), "")
        row: list[str | Text] = [
            text,
            Text(r.status, style="green" if r.ok else "red"),
            str(len(r.escalations)) if r.escalations else "-",
            f"{r.latency_s:.1f} s",
            _money(r.cost.cost_usd),
            user_answer(r),
        ]
        console.print(_line(row, _BATCH_COLUMNS, console.width), highlight=False)
    small = sum(r.cost.small_calls for r in results)
    total = sum(r.cost.calls for r in results)
    spent = sum(r.cost.cost_usd for r in results)
    counterfactual = sum(r.cost.frontier_only_usd for r in results)
    api = sum(r.cost.api_reference_usd for r in results)
    ok = sum(r.ok for r in results)
    share = small / total if total else 0.0
    console.print(
        f"{len(results)} requests, {ok} ok; {small}/{total} model calls kept on small models "
        f"({share:.0%}); {cost_line(spent, counterfactual, label)}; every node on a frontier "
        f"API at list price {_money(api)}",
        highlight=False,
    )


def result_json(result: RunResult) -> str:
    """A run as JSON, for `--json`."""
    body: dict[str, Any] = {
        "run_id": result.run_id,
        "graph": result.graph,
        "status": result.status,
        "answer": user_answer(result),
        "error": result.error,
        "outputs": result.outputs,
        "escalations": result.escalations,
        "flags": list(result.flags),
        "latency_s": result.latency_s,
        "cost": {
            "cost_usd": result.cost.cost_usd,
            "frontier_only_usd": result.cost.frontier_only_usd,
            "saving_usd": result.cost.saving_usd,
            "api_reference_usd": result.cost.api_reference_usd,
            "calls": result.cost.calls,
            "small_calls": result.cost.small_calls,
        },
        "events": [e.to_dict() for e in result.events],
    }
    return json.dumps(body, default=str)
