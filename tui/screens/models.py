"""Models: every endpoint of the apps' pools and every registered `brickwork serve`.

The endpoint table has one row per endpoint of the pools (its tiers: `slm`, `slm:<adapter>`,
`large`, `frontier`), with its server's health and load; the serve table lists every
`brickwork serve` registered on this machine (used by this TUI or not) with its health,
restarts and the reason of the last one. Each refresh asks the apps for `App.instances()`
and `App.serves()` in a worker (servers are read with a short timeout), so a slow or dead
server never freezes the screen. `R` restarts the endpoint under the cursor after a
confirmation, when this process launched it; otherwise it says where the server runs.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from brickwork.errors import BrickworkError, ConfigError
from brickwork.tui._format import clip
from brickwork.tui.screens._base import TUIScreen
from brickwork.tui.screens.confirm import ConfirmScreen
from brickwork.tui.widgets.summary_bar import SummaryBar

if TYPE_CHECKING:
    from brickwork.app import App, Instance, Serve

__all__ = ["EndpointRow", "ModelsScreen", "endpoint_rows"]

CIRCUIT_STYLE = {"closed": "green", "half_open": "yellow", "open": "bold red"}
HEALTH_STYLE = {"ok": "green", "down": "bold red", "unknown": "dim"}


@dataclass(frozen=True)
class EndpointRow:
    """One endpoint on the screen: its snapshot and the graph whose App can act on it."""

    graph: str
    instance: Instance

    @property
    def name(self) -> str:
        """The endpoint's name."""
        return self.instance.name


async def endpoint_rows(apps: Mapping[str, App]) -> tuple[list[EndpointRow], list[str]]:
    """Snapshot each distinct endpoint of the apps' pools; also the graphs with no pool yet.

    Apps that share a pool are asked once. When two pools name the same endpoint, the row of
    the App that can restart it wins.
    """
    rows: dict[str, EndpointRow] = {}
    waiting: list[str] = []
    seen_pools: set[int] = set()
    for graph, app in apps.items():
        try:
            pool = app.pool
        except ConfigError:
            waiting.append(graph)
            continue
        if id(pool) in seen_pools and not app.launched_server:
            continue
        seen_pools.add(id(pool))
        for instance in await app.instances():
            known = rows.get(instance.name)
            if known is None or (instance.restartable and not known.instance.restartable):
                rows[instance.name] = EndpointRow(graph, instance)
    return list(rows.values()), waiting


