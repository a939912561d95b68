"""Run events (as stored dicts) folded into node steps, and rendered as readable lines.

The store and `Event.to_dict()` give the same dicts, so a live run in the playground and a
stored run in the run detail screen render alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text

from brickwork._trace import CASCADE_REASONS, FRONTIER_ONLY, TOP_TIER_ONLY, route_text
from brickwork.tui._format import clip, money, seconds

__all__ = ["Step", "counterfactual_label", "event_line", "step_detail", "steps"]

EventDict = Mapping[str, Any]


@dataclass
class Step:
    """One node span of a run: its route, calls, escalation decision and how it ended.

    `skipped` is the `model_skipped` event of a span decided without a model (the kNN).
    """

    node: str
    started_at: float | None = None
    route: EventDict | None = None
    calls: list[EventDict] = field(default_factory=list)
    skipped: EventDict | None = None
    decision: EventDict | None = None
    finished: EventDict | None = None

    @property
    def status(self) -> str:
        """ok, escalated, failed or running."""
        escalated = self.decision is not None and self.decision.get("action") == "escalate"
        if self.finished is None:
            # A gate (e.g. plan_check) decides and hands over without a span of its own.
            return "escalated" if escalated else "running"
        if self.finished.get("ok"):
            return "ok"
        return "escalated" if escalated else "failed"

    @property
    def latency_s(self) -> float | None:
        """The span's wall time, once it finished."""
        return None if self.finished is None else float(self.finished.get("latency_s") or 0.0)

    @property
    def models(self) -> str:
        """The logical models the span called (else how it answered, e.g. knn; else "-")."""
        names = dict.fromkeys(str(c.get("model")) for c in self.calls)
        if not names and self.finished is not None and self.finished.get("ok"):
            return str(self.finished.get("method") or "-")
        return ",".join(names) or "-"

    @property
    def tokens(self) -> tuple[int, int]:
        """Prompt and completion tokens over the span's calls."""
        prompt = sum(int(c.get("prompt_tokens") or 0) for c in self.calls)
        return prompt, sum(int(c.get("completion_tokens") or 0) for c in self.calls)

    @property
    def cost_usd(self) -> float:
        """What the span's calls cost."""
        return sum(float(c.get("cost_usd") or 0.0) for c in self.calls)


def steps(events: Sequence[EventDict]) -> list[Step]:
    """The node spans of a run, in the order they started."""
    found: list[Step] = []
    open_steps: dict[str, Step] = {}

    def current(node: str) -> Step:
        if node not in open_steps:
            open_steps[node] = Step(node)
            found.append(open_steps[node])
        return open_steps[node]

    for event in events:
        kind, node = event.get("kind"), event.get("node")
        if not isinstance(node, str):
            continue
        if kind == "node_started":
            open_steps[node] = Step(node, started_at=event.get("at"))
            found.append(open_steps[node])
        elif kind == "route_decision":
            current(node).route = event
        elif kind == "model_call":
            current(node).calls.append(event)
        elif kind == "model_skipped":
            current(node).skipped = event
        elif kind == "escalation":
            current(node).decision = event
        elif kind == "node_finished":
            current(node).finished = event
            del open_steps[node]
    return found


def counterfactual_label() -> str:
    """The name of a run's `frontier_only_usd` counterfactual.

    frontier-only when a frontier API is the top of the ladder, else top-tier only (the local
    large model is not a frontier).
    """
    from brickwork._settings import frontier_settings

    return FRONTIER_ONLY if frontier_settings().configured else TOP_TIER_ONLY


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _spared(event: EventDict) -> str:
    """A `model_skipped` event: what decided instead, and the top tier's call it spared."""
    return (
        f"no call ({event.get('method')} decided); top tier "
        f"~{event.get('prompt_tokens')}+{event.get('completion_tokens')} tok, "
        f"{money(float(event.get('frontier_cost_usd') or 0))}"
    )


