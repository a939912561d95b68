"""The recipe of the shipped specialists: templated data -> LoRA -> a small adapter in the repo.

`python -m brickwork.tune.recipe smart_home` rebuilds `skills/adapters/smart_home-specialist/`
from the project's own data only: the skill's examples plus templated synthetic examples
(`brickwork.tune.synthetic`). The folder holds the adapter (weights stored as float16 to keep
it a few MB; vLLM casts them to the model's dtype), its training manifest and
`brickwork-recipe.json`: the base model's hash, the data's hash and the command that
reproduced it. `--max-steps K` makes a short run (what the test re-runs).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from brickwork.errors import TuneError

__all__ = ["RECIPES", "RECIPE_FILE", "Recipe", "build", "main", "shipped_adapters_dir"]

RECIPE_FILE = "brickwork-recipe.json"


@dataclass(frozen=True)
class Recipe:
    """How one shipped adapter is made.

    Attributes:
        skill: The skill name (`brickwork.skills.examples`).
        adapter: The adapter's name (what vLLM serves it as).
        synthetic: Templated examples to generate.
        rank: LoRA rank (alpha = 2 x rank).
        epochs: Passes over the data.
        seed: Seed of the templates, the split and the training.
        target_modules: The projections that get adapters (fewer keeps the folder small).
    """

    skill: str
    adapter: str
    synthetic: int = 200
    rank: int = 8
    epochs: int = 2
    seed: int = 0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


RECIPES: dict[str, Recipe] = {
    "smart_home": Recipe(skill="smart_home", adapter="smart_home-specialist"),
}


def shipped_adapters_dir() -> Path:
    """Where the shipped adapters live (`skills/adapters/`, installed as package data)."""
    from brickwork import skills

    return Path(skills.__file__).resolve().parent / "adapters"


def build(
    recipe: Recipe,
    out_dir: Path,
    *,
    max_steps: int | None = None,
    max_val_examples: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    command: str = "",
) -> Path:
    """Generate the data, train the adapter and write the shipped folder `out_dir`.

    Raises:
        TuneError: An unknown skill, or training failed.
    """
    from brickwork.skills import examples as skill_examples
    from brickwork.tune.data import build_dataset
    from brickwork.tune.synthetic import smart_home_examples, write_examples
    from brickwork.tune.train import TrainConfig, train_adapter

    factory = getattr(skill_examples, f"{recipe.skill}_skill", None)
    if factory is None:
        raise TuneError(f"no skill {recipe.skill!r} in brickwork.skills.examples")
    skill = factory()
    with tempfile.TemporaryDirectory(prefix="brickwork-recipe-") as tmp:
        data = write_examples(
            smart_home_examples(recipe.synthetic, seed=recipe.seed), Path(tmp) / "synthetic.jsonl"
        )
        dataset = build_dataset(skill, files=[data], seed=recipe.seed)
        config = TrainConfig(
            epochs=recipe.epochs,
            rank=recipe.rank,
            alpha=2 * recipe.rank,
            seed=recipe.seed,
            max_steps=max_steps,
            max_val_examples=max_val_examples,
            target_modules=recipe.target_modules,
        )
        trained = Path(tmp) / recipe.adapter
        manifest = train_adapter(
            skill,
            dataset,
            trained,
            name=recipe.adapter,
            config=config,
            progress=progress,
            threads=threads,
        )
        _to_float16(trained)
        staging = out_dir.with_name(out_dir.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(trained, staging)
        (staging / "README.md").unlink(missing_ok=True)  # peft's generic model card
        (staging / RECIPE_FILE).write_text(
            json.dumps(
                {
                    "skill": recipe.skill,
                    "adapter": recipe.adapter,
                    "base_model": manifest.base_model,
                    "base_model_sha256": manifest.base_model_sha256,
                    "data_sha256": manifest.data_sha256,
                    "data": "skill examples + templated synthetic examples "
                    f"(brickwork.tune.synthetic, n={recipe.synthetic}, seed={recipe.seed}); "
                    "no reference data",
                    "counts": manifest.counts,
                    "command": command or f"python -m brickwork.tune.recipe {recipe.skill}",
                    "max_steps": max_steps,
                },
                indent=2,
                sort_keys=True,
            )
            + "\n"
        )
        shutil.rmtree(out_dir, ignore_errors=True)
        staging.rename(out_dir)
    return out_dir


def _to_float16(folder: Path) -> None:
    """Store the adapter's weights as float16 (half the bytes; served in the model's dtype)."""
    import torch
    from safetensors.torch import load_file, save_file

    weights = folder / "adapter_model.safetensors"
    tensors = {name: t.to(torch.float16).contiguous() for name, t in load_file(weights).items()}
    save_file(tensors, str(weights), metadata={"format": "pt"})


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m brickwork.tune.recipe SKILL [--out DIR] [--max-steps K] [--threads N]`."""
    parser = argparse.ArgumentParser(prog="python -m brickwork.tune.recipe", description=__doc__)
    parser.add_argument("skill", choices=sorted(RECIPES))
    parser.add_argument("--out", type=Path, help="folder to write (default: skills/adapters/)")
    parser.add_argument("--max-steps", type=int, help="stop after K training steps")
    parser.add_argument("--threads", type=int, help="torch threads (default: every core)")
    args = parser.parse_args(argv)
    recipe = RECIPES[args.skill]
    out = args.out or shipped_adapters_dir() / recipe.adapter
    command = "python -m brickwork.tune.recipe " + " ".join(argv or sys.argv[1:])
    try:
        build(recipe, out, max_steps=args.max_steps, threads=args.threads, command=command)
    except TuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