class ModelsScreen(TUIScreen):
    """Endpoint health and load, refreshed by a worker while on show."""

    MODE = "models"
    AUTO_FOCUS = "#endpoints"
    BINDINGS = [Binding("R", "restart", "Restart")]

    endpoints: reactive[tuple[EndpointRow, ...]] = reactive(())
    #: Registered `brickwork serve`s (set before `endpoints`, whose watcher draws both).
    serves: tuple[Serve, ...] = ()
    #: Registered adapter -> its skill, eval metrics and binding (read on each reload).
    _adapter_notes: dict[str, str] = {}

    def body(self) -> ComposeResult:
        """A note, the endpoint table, the serve table, the highlighted row's details."""
        yield SummaryBar("Reading the model servers…", id="models-summary")
        table: DataTable[str | Text] = DataTable(id="endpoints", cursor_type="row")
        table.add_columns("Endpoint", "Tiers", "Health", "Circuit", "Run", "Queue", "KV", "Rst")
        yield table
        serves: DataTable[str | Text] = DataTable(id="serves", cursor_type="row")
        serves.add_columns("Serve", "Pid", "Model", "Health", "Rst", "Last restart")
        serves.border_title = "brickwork serve (registered on this machine)"
        yield serves
        yield Static("", id="endpoint-detail")

    @work(exclusive=True, group="models")
    async def reload(self) -> None:
        """Take a fresh snapshot of the pools and their servers."""
        rows, waiting = await endpoint_rows(self.tui.apps)
        any_app = next(iter(self.tui.apps.values()), None)
        if any_app is not None:
            try:
                self.serves = tuple(await asyncio.to_thread(any_app.serves))
            except Exception as exc:  # a broken registry must not take the screen down
                self.notify(f"cannot list brickwork serve: {exc}", severity="warning")
        if self.gone():  # the app quit while the snapshot was taken
            return
        note = ""
        if waiting:
            note = f"{', '.join(waiting)}: the model pool starts with the first run (Playground)"
        elif any(r.instance.restartable for r in rows):
            note = "R restarts a server this process launched"
        running = sum(r.instance.running or 0 for r in rows if r.instance.kind == "vllm")
        waits = sum(r.instance.waiting or 0 for r in rows if r.instance.kind == "vllm")
        self.query_one(SummaryBar).show(
            [
                ("endpoints", str(len(rows))),
                ("serves", str(len(self.serves))),
                ("in flight here", str(sum(r.instance.in_flight for r in rows))),
                ("running", str(running)),
                ("queued", str(waits)),
            ],
            note=note,
        )
        self._adapter_notes = await asyncio.to_thread(adapter_notes)
        if self.gone():
            return
        self.endpoints = tuple(rows)
        self._draw_serves()

    def _serve_at(self, base_url: str) -> Serve | None:
        """The registered serve behind a base URL (one of its instances), if any."""
        for serve in self.serves:
            if base_url in (serve.base_url, *serve.merged.values()):
                return serve
        return None

    def _draw_serves(self) -> None:
        table: DataTable[str | Text] = self.query_one("#serves", DataTable)
        cursor = table.cursor_row
        table.clear()
        width = max(12, self.size.width - 50)
        for serve in self.serves:
            last = next((e for e in reversed(serve.events) if "restarting in" in e), "")
            table.add_row(
                str(serve.port),
                str(serve.pid),
                Text(clip(serve.served_name, 14)),
                Text("ok", style="green") if serve.health == "ok" else Text("down", "bold red"),
                str(serve.restarts),
                Text(clip(_why(last), width) or "-"),
                key=str(serve.port),
            )
        if not self.serves:
            table.add_row(Text("none registered", style="dim"), *[""] * 5)
        elif cursor < len(self.serves):
            table.move_cursor(row=cursor, animate=False)
        self.on_descendant_focus()

    def watch_endpoints(self, rows: tuple[EndpointRow, ...]) -> None:
        """Redraw the table, keeping the cursor."""
        table: DataTable[str | Text] = self.query_one("#endpoints", DataTable)
        cursor = table.cursor_row
        table.clear()
        for row in rows:
            item = row.instance
            serve = self._serve_at(item.base_url)
            restarts = item.restarts if item.restarts is not None else (
                serve.restarts if serve is not None else None
            )  # fmt: skip
            table.add_row(
                Text(clip(item.name, 18) + (" *" if item.stand_in else "")),
                Text(clip(",".join(item.serves), max(10, self.size.width - 66))),
                Text(item.health, style=HEALTH_STYLE.get(item.health, "")),
                Text(item.circuit, style=CIRCUIT_STYLE.get(item.circuit, "")),
                _number(item.running, item.in_flight),
                _number(item.waiting, None),
                _share(item.kv_cache_usage),
                _dash(restarts),
                key=row.name,
            )
        if rows:
            table.move_cursor(row=min(cursor, len(rows) - 1), animate=False)
        self.on_descendant_focus()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Details of the endpoint or serve under the cursor (of the focused table)."""
        self.on_descendant_focus()

    def on_descendant_focus(self) -> None:
        """The detail follows the table that has the focus."""
        focused = self.focused
        if isinstance(focused, DataTable) and focused.id == "serves":
            self._serve_detail(focused.cursor_row)
        else:
            self._detail(self.query_one("#endpoints", DataTable).cursor_row)

    def _serve_detail(self, index: int) -> None:
        detail = self.query_one("#endpoint-detail", Static)
        if not 0 <= index < len(self.serves):
            detail.update("")
            return
        serve = self.serves[index]
        text = Text.assemble(
            (f"serve :{serve.port}", "bold"),
            f"  pid {serve.pid} · {serve.base_url} · {serve.served_name} · since "
            f"{serve.started_at} · health {serve.health}",
        )
        if serve.adapters or serve.merged:
            text.append(f"\nadapters: {', '.join([*serve.adapters, *serve.merged]) or 'none'}")
        text.append(f"\nrestarts in its log: {serve.restarts}")
        for event in serve.events[-2:]:
            text.append(f"\n{clip(event, 150)}", style="yellow")
        text.append(f"\nlog: {serve.log}", style="dim")
        detail.update(text)

    @property
    def selected(self) -> EndpointRow | None:
        """The endpoint under the cursor."""
        index = self.query_one("#endpoints", DataTable).cursor_row
        return self.endpoints[index] if 0 <= index < len(self.endpoints) else None

    def _detail(self, index: int) -> None:
        detail = self.query_one("#endpoint-detail", Static)
        if not 0 <= index < len(self.endpoints):
            detail.update("")
            return
        item = self.endpoints[index].instance
        text = Text.assemble(
            (item.name, "bold"),
            f"  {item.kind} at {item.base_url} · serves {','.join(item.serves)} "
            f"as {item.model!r}\n",
            f"this process: {item.in_flight}/{item.max_concurrency} in flight, "
            f"{item.calls} calls, {item.failures} failed · {item.origin}",
        )
        if item.status is not None:
            text.append(f" ({item.status})")
        if item.stand_in:
            text.append("\n* stand-in: a local model plays the frontier role", style="yellow")
        for adapter in item.adapters or ():
            text.append(f"\n{adapter}: ", style="bold")
            text.append(self._adapter_notes.get(adapter, "not registered on this machine"))
        if item.error and item.kind == "vllm":
            text.append(f"\n{clip(item.error, 150)}", style="red")
        serve = self._serve_at(item.base_url)
        events = item.events or (serve.events if serve is not None else ())
        for event in events[-2:]:
            text.append(f"\n{clip(event, 150)}", style="yellow")
        detail.update(text)

    def action_restart(self) -> None:
        """Ask, then restart the server under the cursor (only one this process launched)."""
        row = self.selected
        if row is None:
            self.notify("No endpoint under the cursor.", severity="warning")
            return
        item = row.instance
        if not item.restartable:
            self.notify(
                f"{item.name} is served by {item.origin}, not launched by this process: "
                "restart it where it runs.",
                title="Cannot restart",
                severity="warning",
            )
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.restart(row.graph, item.name)

        self.app.push_screen(
            ConfirmScreen(
                f"Restart the vLLM server behind {item.name} ({item.base_url})?\n"
                "Requests in flight on it fail or fail over; it is back in a minute or more.",
                yes="Restart",
            ),
            answered,
        )

    @work(group="models-restart")
    async def restart(self, graph: str, name: str) -> None:
        """Restart one endpoint's server through its App, then show fresh data."""
        self.notify(f"Restarting {name}…", timeout=5)
        try:
            await self.tui.apps[graph].restart_instance(name)
        except BrickworkError as exc:
            self.notify(str(exc), title=f"{name} was not restarted", severity="error")
        else:
            self.notify(f"{name} is back.", title="Restarted")
        self.reload()


