"""Graph definitions as plain Python modules, and how to find them.

A graph module reads top to bottom: skills and agents, routing functions, `build()`, then
`graph = build()`. It may also define `NAME`, `DESCRIPTION`, `POLICY` (an escalation
`Policy`), `answer(state) -> str` and `initial_state(text) -> dict`.

Refer to a graph as `graphs.smart_home`, `smart_home`, a dotted module path, or a file path
ending in `.py`.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import pkgutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from brickwork.errors import ConfigError

__all__ = ["GraphModule", "available_graphs", "load_graph"]


def available_graphs() -> list[str]:
    """Names of the example graphs that ship with brickwork."""
    package = sys.modules[__name__]
    return sorted(
        m.name
        for m in pkgutil.iter_modules(package.__path__)
        if not m.name.startswith("_") and m.name != "builder"
    )


@dataclass(frozen=True)
class GraphModule:
    """A loaded graph module and the conventions around it."""

    name: str
    module: ModuleType

    @property
    def description(self) -> str:
        """One line about the graph."""
        doc = getattr(self.module, "DESCRIPTION", None) or (self.module.__doc__ or "")
        return str(doc).strip().splitlines()[0] if doc else ""

    @property
    def policy(self) -> Any:
        """The graph's escalation policy, if it sets one."""
        return getattr(self.module, "POLICY", None)

    def build(self, **options: Any) -> Any:
        """A freshly compiled graph (`build(**options)`), or the module's `graph`."""
        build = getattr(self.module, "build", None)
        if callable(build):
            return build(**options)
        return self.module.graph

    def answer(self, state: dict[str, Any]) -> str:
        """The text answer of a finished run."""
        render = getattr(self.module, "answer", None)
        if callable(render):
            return str(render(state))
        return str(state.get("answer") or json.dumps(state.get("outputs", {}), default=str))

    def initial_state(
        self, text: str, messages: Sequence[Mapping[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The state a run starts from (`messages`: the conversation, for multi-turn graphs)."""
        make = getattr(self.module, "initial_state", None)
        if callable(make):
            return dict(make(text, messages))
        history = [dict(m) for m in messages or ()]
        return {"text": text, "messages": history, "outputs": {}, "escalations": []}

    def resources(self) -> dict[str, Any]:
        """Per-run resources the graph's nodes may use."""
        make = getattr(self.module, "resources", None)
        return dict(make()) if callable(make) else {}

    def mermaid(self) -> str:
        """The topology as a Mermaid flowchart."""
        graph = getattr(self.module, "graph", None) or self.build()
        return str(graph.get_graph().draw_mermaid())


def load_graph(ref: str) -> GraphModule:
    """Import a graph module by reference.

    Raises:
        ConfigError: nothing by that name, or the module defines neither `build` nor `graph`.
    """
    if not ref or not ref.strip():
        raise ConfigError("no graph given; name one of: " + ", ".join(available_graphs()))
    if ref.endswith(".py"):
        path = Path(ref).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"graph file {ref!r} does not exist")
        spec = importlib.util.spec_from_file_location(f"brickwork_graph_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot load graph file {ref!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        name = path.stem
    else:
        short = ref.removeprefix("brickwork.").removeprefix("graphs.")
        candidates = [f"brickwork.graphs.{short}", ref] if "." not in short else [ref]
        module = None
        for candidate in candidates:
            try:
                module = importlib.import_module(candidate)
                break
            except ModuleNotFoundError as exc:
                if exc.name is None or not candidate.startswith(exc.name):
                    raise
        if module is None:
            raise ConfigError(
                f"unknown graph {ref!r}; known: {', '.join(available_graphs())} "
                "(or give a module path or a .py file)"
            )
        name = short.rsplit(".", 1)[-1]
    assert module is not None
    if not callable(getattr(module, "build", None)) and getattr(module, "graph", None) is None:
        raise ConfigError(f"graph module {ref!r} defines neither build() nor graph")
    return GraphModule(str(getattr(module, "NAME", name)), module)
