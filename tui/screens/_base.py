"""What every top-level screen shares: the nav bar, the footer and a timed reload."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, TypeVar, cast

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer

from brickwork.tui.widgets.nav_bar import NavBar
from brickwork.tui.widgets.summary_bar import SummaryBar

if TYPE_CHECKING:
    from brickwork.tui.app import BrickworkTUI

__all__ = ["TUIScreen"]

T = TypeVar("T")
log = logging.getLogger(__name__)


class TUIScreen(Screen[None]):
    """A screen of the operator TUI. Subclasses compose `body()` and implement `reload()`.

    `reload()` runs on mount, whenever the screen comes back into view, and every
    `BrickworkTUI.refresh_s` seconds while it is on show (screens out of view stay idle).
    """

    #: The mode this screen is the base of (lit in the nav bar).
    MODE: ClassVar[str] = ""
    #: Reload on a timer while on show.
    LIVE: ClassVar[bool] = True

    @property
    def tui(self) -> BrickworkTUI:
        """The running operator app."""
        return cast("BrickworkTUI", self.app)

    def compose(self) -> ComposeResult:
        """Nav bar, the screen's body, footer."""
        yield NavBar(self.tui.NAV, self.MODE)
        yield from self.body()
        yield Footer()

    def body(self) -> ComposeResult:
        """The screen's own widgets."""
        yield from ()

    def on_mount(self) -> None:
        """Keep loading while on show (Textual calls this and any subclass's `on_mount`)."""
        if self.LIVE:
            self.set_interval(self.tui.refresh_s, self._tick)

    def on_screen_resume(self) -> None:
        """In view, the first time or back again."""
        self.resumed()

    def resumed(self) -> None:
        """Show fresh data when the screen comes into view."""
        self.reload()

    def _tick(self) -> None:
        if self.is_current:
            self.reload()

    def reload(self) -> object:
        """Start loading the screen's data; returns the worker doing it, if it needs one."""
        return None

    def gone(self) -> bool:
        """Whether the screen's widgets are gone: the app quit while a worker awaited."""
        return not self.query(NavBar)

    async def read_store(self, read: Callable[[], T]) -> T | None:
        """Run a store read on a thread; if the store is down, say so and return None.

        The screen keeps its last data and tries again on its next reload. None too when
        the screen was taken down while the read ran (nothing is left to draw on).
        """
        try:
            found = await asyncio.to_thread(read)
            return None if self.gone() else found
        except Exception as exc:  # a store outage must not take the TUI down
            log.warning("run store read failed: %s", exc)
            for bar in self.query(SummaryBar):
                bar.update(
                    f"Run store unavailable ({type(exc).__name__}: {str(exc)[:120]}); "
                    f"retrying every {self.tui.refresh_s:g} s"
                )
            return None
