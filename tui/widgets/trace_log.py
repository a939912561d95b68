"""A scrolling log of run events, one readable line each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from textual.widgets import RichLog

from brickwork.tui._trace import event_line

__all__ = ["TraceLog"]


class TraceLog(RichLog):
    """Appends run events as they stream; `plain` keeps the text of every line written."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, wrap=True, markup=False, highlight=False, auto_scroll=True)
        self.plain: list[str] = []

    def add_event(self, event: Mapping[str, Any]) -> None:
        """Write one event."""
        line = event_line(event)
        self.plain.append(line.plain)
        # Wrap to the width left beside the (stable) scrollbar gutter: RichLog's own choice is
        # the width with the gutter, and the last characters of each long line were hidden.
        width = self.scrollable_content_region.width
        self.write(line, width=width if width > 0 else None)

    def reset(self) -> None:
        """Forget every line."""
        self.plain.clear()
        self.clear()