def adapter_notes() -> dict[str, str]:
    """One line per known adapter: its skill, eval result and whether a skill is bound.

    Registered adapters (`brickwork tune`) and the specialists brickwork ships; a registered
    adapter of the same name replaces a shipped one, as it does when served.
    """
    from brickwork.tune.adapters import (
        binding_for,
        list_adapters,
        load_bindings,
        shipped_adapters,
    )

    try:
        registered = list_adapters(strict=False)
        shipped = [s for s in shipped_adapters() if s.name not in {r.name for r in registered}]
        bound = {b.adapter: skill for skill, b in load_bindings().items() if b.adapter}
        for info in shipped:  # a skill with no binding of its own runs on its shipped one
            if info.skill and binding_for(info.skill) == info.name:
                bound.setdefault(info.name, info.skill)
    except Exception as exc:  # a broken registry must not take the screen down
        return {"*": f"adapter registry unreadable: {exc}"}
    notes = {}
    for info in [*registered, *shipped]:
        metrics = info.metrics
        line = "shipped with brickwork · " if info in shipped else ""
        line += f"skill {info.skill or '?'}"
        if "val_adapter_accuracy" in metrics:
            line += (
                f" · val {float(metrics['val_adapter_accuracy']):.1%}"
                f" vs base {float(metrics.get('val_base_accuracy', float('nan'))):.1%}"
                f" (n={int(metrics.get('val_adapter_n', 0))})"
            )
        elif "val_loss" in metrics:
            line += f" · val loss {float(metrics['val_loss']):.3f}"
            if "val_loss_base" in metrics:
                line += f" vs base {float(metrics['val_loss_base']):.3f}"
            line += " (no accuracy measured)"
        else:
            line += " · not evaluated yet"
        line += f" · bound to {bound[info.name]}" if info.name in bound else " · not bound"
        notes[info.name] = line
    return notes


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


def _number(server: int | None, local: int | None) -> str:
    """The server's own count when it said, else this process's (marked with ~)."""
    if server is not None:
        return str(server)
    return "-" if local is None else f"~{local}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _why(event: str) -> str:
    """A restart event's reason, without the server's name and port (the row has them)."""
    return re.sub(r"^.*? \(port \d+\): ", "", event).split("; restarting in")[0]
