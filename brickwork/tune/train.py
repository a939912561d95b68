"""LoRA training for `brickwork tune`: a `TuneDataset` -> an adapter folder vLLM serves.

The recipe (measured in ../shared/notes/serving-on-cpu.md): `peft` LoRA on every linear
projection, plain PyTorch (AdamW, warm-up then linear decay, batch 1), float32 on the CPU (the
same code takes a GPU when there is one), loss on the target tokens only, each example rendered
with the base tokenizer's chat template exactly as vLLM renders the prompt. Seeded, so the same
data and config give the same adapter.

An adapter folder holds peft's `adapter_config.json` + `adapter_model.safetensors` and
`brickwork-adapter.json` (`AdapterManifest`): the base model and its identity hash, the data
hash, the hyper-parameters, losses and library versions. `check_base` refuses an adapter whose
base differs; `merge_adapter` folds one into a dedicated float32 copy of the weights.

```python
manifest = train_adapter(skill, dataset, Path("adapters/smart_home-v1"), name="smart_home-v1")
manifest.metrics   # {"train_loss": 0.05, "val_loss": 0.09, "val_loss_base": 2.1}
```
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from brickwork.errors import MissingDependencyError, ModelFolderError, TuneError
from brickwork.serving.models import (
    MANIFEST_NAME,
    Manifest,
    ensure_embedded_model,
    verify_model_folder,
)
from brickwork.skills.skill import Skill
from brickwork.tune.data import TrainExample, TuneDataset

__all__ = [
    "ADAPTER_MANIFEST",
    "MERGED_FROM",
    "AdapterManifest",
    "TrainConfig",
    "base_identity",
    "check_base",
    "merge_adapter",
    "train_adapter",
]

ADAPTER_MANIFEST = "brickwork-adapter.json"
"""The manifest file inside an adapter folder."""
MERGED_FROM = "brickwork-merged-from.json"
"""In a merged model folder: the manifest of the adapter it was merged from."""
_FORMAT = 1
_IGNORE = -100  # label of prompt tokens: no loss
_DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one LoRA training run (defaults: the measured CPU recipe).

    Attributes:
        epochs: Passes over the training set.
        rank: LoRA rank r.
        alpha: LoRA alpha (the update is scaled by alpha / r).
        dropout: LoRA dropout.
        learning_rate: Peak AdamW learning rate.
        warmup_steps: Steps of linear warm-up before the linear decay to zero.
        seed: Seeds the shuffling, the adapter's initialisation and dropout.
        max_steps: Stop after this many optimiser steps (short runs, tests).
        target_modules: The linear layers that get adapters.
        max_val_examples: Score the validation loss (before and after) on the first this many
            validation examples only (short runs, tests: on 2 CPU cores the 43 validation
            examples of the shipped recipe take longer to score twice than 2 steps to train).
    """

    epochs: int = 3
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    learning_rate: float = 4e-4
    warmup_steps: int = 20
    seed: int = 0
    max_steps: int | None = None
    target_modules: tuple[str, ...] = _DEFAULT_TARGETS
    max_val_examples: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs={self.epochs!r} must be 1 or more")
        if self.rank < 1 or self.alpha < 1:
            problems.append(f"rank={self.rank!r} and alpha={self.alpha!r} must be positive")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout={self.dropout!r} must be in [0, 1)")
        if not self.learning_rate > 0 or self.warmup_steps < 0:
            problems.append(
                f"learning_rate={self.learning_rate!r} must be positive and "
                f"warmup_steps={self.warmup_steps!r} 0 or more"
            )
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"max_steps={self.max_steps!r} must be 1 or more (or None)")
        if self.max_val_examples is not None and self.max_val_examples < 1:
            problems.append(
                f"max_val_examples={self.max_val_examples!r} must be 1 or more (or None)"
            )
        if not self.target_modules:
            problems.append("target_modules is empty; name the linear layers to adapt")
        if problems:
            raise TuneError("bad training config: " + "; ".join(problems))
        object.__setattr__(self, "target_modules", tuple(self.target_modules))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        body = dataclasses.asdict(self)
        body["target_modules"] = list(self.target_modules)
        return body

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_dict`."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in body.items() if k in known}
        if "target_modules" in values:
            values["target_modules"] = tuple(values["target_modules"])
        return cls(**values)


@dataclass(frozen=True)
class AdapterManifest:
    """What an adapter was trained from and how well (`brickwork-adapter.json`).

    Attributes:
        name: The adapter's name (what vLLM serves it as).
        skill: The skill it was trained for.
        base_model: The base model's name (its brickwork manifest name, or folder name).
        base_model_sha256: The base model's identity (`base_identity`).
        data_sha256: `TuneDataset.sha256` of the training data.
        config: The hyper-parameters.
        counts: `TuneDataset.counts`.
        metrics: "train_loss", "val_loss", "val_loss_base" (the base model's), plus any
            evaluation metrics added later.
        train_seconds: Wall time of the training loop.
        created_at: Unix time the adapter was written.
        versions: torch, peft and transformers versions.
    """

    name: str
    skill: str
    base_model: str
    base_model_sha256: str
    data_sha256: str
    config: TrainConfig
    counts: dict[str, int]
    metrics: dict[str, float]
    train_seconds: float
    created_at: float
    versions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialise (the config as a dict)."""
        body = {"format": _FORMAT, **dataclasses.asdict(self), "config": self.config.to_dict()}
        return json.dumps(body, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AdapterManifest:
        """Parse a manifest.

        Raises:
            TuneError: The text is not a manifest of a known format.
        """
        try:
            body = json.loads(text)
            if body.get("format") != _FORMAT:
                raise ValueError(f"unknown format {body.get('format')!r}")
            return cls(
                name=str(body["name"]),
                skill=str(body["skill"]),
                base_model=str(body["base_model"]),
                base_model_sha256=str(body["base_model_sha256"]),
                data_sha256=str(body["data_sha256"]),
                config=TrainConfig.from_dict(dict(body["config"])),
                counts={str(k): int(v) for k, v in dict(body["counts"]).items()},
                metrics={str(k): float(v) for k, v in dict(body["metrics"]).items()},
                train_seconds=float(body["train_seconds"]),
                created_at=float(body["created_at"]),
                versions={str(k): str(v) for k, v in dict(body.get("versions", {})).items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise TuneError(f"malformed adapter manifest: {exc}") from exc

    def save(self, folder: Path) -> Path:
        """Write `brickwork-adapter.json` into `folder`; returns its path."""
        path = Path(folder) / ADAPTER_MANIFEST
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: Path) -> AdapterManifest:
        """Read the manifest of an adapter folder.

        Raises:
            TuneError: The folder has no manifest, or it is malformed.
        """
        path = Path(folder) / ADAPTER_MANIFEST
        if not path.is_file():
            raise TuneError(
                f"{str(folder)!r} has no {ADAPTER_MANIFEST}: it is not an adapter made by "
                "`brickwork tune`"
            )
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except TuneError as exc:
            raise TuneError(f"{str(path)!r}: {exc}") from exc


# -- identity of a base model -----------------------------------------------------------------


def base_identity(folder: Path) -> tuple[str, str]:
    """(name, sha256) identifying a base model folder's weights, config and tokenizer.

    A brickwork model folder is verified against its manifest first and identified by its
    files' hashes as listed there (no re-hashing beyond the verification); another Hugging
    Face folder is identified by hashing its files.

    Raises:
        TuneError: The folder is missing, or fails its manifest check.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise TuneError(f"base model folder {str(folder)!r} does not exist")
    if (folder / MANIFEST_NAME).is_file():
        try:
            manifest = verify_model_folder(folder)
        except ModelFolderError as exc:
            raise TuneError(f"the base model cannot be used: {exc}") from exc
        files = dict(manifest.files)
        name = manifest.name
    else:
        files = {
            str(p.relative_to(folder)): _sha256(p)
            for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".")
        }
        if "config.json" not in files:
            raise TuneError(f"{str(folder)!r} is not a model folder: it has no config.json")
        name = folder.name
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return name, digest


def check_base(adapter_dir: Path, base_model_dir: Path) -> AdapterManifest:
    """The adapter's manifest, after checking it was trained on exactly this base model.

    Raises:
        TuneError: The adapter has no manifest, or its base differs from `base_model_dir`.
    """
    manifest = AdapterManifest.load(adapter_dir)
    name, digest = base_identity(base_model_dir)
    if digest != manifest.base_model_sha256:
        raise TuneError(
            f"adapter {manifest.name!r} was trained on base model {manifest.base_model!r} "
            f"(sha256 {manifest.base_model_sha256[:12]}...), but {str(base_model_dir)!r} is "
            f"{name!r} (sha256 {digest[:12]}...); serve it on its own base or train it again"
        )
    return manifest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- training ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Encoded:
    input_ids: list[int]
    labels: list[int]


def train_adapter(
    skill: Skill,
    dataset: TuneDataset,
    out_dir: Path,
    *,
    name: str,
    base_model_dir: Path | None = None,
    config: TrainConfig | None = None,
    progress: bool = True,
    overwrite: bool = False,
    threads: int | None = None,
) -> AdapterManifest:
    """Train a LoRA adapter for `skill` on `dataset` and write it to `out_dir`.

    Args:
        skill: The skill (named in the manifest).
        dataset: The training and validation examples.
        out_dir: The adapter folder to create (written to a temporary folder, then renamed).
        name: The adapter's name.
        base_model_dir: The base model folder (default: the embedded model).
        config: Hyper-parameters (default: `TrainConfig()`).
        progress: Show a progress bar with the loss on stderr.
        overwrite: Replace an existing `out_dir`.
        threads: CPU threads for torch (default: every core this process may use). On a
            busy machine 1 is much faster than 2 competing ones: torch's threads wait for
            each other.

    Returns:
        The manifest written into the folder.

    Raises:
        TuneError: No training examples, a bad name, an existing `out_dir`, or a base model
            that fails its check.
        MissingDependencyError: torch, transformers or peft is not installed.
    """
    config = config or TrainConfig()
    _check_name(name)
    if threads is not None and threads < 1:
        raise TuneError(f"threads={threads!r} must be 1 or more (or None for every core)")
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise TuneError(
            f"{str(out_dir)!r} already exists; choose another folder or pass overwrite=True"
        )
    if not dataset.train:
        raise TuneError("the dataset has no training examples; add data before training")
    torch, transformers, peft = _import_training()
    base = Path(base_model_dir) if base_model_dir is not None else ensure_embedded_model(quiet=True)
    base_name, base_sha = base_identity(base)

    _seed_everything(torch, config.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(threads or _cpu_threads())
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(base))
    train = [_encode(tokenizer, e) for e in dataset.train]
    val = [_encode(tokenizer, e) for e in dataset.val[: config.max_val_examples]]
    model = transformers.AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    model.to(device)
    val_loss_base = _mean_loss(torch, model, val, device) if val else math.nan
    lora = peft.LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
    )
    try:
        peft_model = peft.get_peft_model(model, lora)
    except ValueError as exc:
        raise TuneError(f"cannot put LoRA adapters on {base_name!r}: {exc}") from exc

    started = time.perf_counter()
    losses = _train_loop(torch, peft_model, train, config, device, progress=progress)
    train_seconds = time.perf_counter() - started
    val_loss = _mean_loss(torch, peft_model, val, device) if val else math.nan
    last_epoch = losses[-min(len(train), len(losses)) :]
    metrics = {
        "train_loss": sum(last_epoch) / len(last_epoch),
        "train_loss_first": losses[0],
        "val_loss": val_loss,
        "val_loss_base": val_loss_base,
        "steps": float(len(losses)),
        "val_examples": float(len(val)),
    }
    metrics = {key: value for key, value in metrics.items() if not math.isnan(value)}
    manifest = AdapterManifest(
        name=name,
        skill=skill.name,
        base_model=base_name,
        base_model_sha256=base_sha,
        data_sha256=dataset.sha256,
        config=config,
        counts=dict(dataset.counts),
        metrics=metrics,
        train_seconds=round(train_seconds, 3),
        created_at=time.time(),
        versions=_versions(),
    )
    with _atomic_folder(out_dir, overwrite=overwrite) as tmp:
        peft_model.save_pretrained(str(tmp))
        manifest.save(tmp)
    return manifest


def _train_loop(
    torch: Any,
    model: Any,
    train: Sequence[_Encoded],
    config: TrainConfig,
    device: str,
    *,
    progress: bool,
) -> list[float]:
    """AdamW, batch 1, linear warm-up then linear decay; returns the loss of every step."""
    total = config.epochs * len(train)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    warmup = min(config.warmup_steps, max(total - 1, 0))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    order = random.Random(config.seed)
    losses: list[float] = []
    model.train()
    with _progress_bar(progress, total) as advance:
        for epoch in range(config.epochs):
            indices = list(range(len(train)))
            order.shuffle(indices)
            for index in indices:
                if len(losses) >= total:
                    break
                loss = _loss(torch, model, train[index], device)
                loss.backward()
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                advance(losses[-1], epoch + 1)
    model.eval()
    return losses


def _loss(torch: Any, model: Any, example: _Encoded, device: str) -> Any:
    ids = torch.tensor([example.input_ids], device=device)
    labels = torch.tensor([example.labels], device=device)
    return model(input_ids=ids, labels=labels).loss


def _mean_loss(torch: Any, model: Any, examples: Sequence[_Encoded], device: str) -> float:
    """Mean per-token loss over the examples' target tokens."""
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for example in examples:
            count = sum(1 for label in example.labels[1:] if label != _IGNORE)
            total += float(_loss(torch, model, example, device)) * count
            tokens += count
    return total / tokens if tokens else math.nan


def _encode(tokenizer: Any, example: TrainExample) -> _Encoded:
    """Prompt tokens (no loss) then target tokens, with the base tokenizer's chat template.

    The prompt is rendered as vLLM renders it (`add_generation_prompt=True`); the target is
    what the template puts after it for the assistant's answer (the text and the end-of-turn
    tokens), so the model learns to stop.
    """
    messages = [dict(m) for m in example.messages]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": example.target}], tokenize=False
    )
    if isinstance(full, str) and isinstance(prompt, str) and full.startswith(prompt):
        answer = full[len(prompt) :]
    else:  # a template that renders the answer's turn differently: text + end of sequence
        answer = f"{example.target}{tokenizer.eos_token or ''}"
    prompt_ids = tokenizer(str(prompt), add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    return _Encoded(
        input_ids=[*prompt_ids, *answer_ids],
        labels=[_IGNORE] * len(prompt_ids) + list(answer_ids),
    )


@contextmanager
def _progress_bar(show: bool, total: int) -> Iterator[Any]:
    """Yields `advance(loss, epoch)`; a rich progress bar with the loss when `show`."""
    if not show:
        yield lambda loss, epoch: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold]training[/] epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f} (avg {task.fields[avg]:.4f})"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    recent: list[float] = []
    console = Console(stderr=True)
    if not console.is_terminal:  # a log file or a pipe: a plain line every 5 % instead
        yield _progress_lines(console, total)
        return
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("train", total=total, epoch=1, loss=math.nan, avg=math.nan)

        def advance(loss: float, epoch: int) -> None:
            recent.append(loss)
            del recent[:-20]
            bar.update(task, advance=1, epoch=epoch, loss=loss, avg=sum(recent) / len(recent))

        yield advance


def _progress_lines(console: Any, total: int) -> Callable[[float, int], None]:
    """`advance(loss, epoch)` that prints one plain line every 5 % of the steps, and the last."""
    every = max(1, total // 20)
    recent: list[float] = []
    started = time.perf_counter()
    done = 0

    def advance(loss: float, epoch: int) -> None:
        nonlocal done
        done += 1
        recent.append(loss)
        del recent[:-20]
        if done % every and done != total:
            return
        elapsed = time.perf_counter() - started
        left = elapsed / done * (total - done)
        console.print(
            f"training epoch {epoch} step {done}/{total} loss {loss:.4f} "
            f"(avg {sum(recent) / len(recent):.4f}) {elapsed:.0f} s elapsed, ~{left:.0f} s left",
            highlight=False,
        )

    return advance


# -- merging ----------------------------------------------------------------------------------


def merge_adapter(adapter_dir: Path, out_dir: Path, *, base_model_dir: Path | None = None) -> Path:
    """Fold an adapter into a dedicated float32 copy of its base model's weights.

    The result is a Hugging Face model folder (weights, config, tokenizer and chat template)
    that vLLM serves like the base, with a brickwork model manifest (so `verify_model_folder`
    checks it) and `brickwork-merged-from.json`, the adapter's manifest.

    Args:
        adapter_dir: The adapter folder.
        out_dir: The model folder to create (must not exist).
        base_model_dir: The adapter's base model (default: the embedded model).

    Returns:
        `out_dir`.

    Raises:
        TuneError: The adapter has no manifest, its base differs, or `out_dir` exists.
    """
    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    if out_dir.exists():
        raise TuneError(f"{str(out_dir)!r} already exists; choose another folder for the merge")
    base = Path(base_model_dir) if base_model_dir is not None else ensure_embedded_model(quiet=True)
    manifest = check_base(adapter_dir, base)
    torch, transformers, peft = _import_training()
    model = transformers.AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    merged = peft.PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(base))
    with _atomic_folder(out_dir, overwrite=False) as tmp:
        merged.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / MERGED_FROM).write_text(manifest.to_json(), encoding="utf-8")
        files = {str(p.relative_to(tmp)): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        weights = adapter_dir / "adapter_model.safetensors"
        model_manifest = Manifest(
            name=f"{manifest.base_model}+{manifest.name}",
            source_package=f"brickwork-adapter:{manifest.name}",
            source_version=manifest.data_sha256[:12],
            source_sha256=_sha256(weights) if weights.is_file() else manifest.data_sha256,
            dtype="float32",
            files=files,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        (tmp / MANIFEST_NAME).write_text(model_manifest.to_json(), encoding="utf-8")
    return out_dir


def merged_is_current(adapter_dir: Path, merged_dir: Path) -> bool:
    """True when `merged_dir` was merged from the adapter's current weights.

    A retrained adapter of the same name (new weights) makes an earlier merge stale; so does a
    merge whose manifest is missing or unreadable.
    """
    try:
        manifest = Manifest.from_json((merged_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError, KeyError):
        return False
    weights = Path(adapter_dir) / "adapter_model.safetensors"
    return weights.is_file() and manifest.source_sha256 == _sha256(weights)


# -- helpers ----------------------------------------------------------------------------------


def _check_name(name: str) -> None:
    if not name or ":" in name or "/" in name or name != name.strip():
        raise TuneError(
            f"adapter name {name!r} must be non-empty, without ':', '/' or surrounding spaces"
        )


@contextmanager
def _atomic_folder(target: Path, *, overwrite: bool) -> Iterator[Path]:
    """A temporary folder next to `target`, renamed into place when the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if target.exists() and overwrite:
            trash = target.parent / f".trash-{target.name}-{uuid.uuid4().hex[:8]}"
            target.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _import_training() -> tuple[Any, Any, Any]:
    try:
        import peft
        import torch
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(
            exc.name or "peft", "convert", "training LoRA adapters"
        ) from exc
    return torch, transformers, peft


def _seed_everything(torch: Any, seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def _cpu_threads() -> int:
    """Every core this process may use (torch defaults to physical cores only)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _versions() -> dict[str, str]:
    found = {}
    for package in ("torch", "peft", "transformers"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "unknown"
    return found
