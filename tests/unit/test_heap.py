"""Freezing the start-up heap once per process (`App(gc_freeze=...)`, `freeze_startup_heap`)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from brickwork import app as app_module
from brickwork.app import App
from brickwork.testing import FunctionModel

GRAPH = str(Path(__file__).resolve().parents[1] / "fixtures" / "two_step_graph.py")


def _in_a_new_process(code: str, **env: str) -> str:
    """Run `code` in a fresh interpreter (the freeze is per process) and return its output."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


FREEZE_TWICE = """
    import gc
    from brickwork import app
    print(app.freeze_startup_heap(), gc.get_freeze_count() > 0,
          app.freeze_startup_heap(), app._heap_frozen)
"""


def test_the_heap_is_frozen_once_per_process() -> None:
    assert _in_a_new_process(FREEZE_TWICE, BRICKWORK_GC_FREEZE="") == "True True False True"


def test_the_frozen_heap_is_released_at_exit() -> None:
    # Extensions that count their live objects at shutdown (triton's nanobind bindings, which
    # vLLM imports) reported the frozen ones as leaks until the freeze was undone at exit.
    pytest.importorskip("triton")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import triton\nfrom brickwork import app\napp.freeze_startup_heap()",
        ],
        env={**os.environ, "BRICKWORK_GC_FREEZE": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "leaked" not in done.stderr, done.stderr[:500]


@pytest.mark.parametrize("value", ["0", "false", "off"])
def test_the_environment_turns_the_freeze_off(value: str) -> None:
    assert _in_a_new_process(FREEZE_TWICE, BRICKWORK_GC_FREEZE=value) == "False False False True"


async def test_an_app_freezes_after_its_first_run_unless_told_not_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(app_module, "_heap_frozen", False)
    monkeypatch.setattr(app_module, "freeze_startup_heap", lambda: calls.append("froze") or True)
    async with FunctionModel(lambda body: '{"n": 7}').pool() as pool:
        kept = App.from_graph(GRAPH, pool=pool, checkpoints=None, store=None, gc_freeze=False)
        assert (await kept.ainvoke("seven")).ok
        await kept.aclose()
        assert calls == []
        app = App.from_graph(GRAPH, pool=pool, checkpoints=None, store=None)
        assert (await app.ainvoke("seven")).ok
        await app.aclose()
    assert calls == ["froze"]
