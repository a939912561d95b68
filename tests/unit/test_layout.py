"""The package's layout: a small flat core, one subpackage per capability, no import circles."""

from __future__ import annotations

import ast
import importlib
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name (folders mapped by package-dir)."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    found: dict[str, Path] = {}
    for package, folder in mapping.items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            # A subfolder mapped on its own (brickwork.agents -> agents/) wins over brickwork/.
            found.setdefault(name, path)
    return found


def _module_level_imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The package's modules `name` imports when it is imported (not inside functions or
    `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if "TYPE_CHECKING" not in test:
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    module = f"{anchor}.{module}" if module else anchor
                targets.add(module)
                targets.update(f"{module}.{alias.name}" for alias in node.names)

    visit(tree.body)
    return {t for t in targets if t in known and t != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return result


def test_no_import_circle_inside_the_package() -> None:
    modules = _modules()
    known = set(modules)
    graph = {name: _module_level_imports(path, name, known) for name, path in modules.items()}
    # A package's __init__ re-exports its own submodules; that edge is how packages work,
    # not a circle between capabilities, so only edges out of the package count for it.
    for name in graph:
        graph[name] = {
            t for t in graph[name] if not (t.startswith(name + ".") or name.startswith(t + "."))
        }
    assert _cycles(graph) == []


def test_the_core_stays_small_and_capabilities_have_their_own_folder() -> None:
    core = sorted(p.name for p in (ROOT / "brickwork").glob("*.py"))
    assert len(core) <= 15, core
    for capability in ("store", "cost", "tune", "evals", "http"):
        package = ROOT / "brickwork" / capability
        assert (package / "__init__.py").is_file(), capability
        assert not list((ROOT / "brickwork").glob(f"_{capability}*.py"))


@pytest.mark.parametrize("capability", ["store", "cost", "tune", "evals", "http"])
def test_each_capability_exports_a_curated_api(capability: str) -> None:
    module = importlib.import_module(f"brickwork.{capability}")
    assert module.__doc__ and len(module.__doc__.split()) >= 20
    for name in module.__all__:
        assert hasattr(module, name), f"brickwork.{capability}.{name}"
