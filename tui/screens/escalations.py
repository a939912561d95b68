"""Escalations: the queue of escalated nodes with their reasons and signals, filterable.

Actions go through the embedded API: `t` retries the run under the cursor (`App.aretry`, same
graph and mode: the new run shows in Runs), `f` sends the marked escalations (space marks;
else the one under the cursor) to the flywheel (`App.send_to_flywheel`: a `brickwork tune
--data` file, named in the screen), `k` acknowledges them (`App.acknowledge`: hidden from
then on, kept beside the run store).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, get_args

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from brickwork.errors import BrickworkError
from brickwork.escalation import Reason
from brickwork.store import SOURCES, EscalationRecord
from brickwork.store.triage import escalation_key
from brickwork.tui._format import clip, clock
from brickwork.tui.screens._base import TUIScreen
from brickwork.tui.widgets.filter_bar import Filter, FilterBar
from brickwork.tui.widgets.summary_bar import SummaryBar

if TYPE_CHECKING:
    from brickwork.app import App

__all__ = ["EscalationsScreen"]

#: Rows shown at most (the newest).
LIMIT = 200


class EscalationsScreen(TUIScreen):
    """Escalated (↑) and failed (✗) nodes, newest first; Enter opens the run at that node."""

    MODE = "escalations"
    AUTO_FOCUS = "#escalations"
    # The filter keys are in the help (?); the footer keeps its 80 columns for the actions.
    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("space", "mark", "Mark"),
        Binding("t", "retry", "Retry"),
        Binding("f", "flywheel", "Flywheel"),
        Binding("k", "acknowledge", "Ack"),
        Binding("g", "cycle('graph')", "Graph", show=False),
        Binding("n", "cycle('node')", "Node", show=False),
        Binding("w", "cycle('reason')", "Why", show=False),
        Binding("a", "cycle('action')", "Action", show=False),
        Binding("c", "clear", "Clear", show=False),
    ]

    records: reactive[tuple[EscalationRecord, ...]] = reactive((), always_update=True)
    #: Keys (`escalation_key`) of the marked rows.
    marked: set[str]
    #: Acknowledged escalations left out of the last read.
    hidden = 0

    def __init__(self) -> None:
        super().__init__()
        self.marked = set()

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
        yield Static("", id="queue-note")

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
        app = self._queue_app()
        acked: set[str] = set()
        if app is not None:
            try:
                acked = await asyncio.to_thread(app.acknowledged)
            except (BrickworkError, OSError) as exc:
                self.notify(f"cannot read acknowledgements: {exc}", severity="warning")
        if self.gone():  # the app quit while the acknowledgements were read
            return
        shown = [r for r in records if escalation_key(r) not in acked]
        self.hidden = len(records) - len(shown)
        records = shown
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
        figures = [("decisions", str(len(records))), ("by reason", top or "-")]
        if self.hidden:
            figures.insert(1, ("acked", str(self.hidden)))
        if self.marked:
            figures.insert(1, ("marked", str(len(self.marked))))
        self.query_one(SummaryBar).show(figures)
        table: DataTable[str | Text] = self.query_one("#escalations", DataTable)
        row = table.cursor_row
        table.clear()
        counts: dict[object, int] = {}
        for record in records:
            counts[record.signature] = counts.get(record.signature, 0) + 1
        width = max(10, (self.size.width - 62) // 2)
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
                Text.assemble(
                    ("● ", "bold cyan") if escalation_key(record) in self.marked else mark,
                    (record.reason or record.action, style),
                    style=style,
                ),
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

    # -- actions ------------------------------------------------------------------------------

    def _note(self, text: str | Text) -> None:
        """Say what the last action did, under the detail (until the next action)."""
        note = self.query_one("#queue-note", Static)
        note.update(text)
        note.display = bool(str(text))

    def _queue_app(self, graph: str | None = None) -> App | None:
        """The App of `graph`, else any: acknowledgements and exports are per run store."""
        apps = self.tui.apps
        if graph is not None and graph in apps:
            return apps[graph]
        return next(iter(apps.values()), None)

    @property
    def _cursor(self) -> EscalationRecord | None:
        index = self.query_one("#escalations", DataTable).cursor_row
        return self.records[index] if 0 <= index < len(self.records) else None

    def _chosen(self) -> list[EscalationRecord]:
        """The marked rows, else the row under the cursor."""
        if self.marked:
            return [r for r in self.records if escalation_key(r) in self.marked]
        return [self._cursor] if self._cursor is not None else []

    def action_mark(self) -> None:
        """Mark or unmark the row under the cursor, then move down."""
        record = self._cursor
        if record is None:
            return
        self.marked ^= {escalation_key(record)}
        table: DataTable[str | Text] = self.query_one("#escalations", DataTable)
        row = table.cursor_row
        self.records = self.records  # redraw with the mark
        table.move_cursor(row=min(row + 1, len(self.records) - 1), animate=False)

    def action_retry(self) -> None:
        """Run the request under the cursor again, on its graph and in its mode."""
        record = self._cursor
        if record is None:
            self.notify("No escalation under the cursor.", severity="warning")
            return
        if record.graph not in self.tui.apps:
            self.notify(
                f"graph {record.graph!r} is not loaded: start the TUI with --graph "
                f"{record.graph} to retry its runs.",
                title="Cannot retry",
                severity="warning",
            )
            return
        self.retry(record)

    @work(group="escalations-retry")
    async def retry(self, record: EscalationRecord) -> None:
        """Retry one run through its graph's App."""
        self.notify(f"Retrying run {record.run_id} ({record.graph})…", timeout=3)
        try:
            result = await self.tui.apps[record.graph].aretry(record.run_id)
        except BrickworkError as exc:
            self.notify(str(exc), title="Retry failed", severity="error")
            return
        escalated = f", {len(result.escalations)} escalated" if result.escalations else ""
        self._note(f"retried {record.run_id} as {result.run_id}: {result.status}{escalated}")
        self.notify(
            f"new run {result.run_id}: {result.status}{escalated} (in Runs, r)",
            title="Retried",
            severity="information" if result.ok else "warning",
            timeout=8,
        )
        self.reload()

    def action_flywheel(self) -> None:
        """Send the marked escalations (else the one under the cursor) to the training data."""
        chosen = self._chosen()
        app = self._queue_app()
        if not chosen or app is None:
            self.notify(
                "Nothing to send." if app else "No graph is loaded: start the TUI with --graph.",
                severity="warning",
            )
            return
        self.flywheel(app, chosen)

    @work(group="escalations-flywheel")
    async def flywheel(self, app: App, chosen: list[EscalationRecord]) -> None:
        """Append the fixed ones to `brickwork tune --data` files; say where."""
        try:
            done = await asyncio.to_thread(app.send_to_flywheel, chosen)
        except (BrickworkError, OSError) as exc:
            self.notify(str(exc), title="Not sent", severity="error")
            return
        lines = [f"{n} → {path}" for path, n in done.written.items()]
        if done.written:
            lines.append("train: brickwork tune SKILL --data FILE")
        lines += [f"skipped {why}" for why in done.skipped[:3]]
        if len(done.skipped) > 3:
            lines.append(f"… and {len(done.skipped) - 3} more skipped")
        title = f"{done.count} sent to the flywheel"
        self.notify("\n".join(lines), title=title, timeout=15,
                    severity="information" if done.count else "warning")  # fmt: skip
        self._note(Text.assemble((title + ": ", "bold"), "; ".join(lines)))
        self.marked.clear()
        self.records = self.records

    def action_acknowledge(self) -> None:
        """Acknowledge the marked escalations (else the one under the cursor): hide them."""
        chosen = self._chosen()
        app = self._queue_app()
        if not chosen or app is None:
            self.notify(
                "Nothing to acknowledge." if app else "No graph is loaded: start with --graph.",
                severity="warning",
            )
            return
        self.acknowledge(app, chosen)

    @work(group="escalations-ack")
    async def acknowledge(self, app: App, chosen: list[EscalationRecord]) -> None:
        """Record the acknowledgements through the App, then read the queue again."""
        try:
            new = await asyncio.to_thread(app.acknowledge, chosen)
        except (BrickworkError, OSError) as exc:
            self.notify(str(exc), title="Not acknowledged", severity="error")
            return
        self.notify(f"{new} acknowledged: hidden from the queue.", timeout=4)
        self._note(f"{new} acknowledged (hidden; kept beside the run store)")
        self.marked.clear()
        self.reload()
