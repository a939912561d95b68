"""Runs: the newest runs first, filtered by graph, status and escalation; Enter opens one."""

from __future__ import annotations

from typing import get_args

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.widgets import DataTable, Input, Static

from brickwork.events import RunStatus
from brickwork.store import SOURCES, RunSummary
from brickwork.tui._format import clip, clock, money, seconds
from brickwork.tui.screens._base import TUIScreen
from brickwork.tui.widgets.filter_bar import Filter, FilterBar
from brickwork.tui.widgets.summary_bar import SummaryBar

__all__ = ["RunsScreen"]

#: Rows shown at most (the newest).
LIMIT = 200

#: Short names of the long statuses, so the request keeps its width at 80 columns.
STATUS_SHORT = {"needs_confirmation": "confirm?", "over_budget": "budget"}

STATUS_STYLE = {
    "ok": "green",
    "failed": "red",
    "error": "red",
    "timeout": "red",
    "needs_confirmation": "yellow",
    "over_budget": "yellow",
}


class RunsScreen(TUIScreen):
    """A live table of runs."""

    MODE = "runs"
    AUTO_FOCUS = "#runs"
    BINDINGS = [
        Binding("enter", "open", "Open", show=True),
        Binding("g", "cycle('graph')", "Graph"),
        Binding("s", "cycle('status')", "Status"),
        Binding("x", "cycle('escalated')", "Escalated"),
        Binding("f", "cycle('source')", "From", show=False),
        Binding("o", "cycle('mode')", "Mode", show=False),
        Binding("slash", "search", "Search"),
        Binding("c", "clear", "Clear"),
    ]

    rows: reactive[tuple[RunSummary, ...]] = reactive((), always_update=True)
    #: Text the runs' request, answer or error must contain (empty: any).
    search: reactive[str] = reactive("")

    def body(self) -> ComposeResult:
        """Filters, a count, the table."""
        yield FilterBar(
            [
                Filter("graph", "graph", tuple(self.tui.apps)),
                Filter("status", "status", get_args(RunStatus)),
                Filter("escalated", "escalated", ("yes", "no")),
                Filter("source", "from", SOURCES),
                Filter("mode", "mode", ("slm", "hybrid", "frontier")),
            ],
            id="runs-filters",
        )
        search = Input(placeholder="search request, answer, error (enter)", id="runs-search")
        search.display = False
        yield search
        yield SummaryBar("Reading the run store…", id="runs-summary")
        table: DataTable[str | Text] = DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        table.add_columns("Time", "Graph", "From", "Status", "Esc", "Latency", "Cost", "Request")
        yield table
        yield Static("", id="run-line")

    @work(exclusive=True, group="runs")
    async def reload(self) -> None:
        """Read the filtered runs on a thread."""
        store = self.tui.store
        if store is None:
            self.query_one(SummaryBar).update("No run store: start the TUI with --store FILE.")
            return
        values = self.query_one(FilterBar).values
        escalated = {"yes": True, "no": False}.get(values["escalated"])
        search = self.search
        read = await self.read_store(
            lambda: (
                store.runs(
                    limit=LIMIT,
                    graph=values["graph"] or None,
                    status=values["status"] or None,
                    escalated=escalated,
                    source=values["source"] or None,
                    mode=values["mode"] or None,
                    search=search or None,
                ),
                store.graphs(),
            )
        )
        if read is None:
            return
        rows, graphs = read
        self.query_one(FilterBar).set_choices("graph", sorted({*self.tui.apps, *graphs}))
        self.rows = tuple(rows)

    def watch_rows(self, old: tuple[RunSummary, ...], rows: tuple[RunSummary, ...]) -> None:
        """Redraw the table, keeping the cursor on the same run."""
        values = self.query_one(FilterBar).values
        chosen = [f"{k}={v}" for k, v in values.items() if v]
        if self.search:
            chosen.append(f"text~{self.search!r}")
        shown = ", ".join(chosen) or "all runs"
        more = f" (the newest {LIMIT})" if len(rows) == LIMIT else ""
        self.query_one(SummaryBar).show(
            [("runs", f"{len(rows)}{more}"), ("filter", shown)], note="enter opens a run"
        )
        table: DataTable[str | Text] = self.query_one("#runs", DataTable)
        if [(r.run_id, r.status) for r in old] == [(r.run_id, r.status) for r in rows] and (
            table.row_count
        ):
            return
        selected = self.selected_run_id
        table.clear()
        for run in rows:
            table.add_row(
                clock(run.started_at),
                Text(clip(run.graph, 9)),
                Text(f"{run.source[:4]}/{run.mode[:1]}", style="dim"),
                Text(
                    STATUS_SHORT.get(run.status, run.status),
                    style=STATUS_STYLE.get(run.status, "yellow"),
                ),
                Text(str(run.escalations), style="yellow") if run.escalations else "",
                seconds(run.latency_s, compact=True),
                money(run.cost_usd),
                Text(clip(run.text, max(12, self.size.width - 68))),
                key=run.run_id,
            )
        ids = [r.run_id for r in rows]
        if selected in ids:
            table.move_cursor(row=ids.index(selected), animate=False)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """The whole request and the answer (or error) of the run under the cursor."""
        index = event.cursor_row
        line = self.query_one("#run-line", Static)
        if not 0 <= index < len(self.rows):
            line.update("")
            return
        run = self.rows[index]
        style = "bold green" if run.status == "ok" else "bold red"
        text = Text.assemble(("request: ", "bold"), " ".join(run.text.split()), "\n")
        text.append(f"{run.status}: ", style=style)
        text.append(" ".join((run.answer or run.error or "").split()))
        line.update(text)

    @property
    def selected_run_id(self) -> str | None:
        """The run under the cursor."""
        table: DataTable[str | Text] = self.query_one("#runs", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return str(key.value) if key.value is not None else None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row: open that run."""
        event.stop()
        if event.row_key.value is not None:
            self.tui.open_run(str(event.row_key.value))

    def action_open(self) -> None:
        """Open the run under the cursor."""
        run_id = self.selected_run_id
        if run_id is not None:
            self.tui.open_run(run_id)

    def on_filter_bar_changed(self, event: FilterBar.Changed) -> None:
        """Filters changed: read again."""
        self.reload()

    def action_cycle(self, name: str) -> None:
        """Next choice of one filter."""
        self.query_one(FilterBar).cycle(name)

    def action_clear(self) -> None:
        """Drop every filter and the search."""
        self.query_one(FilterBar).clear()
        self.search = ""

    def action_search(self) -> None:
        """Show the search box (enter searches, escape hides it)."""
        box = self.query_one("#runs-search", Input)
        box.display = True
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Search for the text typed (empty: every run)."""
        event.stop()
        self.search = event.value.strip()
        event.input.display = bool(self.search)
        self.query_one("#runs", DataTable).focus()

    def watch_search(self) -> None:
        """Another search: read again."""
        if self.is_mounted:
            self.reload()
