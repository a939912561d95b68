"""`brickwork tune` for real: a short LoRA run, its manifest, vLLM serving it, merging, capture.

The training run is deliberately tiny (4 examples, rank 4, 4 steps, one thread: on a busy
2-core machine two torch threads are slower than one); it proves the pipeline, not the recipe.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from brickwork.agents.toolcall import ToolCallAgent
from brickwork.app import App
from brickwork.errors import TuneError
from brickwork.serving.models import MANIFEST_NAME, verify_model_folder
from brickwork.serving.pool import ModelPool
from brickwork.skills.examples import smart_home_skill
from brickwork.skills.loaders import load_skill
from brickwork.store import RunStore
from brickwork.tune.data import TuneDataset, build_dataset
from brickwork.tune.train import (
    ADAPTER_MANIFEST,
    MERGED_FROM,
    AdapterManifest,
    TrainConfig,
    base_identity,
    check_base,
    merge_adapter,
    train_adapter,
)
from tests._paths import SHARED_DATA

pytestmark = [pytest.mark.slow]

ADAPTER = "smart-home-tiny"
CONFIG = TrainConfig(rank=4, alpha=8, max_steps=4, warmup_steps=1, seed=7)


@dataclass(frozen=True)
class Trained:
    folder: Path
    manifest: AdapterManifest
    dataset: TuneDataset


@pytest.fixture(scope="module")
def trained(embedded_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A real adapter: 4 smart_home turns, 2 held out, 4 optimiser steps."""
    if not (SHARED_DATA / "smart_home" / "job_description.json").is_file():
        pytest.skip(f"{SHARED_DATA / 'smart_home'} is not available")
    skill = load_skill(SHARED_DATA / "smart_home")
    full = build_dataset(skill, seed=7)
    dataset = replace(full, train=full.train[:4], val=full.val[:2])
    folder = tmp_path_factory.mktemp("tune") / ADAPTER
    manifest = train_adapter(
        skill, dataset, folder, name=ADAPTER, config=CONFIG, progress=False, threads=1
    )
    return Trained(folder, manifest, dataset)


def test_training_writes_an_adapter_with_a_complete_manifest(
    trained: Trained, embedded_model: Path
) -> None:
    folder, manifest = trained.folder, trained.manifest
    for file in ("adapter_config.json", "adapter_model.safetensors", ADAPTER_MANIFEST):
        assert (folder / file).is_file(), file
    assert AdapterManifest.load(folder) == manifest
    assert manifest.name == ADAPTER and manifest.skill == "smart_home"
    assert (manifest.base_model, manifest.base_model_sha256) == base_identity(embedded_model)
    assert manifest.data_sha256 == trained.dataset.sha256
    assert manifest.config == CONFIG and manifest.counts == trained.dataset.counts
    assert manifest.metrics["steps"] == 4
    for key in ("train_loss", "train_loss_first", "val_loss", "val_loss_base"):
        assert math.isfinite(manifest.metrics[key]) and manifest.metrics[key] > 0, key
    assert set(manifest.versions) == {"torch", "peft", "transformers"}
    assert manifest.train_seconds > 0 and manifest.created_at > 0
    peft_config = json.loads((folder / "adapter_config.json").read_text())
    assert peft_config["r"] == 4 and peft_config["lora_alpha"] == 8
    assert set(peft_config["target_modules"]) == set(CONFIG.target_modules)
    assert not list(folder.parent.glob(".tmp-*"))  # written atomically


def test_an_existing_folder_and_an_empty_dataset_are_refused(
    trained: Trained, tmp_path: Path
) -> None:
    skill = smart_home_skill()
    with pytest.raises(TuneError, match="already exists"):
        train_adapter(skill, trained.dataset, trained.folder, name="again", progress=False)
    empty = replace(trained.dataset, train=())
    with pytest.raises(TuneError, match="no training examples"):
        train_adapter(skill, empty, tmp_path / "x", name="x", progress=False)
    with pytest.raises(TuneError, match="adapter name"):
        train_adapter(skill, trained.dataset, tmp_path / "y", name="a:b", progress=False)
    with pytest.raises(TuneError, match="rank"):
        TrainConfig(rank=0)
    with pytest.raises(TuneError, match="max_val_examples"):
        TrainConfig(max_val_examples=0)


def test_training_is_deterministic_for_a_seed(trained: Trained, tmp_path: Path) -> None:
    skill = smart_home_skill()
    one = replace(trained.dataset, train=trained.dataset.train[:1], val=())
    config = replace(CONFIG, max_steps=1)
    weights = []
    for run in ("a", "b"):
        train_adapter(
            skill, one, tmp_path / run, name=run, config=config, progress=False, threads=1
        )
        weights.append((tmp_path / run / "adapter_model.safetensors").read_bytes())
    assert weights[0] == weights[1]


