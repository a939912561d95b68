"""The detail of one node step: decision, signals, prompts, outputs and validator errors."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from brickwork.tui._trace import Step, step_detail

__all__ = ["StepView"]


class StepView(VerticalScroll, can_focus=True):
    """Scrollable text about the step chosen in the timeline."""

    def compose(self) -> ComposeResult:
        """A single body of text."""
        yield Static("Choose a step in the timeline.", id="step-text")

    def show(self, step: Step | None) -> None:
        """Show a step (or the hint when there is none)."""
        body = self.query_one("#step-text", Static)
        body.update(step_detail(step) if step is not None else "This run has no node steps.")
        self.scroll_home(animate=False)
