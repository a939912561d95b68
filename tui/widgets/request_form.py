"""The playground's request box, graph and mode pickers; posts `RequestForm.Submitted`."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Select

__all__ = ["MODES", "RequestForm"]

MODES = ("hybrid", "slm", "frontier")
#: Picked first when loaded: the graph `brickwork run TEXT` uses (`brickwork.cli.DEFAULT_GRAPH`).
DEFAULT_GRAPH = "smart_home"


class RequestForm(Vertical):
    """Type a request and press Enter; the graph and mode come from the selects."""

    class Submitted(Message):
        """The operator asked to run `text` on `graph` in `mode`."""

        def __init__(self, form: RequestForm, text: str, graph: str, mode: str) -> None:
            self.form = form
            self.text = text
            self.graph = graph
            self.mode = mode
            super().__init__()

    def __init__(self, graphs: Sequence[str], *, id: str | None = None) -> None:
        """A form over `graphs` (at least one)."""
        super().__init__(id=id, classes="request-form")
        self.graphs = list(graphs)

    def compose(self) -> ComposeResult:
        """The input, then the two pickers side by side."""
        yield Input(placeholder="Type a request, Enter runs it", compact=True, id="request-text")
        with Horizontal(classes="filter-bar"):
            # The CLI's default graph first when it is loaded (a request typed straight away
            # should not land on whichever graph sorts first).
            yield Select(
                [(f"graph: {g}", g) for g in self.graphs],
                allow_blank=False,
                value=DEFAULT_GRAPH if DEFAULT_GRAPH in self.graphs else self.graphs[0],
                compact=True,
                id="request-graph",
            )
            yield Select(
                [(f"mode: {m}", m) for m in MODES],
                allow_blank=False,
                compact=True,
                id="request-mode",
            )

    @property
    def graph(self) -> str:
        """The chosen graph."""
        return str(self.query_one("#request-graph", Select).value)

    @property
    def mode(self) -> str:
        """The chosen mode."""
        return str(self.query_one("#request-mode", Select).value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in the box: ask for a run (empty text is ignored)."""
        event.stop()
        text = event.value.strip()
        if text:
            self.post_message(self.Submitted(self, text, self.graph, self.mode))