def _other_base(embedded_model: Path, folder: Path) -> Path:
    """The embedded model's files (hard links) with another generation config: another base."""
    folder.mkdir()
    for path in embedded_model.iterdir():
        if path.name in (MANIFEST_NAME, "generation_config.json"):
            continue
        os.link(path, folder / path.name)
    config = json.loads((embedded_model / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**config, "temperature": 0.5}))
    return folder


def test_a_base_model_mismatch_is_a_clear_error(
    trained: Trained, embedded_model: Path, tmp_path: Path
) -> None:
    assert check_base(trained.folder, embedded_model) == trained.manifest
    other = _other_base(embedded_model, tmp_path / "other")
    with pytest.raises(TuneError, match=rf"{ADAPTER!r} was trained on base model"):
        check_base(trained.folder, other)
    with pytest.raises(TuneError, match="was trained on base model"):
        merge_adapter(trained.folder, tmp_path / "merged", base_model_dir=other)
    assert not (tmp_path / "merged").exists()
    with pytest.raises(TuneError, match="not an adapter made by"):
        check_base(embedded_model, embedded_model)


def test_merging_gives_a_verified_float32_folder_with_the_adapters_weights(
    trained: Trained, embedded_model: Path, tmp_path: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = merge_adapter(trained.folder, tmp_path / "merged")
    manifest = verify_model_folder(merged)
    assert manifest.dtype == "float32" and manifest.source_package == f"brickwork-adapter:{ADAPTER}"
    assert AdapterManifest.from_json((merged / MERGED_FROM).read_text()) == trained.manifest
    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    assert tokenizer.chat_template
    example = trained.dataset.val[0]
    prompt = tokenizer.apply_chat_template(
        [dict(m) for m in example.messages], add_generation_prompt=True, tokenize=False
    )
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        folded = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32)
        assert next(folded.parameters()).dtype == torch.float32
        merged_logits = folded(input_ids=ids).logits
        del folded
        base = AutoModelForCausalLM.from_pretrained(str(embedded_model), dtype=torch.float32)
        base_logits = base(input_ids=ids).logits
        adapted = PeftModel.from_pretrained(base, str(trained.folder))
        adapter_logits = adapted(input_ids=ids).logits
    assert torch.allclose(merged_logits, adapter_logits, atol=1e-3)
    assert not torch.allclose(merged_logits, base_logits, atol=1e-3)  # training changed it


# Serving a trained adapter under its own name (loaded into the running server): see
# test_tune_serving.py::test_a_short_training_run_is_served_under_its_own_name.


# -- escalation capture from runs on the real model -----------------------------------------------

REQUESTS = ("Turn on the kitchen lights", "Lock the front door", "Set the thermostat to 70")


def _expected(store: RunStore, skill: Any) -> set[tuple[str, str]]:
    """(prompt JSON, call JSON) of every toolcall node the frontier fixed, read from the events."""
    agent = ToolCallAgent(skill, few_shot=0)
    expected = set()
    for summary in store.runs():
        stored = store.run(summary.run_id)
        assert stored is not None
        for event in stored[1]:
            output = event.get("output")
            if (
                event["kind"] == "node_finished"
                and event["node"] == "supervisor"
                and event["ok"]
                and isinstance(output, dict)
                and "call" in output
            ):
                call = json.dumps(output["call"])
                expected.add((json.dumps(agent.messages(summary.text)), call))
    return expected


@pytest.mark.vllm
async def test_escalations_of_real_runs_become_examples(
    slm_pool: ModelPool, tmp_path: Path
) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    app = App.from_graph("graphs.smart_home", pool=slm_pool, store=store, checkpoints=None)
    try:
        results = [await app.ainvoke(text, mode="frontier") for text in REQUESTS]
        results.append(await app.ainvoke("Turn off the bedroom lights"))
    finally:
        await app.aclose()
    assert sum(bool(r.escalations) for r in results) >= len(REQUESTS)
    skill = smart_home_skill()
    expected = _expected(store, skill)
    assert expected, "the stand-in frontier model fixed no toolcall node: nothing to capture"
    data = build_dataset(
        skill, store=store, from_escalations=True, include_skill_examples=False, val_fraction=0
    )
    got = {(json.dumps(list(e.messages)), e.target) for e in data.train}
    assert got == expected
    assert data.counts["escalation"] == len(expected)
    assert all(e.source.startswith("escalation:") and e.source.endswith("/toolcall")
               for e in data.train)  # fmt: skip