def event_line(event: EventDict) -> Text:
    """One event as one line of a live trace."""
    kind = event.get("kind")
    node = str(event.get("node", ""))
    if kind == "run_started":
        return Text.assemble(
            ("▶ ", "bold"), f"{event.get('graph')} ({event.get('mode')}): ", clip(event["text"], 60)
        )
    if kind == "node_started":
        return Text.assemble("  ", (node, "bold"), " started")
    if kind == "model_call":
        stand_in = " stand-in" if event.get("stand_in") else ""
        return Text(
            f"    call {event.get('model')} on {event.get('endpoint')}{stand_in}: "
            f"{event.get('prompt_tokens')}+{event.get('completion_tokens')} tok, "
            f"{seconds(event.get('latency_s'))}, {money(float(event.get('cost_usd') or 0))}",
            style="dim",
        )
    if kind == "model_skipped":
        return Text(f"    {_spared(event)}", style="dim")
    if kind == "route_decision":
        style = "yellow" if event.get("reason") in CASCADE_REASONS else "cyan"
        return Text(f"    route {clip(route_text(event), 100)}", style=style)
    if kind == "escalation":
        style = "yellow" if event.get("action") == "escalate" else "dim"
        reason = f" ({event['reason']})" if event.get("reason") else ""
        signals = "; ".join(f"{k}: {v}" for k, v in event.get("signals") or ())
        extra = f" [{clip(signals, 80)}]" if signals else ""
        return Text(f"    decision {event.get('action')}{reason}{extra}", style=style)
    if kind == "node_finished":
        if event.get("ok"):
            out = clip(_json(event.get("output")), 50)
            return Text.assemble(
                ("  ✓ ", "green"), (node, "bold"), f" {seconds(event.get('latency_s'))} ", out
            )
        return Text.assemble(("  ✗ ", "red"), (node, "bold"), f" {event.get('error') or ''}")
    if kind == "run_finished":
        ok = event.get("status") == "ok"
        tail = event.get("answer") if ok else event.get("error") or ""
        return Text.assemble(
            ("■ ", "green" if ok else "red"),
            (str(event.get("status")), "bold"),
            f" in {seconds(event.get('latency_s'))}, cost {money(float(event['cost_usd']))}"
            f" ({counterfactual_label()} {money(float(event['frontier_only_usd']))}): ",
            clip(str(tail), 200),
        )
    return Text(f"  {kind}")


def step_detail(step: Step) -> Text:
    """Everything about one step: decision and signals, each attempt's prompt, output, errors."""
    prompt, completion = step.tokens
    text = Text.assemble(
        (step.node, "bold"),
        f"  {step.status} · {step.models} · {seconds(step.latency_s)} · "
        f"{prompt}+{completion} tok · {money(step.cost_usd)}\n",
    )
    if step.route is not None:
        cascade = step.route.get("reason") in CASCADE_REASONS
        text.append("route: ", style="bold yellow" if cascade else "bold cyan")
        text.append(route_text(step.route, verbose=True) + "\n")
    for call in step.calls:
        stand_in = " (stand-in)" if call.get("stand_in") else ""
        text.append(
            f"call {call.get('model')} → {call.get('endpoint')}/{call.get('served_model')}"
            f"{stand_in}: {seconds(call.get('latency_s'))}, "
            f"{call.get('prompt_tokens')}+{call.get('completion_tokens')} tok, "
            f"{money(float(call.get('cost_usd') or 0))}\n",
            style="dim",
        )
    if step.skipped is not None:
        text.append(_spared(step.skipped) + "\n", style="dim")
    if step.decision is not None:
        decision = step.decision
        reason = f" ({decision['reason']})" if decision.get("reason") else ""
        style = "bold yellow" if decision.get("action") == "escalate" else "bold"
        text.append(f"decision: {decision.get('action')}{reason}", style=style)
        text.append(f" {decision.get('detail') or ''}\n")
        for kind, detail in decision.get("signals") or ():
            text.append(f"  signal {kind}: ", style="yellow")
            text.append(f"{detail}\n")
    finished = step.finished or {}
    for number, attempt in enumerate(finished.get("attempts") or (), start=1):
        text.append(f"\nattempt {number} ({attempt.get('model') or '-'})\n", style="bold underline")
        for message in attempt.get("messages") or ():
            text.append(f"{message.get('role')}: ", style="cyan")
            text.append(f"{message.get('content')}\n")
        text.append("output: ", style="bold")
        text.append(f"{attempt.get('output')}\n")
        for error in attempt.get("errors") or ():
            text.append("  ✗ ", style="red")
            text.append(f"{error}\n")
    if finished.get("ok"):
        text.append("\nresult: ", style="bold green")
        text.append(_json(finished.get("output")) + "\n")
    elif finished.get("error"):
        text.append("\nerror: ", style="bold red")
        text.append(str(finished["error"]) + "\n")
    return text
