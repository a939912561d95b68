"""Playground: type a request, pick a graph and a mode, watch the run's events stream in.

A run that stops for a confirmation (status needs_confirmation) is resumed from here: `y` runs
the call it asked about, `n` declines it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.widgets import Input, Static

from brickwork.errors import BrickworkError, ConfigError
from brickwork.tui._format import money, seconds
from brickwork.tui.screens._base import TUIScreen
from brickwork.tui.widgets.request_form import RequestForm
from brickwork.tui.widgets.summary_bar import SummaryBar
from brickwork.tui.widgets.trace_log import TraceLog

if TYPE_CHECKING:
    from brickwork.app import App
    from brickwork.events import Event

__all__ = ["PlaygroundScreen"]


class PlaygroundScreen(TUIScreen):
    """Runs one request at a time through `App.astream`, in a worker."""

    MODE = "playground"
    LIVE = False
    AUTO_FOCUS = "#request-text"
    BINDINGS = [
        Binding("escape", "leave_box", "Leave box"),
        Binding("i", "focus_box", "Type"),
        Binding("o", "open_run", "Open run"),
        Binding("y", "answer(True)", "Confirm", show=False),
        Binding("n", "answer(False)", "Decline", show=False),
    ]

    #: "idle", "running", or the status of the last run.
    state: reactive[str] = reactive("idle")
    #: The id of the last run (set when it starts).
    run_id: reactive[str | None] = reactive(None)
    #: Graph and mode of the last run (a confirmation resumes it there).
    last: tuple[str, str] | None = None

    def body(self) -> ComposeResult:
        """The form, a status line, the trace."""
        if not self.tui.apps:
            yield Static("No graph is loaded: start the TUI with --graph REF.", id="no-graphs")
            return
        yield RequestForm(list(self.tui.apps), id="request")
        yield SummaryBar("Type a request and press Enter.", id="playground-status")
        yield TraceLog(id="trace")

    def watch_state(self, state: str) -> None:
        """Dim the request box while a run is going (another Enter is refused meanwhile)."""
        self.set_class(state == "running", "-running")

    def on_request_form_submitted(self, event: RequestForm.Submitted) -> None:
        """Run the request, unless one is still running."""
        if self.state == "running":
            self.notify("A run is still going; wait for it to finish.", severity="warning")
            return
        self.run_request(event.text, event.graph, event.mode)

    @work(exclusive=True, group="playground")
    async def run_request(self, text: str, graph: str, mode: str) -> None:
        """Stream one run's events into the trace."""
        self.query_one(TraceLog).reset()
        self.run_id = None
        self.last = (graph, mode)
        app = self.tui.apps[graph]
        await self._follow(app, app.astream(text, mode=mode), f"{graph} ({mode})")

    @work(exclusive=True, group="playground")
    async def resume_run(self, run_id: str, graph: str, mode: str, answer: bool) -> None:
        """Resume a run that asked for a confirmation, with the user's answer."""
        app = self.tui.apps[graph]
        events = app.astream("(resumed)", run_id=run_id, resume=True, confirm=answer, mode=mode)
        await self._follow(app, events, f"{graph}: {'confirmed' if answer else 'declined'}")

    def action_answer(self, answer: bool) -> None:
        """Answer the last run's confirmation question (y / n)."""
        if self.state != "needs_confirmation" or self.run_id is None or self.last is None:
            self.notify("No run is waiting for a confirmation.", severity="warning")
            return
        self.resume_run(self.run_id, *self.last, answer)

    async def _follow(self, app: App, events: AsyncIterator[Event], what: str) -> None:
        trace = self.query_one(TraceLog)
        self.state = "running"
        status = self.query_one(SummaryBar)
        status.show([("running", what)], note=_starting_note(app))
        try:
            async for event in events:
                if event.kind == "run_started":
                    self.run_id = event.run_id
                trace.add_event(event.to_dict())
                if event.kind == "run_finished":
                    status.show(
                        [
                            ("run", event.run_id),
                            ("status", event.status),
                            ("took", seconds(event.latency_s)),
                            ("cost", money(event.cost_usd)),
                        ],
                        note=(
                            "y: confirm, n: decline (Esc leaves the box first)"
                            if event.status == "needs_confirmation"
                            else "o: open"
                            if app.store is not None
                            else ""
                        ),
                    )
                    self.state = event.status
        except BrickworkError as exc:
            self.state = "refused"
            status.show([("refused", str(exc))])
        except Exception as exc:  # the TUI stays up whatever the run does
            self.state = "error"
            status.show([("error", f"{type(exc).__name__}: {exc}")])

    def action_leave_box(self) -> None:
        """Move focus from the request box to the trace, so letter keys switch screens."""
        if self.tui.apps:
            self.query_one(TraceLog).focus()

    def action_focus_box(self) -> None:
        """Back to the request box."""
        if self.tui.apps:
            self.query_one("#request-text", Input).focus()

    def action_open_run(self) -> None:
        """Open the last run in the run detail screen."""
        if self.run_id is None or self.state == "running":
            self.notify("No finished run yet.", severity="warning")
            return
        self.tui.open_run(self.run_id)


def _starting_note(app: App) -> str:
    try:
        app.pool  # noqa: B018 - raises until the app has a pool
    except ConfigError:
        return "starting the embedded model first (a minute or two)"
    return ""
