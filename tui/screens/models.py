"""Models: every endpoint of the apps' pools, its circuit, load and error counts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from brickwork.errors import ConfigError
from brickwork.tui.screens._base import TUIScreen
from brickwork.tui.widgets.summary_bar import SummaryBar

if TYPE_CHECKING:
    from brickwork.app import App

__all__ = ["EndpointRow", "ModelsScreen", "endpoint_rows"]

CIRCUIT_STYLE = {"closed": "green", "half_open": "yellow", "open": "bold red"}


@dataclass(frozen=True)
class EndpointRow:
    """What the models screen shows about one endpoint (a snapshot)."""

    name: str
    serves: tuple[str, ...]
    kind: str
    base_url: str
    model: str
    circuit: str
    in_flight: int
    calls: int
    failures: int
    stand_in: bool
    max_concurrency: int


def endpoint_rows(apps: Mapping[str, App]) -> tuple[list[EndpointRow], list[str]]:
    """Snapshot each distinct endpoint of the apps' pools; also the graphs with no pool yet."""
    rows: dict[str, EndpointRow] = {}
    waiting: list[str] = []
    seen_pools: set[int] = set()
    for graph, app in apps.items():
        try:
            pool = app.pool
        except ConfigError:
            waiting.append(graph)
            continue
        if id(pool) in seen_pools:
            continue
        seen_pools.add(id(pool))
        serves: dict[str, list[str]] = {}
        for logical, configs in pool.config.models.items():
            for config in configs:
                serves.setdefault(config.name, []).append(logical)
        for client in pool.endpoints():
            config = client.config
            rows.setdefault(
                config.name,
                EndpointRow(
                    name=config.name,
                    serves=tuple(serves.get(config.name, ())),
                    kind=config.kind,
                    base_url=config.base_url,
                    model=config.model,
                    circuit=str(client.breaker.state),
                    in_flight=client.in_flight,
                    calls=client.calls,
                    failures=client.failures,
                    stand_in=config.stand_in,
                    max_concurrency=config.max_concurrency,
                ),
            )
    return list(rows.values()), waiting


class ModelsScreen(TUIScreen):
    """Endpoint health, refreshed while on show (from memory: no I/O)."""

    MODE = "models"
    AUTO_FOCUS = "#endpoints"

    endpoints: reactive[tuple[EndpointRow, ...]] = reactive(())

    def body(self) -> ComposeResult:
        """A note, the endpoint table, the highlighted endpoint's details."""
        yield SummaryBar("", id="models-summary")
        table: DataTable[str | Text] = DataTable(id="endpoints", cursor_type="row")
        table.add_columns("Endpoint", "Serves", "Kind", "Circuit", "Busy", "Calls", "Fail")
        yield table
        yield Static("", id="endpoint-detail")

    def reload(self) -> None:
        """Take a fresh snapshot of the pools."""
        rows, waiting = endpoint_rows(self.tui.apps)
        note = ""
        if waiting:
            note = f"{', '.join(waiting)}: the model pool starts with the first run (Playground)"
        self.query_one(SummaryBar).show(
            [("endpoints", str(len(rows))), ("in flight", str(sum(r.in_flight for r in rows)))],
            note=note,
        )
        self.endpoints = tuple(rows)

    def watch_endpoints(self, rows: tuple[EndpointRow, ...]) -> None:
        """Redraw the table, keeping the cursor."""
        table: DataTable[str | Text] = self.query_one("#endpoints", DataTable)
        cursor = table.cursor_row
        table.clear()
        for row in rows:
            table.add_row(
                Text(row.name + (" (stand-in)" if row.stand_in else "")),
                Text(",".join(row.serves)),
                row.kind,
                Text(row.circuit, style=CIRCUIT_STYLE.get(row.circuit, "")),
                f"{row.in_flight}/{row.max_concurrency}",
                str(row.calls),
                Text(str(row.failures), style="red" if row.failures else ""),
                key=row.name,
            )
        if rows:
            table.move_cursor(row=min(cursor, len(rows) - 1), animate=False)
        self._detail(table.cursor_row)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Details of the endpoint under the cursor."""
        self._detail(event.cursor_row)

    def _detail(self, index: int) -> None:
        detail = self.query_one("#endpoint-detail", Static)
        if not 0 <= index < len(self.endpoints):
            detail.update("")
            return
        row = self.endpoints[index]
        text = Text.assemble(
            (row.name, "bold"),
            f"  {row.kind} at {row.base_url}\nserved model {row.model!r}",
        )
        if row.stand_in:
            text.append("\nstand-in: a local model plays the frontier role", style="yellow")
        detail.update(text)
