"""The operator TUI: live runs, per node statistics, escalations, model health, a playground.

It talks only to the embedded API: the `App`s it is given (one per graph) and a `RunStore`.

    from brickwork.tui.app import BrickworkTUI
    BrickworkTUI({"smart_home": app}, store).run()

or from the shell, `brickwork tui --graph smart_home --store runs.sqlite` (see `run_tui`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from brickwork.errors import ConfigError, MissingDependencyError

try:
    from textual.app import App as TextualApp
    from textual.binding import Binding
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingDependencyError("textual", "tui", "the operator TUI") from exc

from brickwork.tui.screens import (
    DashboardScreen,
    EscalationsScreen,
    HelpScreen,
    ModelsScreen,
    PlaygroundScreen,
    RunDetailScreen,
    RunsScreen,
)

if TYPE_CHECKING:
    from brickwork.app import App
    from brickwork.cost.prices import LocalCapacity
    from brickwork.serving.pool import ModelPool
    from brickwork.store import RunStore

__all__ = ["BrickworkTUI", "run_tui"]

#: Seconds between reloads of the screen on show.
DEFAULT_REFRESH_S = 2.0


class BrickworkTUI(TextualApp[None]):
    """The Textual app. Give it the apps by graph name and the run store they write to."""

    CSS_PATH = "app.tcss"
    TITLE = "brickwork"
    #: (mode, key, label) of each top-level screen, in nav bar order.
    NAV: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("dashboard", "d", "Dashboard"),
        ("runs", "r", "Runs"),
        ("escalations", "e", "Escalations"),
        ("models", "m", "Models"),
        ("playground", "p", "Playground"),
    )
    MODES = {
        "dashboard": DashboardScreen,
        "runs": RunsScreen,
        "escalations": EscalationsScreen,
        "models": ModelsScreen,
        "playground": PlaygroundScreen,
    }
    DEFAULT_MODE = "dashboard"
    # The footer needs its width at 80 columns; every command has a key (see the help).
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        *(Binding(key, f"switch_mode('{mode}')", label, show=False) for mode, key, label in NAV),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        apps: Mapping[str, App],
        store: RunStore | None = None,
        *,
        refresh_s: float = DEFAULT_REFRESH_S,
        on_exit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Create the TUI.

        Args:
            apps: The embedded apps, by graph name (the playground runs requests on them).
            store: The run store to read (default: the first app's store).
            refresh_s: Seconds between reloads of the screen on show.
            on_exit: Awaited when the TUI shuts down, on its event loop (e.g. to close the
                apps and their pool, whose connections belong to that loop).
        """
        super().__init__()
        self.apps = dict(apps)
        self.store = store or next((a.store for a in self.apps.values() if a.store), None)
        self.refresh_s = refresh_s
        self._on_exit = on_exit

    def open_run(self, run_id: str, *, node: str | None = None) -> None:
        """Show one run's detail on top of the current screen."""
        self.push_screen(RunDetailScreen(run_id, node=node))

    def action_help(self) -> None:
        """Show the keys (once)."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def on_unmount(self) -> None:
        """Let the owner close what it opened, on this event loop."""
        if self._on_exit is not None:
            await self._on_exit()


def run_tui(
    store: str | Path | None = None,
    graphs: Sequence[str] = ("smart_home",),
    *,
    pool: ModelPool | None = None,
    refresh_s: float = DEFAULT_REFRESH_S,
    capacity: LocalCapacity | None = None,
) -> int:
    """Run the TUI in this terminal until the operator quits; returns an exit code.

    Args:
        store: The run store, a SQLite file or a postgresql:// URL (default: the file in the
            cache, which `brickwork run` and `brickwork api` write to).
        graphs: Graph references to load for the playground (`smart_home`, a module, a file).
        pool: The model pool to run requests on. Without one, each app starts the embedded
            model on its first playground run, so pass one when loading several graphs.
        refresh_s: Seconds between reloads of the screen on show.
        capacity: The local tiers' capacities measured on this machine, for the prices.
    """
    from brickwork.app import App
    from brickwork.store import RunStore

    if not graphs:
        raise ConfigError("no graph given; pass at least one --graph REF (e.g. smart_home)")
    run_store = RunStore(store)
    apps: dict[str, App] = {}
    for ref in graphs:
        app = App.from_graph(
            ref, pool=pool, store=run_store, source="playground", capacity=capacity
        )
        apps[app.graph.name] = app

    async def close() -> None:
        for app in apps.values():
            await app.aclose()
        if pool is not None:
            await pool.aclose()

    BrickworkTUI(apps, run_store, refresh_s=refresh_s, on_exit=close).run()
    return 0
