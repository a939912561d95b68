"""A run's node steps as a table; posts `Timeline.StepHighlighted` as the cursor moves."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from brickwork.tui._format import money, seconds
from brickwork.tui._trace import Step

__all__ = ["Timeline"]

_STATUS_STYLE = {"ok": "green", "escalated": "yellow", "failed": "red", "running": "cyan"}


class Timeline(DataTable[str | Text]):
    """One row per node step: node, status, model, latency, tokens, cost."""

    class StepHighlighted(Message):
        """The cursor is on `step` (row `index`)."""

        def __init__(self, timeline: Timeline, index: int, step: Step) -> None:
            self.timeline = timeline
            self.index = index
            self.step = step
            super().__init__()

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.steps: list[Step] = []

    def on_mount(self) -> None:
        """Set the columns."""
        self.add_columns("#", "Node", "Status", "Model", "Latency", "Tokens", "Cost")

    def show_steps(self, steps: Sequence[Step]) -> None:
        """Replace the rows with these steps."""
        self.steps = list(steps)
        self.clear()
        for index, step in enumerate(self.steps, start=1):
            prompt, completion = step.tokens
            self.add_row(
                str(index),
                Text(step.node),
                Text(step.status, style=_STATUS_STYLE[step.status]),
                Text(step.models),
                seconds(step.latency_s),
                f"{prompt}+{completion}",
                money(step.cost_usd),
                key=str(index - 1),
            )
        if self.steps:
            self.move_cursor(row=0)
            self.post_message(self.StepHighlighted(self, 0, self.steps[0]))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Announce the step under the cursor."""
        event.stop()
        if 0 <= event.cursor_row < len(self.steps):
            index = event.cursor_row
            self.post_message(self.StepHighlighted(self, index, self.steps[index]))
