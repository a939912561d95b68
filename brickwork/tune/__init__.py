"""The distillation flywheel: training data, LoRA training, the adapter registry, `brickwork tune`.

This package owns how a skill's specialist is made: `data` builds training sets with the
agent's own prompts and contract-checked targets (skill examples, files, escalations the top
tier fixed, validated synthetic examples); `train` trains a peft LoRA and writes it with its
manifest, and merges adapters into full weights; `adapters` is the registry of adapters and the
skill -> adapter bindings (with rollback); `commands` is `brickwork tune` / `brickwork skill`
(train, serve, evaluate base vs adapter, promote only past a margin). Torch and peft load only
when training starts.
"""

from __future__ import annotations

from brickwork.tune import adapters
from brickwork.tune.adapters import (
    AdapterInfo,
    SkillBinding,
    bind,
    binding_for,
    get_adapter,
    list_adapters,
    load_bindings,
    rollback,
)
from brickwork.tune.commands import (
    add_skill_arguments,
    add_tune_arguments,
    evaluate_split,
    promotion_gate,
    skill_main,
    tune_main,
)
from brickwork.tune.data import TrainExample, TuneDataset, build_dataset
from brickwork.tune.train import AdapterManifest, TrainConfig, merge_adapter, train_adapter

__all__ = [
    "AdapterInfo",
    "AdapterManifest",
    "SkillBinding",
    "TrainConfig",
    "TrainExample",
    "TuneDataset",
    "adapters",
    "add_skill_arguments",
    "add_tune_arguments",
    "bind",
    "binding_for",
    "build_dataset",
    "evaluate_split",
    "get_adapter",
    "list_adapters",
    "load_bindings",
    "merge_adapter",
    "promotion_gate",
    "rollback",
    "skill_main",
    "train_adapter",
    "tune_main",
]
