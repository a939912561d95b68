"""`brickwork tune` and `brickwork skill`: skill resolution, evaluation, the promotion gate, CLI."""

from __future__ import annotations

import dataclasses
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


async def test_synthesis_reports_progress_after_each_teacher_call() -> None:
    skill = banking_intent_skill()
    texts = iter(f"My card {i} was stolen" for i in range(100))

    def answer(body: dict[str, Any]) -> str:  # one good and one bad example per call
        good = {"input": next(texts), "output": "card_lost_or_stolen"}
        return json.dumps({"examples": [good, {"input": "x", "output": "nope"}]})

    seen: list[tuple[int, int, int]] = []
    async with FunctionModel(answer).pool() as pool:
        accepted, rejected, _ = await synthesize(
            skill, pool, 3, batch=2, progress=lambda *a: seen.append(a)
        )
    assert len(accepted) == 3 and rejected == 3
    assert seen == [(1, 1, 1), (2, 2, 2)]  # before calls 2 and 3


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


# -- the budgeted search, teacher data on the training side, the refit after the gate -------------


def test_search_tries_the_given_settings_first_then_distinct_variations() -> None:
    from brickwork.tune.commands import search_configs
    from brickwork.tune.train import TrainConfig

    base = TrainConfig(epochs=3, rank=16, alpha=32, learning_rate=4e-4)
    assert search_configs(base, 1) == [base]
    configs = search_configs(base, 5)
    assert configs[0] == base and len(configs) == len(set(configs)) == 5
    assert (configs[1].learning_rate, configs[1].epochs) == (2e-4, 4)
    assert (configs[2].rank, configs[2].alpha) == (32, 64)
    assert configs[3].learning_rate == 8e-4 and configs[4].epochs == 2
    one_epoch = TrainConfig(epochs=1)
    assert [c.epochs for c in search_configs(one_epoch, 5)] == [1, 2, 1, 1]  # duplicate dropped
    for bad in (0, 6):
        with pytest.raises(ConfigError, match="--search"):
            search_configs(base, bad)


def test_the_best_validation_score_wins_and_ties_go_to_the_cheaper_run() -> None:
    from brickwork.tune.commands import pick_best
    from brickwork.tune.train import TrainConfig

    long, short = TrainConfig(epochs=4), TrainConfig(epochs=2)
    assert pick_best([SplitScore("a", 5, 10), SplitScore("b", 7, 10)], [short, long]) == 1
    assert pick_best([SplitScore("a", 7, 10), SplitScore("b", 7, 10)], [long, short]) == 1
    assert pick_best([SplitScore("a", 0, 0), SplitScore("b", 0, 10)], [short, long]) == 1
    with pytest.raises(ValueError, match="one score per candidate"):
        pick_best([], [])


def test_teacher_examples_go_to_training_only_and_never_echo_a_validation_question() -> None:
    from brickwork.tune.data import all_for_training, build_dataset, with_training_examples

    skill = banking_intent_skill()
    dataset = build_dataset(skill)
    val_question = str(dataset.val[0].example.input)  # type: ignore[union-attr]
    label = str(dataset.val[0].example.output)  # type: ignore[union-attr]
    written = [
        Example("I think someone copied my card at a cash machine", "card_lost_or_stolen"),
        Example(val_question, label),  # the teacher repeated a validation question
        Example("Order me a pizza", "pizza"),  # not a label of the skill
    ]
    more = with_training_examples(skill, dataset, written, "synthetic")
    assert more.val == dataset.val
    assert len(more.train) == len(dataset.train) + 1
    assert more.counts["synthetic"] == 1 and more.counts["train"] == len(more.train)
    assert more.counts["duplicates_dropped"] == dataset.counts["duplicates_dropped"] + 1
    assert more.counts["invalid_dropped"] == dataset.counts["invalid_dropped"] + 1
    assert more.sha256 != dataset.sha256

    everything = all_for_training(more)
    assert everything.val == () and everything.counts["val"] == 0
    keys = sorted(e.key for e in (*more.train, *more.val))
    assert sorted(e.key for e in everything.train) == keys


class _FakeLocal:
    """LocalServing's surface `brickwork tune` uses, over a fake model (no vLLM)."""

    model: FunctionModel
    loaded: list[str]

    def __init__(self, **_: Any) -> None:
        self.server = self.record = None
        self.origin = "a fake server"

    def start(self) -> _FakeLocal:
        self.record = True  # type: ignore[assignment]
        return self

    def ensure_adapter(self, name: str, path: Path) -> str:
        assert path.is_dir()
        type(self).loaded.append(name)
        return "loaded"

    def pool(self) -> Any:
        return type(self).model.pool()

    def stop(self) -> None:
        pass


