"""Manifest checks on model folders (the real conversion is in tests/integration)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from brickwork.errors import ModelFolderError
from brickwork.serving.models import MANIFEST_NAME, Manifest, verify_model_folder


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "m"
    folder.mkdir()
    files = {}
    for name, body in {"config.json": b"{}", "model.safetensors": b"weights"}.items():
        (folder / name).write_bytes(body)
        files[name] = hashlib.sha256(body).hexdigest()
    manifest = Manifest("m", "pkg", "1.0", "abc", "float32", files, "2026-01-01T00:00:00+00:00")
    (folder / MANIFEST_NAME).write_text(manifest.to_json())
    return folder


def test_valid_folder_passes(tmp_path: Path) -> None:
    manifest = verify_model_folder(_folder(tmp_path))
    assert manifest.source_package == "pkg" and set(manifest.files) == {
        "config.json",
        "model.safetensors",
    }


def test_corrupt_file_is_detected(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "model.safetensors").write_bytes(b"weightz")
    with pytest.raises(ModelFolderError, match="model.safetensors' is corrupt"):
        verify_model_folder(folder)


def test_half_written_folder_is_detected(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / MANIFEST_NAME).unlink()
    with pytest.raises(ModelFolderError, match="half-written"):
        verify_model_folder(folder)


def test_missing_file_and_malformed_manifest(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "config.json").unlink()
    with pytest.raises(ModelFolderError, match="missing 'config.json'"):
        verify_model_folder(folder)
    (folder / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ModelFolderError, match="malformed"):
        verify_model_folder(folder)
    with pytest.raises(ModelFolderError, match="does not exist"):
        verify_model_folder(tmp_path / "nope")
