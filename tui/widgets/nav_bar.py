"""The top line: the app's name and its screens with their keys, the current one lit."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

__all__ = ["NavBar"]


class NavBar(Static):
    """Shows `key Name` for every screen; `current` names the one on show."""

    current: reactive[str] = reactive("")

    def __init__(self, tabs: Sequence[tuple[str, str, str]], current: str) -> None:
        """Create the bar from (mode, key, label) triples, `current` lit."""
        super().__init__(classes="nav-bar")
        self.tabs = list(tabs)
        self.set_reactive(NavBar.current, current)

    def render(self) -> Text:
        """Name, then each tab."""
        text = Text("brickwork ", style="bold")
        for mode, key, label in self.tabs:
            on = mode == self.current
            text.append(" ")
            text.append(f" {key} {label} ", style="reverse bold" if on else "")
        return text
