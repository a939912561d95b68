"""Help: every key, per screen."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

__all__ = ["HELP", "HelpScreen"]

#: (where, key, what) rows of the help table.
HELP: tuple[tuple[str, str, str], ...] = (
    ("anywhere", "d r e m p", "Dashboard, Runs, Escalations, Models, Playground"),
    ("anywhere", "?", "this help"),
    ("anywhere", "q / ctrl+q", "quit"),
    ("anywhere", "tab / shift+tab", "move between filters, tables and boxes"),
    ("tables", "↑ ↓ pgup pgdn", "move the cursor"),
    ("dashboard", "g", "next graph (or all graphs)"),
    ("runs", "enter", "open the run under the cursor"),
    ("runs", "g s x", "filter by graph, status, escalated"),
    ("runs", "c", "clear the filters"),
    ("escalations", "enter", "open the run at the escalated node"),
    ("escalations", "g n w a", "filter by graph, node, reason (why), action"),
    ("run detail", "↑ ↓", "choose a step; its prompts and errors show below"),
    ("run detail", "tab", "scroll the step detail"),
    ("run detail", "escape", "back"),
    ("playground", "enter", "run the request in the box"),
    ("playground", "escape / i", "leave the box (keys work again) / back to it"),
    ("playground", "o", "open the finished run"),
)


class HelpScreen(ModalScreen[None]):
    """The keys; any of escape, ? or q closes it."""

    BINDINGS = [
        Binding("escape,question_mark,q", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        """The key table."""
        table = Table(title="brickwork keys", expand=True, show_edge=False)
        table.add_column("Where", style="dim", no_wrap=True)
        table.add_column("Keys", style="bold", no_wrap=True)
        table.add_column("What")
        for where, keys, what in HELP:
            table.add_row(where, keys, what)
        with VerticalScroll(id="help"):
            yield Static(table)
            yield Static("escape, ? or q closes this help", classes="hint")
