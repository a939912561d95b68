"""Dashboard: traffic, cost and cost avoided, and per node latency, failure and escalation rates.

A cache line (hit rate, semantic hits, what the hits saved, lookup p50) shows only when the
runs made response-cache lookups (`brickwork.caching`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from brickwork.caching.commands import stats_from_events
from brickwork.evals.report import percentile
from brickwork.store import NodeStats, RunStore, Totals
from brickwork.tui._format import clip, money, pct, seconds
from brickwork.tui.screens._base import TUIScreen
from brickwork.tui.widgets.filter_bar import Filter, FilterBar
from brickwork.tui.widgets.summary_bar import SummaryBar

__all__ = ["DashboardData", "DashboardScreen"]

#: Requests per second are counted over this many recent seconds.
RATE_WINDOW_S = 60.0


@dataclass(frozen=True)
class DashboardData:
    """One reading of the store for the dashboard."""

    totals: Totals
    recent: Totals
    nodes: list[NodeStats]
    graphs: list[str]
    cache: list[dict[str, Any]] = field(default_factory=list)

    def cache_line(self) -> str:
        """Response-cache hits, semantic hits, saved cost and lookup p50 ("" without lookups)."""
        if not self.cache:
            return ""
        stats = stats_from_events(self.cache).values()
        hits = sum(s.hits for s in stats)
        lookups = sum(s.lookups for s in stats)
        semantic = sum(s.semantic_hits for s in stats)
        rejected = sum(s.rejected for s in stats)
        saved = sum(s.saved_usd for s in stats)
        p50 = percentile([float(e.get("lookup_s") or 0.0) for e in self.cache], 50)
        return (
            f"cache  hits {hits}/{lookups} ({pct(hits / lookups)})  semantic {semantic}  "
            f"guarded {rejected}  saved {money(saved)}  lookup p50 {p50 * 1000:.2f} ms"
        )

    @property
    def requests_per_s(self) -> float:
        """Runs started per second over the last `RATE_WINDOW_S` seconds."""
        return self.recent.runs / RATE_WINDOW_S


#: Sources whose runs are not traffic: left out of the figures unless asked for (`v`).
NOT_TRAFFIC = ("eval",)


def load_dashboard(
    store: RunStore, graph: str | None, exclude: tuple[str, ...] = NOT_TRAFFIC
) -> DashboardData:
    """Read everything the dashboard shows (blocking: call it on a thread).

    Args:
        store: The run store.
        graph: One graph's runs, or None for all.
        exclude: Sources left out (by default eval runs, which are not traffic).
    """
    return DashboardData(
        totals=store.totals(graph=graph, exclude_sources=exclude),
        recent=store.totals(
            graph=graph, since=time.time() - RATE_WINDOW_S, exclude_sources=exclude
        ),
        nodes=store.node_stats(graph=graph, exclude_sources=exclude),
        graphs=store.graphs(),
        cache=store.cache_lookups(graph=graph, exclude_sources=exclude),
    )


class DashboardScreen(TUIScreen):
    """Figures over every stored run, refreshed while on show."""

    MODE = "dashboard"
    AUTO_FOCUS = "#nodes"
    BINDINGS = [
        Binding("g", "cycle_graph", "Graph"),
        Binding("v", "toggle_eval", "Eval runs"),
    ]

    data: reactive[DashboardData | None] = reactive(None)
    #: Count eval runs in the figures too (off: they are not traffic).
    with_eval: reactive[bool] = reactive(False)

    def body(self) -> ComposeResult:
        """Graph filter, the figures, the node table."""
        yield FilterBar([Filter("graph", "graph", tuple(self.tui.apps))], id="dashboard-filters")
        yield SummaryBar("Reading the run store…", id="dashboard-summary")
        cache = Static("", id="dashboard-cache")
        cache.display = False  # shown once the runs made response-cache lookups
        yield cache
        table: DataTable[str | Text] = DataTable(id="nodes", cursor_type="row", zebra_stripes=True)
        table.add_columns("Node", "Calls", "p50/p95", "Inval", "Escal", "Cost", "Avoided")
        yield table

    @work(exclusive=True, group="dashboard")
    async def reload(self) -> None:
        """Read the store on a thread and show the result."""
        store = self.tui.store
        if store is None:
            self.query_one(SummaryBar).update("No run store: start the TUI with --store FILE.")
            return
        graph = self.query_one(FilterBar).values["graph"] or None
        exclude = () if self.with_eval else NOT_TRAFFIC
        data = await self.read_store(lambda: load_dashboard(store, graph, exclude))
        if data is not None:
            self.data = data

    def watch_data(self, data: DashboardData | None) -> None:
        """Show a new reading."""
        if data is None:
            return
        bar = self.query_one(FilterBar)
        bar.set_choices("graph", sorted({*self.tui.apps, *data.graphs}))
        totals = data.totals
        saving = totals.cost_avoided_usd
        share = saving / totals.frontier_only_usd if totals.frontier_only_usd > 0 else 0.0
        if saving >= 0:
            avoided = ("saved", f"{money(saving)} ({pct(share)})")
        else:  # never a negative "avoided": say the ladder cost more
            avoided = ("cost more by", money(-saving))
        self.query_one(SummaryBar).show(
            [
                ("runs", str(totals.runs)),
                ("rps", f"{data.requests_per_s:.2f}"),
                ("ok", pct(totals.ok / totals.runs) if totals.runs else "-"),
                ("esc", pct(totals.escalation_rate)),
                ("cost", money(totals.cost_usd)),
                avoided,
            ],
            note="incl. eval" if self.with_eval else "",
        )
        cache = self.query_one("#dashboard-cache", Static)
        cache.update(data.cache_line())
        cache.display = bool(data.cache)
        table: DataTable[str | Text] = self.query_one("#nodes", DataTable)
        row = table.cursor_row
        table.clear()
        several = len({n.graph for n in data.nodes}) > 1
        for node in data.nodes:
            name = f"{node.graph}/{node.node}" if several else node.node
            table.add_row(
                Text(clip(name, max(12, self.size.width - 58))),
                str(node.calls),
                f"{seconds(node.p50_s, compact=True)}/{seconds(node.p95_s, compact=True)}",
                _rate(node.validation_failure_rate),
                _rate(node.escalation_rate),
                money(node.cost_usd),
                _avoided(node.cost_avoided_usd, wide=self.size.width >= 100),
                key=f"{node.graph}/{node.node}",
            )
        if data.nodes:
            table.move_cursor(row=min(row, len(data.nodes) - 1))
        else:
            table.add_row(Text("no runs yet", style="dim"), *[""] * 6)

    def on_filter_bar_changed(self, event: FilterBar.Changed) -> None:
        """Another graph: read again."""
        self.reload()

    def watch_with_eval(self) -> None:
        """Eval runs in or out: read again."""
        if self.is_mounted:
            self.reload()

    def action_toggle_eval(self) -> None:
        """Count eval runs in the figures, or leave them out (the default)."""
        self.with_eval = not self.with_eval

    def action_cycle_graph(self) -> None:
        """Show the next graph (or all)."""
        self.query_one(FilterBar).cycle("graph")


def _rate(rate: float) -> Text:
    return Text(pct(rate), style="bold yellow" if rate >= 0.2 else "")


def _avoided(usd: float, *, wide: bool) -> Text:
    """Cost avoided, never a bare negative number.

    A node that cost more than the top tier alone would have reads "cost more by $0.0012"
    ("more $0.0012" in a narrow terminal), in red.
    """
    if usd < 0:
        return Text(f"{'cost more by' if wide else 'more'} {money(-usd)}", style="red")
    return Text(money(usd))
