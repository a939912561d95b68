"""The public API is what __all__ says, and importing brickwork stays light."""

from __future__ import annotations

import subprocess
import sys

import brickwork


def test_all_is_honest() -> None:
    for name in brickwork.__all__:
        assert getattr(brickwork, name) is not None, name
    public = {n for n in dir(brickwork) if not n.startswith("_")}
    assert public <= set(brickwork.__all__) | {"errors", "annotations", "importlib"}


def test_import_does_not_load_heavy_dependencies() -> None:
    code = (
        "import sys, brickwork, brickwork.serving.pool, brickwork.serving.launcher; "
        "heavy = [m for m in ('vllm', 'torch', 'textual', 'openai', 'transformers') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
