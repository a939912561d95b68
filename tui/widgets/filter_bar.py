"""A row of compact selects that filter a table; posts `FilterBar.Changed`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Select

__all__ = ["ANY", "Filter", "FilterBar"]

#: The value of a filter that lets everything through.
ANY = ""


@dataclass(frozen=True)
class Filter:
    """One filter: its name (the key in `FilterBar.values`), label and choices."""

    name: str
    label: str
    choices: tuple[str, ...] = ()


class FilterBar(Horizontal):
    """Selects side by side; `values` maps each filter's name to its choice (`ANY` for all)."""

    class Changed(Message):
        """A filter changed; `values` holds every filter's current choice."""

        def __init__(self, bar: FilterBar, values: dict[str, str]) -> None:
            self.bar = bar
            self.values = values
            super().__init__()

    def __init__(self, filters: Sequence[Filter], *, id: str | None = None) -> None:
        super().__init__(id=id, classes="filter-bar")
        self.filters = {f.name: f for f in filters}

    def compose(self) -> ComposeResult:
        """One compact select per filter."""
        for spec in self.filters.values():
            yield Select(
                self._options(spec.label, spec.choices),
                allow_blank=False,
                value=ANY,
                compact=True,
                id=f"filter-{spec.name}",
            )

    @staticmethod
    def _options(label: str, choices: Sequence[str]) -> list[tuple[str, str]]:
        return [(f"{label}: any", ANY), *((f"{label}: {c}", c) for c in choices)]

    def _select(self, name: str) -> Select[str]:
        return self.query_one(f"#filter-{name}", Select)

    @property
    def values(self) -> dict[str, str]:
        """Each filter's current choice."""
        values = {}
        for name in self.filters:
            value = self._select(name).value
            values[name] = value if isinstance(value, str) else ANY
        return values

    def set_choices(self, name: str, choices: Sequence[str]) -> None:
        """Replace a filter's choices, keeping the current one when it is still offered."""
        spec = self.filters[name]
        if tuple(choices) == spec.choices:
            return
        self.filters[name] = Filter(spec.name, spec.label, tuple(choices))
        select = self._select(name)
        current = select.value
        with select.prevent(Select.Changed):
            select.set_options(self._options(spec.label, choices))
            select.value = current if current in choices else ANY

    def choose(self, name: str, value: str) -> None:
        """Set a filter (`ANY` to clear it)."""
        self._select(name).value = value

    def cycle(self, name: str) -> None:
        """Move a filter to its next choice, wrapping round to `ANY`."""
        options = [ANY, *self.filters[name].choices]
        current = self.values[name]
        index = options.index(current) if current in options else 0
        self.choose(name, options[(index + 1) % len(options)])

    def clear(self) -> None:
        """Every filter back to `ANY`."""
        for name in self.filters:
            self.choose(name, ANY)

    def on_select_changed(self, event: Select.Changed) -> None:
        """Turn a select's change into one `Changed` for the whole bar."""
        event.stop()
        self.post_message(self.Changed(self, self.values))
