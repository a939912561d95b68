"""The router end to end on the package's fakes: eval runs on one half of a skill's rows are
stored with their verdicts, `brickwork route train --source eval` learns from them, and
`brickwork eval --compare hybrid,routed --split test` measures the router on the other half
(calls per tier, route shares, one routed row per knob value)."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from brickwork.errors import ConfigError
from brickwork.evals import add_eval_arguments, arun_eval
from brickwork.evals.data import Split, load_rows
from brickwork.evals.report import compare_table, mode_table
from brickwork.routing import VERDICT, load_router, samples_from_run, samples_from_store
from brickwork.store import RunStore
from brickwork.testing import FunctionModel, ModelStep

LADDER = ("slm", "large")
GRAPH = "extract:numbers"
SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer", "minimum": 0}},
    "required": ["n"],
    "additionalProperties": False,
}
EASY = {f"give {i}": i for i in range(30)}
HARD = {
    f"please work out which number this long rambling request means, case {i}": i
    for i in range(30, 60)
}
ANSWERS = {**EASY, **HARD}


def question(body: dict[str, Any]) -> str:
    """The row's own question: the last user turn that is one of the rows."""
    users = [m["content"] for m in body["messages"] if m["role"] == "user"]
    return next(u for u in reversed(users) if u in ANSWERS)


def ladder_model() -> FunctionModel:
    """slm: right on short questions, a valid but wrong number on long ones (validators
    accept it, only the eval's verdict knows); large: always right."""

    def answer(body: dict[str, Any]) -> ModelStep:
        text = question(body)
        right = body["model"] == "fake-large" or text in EASY
        return ModelStep(json.dumps({"n": ANSWERS[text] if right else 999}))

    return FunctionModel(answer)


@pytest.fixture
def numbers(tmp_path: Path) -> Path:
    folder = tmp_path / "numbers"
    folder.mkdir()
    job = {"task_description": "Give the number.", "output_schema": SCHEMA}
    (folder / "job_description.json").write_text(json.dumps(job))
    lines = [
        json.dumps({"question": q, "answer": json.dumps({"n": n})}) for q, n in ANSWERS.items()
    ]
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def routers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Bindings (and so routers) in a folder of this test's own."""
    monkeypatch.setenv("BRICKWORK_BINDINGS", str(tmp_path / "bindings.json"))
    return tmp_path / "routers"


async def train_half(numbers: Path, store: RunStore) -> None:
    """The train half in slm mode (labels the small tier) and frontier mode (the top tier)."""
    async with ladder_model().pool(tiers=LADDER) as pool:
        await arun_eval(
            str(numbers), None, compare_modes=["slm", "frontier"], pool=pool, store=store,
            split=Split("train"), console=Console(quiet=True),
        )  # fmt: skip
    store.flush()


def train_router_cli(numbers: Path, store: Path) -> int:
    from brickwork.cli import main

    return main(["route", "train", str(numbers), "--store", str(store), "--source", "eval",
                 "--embeddings", "off"])  # fmt: skip


# -- the split ----------------------------------------------------------------------------------


def test_the_split_keeps_train_and_test_rows_apart(numbers: Path) -> None:
    train = load_rows(numbers, split=Split("train"))
    test = load_rows(numbers, split=Split("test"))
    assert {r.text for r in train}.isdisjoint(r.text for r in test)
    assert sorted(r.index for r in train + test) == list(range(len(ANSWERS)))
    assert 15 < len(train) < 45  # about half
    assert [r.index for r in load_rows(numbers, split=Split("train"))] == [r.index for r in train]
    other = load_rows(numbers, split=Split("train", seed=1))
    assert {r.index for r in other} != {r.index for r in train}  # another seed, another split
    # --limit spreads over the part, never reaches into the other one.
    limited = load_rows(numbers, 5, split=Split("test"))
    assert len(limited) == 5 and {r.index for r in limited} <= {r.index for r in test}
    with pytest.raises(ConfigError, match="train or test"):
        Split("validation")


# -- labels from eval verdicts ------------------------------------------------------------------


async def test_eval_runs_store_verdicts_that_label_accepted_but_wrong_answers(
    numbers: Path, tmp_path: Path
) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    await train_half(numbers, store)
    train = {r.text for r in load_rows(numbers, split=Split("train"))}
    runs = store.runs(graph=GRAPH, source="eval", limit=1000)
    assert {r.text for r in runs} == train and len(runs) == 2 * len(train)  # two modes

    samples = samples_from_store(store, GRAPH, source="eval")
    slm = {s.features.text: s.ok for s in samples if s.tier == "slm"}
    # Frontier mode hands the node to the top tier before any small call: no small label.
    assert len([s for s in samples if s.tier == "slm"]) == len(train)
    large = [s for s in samples if s.tier == "large"]
    # The small tier's long-question answers passed every validator; the verdicts fail them.
    assert slm == {text: text in EASY for text in train}
    assert len(large) == len(train) and all(s.ok for s in large)  # frontier mode: top tier

    # Without the verdict events the same runs would call every small answer good.
    run = next(r for r in runs if r.mode == "slm" and r.text in HARD)
    found = store.run(run.run_id)
    assert found is not None
    summary, events = found
    verdicts = [e for e in events if e["kind"] == VERDICT]
    assert [(e["node"], e["correct"]) for e in verdicts] == [("extract", False), (None, False)]
    unjudged = [e for e in events if e["kind"] != VERDICT]
    assert [s.ok for s in samples_from_run(summary, unjudged)] == [True]
    assert [s.ok for s in samples_from_run(summary, events)] == [False]
    store.close()


# -- routed mode --------------------------------------------------------------------------------


