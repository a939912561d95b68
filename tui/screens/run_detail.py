"""Run detail: the node timeline, then the chosen step's decision, prompts, outputs, errors."""

from __future__ import annotations

import asyncio
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.widgets import Static

from brickwork.store import RunSummary
from brickwork.tui._format import clock, money, seconds
from brickwork.tui._trace import steps
from brickwork.tui.screens._base import TUIScreen
from brickwork.tui.widgets.step_view import StepView
from brickwork.tui.widgets.summary_bar import SummaryBar
from brickwork.tui.widgets.timeline import Timeline

__all__ = ["RunDetailScreen"]

StoredRun = tuple[RunSummary, list[dict[str, Any]]]


class RunDetailScreen(TUIScreen):
    """One stored run; Escape goes back."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("tab", "app.focus_next", "Timeline/detail", show=True),
    ]

    LIVE = False

    run: reactive[StoredRun | None] = reactive(None)

    def __init__(self, run_id: str, *, node: str | None = None) -> None:
        """Show run `run_id`, with the cursor on `node`'s first step when given."""
        super().__init__()
        self.run_id = run_id
        self.node = node
        self.loaded = False

    def body(self) -> ComposeResult:
        """Summary, request and answer, the timeline, the step detail."""
        yield SummaryBar(f"Loading run {self.run_id}…", id="run-summary")
        yield Static("", id="run-text")
        yield Timeline(id="timeline")
        yield StepView(id="step")

    def resumed(self) -> None:
        """A stored run does not change: load it once."""
        if not self.loaded:
            self.reload()

    @work(exclusive=True, group="run-detail")
    async def reload(self) -> None:
        """Read the run on a thread."""
        store = self.tui.store
        found = None if store is None else await asyncio.to_thread(store.run, self.run_id)
        self.loaded = True
        if found is None:
            self.query_one(SummaryBar).update(f"Run {self.run_id!r} is not in the run store.")
            return
        self.run = found

    def watch_run(self, run: StoredRun | None) -> None:
        """Show the run."""
        if run is None:
            return
        summary, events = run
        self.query_one(SummaryBar).show(
            [
                # What matters most first: at 80 columns the bar's third line is the
                # most it may take, and the counterfactual used to be cut off its end.
                ("run", summary.run_id),
                ("status", summary.status),
                ("cost", money(summary.cost_usd)),
                (_counterfactual_label(), money(summary.frontier_only_usd)),
                ("graph", summary.graph),
                ("mode", summary.mode),
                ("at", clock(summary.started_at)),
                ("took", seconds(summary.latency_s)),
                ("from", summary.source),
            ],
            note=" ".join(summary.flags),
        )
        style = "bold green" if summary.status == "ok" else "bold red"
        text = Text.assemble(
            ("request: ", "bold"), summary.text, "\n", ("answer: ", style), summary.answer
        )
        if summary.error:  # the whole error: this pane wraps and scrolls, nothing is cut
            text.append_text(Text.assemble("\n", ("error: ", "bold red"), summary.error))
        self.query_one("#run-text", Static).update(text)
        timeline = self.query_one(Timeline)
        timeline.show_steps(steps(events))
        if not timeline.steps:
            self.query_one(StepView).show(None)
        for index, step in enumerate(timeline.steps):
            if step.node == self.node:
                timeline.move_cursor(row=index, animate=False)
                break
        timeline.focus()

    def on_timeline_step_highlighted(self, event: Timeline.StepHighlighted) -> None:
        """Show the step under the timeline's cursor."""
        self.query_one(StepView).show(event.step)


def _counterfactual_label() -> str:
    """The counterfactual's name: frontier-only with a frontier API, else top-tier only."""
    from brickwork.tui._trace import counterfactual_label

    return counterfactual_label()