def _fake_tune(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, right_for: set[str]
) -> list[tuple[str, dict[str, int], Any]]:
    """Training and serving faked: `right_for` adapters answer every example right."""
    from brickwork.serving import local, models
    from brickwork.tune import train

    trained: list[tuple[str, dict[str, int], Any]] = []

    def fake_train(skill: Any, dataset: Any, out: Path, *, name: str, **kw: Any) -> None:
        trained.append((name, dict(dataset.counts), kw["config"]))
        make_adapter(name, skill=skill.name)

    skill = banking_intent_skill()
    gold = {str(e.input): str(e.output) for e in skill.examples}
    labels = list(skill.contract.labels)  # type: ignore[union-attr]

    def answer(body: dict[str, Any]) -> str:
        right = gold[body["messages"][-1]["content"]]
        if body["model"] in right_for:
            return right
        return next(label for label in labels if label != right)

    _FakeLocal.model, _FakeLocal.loaded = FunctionModel(answer), []
    monkeypatch.setattr(train, "train_adapter", fake_train)
    monkeypatch.setattr(local, "LocalServing", _FakeLocal)
    monkeypatch.setattr(models, "ensure_embedded_model", lambda **_: tmp_path)
    return trained


def test_search_then_gate_then_refit_on_every_example_and_bind_the_refit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trained = _fake_tune(monkeypatch, tmp_path, right_for={"bi-c2"})
    argv = ["tune", "banking_intent", "--name", "bi", "--search", "2", "--promote"]
    assert main(argv) == 0
    out = capsys.readouterr().out.replace("\n", " ")
    assert [name for name, _, _ in trained] == ["bi-c1", "bi-c2", "bi-all"]
    (_, counts, first), (_, _, second), (_, refit_counts, refit_config) = trained
    assert second.learning_rate == first.learning_rate / 2 and refit_config == second
    assert refit_counts["val"] == 0 and refit_counts["train"] == counts["train"] + counts["val"]
    assert "bi-c2 wins" in out and "flatters" in out and "refit" in out
    assert adapters.binding_for("banking_intent") == "bi-all"
    assert _FakeLocal.loaded == ["bi-c1", "bi-c2", "bi-all"]
    winner, loser = adapters.get_adapter("bi-c2"), adapters.get_adapter("bi-c1")
    assert winner.metrics["val_promotable"] == 1.0 and loser.metrics["val_promotable"] == 0.0
    assert adapters.get_adapter("bi-all").metrics["val_gate_accuracy"] == 1.0


def test_no_refit_serves_the_judged_adapter_and_a_failed_gate_trains_no_refit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    trained = _fake_tune(monkeypatch, tmp_path, right_for={"bi"})
    assert main(["tune", "banking_intent", "--name", "bi", "--promote", "--no-refit"]) == 0
    assert [name for name, _, _ in trained] == ["bi"]
    assert adapters.binding_for("banking_intent") == "bi"

    trained = _fake_tune(monkeypatch, tmp_path, right_for=set())
    assert main(["tune", "banking_intent", "--name", "worse", "--promote"]) == 1
    assert [name for name, _, _ in trained] == ["worse"]  # not promoted: nothing refit
    assert adapters.binding_for("banking_intent") == "bi"


async def test_teacher_tool_calls_with_values_nobody_said_are_rejected() -> None:
    from brickwork.skills.examples import smart_home_skill

    said = {"name": "set_thermostat", "parameters": {"temperature": 70}}
    made_up = {"name": "set_thermostat", "parameters": {"temperature": 65, "mode": "auto"}}
    batch = {
        "examples": [
            {"input": "Set the thermostat to 70 please", "output": said},
            {"input": "Make the bedroom a bit warmer", "output": made_up},
        ]
    }
    async with FunctionModel(lambda body: json.dumps(batch)).pool() as pool:
        accepted, rejected, _ = await synthesize(smart_home_skill(), pool, 1, batch=2)
    assert accepted == [Example("Set the thermostat to 70 please", said)] and rejected == 1


def test_tune_says_before_training_that_the_running_serve_cannot_load_its_rank(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seen: `--rank 32` with a `brickwork serve` of max rank 16 failed after 21 minutes of
    training, when the serve refused to load the adapter."""
    import os

    from brickwork.serving import local, registry
    from brickwork.serving.models import EMBEDDED_MODEL

    monkeypatch.setenv("BRICKWORK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(local, "_unhealthy_because", lambda record: None)
    monkeypatch.setattr("brickwork.tune.train.train_adapter", _no_training)
    lease = registry.ServeLease(9400)
    lease.acquire()
    try:
        record = registry.ServeRecord(
            pid=os.getpid(), host="127.0.0.1", port=9400, served_name=EMBEDDED_MODEL.served_name,
            adapters=(), model="/m", log="/l", started_at="2026-12-04T17:00:00+00:00",
            max_lora_rank=16,
        )  # fmt: skip
        lease.publish(record)
        assert main(["tune", "smart_home", "--name", "wide", "--rank", "32"]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert "loads LoRA adapters of rank 16 at most, and this needs rank 32" in err
        assert "brickwork serve --max-lora-rank 32" in err
        assert local.serve_rank_problem(16) is None
        lease.publish(dataclasses.replace(record, max_lora_rank=None))  # an older record
        assert local.serve_rank_problem(32) is None
    finally:
        lease.release()
    assert local.serve_rank_problem(32) is None  # nothing running: a private server fits


def _no_training(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("tune trained although the serve could not load the adapter")


def test_serve_max_lora_rank_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--large", "--port", "18998", "--max-lora-rank", "32"]) == 2
    assert "--enable-lora and --max-lora-rank" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--max-lora-rank", "24"])  # not a rank vLLM accepts