async def test_routed_mode_sends_hard_rows_straight_to_the_top_tier(
    numbers: Path, tmp_path: Path, routers: Path
) -> None:
    where = tmp_path / "runs.sqlite"
    store = RunStore(where)
    await train_half(numbers, store)
    store.close()
    assert await asyncio.to_thread(train_router_cli, numbers, where) == 0
    router = load_router(GRAPH, "extract")
    assert router is not None and router.skill == "numbers"
    assert (routers / "extract.numbers" / "extract.json").is_file()

    model = ladder_model()
    async with model.pool(tiers=LADDER) as pool:
        report = await arun_eval(
            str(numbers), None, compare_modes=["hybrid", "routed"], pool=pool,
            split=Split("test"), console=Console(quiet=True),
        )  # fmt: skip
    test = load_rows(numbers, split=Split("test"))
    hard = sum(r.text in HARD for r in test)
    easy = len(test) - hard
    assert hard >= 5 and easy >= 5
    hybrid, routed = report.modes["hybrid"], report.modes["routed"]
    # The cascade never escalates (the small answers validate) and gets the hard rows wrong.
    assert hybrid.calls_by_tier == {"slm": len(test)} and hybrid.correct == easy
    assert hybrid.route_decisions == 0 and hybrid.margin is None
    # Routed: hard rows go straight to the top tier (no small call), easy ones stay small.
    for row in routed.rows:
        expected = {"large": 1} if row.question in HARD else {"slm": 1}
        assert row.calls == expected, row.question
        [(node, tier, reason)] = row.routes
        assert (node, tier) == ("extract", next(iter(expected)))
        assert reason == ("routed" if row.question in HARD else "cheapest")
    assert routed.correct == len(test) and routed.margin == 0.05
    assert routed.calls_by_tier == {"slm": easy, "large": hard}
    assert routed.route_decisions == len(test)
    assert routed.routed_to == {"slm": easy, "large": hard}
    assert routed.routed_share("large") == pytest.approx(hard / len(test))
    assert routed.route_reasons == {"routed": hard, "cheapest": easy}
    assert routed.top_tier == "large" and routed.top_tier_rows == hard
    assert "(test part, seed 0," in report.data

    console = Console(record=True, width=260)
    console.print(compare_table(report))
    text = " ".join(console.export_text().split())
    assert f"slm {len(test)}" in text  # hybrid's calls per tier
    assert f"slm {easy} large {hard}" in text  # routed's
    assert f"slm {easy / len(test):.0%} large {hard / len(test):.0%}" in text  # routed shares
    console = Console(record=True, width=200)
    console.print(mode_table(routed, "routed"))
    caption = " ".join(console.export_text().split())
    assert f"margin 0.05: {len(test)} route decisions" in caption


async def test_the_margin_sweep_gives_one_routed_row_per_knob(
    numbers: Path, tmp_path: Path, routers: Path
) -> None:
    where = tmp_path / "runs.sqlite"
    store = RunStore(where)
    await train_half(numbers, store)
    store.close()
    assert await asyncio.to_thread(train_router_cli, numbers, where) == 0
    async with ladder_model().pool(tiers=LADDER) as pool:
        report = await arun_eval(
            str(numbers), None, compare_modes=["slm", "routed"], margins=[0.0, 0.05, 1.0],
            pool=pool, split=Split("test"), console=Console(quiet=True),
        )  # fmt: skip
    assert list(report.modes) == ["slm", "routed@0", "routed@0.05", "routed@1"]
    assert [m.margin for m in report.modes.values()] == [None, 0.0, 0.05, 1.0]
    large = [report.modes[k].calls_by_tier.get("large", 0) for k in list(report.modes)[1:]]
    assert large == sorted(large, reverse=True) and large[0] > 0  # more knob, fewer top calls
    everything_small = report.modes["routed@1"]  # a margin of 1 is the plain cascade
    assert everything_small.routed_to == {"slm": everything_small.n}
    assert report.modes["routed@0.05"].accuracy > report.modes["slm"].accuracy
    console = Console(record=True, width=260)
    console.print(compare_table(report))
    assert "routed@0.05" in console.export_text()


async def test_routed_mode_without_a_router_says_how_to_train_one(
    numbers: Path, routers: Path
) -> None:
    async with ladder_model().pool(tiers=LADDER) as pool:
        with pytest.raises(ConfigError, match="route train .* --source eval"):
            await arun_eval(str(numbers), None, mode="routed", pool=pool)
        with pytest.raises(ConfigError, match="add routed to the modes"):
            await arun_eval(str(numbers), None, mode="hybrid", margins=[0.1], pool=pool)


def test_cli_arguments_for_routing() -> None:
    parser = argparse.ArgumentParser()
    add_eval_arguments(parser)
    args = parser.parse_args(
        ["numbers", "--compare", "slm,hybrid,routed,frontier", "--margins", "0,0.05,0.1",
         "--split", "test", "--split-seed", "3"]
    )  # fmt: skip
    assert (args.margins, args.split, args.split_seed, args.margin) == (
        [0.0, 0.05, 0.1], "test", 3, None,
    )  # fmt: skip
    with pytest.raises(SystemExit):
        parser.parse_args(["numbers", "--margin", "1.5"])


def test_run_route_uses_the_graphs_routers_and_is_off_by_default(routers: Path) -> None:
    from brickwork.cli import _parser, _routing_for

    said: list[str] = []
    assert _routing_for("support", None, said.append) is None
    routing = _routing_for("support", 0.2, said.append)
    assert routing is not None and routing.margin == 0.2
    assert "no router trained for support" in said[0]
    args = _parser().parse_args(["run", "support", "hi", "--route"])
    assert args.route == 0.05
    assert _parser().parse_args(["run", "support", "hi"]).route is None
