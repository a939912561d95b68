"""Escalations: the queue of escalated nodes with their reasons and signals, filterable."""

from __future__ import annotations

from typing import get_args

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from brickwork.escalation import Reason
from brickwork.store import SOURCES, EscalationRecord
from brickwork.tui._format import clip, clock
from brickwork.tui.screens._base import TUIScreen
from brickwork.tui.widgets.filter_bar import Filter, FilterBar
from brickwork.tui.widgets.summary_bar import SummaryBar

__all__ = ["EscalationsScreen"]

#: Rows shown at most (the newest).
LIMIT = 200


class EscalationsScreen(TUIScreen):
    """Escalated (↑) and failed (✗) nodes, newest first; Enter opens the run at that node."""

    MODE = "escalations"
    AUTO_FOCUS = "#escalations"
    BINDINGS = [
        Binding("enter", "open", "Open run"),
        Binding("g", "cycle('graph')", "Graph"),
        Binding("n", "cycle('node')", "Node"),
        Binding("w", "cycle('reason')", "Why"),
        Binding("a", "cycle('action')", "Action"),
        Binding("c", "clear", "Clear"),
    ]

    records: reactive[tuple[EscalationRecord, ...]] = reactive((), always_update=True)

    def body(self) -> ComposeResult:
        """Filters, a count, the queue."""
        yield FilterBar(
            [
                Filter("graph", "graph", tuple(self.tui.apps)),
                Filter("node", "node"),
                Filter("reason", "why", get_args(Reason)),
                Filter("action", "action", ("escalate", "fail")),
                Filter("source", "from", SOURCES),
            ],
            id="escalation-filters",
        )
        yield SummaryBar("Reading the run store…", id="escalations-summary")
        table: DataTable[str | Text] = DataTable(
            id="escalations", cursor_type="row", zebra_stripes=True
        )
        table.add_columns("Time", "Node", "Decision", "Fixed", "n", "Request", "Signals")
        yield table
        yield Static("", id="escalation-detail")

    @work(exclusive=True, group="escalations")
    async def reload(self) -> None:
        """Read the filtered decisions on a thread."""
        store = self.tui.store
        if store is None:
            self.query_one(SummaryBar).update("No run store: start the TUI with --store FILE.")
            return
        values = self.query_one(FilterBar).values
        read = await self.read_store(
            lambda: (
                store.escalations(
                    graph=values["graph"] or None,
                    node=values["node"] or None,
                    reason=values["reason"] or None,
                    actions=(values["action"],) if values["action"] else ("escalate", "fail"),
                    limit=LIMIT,
                    exclude_sources=() if values["source"] == "eval" else ("eval",),
                    source=values["source"] or None,
                ),
                store.graphs(),
            )
        )
        if read is None:
            return
        records, graphs = read
        bar = self.query_one(FilterBar)
        bar.set_choices("graph", sorted({*self.tui.apps, *graphs}))
        nodes = {r.node for r in records} | ({values["node"]} if values["node"] else set())
        bar.set_choices("node", sorted(nodes | set(bar.filters["node"].choices)))
        self.records = tuple(records)

    def watch_records(self, records: tuple[EscalationRecord, ...]) -> None:
        """Redraw the queue, keeping the cursor on the same row."""
        reasons: dict[str, int] = {}
        for record in records:
            key = record.reason or record.action
            reasons[key] = reasons.get(key, 0) + 1
        top = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]))
        self.query_one(SummaryBar).show(
            [("decisions", str(len(records))), ("by reason", top or "-")]
        )
        table: DataTable[str | Text] = self.query_one("#escalations", DataTable)
        row = table.cursor_row
        table.clear()
        counts: dict[object, int] = {}
        for record in records:
            counts[record.signature] = counts.get(record.signature, 0) + 1
        width = max(10, (self.size.width - 58) // 2)
        for index, record in enumerate(records):
            signals = "; ".join(f"{k}: {v}" for k, v in record.signals) or record.detail
            escalated = record.action == "escalate"
            mark, style = ("↑ ", "yellow") if escalated else ("✗ ", "red")
            fixed: dict[bool | None, Text] = {
                True: Text("yes", style="green"),
                False: Text("no", style="red"),
                None: Text("-", style="dim"),
            }
            table.add_row(
                clock(record.at),
                Text(clip(record.node, 10)),
                Text(mark + (record.reason or record.action), style=style),
                fixed[record.fixed] if escalated else Text("-"),
                str(counts[record.signature]),
                Text(clip(record.text, width)),
                Text(clip(signals, width)),
                key=str(index),
            )
        if records:
            table.move_cursor(row=min(row, len(records) - 1), animate=False)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Show the whole request and signals of the row under the cursor (cut in the table)."""
        index = event.cursor_row
        if not 0 <= index < len(self.records):
            return
        record = self.records[index]
        signals = "; ".join(f"{k}: {v}" for k, v in record.signals) or record.detail
        self.query_one("#escalation-detail", Static).update(
            Text.assemble(
                ("request: ", "bold"),
                record.text,
                f"  ({record.source}, run {record.status})\n",
                ("signals: ", "bold"),
                signals,
            )
        )

    def _open(self, index: int) -> None:
        if 0 <= index < len(self.records):
            record = self.records[index]
            self.tui.open_run(record.run_id, node=record.node)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row: open that run at the escalated node."""
        event.stop()
        self._open(event.cursor_row)

    def action_open(self) -> None:
        """Open the run under the cursor."""
        self._open(self.query_one("#escalations", DataTable).cursor_row)

    def on_filter_bar_changed(self, event: FilterBar.Changed) -> None:
        """Filters changed: read again."""
        self.reload()

    def action_cycle(self, name: str) -> None:
        """Next choice of one filter."""
        self.query_one(FilterBar).cycle(name)

    def action_clear(self) -> None:
        """Drop every filter."""
        self.query_one(FilterBar).clear()
