"""The shipped specialist's recipe, re-run short: same data, a real (2-step) training run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from brickwork.tune import adapters
from brickwork.tune.recipe import RECIPE_FILE, RECIPES, build, shipped_adapters_dir
from brickwork.tune.train import base_identity

pytestmark = pytest.mark.slow


def test_a_short_rerun_of_the_recipe_reproduces_the_shipped_manifest(
    embedded_model: Path, tmp_path: Path
) -> None:
    recipe = RECIPES["smart_home"]
    # Two steps, the validation loss on four examples (scoring all 43 twice took 80 % of the
    # test's time), on every core.
    out = build(recipe, tmp_path / recipe.adapter, max_steps=2, max_val_examples=4, progress=False)
    made = json.loads((out / RECIPE_FILE).read_text())
    shipped_folder = shipped_adapters_dir() / recipe.adapter
    shipped = json.loads((shipped_folder / RECIPE_FILE).read_text())
    # The same recipe on the same base gives the same data and names the same base.
    assert made["data_sha256"] == shipped["data_sha256"]
    assert made["counts"] == shipped["counts"]
    assert (
        made["base_model_sha256"]
        == shipped["base_model_sha256"]
        == base_identity(embedded_model)[1]
    )
    assert made["max_steps"] == 2 and shipped["max_steps"] is None
    assert "no reference data" in shipped["data"]
    # The folder is a loadable adapter for the skill, small, with float16 weights.
    info = adapters.AdapterInfo.read(out)
    assert info.skill == "smart_home" and info.rank == recipe.rank
    trained = json.loads((out / "brickwork-adapter.json").read_text())
    assert trained["metrics"]["val_examples"] == 4 and trained["config"]["max_val_examples"] == 4
    assert not (out / "README.md").exists()
    weights = out / "adapter_model.safetensors"
    assert weights.stat().st_size < 4 * 1024 * 1024
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as tensors:
        assert {str(tensors.get_tensor(k).dtype) for k in tensors.keys()} == {"torch.float16"}  # noqa: SIM118
    assert [a.name for a in adapters.shipped_adapters()] == [recipe.adapter]
