"""Help: every key, per screen."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

__all__ = ["HELP", "HelpScreen"]

#: (where, keys, what) rows of the help table.
HELP: tuple[tuple[str, str, str], ...] = (
    ("anywhere", "d r e m p", "Dashboard, Runs, Escalations, Models, Playground"),
    ("", "? q", "this help; quit (also ctrl+q)"),
    ("", "tab shift+tab", "next / previous filter, table or box"),
    ("tables", "↑ ↓ pgup pgdn", "move the cursor"),
    ("", "enter", "open the run (runs, escalations)"),
    ("dashboard", "g v", "next graph, or all graphs; count eval runs too"),
    ("runs", "g s x f o c", "filter by graph, status, escalated, from, mode; clear"),
    ("", "/", "search the request text (enter searches, escape hides the box)"),
    ("escalations", "g n w a c", "filter by graph, node, why, action; clear"),
    ("", "space", "mark / unmark the row (the actions below take the marked rows)"),
    ("", "t", "retry the run: same request, graph and mode; a new run in Runs"),
    ("", "f", "send to the flywheel: fixed escalations -> a `brickwork tune --data` file"),
    ("", "k", "acknowledge: hide from the queue (kept beside the run store)"),
    ("models", "R", "restart a server this process launched (asks first)"),
    ("run detail", "↑ ↓", "choose a step: its prompts, outputs, errors"),
    ("", "tab esc", "scroll the step detail; back"),
    ("playground", "enter", "run the request in the box"),
    ("", "esc i", "leave the box (keys work again); back to it"),
    ("", "o", "open the finished run"),
)


class HelpScreen(ModalScreen[None]):
    """The keys; any of escape, ? or q closes it."""

    AUTO_FOCUS = "#help"
    BINDINGS = [
        Binding("escape,question_mark,q", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        """The key table."""
        table = Table(title="brickwork keys", expand=True, box=None, show_header=False)
        table.add_column("Where", style="dim", no_wrap=True)
        table.add_column("Keys", style="bold", no_wrap=True)
        table.add_column("What")
        for where, keys, what in HELP:
            table.add_row(where, keys, what)
        with VerticalScroll(id="help"):
            yield Static(table)
            yield Static("escape, ? or q closes this help", classes="hint")
