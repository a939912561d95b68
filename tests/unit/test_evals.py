"""The eval harness on the package's fake models: scoring per kind, escalation outcomes, failed
rows, the Wilson interval, cost per 1M requests and the modes-side-by-side table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from brickwork.errors import ConfigError
from brickwork.evals import add_eval_arguments, arun_eval
from brickwork.evals.data import EXPECTATIONS, load_rows
from brickwork.evals.report import (
    DEFAULT_PRICES,
    NodeOutcome,
    RowOutcome,
    compare_table,
    summarise,
    wilson,
)
from brickwork.testing import FunctionModel, ModelStep

WORDS = {"seven": 7, "three": 3, "nine": 9, "five": 5}
NUMBER_SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer", "minimum": 0}},
    "required": ["n"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "toggle_lights",
            "description": "Turn lights on or off.",
            "parameters": {
                "type": "object",
                "properties": {
                    "room": {"type": "string", "enum": ["kitchen", "office"]},
                    "state": {"type": "string", "enum": ["on", "off"]},
                },
                "required": [],
            },
        },
    }
]
DDL = "CREATE TABLE pets (id INTEGER PRIMARY KEY, name TEXT, age INTEGER);"


def _skill(folder: Path, job: dict[str, Any], rows: list[tuple[Any, Any]]) -> Path:
    folder.mkdir()
    (folder / "job_description.json").write_text(json.dumps(job))
    lines = [
        json.dumps({"question": q if isinstance(q, str) else json.dumps(q), "answer": a})
        for q, a in rows
    ]
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def _query(body: dict[str, Any]) -> str:
    """The row's own question: the last user turn that is one of the data's questions."""
    users = [m["content"] for m in body["messages"] if m["role"] == "user"]
    return next((u for u in reversed(users) if u in WORDS or "Question:" in u), users[-1])


def _number_model(
    bad: str = "nine", broken: str | None = None, hopeless: str | None = None
) -> FunctionModel:
    """Small model: right except on `bad` (invalid) and `broken` (HTTP 500); frontier right
    except on `hopeless` (invalid on both)."""

    def answer(body: dict[str, Any]) -> str | ModelStep:
        word = _query(body)
        if word == broken:
            return ModelStep(text="server exploded", status=500)
        if (body["model"] == "fake-slm" and word == bad) or word == hopeless:
            return '{"n": -1}'
        return json.dumps({"n": WORDS[word]})

    return FunctionModel(answer)


@pytest.fixture
def numbers(tmp_path: Path) -> Path:
    job = {"task_description": "Give the number.", "output_schema": NUMBER_SCHEMA}
    return _skill(tmp_path / "numbers", job, [(w, json.dumps({"n": n})) for w, n in WORDS.items()])


def test_wilson_interval_matches_the_textbook_numbers() -> None:
    low, high = wilson(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert wilson(0, 20)[0] == 0.0 and wilson(20, 20)[1] == 1.0
    assert round(wilson(0, 20)[1], 4) == 0.1611
    assert all(v != v for v in wilson(0, 0))  # nan: no rows, no interval


def test_cost_per_million_is_the_mean_run_cost_times_a_million() -> None:
    def row(index: int, cost: float, node_cost: float) -> RowOutcome:
        node = NodeOutcome(ran=True, correct=True, cost_usd=node_cost, latency_s=0.01 * index)
        return RowOutcome(
            index, "q", "a", "ok", True, 0.1 * index, cost, 2 * cost, nodes={"x": node}
        )

    report = summarise("slm", [row(1, 0.001, 0.0005), row(2, 0.003, 0.0), row(3, 0.002, 0.0)], 1.0)
    assert report.cost_per_1m_usd == pytest.approx(2000.0)
    assert report.frontier_only_per_1m_usd == pytest.approx(4000.0)
    assert report.nodes[0].cost_per_1m_usd == pytest.approx(0.0005 / 3 * 1e6)
    assert report.p50_latency_ms == pytest.approx(200.0)
    assert report.p95_latency_ms == pytest.approx(290.0)


async def test_extraction_skill_hybrid_escalation_fixes_the_wrong_row(numbers: Path) -> None:
    async with _number_model().pool() as pool:
        report = await arun_eval(str(numbers), None, mode="hybrid", pool=pool, console=Console())
    mode = report.modes["hybrid"]
    assert (mode.n, mode.correct, mode.failed) == (4, 4, 0)
    assert mode.escalated_rows == 1 and mode.escalation_rate == 0.25
    assert mode.escalation_outcomes == {"fixed": 1, "unnecessary": 0, "unfixed": 0, "unscored": 0}
    (node,) = mode.nodes
    assert node.node == "extract" and node.escalations == 1 and node.accuracy == 1.0
    assert mode.cost_per_1m_usd > 0 and mode.p95_latency_ms >= mode.p50_latency_ms


async def test_leave_one_out_never_shows_the_row_its_own_answer(numbers: Path) -> None:
    model = _number_model()
    async with model.pool() as pool:
        await arun_eval(str(numbers), None, mode="slm", pool=pool, console=Console())
    for body in model.requests:
        users = [m["content"] for m in body["messages"] if m["role"] == "user"]
        asked = [u for u in users if u in WORDS]
        # Other rows are shown as examples, the row itself only once: as the question.
        assert asked.count(_query(body)) == 1 and len(asked) == len(WORDS)


async def test_failed_rows_are_counted_and_listed_never_dropped(numbers: Path) -> None:
    async with _number_model(bad="", broken="three").pool() as pool:
        report = await arun_eval(
            str(numbers), None, compare_modes=["slm", "hybrid"], pool=pool, console=Console()
        )
    for mode in report.modes.values():
        assert mode.n == 4 and mode.correct == 3 and mode.failed == 1
        (failed,) = [r for r in mode.rows if r.failed]
        assert failed.question == "three" and "model_error" in (failed.error or "")
        assert failed.status == "failed" and mode.failed_by_status == {"failed": 1}
        assert mode.accuracy == 0.75


async def test_a_row_whose_run_raises_is_an_error_row(numbers: Path, tmp_path: Path) -> None:
    data = tmp_path / "rows.jsonl"
    rows = [
        {"question": "x" * 20_001, "answer": {"n": 1}},
        {"question": "five", "answer": {"n": 5}},
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    async with _number_model().pool() as pool:
        report = await arun_eval(str(numbers), data, mode="slm", pool=pool, console=Console())
    mode = report.modes["slm"]
    assert (mode.n, mode.correct, mode.failed, mode.failed_by_status) == (2, 1, 1, {"error": 1})
    assert "ConfigError" in (mode.rows[0].error or "")


async def test_compare_modes_side_by_side(numbers: Path) -> None:
    async with _number_model().pool() as pool:
        report = await arun_eval(
            str(numbers), None, compare_modes=["slm", "hybrid", "frontier"], pool=pool,
            console=Console(),
        )  # fmt: skip
    slm, hybrid, frontier = (report.modes[m] for m in ("slm", "hybrid", "frontier"))
    assert (slm.correct, hybrid.correct, frontier.correct) == (3, 4, 4)
    assert slm.escalation_rate == 0 and frontier.escalation_rate == 1.0
    assert frontier.escalation_outcomes["unscored"] == 4  # no small attempt to compare with
    console = Console(record=True, width=200)
    console.print(compare_table(report))
    text = console.export_text()
    assert text.count("slm, hybrid, frontier") == 1  # one table, titled once
    rows = [line for line in text.splitlines() if "extract" in line or " all " in line]
    modes = [line.split("│")[1].strip() for line in rows]
    assert modes == ["slm", "slm", "hybrid", "hybrid", "frontier", "frontier"]  # on every row
    assert "75.0%" in rows[0] and "100.0%" in rows[2]
    assert "top-tier only $ /1M" in text
    # Top-tier-only mode tried nothing below: no escalation rate, no outcomes to show.
    cells = [[c.strip() for c in line.split("│")] for line in rows]
    assert [c[5:7] for c in cells if c[1] == "frontier"] == [["-", "-"], ["-", "-"]]
    assert cells[0][5] == "0%"


async def test_the_counterfactual_is_one_figure_for_the_same_rows_in_every_mode(
    numbers: Path, tmp_path: Path
) -> None:
    """RunCost.frontier_only_usd per request: the same in slm, hybrid and frontier mode when
    the calls take the same tokens, whatever they cost in each mode; the run store (the TUI,
    the HTTP front) sums the same per-run figure."""
    from brickwork.store import RunStore

    store = RunStore(tmp_path / "runs.sqlite")
    async with _number_model(bad="").pool(kind="openai") as pool:  # frontier: an API
        report = await arun_eval(
            str(numbers), None, compare_modes=["slm", "hybrid", "frontier"], pool=pool,
            console=Console(), store=store,
        )  # fmt: skip
    slm, hybrid, frontier = (report.modes[m] for m in ("slm", "hybrid", "frontier"))
    assert slm.frontier_only_per_1m_usd > 0
    assert slm.frontier_only_per_1m_usd == pytest.approx(hybrid.frontier_only_per_1m_usd)
    assert slm.frontier_only_per_1m_usd == pytest.approx(frontier.frontier_only_per_1m_usd)
    assert frontier.cost_per_1m_usd > 10 * slm.cost_per_1m_usd  # the modes did cost apart
    assert report.counterfactual == "top-tier only"  # the fake frontier is flagged stand_in
    assert report.prices == DEFAULT_PRICES  # a pool it was given: no local measurement read
    store.flush()
    runs = store.runs(limit=100)
    assert {r.source for r in runs} == {"eval"} and len(runs) == 12
    for mode in (slm, hybrid, frontier):
        stored = sum(r.frontier_only_usd for r in runs if r.mode == mode.mode)
        assert stored / mode.n * 1e6 == pytest.approx(mode.frontier_only_per_1m_usd)
    store.close()


async def test_an_escalation_that_fails_too_is_unfixed_and_frontier_mode_is_unscored(
    numbers: Path,
) -> None:
    async with _number_model(bad="", hopeless="five").pool() as pool:
        report = await arun_eval(
            str(numbers), None, compare_modes=["hybrid", "frontier"], pool=pool, console=Console()
        )
    hybrid, frontier = report.modes["hybrid"], report.modes["frontier"]
    assert hybrid.escalation_outcomes == {"fixed": 0, "unnecessary": 0, "unfixed": 1, "unscored": 0}
    assert frontier.escalation_outcomes["unfixed"] == 0
    assert frontier.escalation_outcomes["unscored"] == 4
    assert hybrid.failed == frontier.failed == 1 and hybrid.correct == frontier.correct == 3


async def test_intent_low_confidence_escalation_of_a_right_label_is_unnecessary(
    tmp_path: Path,
) -> None:
    job = {"task_description": "Pick.", "classes_description": {"up": "Up.", "down": "Down."}}
    rows = [("go up", "up"), ("go down", "down"), ("rise", "up"), ("fall", "down")]
    folder = _skill(tmp_path / "dirs", job, rows)
    gold = dict(rows)

    def answer(body: dict[str, Any]) -> ModelStep:
        question = body["messages"][-1]["content"]
        unsure = question == "rise" and body["model"] == "fake-slm"
        return ModelStep(text=gold[question], logprobs=[("t", -3.0 if unsure else 0.0)])

    async with FunctionModel(answer).pool() as pool:
        report = await arun_eval(str(folder), None, mode="hybrid", pool=pool, console=Console())
    mode = report.modes["hybrid"]
    assert mode.correct == 4 and mode.escalated_rows == 1
    assert mode.escalation_outcomes["unnecessary"] == 1


async def test_intent_knn_votes_first_and_never_sees_the_row_it_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from brickwork.agents import embeddings

    vocabulary = ["card", "lost", "stolen", "balance", "money", "much", "odd"]
    encoded: list[str] = []

    def encoder(texts: list[str]) -> Any:  # bag of words: same-class rows share words
        encoded.extend(texts)
        return np.array([[float(w in t.split()) + 1e-3 for w in vocabulary] for t in texts])

    monkeypatch.setattr(embeddings, "minilm_encoder", lambda: encoder)
    job = {"task_description": "Pick.", "classes_description": {"card": "C.", "balance": "B."}}
    rows = [
        ("card lost", "card"), ("lost card stolen", "card"), ("stolen card", "card"),
        ("balance money", "balance"), ("how much money balance", "balance"),
        ("balance much", "balance"), ("odd", "card"),
    ]  # fmt: skip
    folder = _skill(tmp_path / "bank", job, rows)

    def answer(body: dict[str, Any]) -> ModelStep:  # the small model always says balance
        return ModelStep(text="balance", logprobs=[("t", 0.0)])

    model = FunctionModel(answer)
    async with model.pool() as pool:
        report = await arun_eval(
            str(folder), None, mode="slm", pool=pool, console=Console(), knn=True
        )
    right = {r.index: r.correct for r in report.modes["slm"].rows}
    # The six clear rows are decided by their neighbours; "odd" (a card row left out of its
    # own vote, no neighbour shares a word) goes to the small model, which is wrong.
    assert right == {0: True, 1: True, 2: True, 3: True, 4: True, 5: True, 6: False}
    assert [r["messages"][-1]["content"] for r in model.requests] == ["odd"]
    assert len(set(encoded)) == len(encoded)  # each text embedded once for all rows


async def test_toolcall_skill_scores_multi_turn_rows_by_call_equivalence(tmp_path: Path) -> None:
    history = [
        {"role": "user", "content": "Kitchen lights on"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "toggle_lights", "arguments": {"room": "kitchen"}}}
            ],
        },
        {"role": "user", "content": "Now the office"},
    ]
    call = {"name": "toggle_lights", "parameters": {"room": "office"}}
    rows = [
        (history, json.dumps(call)),
        (
            "Office lights off",
            json.dumps({"name": "toggle_lights", "parameters": {"state": "off"}}),
        ),
    ]
    folder = _skill(tmp_path / "home", {"task_description": "Act.", "tools": TOOLS}, rows)

    def answer(body: dict[str, Any]) -> str:
        # Right for the chat (it saw the history as plain turns); wrong state for the other.
        assert all(set(m) == {"role", "content"} for m in body["messages"])
        last = body["messages"][-1]["content"]
        return json.dumps(call if last == "Now the office" else {**call, "parameters": {}})

    async with FunctionModel(answer).pool() as pool:
        report = await arun_eval(str(folder), None, mode="slm", pool=pool, console=Console())
    by_index = {r.index: r.correct for r in report.modes["slm"].rows}
    assert by_index == {0: True, 1: False}


async def test_toolcall_skill_values_must_be_said_by_the_user_as_in_the_graphs(
    tmp_path: Path,
) -> None:
    right = {"name": "toggle_lights", "parameters": {"room": "office", "state": "off"}}
    made_up = {"name": "toggle_lights", "parameters": {"room": "kitchen", "state": "off"}}
    rows = [("Office lights off", json.dumps(right))]
    folder = _skill(tmp_path / "home", {"task_description": "Act.", "tools": TOOLS}, rows)

    def answer(body: dict[str, Any]) -> str:  # the small model invents the room
        return json.dumps(made_up if body["model"] == "fake-slm" else right)

    async with FunctionModel(answer).pool() as pool:
        report = await arun_eval(
            str(folder), None, compare_modes=["slm", "hybrid"], pool=pool, console=Console()
        )
    slm, hybrid = report.modes["slm"].rows[0], report.modes["hybrid"].rows[0]
    assert slm.status == "failed" and not slm.correct  # ungrounded: refused, not scored wrong-ok
    assert hybrid.correct and hybrid.status == "ok"  # escalated, and the top tier said office


async def test_sql_skill_scores_by_execution_on_a_database_built_from_each_rows_ddl(
    tmp_path: Path,
) -> None:
    rows = [
        (f"Schema:\n{DDL}\n\nQuestion: How many pets are there?", "SELECT COUNT(*) FROM pets;"),
        (f"Schema:\n{DDL}\n\nQuestion: What is the oldest age?", "SELECT MAX(age) FROM pets;"),
    ]
    job = {"task_description": "Write one SQLite SQL query for the question."}
    folder = _skill(tmp_path / "sql", job, rows)

    def answer(body: dict[str, Any]) -> str:
        question = body["messages"][-1]["content"]
        # Equivalent but differently written for the first; wrong for the second.
        sql = (
            "SELECT COUNT(id) FROM pets" if "How many" in question else "SELECT MIN(age) FROM pets"
        )
        return json.dumps({"sql": sql})

    async with FunctionModel(answer).pool() as pool:
        report = await arun_eval(str(folder), None, mode="slm", pool=pool, console=Console())
    assert [r.correct for r in report.modes["slm"].rows] == [True, False]


def test_smart_home_mapping_checks_calls_plans_and_declines(tmp_path: Path) -> None:
    data = tmp_path / "rows.jsonl"
    kitchen_on = {"name": "toggle_lights", "parameters": {"room": "kitchen", "state": "on"}}
    party_then_lock = [
        {"name": "set_scene", "parameters": {"scene": "party"}},
        {"name": "lock_door", "parameters": {}},
    ]
    rows = [
        {"question": "Kitchen on", "answer": kitchen_on},
        {"question": "Order pizza", "answer": {"name": "intent_unclear", "parameters": {}}},
        {"question": "a then b", "answer": json.dumps(party_then_lock)},
        {"question": "Sing", "answer": "out_of_scope"},
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    expect = EXPECTATIONS["smart_home"]({})
    call, declined, plan, label = (expect(r) for r in load_rows(data))
    kitchen = {"call": {"name": "toggle_lights", "parameters": {"state": "on", "room": "kitchen"}}}
    assert call.overall({"toolcall": kitchen}) and not call.overall({"toolcall": {"call": None}})
    assert call.checks["intent"]({"label": "device_command"})
    assert declined.overall({"intent": {"label": "out_of_scope"}})
    assert not declined.overall({"intent": {"label": "device_command"}})
    steps = {"step_1": {"name": "set_scene", "parameters": {"scene": "party"}}}
    assert not plan.overall(steps)
    assert plan.overall({**steps, "step_2": {"name": "lock_door", "parameters": {}}})
    assert label.overall({"intent": {"label": "out_of_scope"}}) and set(label.checks) == {"intent"}


async def test_bad_input_is_refused_with_a_clear_error(numbers: Path) -> None:
    async with _number_model().pool() as pool:
        with pytest.raises(ConfigError, match="modes must be"):
            await arun_eval(str(numbers), None, mode="fast", pool=pool)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="eval mapping"):
            await arun_eval(
                str(Path(__file__).parents[1] / "fixtures" / "two_step_graph.py"), numbers,
                pool=pool,
            )  # fmt: skip


def test_cli_arguments() -> None:
    parser = argparse.ArgumentParser()
    add_eval_arguments(parser)
    args = parser.parse_args(
        [
            "smart_home",
            "--data",
            "evals/smart_home.jsonl",
            "--compare",
            "slm,hybrid",
            "--limit",
            "3",
        ]
    )
    assert (args.target, args.mode, args.compare, args.limit, args.concurrency) == (
        "smart_home", "hybrid", "slm,hybrid", 3, 8,
    )  # fmt: skip


def test_score_events_maps_the_supervisor_output_and_ignores_frontier_tries() -> None:
    from brickwork.evals import score_events
    from brickwork.evals.data import Expectation, label_check
    from brickwork.events import Escalation, ModelCallEvent, NodeFinished

    def call(node: str, cost: float) -> ModelCallEvent:
        return ModelCallEvent("r", node, "e", "m", "m", 1, 1, 0.1, cost, cost, False, False)

    events = [
        call("intent", 0.001),
        Escalation("r", "intent", "escalate", "low_confidence", "", ()),
        NodeFinished("r", "intent", False, 0.1, None, "slm", "slm", ({"output": "up"},), "esc"),
        call("supervisor", 0.01),
        NodeFinished("r", "supervisor", True, 0.2, {"label": "down"}, "frontier", "frontier"),
        Escalation("r", "step_1", "escalate", "frontier_mode", "", ()),
        NodeFinished("r", "step_1", False, 0.1, None, "frontier", "frontier", ({"output": "x"},)),
    ]
    checks = {"intent": label_check("down"), "step_1": label_check("x")}
    expectation = Expectation(checks, lambda outputs: outputs["intent"]["label"] == "down")
    correct, nodes = score_events(events, expectation)
    assert correct and nodes["intent"].escalation == "fixed"
    assert nodes["intent"].cost_usd == pytest.approx(0.011)
    assert nodes["intent"].latency_s == pytest.approx(0.3)
    assert nodes["step_1"].escalation == "unscored" and nodes["step_1"].correct is False
