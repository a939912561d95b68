"""`brickwork tune` and `brickwork skill`: skill resolution, evaluation, the promotion gate, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from brickwork.cli import main
from brickwork.errors import ConfigError
from brickwork.skills.examples import banking_intent_skill
from brickwork.skills.skill import Example
from brickwork.testing import FunctionModel
from brickwork.tune import adapters
from brickwork.tune.commands import (
    SplitScore,
    _margin,
    evaluate_split,
    promotion_gate,
    resolve_skill,
    synthesize,
)
from brickwork.tune.data import TrainExample
from tests._paths import SHARED_DATA


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache (registry and bindings file) for each test."""
    monkeypatch.setenv("BRICKWORK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("BRICKWORK_BINDINGS", raising=False)
    return tmp_path / "cache"


def make_adapter(name: str, skill: str = "banking_intent", **metrics: float) -> Path:
    folder = adapters.adapter_path(name)
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 16}))
    manifest = {"name": name, "skill": skill, "base_model": "smol", "metrics": metrics}
    (folder / adapters.MANIFEST_FILE).write_text(json.dumps(manifest))
    return folder


# -- skills ---------------------------------------------------------------------------------------


def test_resolve_skill_by_name_folder_and_factory() -> None:
    assert resolve_skill("smart_home").name == "smart_home"
    assert resolve_skill("brickwork.skills.examples:banking_intent_skill").kind == "intent"
    if SHARED_DATA.is_dir():
        assert resolve_skill(str(SHARED_DATA / "banking8")).kind == "intent"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("no_such_skill", "unknown skill 'no_such_skill'; give one of smart_home"),
        ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
        ("brickwork.skills.examples:nothing", "has no 'nothing'"),
        ("brickwork.skills.examples:SMART_HOME_INTENTS", "gave dict, not a Skill"),
    ],
)
def test_resolve_skill_errors_say_what_is_accepted(ref: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        resolve_skill(ref)


# -- the promotion gate ---------------------------------------------------------------------------


def test_gate_promotes_an_adapter_better_by_the_margin() -> None:
    gate = promotion_gate(SplitScore("slm", 4, 20), SplitScore("slm:a", 18, 20), 0.05)
    assert gate.promote
    assert "adapter 90.0 % vs base 20.0 % (+70.0 points; margin 5.0 points, n=20)" in gate.reason


def test_gate_refuses_a_worse_or_not_better_enough_adapter() -> None:
    worse = promotion_gate(SplitScore("slm", 10, 20), SplitScore("slm:a", 5, 20), 0.05)
    assert not worse.promote and "-25.0 points" in worse.reason
    assert "not better by the margin" in worse.reason
    same = promotion_gate(SplitScore("slm", 10, 20), SplitScore("slm:a", 10, 20), 0.05)
    assert not same.promote
    assert promotion_gate(SplitScore("slm", 10, 20), SplitScore("slm:a", 10, 20), 0.0).promote


def test_gate_refuses_without_validation_examples_and_rejects_bad_margins() -> None:
    assert not promotion_gate(SplitScore("slm", 0, 0), SplitScore("slm:a", 0, 0), 0.0).promote
    with pytest.raises(ConfigError, match="--margin 1.5"):
        promotion_gate(SplitScore("slm", 1, 2), SplitScore("slm:a", 2, 2), 1.5)


def test_margin_reads_points_or_fractions() -> None:
    assert _margin("5") == pytest.approx(0.05)
    assert _margin("0.05") == pytest.approx(0.05)
    assert _margin("0") == 0.0


def test_split_score_has_a_wilson_interval() -> None:
    score = SplitScore("slm", 8, 10)
    low, high = score.ci95
    assert score.accuracy == 0.8 and 0.44 < low < 0.5 and 0.94 < high < 0.97
    assert score.metrics("val_base")["val_base_accuracy"] == 0.8


# -- evaluation and synthetic data over a fake model ----------------------------------------------


async def test_evaluate_split_scores_each_model_with_the_skill_agent() -> None:
    skill = banking_intent_skill()
    val = [TrainExample((), str(e.output), "skill", e) for e in skill.examples[:6]]
    val.append(TrainExample((), "x", "escalation:r/n", None))  # no source example: skipped
    gold = {str(e.example.input): str(e.example.output) for e in val if e.example is not None}
    labels = list(skill.contract.labels)  # type: ignore[union-attr]

    def answer(body: dict[str, Any]) -> str:
        question = body["messages"][-1]["content"]
        right = gold[question]
        if body["model"] == "good":
            return right
        return next(label for label in labels if label != right)

    model = FunctionModel(answer)
    async with model.pool() as pool:
        good = await evaluate_split(skill, val, pool, "slm:good")
        base = await evaluate_split(skill, val, pool, "slm")
    assert (good.correct, good.n, good.model) == (6, 6, "slm:good")
    assert (base.correct, base.n) == (0, 6)


async def test_synthetic_examples_are_validated_by_the_skill() -> None:
    skill = banking_intent_skill()
    existing = str(skill.examples[0].input)
    batch = {
        "examples": [
            {"input": "My card was stolen at the station", "output": "card_lost_or_stolen"},
            {"input": "Please make me a sandwich", "output": "sandwich_request"},
            {"input": existing, "output": str(skill.examples[0].output)},
        ]
    }
    model = FunctionModel(lambda body: json.dumps(batch))
    async with model.pool() as pool:
        accepted, rejected, stand_in = await synthesize(skill, pool, 1)
    assert accepted == [Example("My card was stolen at the station", "card_lost_or_stolen")]
    assert rejected == 2
    assert stand_in  # the fake frontier is a stand-in: the CLI says it will not help much
    assert {r["model"] for r in model.requests} == {"fake-frontier"}


# -- command line ---------------------------------------------------------------------------------


def test_skill_list_show_and_rollback(capsys: pytest.CaptureFixture[str]) -> None:
    make_adapter("bi-1", val_base_accuracy=0.2, val_adapter_accuracy=0.9, val_adapter_n=30)
    make_adapter("bi-2")
    adapters.bind("banking_intent", "bi-1")
    adapters.bind("banking_intent", "bi-2")

    assert main(["skill", "list"]) == 0
    out = capsys.readouterr().out
    assert "banking_intent" in out and "slm:bi-2" in out and "smart_home" in out

    assert main(["skill", "show", "banking_intent"]) == 0
    out = capsys.readouterr().out
    assert "runs on slm:bi-2" in out and "20.0 %" in out and "90.0 %" in out

    assert main(["skill", "rollback", "banking_intent"]) == 0
    assert "now runs on slm:bi-1" in capsys.readouterr().out
    assert adapters.binding_for("banking_intent") == "bi-1"


def test_skill_errors_are_clear(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["skill", "rollback", "smart_home"]) == 2
    assert "no earlier binding" in capsys.readouterr().err
    assert main(["skill", "show", "nobody"]) == 2
    assert "unknown skill 'nobody'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tune", "nope"], "unknown skill 'nope'"),
        (["tune", "smart_home", "--adapter", "ghost"], "unknown adapter 'ghost'"),
        (["tune", "smart_home", "--epochs", "0"], "--epochs 0"),
        (["tune", "smart_home", "--limit", "0"], "--limit 0 must be 1 or more"),
        (["tune", "smart_home", "--margin", "150"], "--margin 1.5"),
        (["tune", "smart_home", "--name", "bad:name"], "adapter name 'bad:name'"),
    ],
)
def test_tune_bad_input_fails_fast_with_a_clear_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err.replace("\n", " ")


def test_tune_refuses_to_overwrite_an_adapter(capsys: pytest.CaptureFixture[str]) -> None:
    make_adapter("taken", skill="smart_home")
    assert main(["tune", "smart_home", "--name", "taken"]) == 2
    assert "adapter 'taken' already exists" in capsys.readouterr().err
