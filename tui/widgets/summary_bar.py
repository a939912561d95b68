"""A one-or-two line strip of labelled figures."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

__all__ = ["SummaryBar"]


class SummaryBar(Static):
    """Shows `label value` pairs separated by dots, wrapping as the width requires."""

    def show(self, pairs: Sequence[tuple[str, str]], *, note: str = "") -> None:
        """Replace the figures (and an optional dim note on the end)."""
        text = Text()
        for index, (label, value) in enumerate(pairs):
            if index:
                text.append(" · ", style="dim")
            text.append(f"{label} ", style="dim")
            text.append(value, style="bold")
        if note:
            text.append(f"  {note}", style="dim italic")
        self.update(text)
