"""Training data for `brickwork tune`: prompts, targets, turns, formats, dedupe, split, errors."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from brickwork.agents.extract import ExtractAgent
from brickwork.agents.intent import IntentAgent
from brickwork.agents.sql import SQLAgent
from brickwork.agents.toolcall import ToolCallAgent
from brickwork.app import App
from brickwork.errors import TuneError
from brickwork.skills.examples import (
    analytics_skill,
    banking_transfer_extraction_skill,
    smart_home_intent_skill,
    smart_home_skill,
)
from brickwork.skills.loaders import load_skill
from brickwork.skills.skill import Example, JSONContract, Skill
from brickwork.store import RunStore
from brickwork.testing import FunctionModel, ModelStep
from brickwork.tune.data import TrainExample, build_dataset, split
from tests._paths import SHARED_DATA

LIGHTS_ON = {"name": "toggle_lights", "parameters": {"room": "kitchen", "state": "on"}}
LOCK = {"name": "lock_door", "parameters": {"door": "front", "state": "lock"}}


def _bare(skill: Skill, examples: list[Example]) -> Skill:
    return Skill(skill.name, skill.instructions, skill.contract, examples)


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _conversation(*turns: Any) -> list[dict[str, Any]]:
    """User texts and calls (dicts) as data-format chat messages."""
    messages: list[dict[str, Any]] = []
    for turn in turns:
        if isinstance(turn, str):
            messages.append({"role": "user", "content": turn})
        else:
            call = {"name": turn["name"], "arguments": turn["parameters"]}
            messages.append(
                {"role": "assistant", "content": "", "tool_calls": [{"function": call}]}
            )
    return messages


def _shared_smart_home() -> Skill:
    """The shared smart_home skill (skipped where ../shared/data is not beside the project)."""
    path = SHARED_DATA / "smart_home"
    if not (path / "job_description.json").is_file():
        pytest.skip(f"{path} is not available")
    return load_skill(path)


# -- prompts and targets ------------------------------------------------------------------------


def test_every_answered_user_turn_of_the_shared_smart_home_data_is_one_example() -> None:
    skill = _shared_smart_home()
    data = build_dataset(skill)
    examples = [*data.train, *data.val]
    # 50 conversations, 152 answered user turns, 6 of them repeated verbatim.
    assert len(examples) == 146 and data.counts["duplicates_dropped"] == 6
    assert data.counts["skill"] == 146 and data.counts["invalid_dropped"] == 0
    agent = ToolCallAgent(skill, few_shot=0)
    for example in examples:
        assert example.example is not None
        assert list(example.messages) == agent.messages(example.example.messages())
        assert example.messages[0]["content"] == agent.system_prompt()
        assert json.loads(example.target) == example.example.output
        assert example.target.startswith('{"name": ')
    first = skill.examples[0]
    turns = [e for e in examples if e.example is not None and e.example.input == first.input]
    assert turns and json.loads(turns[0].target) == first.output


def test_a_conversation_gives_one_example_per_call_with_its_history() -> None:
    conversation = _conversation("Turn on the kitchen lights", LIGHTS_ON, "And lock the front door")
    skill = _bare(smart_home_skill(), [Example(conversation, LOCK)])
    data = build_dataset(skill, val_fraction=0.0)
    by_target = {e.target: e for e in data.train}
    assert set(by_target) == {json.dumps(LIGHTS_ON), json.dumps(LOCK)}
    first, second = by_target[json.dumps(LIGHTS_ON)], by_target[json.dumps(LOCK)]
    assert [m["role"] for m in first.messages] == ["system", "user"]
    assert [m["role"] for m in second.messages] == ["system", "user", "assistant", "user"]
    assert second.messages[2]["content"] == json.dumps(LIGHTS_ON)  # the earlier call, as JSON


def test_intent_and_extraction_prompts_are_the_agents_zero_shot_prompts() -> None:
    intent = smart_home_intent_skill()
    data = build_dataset(intent, val_fraction=0.0)
    agent = IntentAgent(intent, few_shot=0)
    for example in data.train:
        assert example.example is not None
        assert list(example.messages) == agent.messages(example.example.input)
        assert example.target == example.example.output
        assert len(example.messages) == 2  # no few-shot turns
    extraction = banking_transfer_extraction_skill()
    data = build_dataset(extraction, val_fraction=0.0)
    extract = ExtractAgent(extraction, few_shot=0)
    for example in data.train:
        assert example.example is not None
        assert list(example.messages) == extract.messages(example.example.input)
        value, errors = extract.validate(example.target)
        assert errors == [] and value is not None


def test_sql_targets_are_the_agents_json_and_prompts_show_the_database_schema(
    tmp_path: Path,
) -> None:
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as connection:
        connection.executescript(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT, total REAL);"
        )
    skill = analytics_skill(database=f"sqlite:///{db}")
    skill = _bare(skill, [Example("How many orders are there?", "SELECT COUNT(*) FROM orders;")])
    data = build_dataset(skill, val_fraction=0.0)
    (example,) = data.train
    assert json.loads(example.target) == {"sql": "SELECT COUNT(*) FROM orders"}
    agent = SQLAgent(skill, few_shot=0)
    assert list(example.messages) == agent.messages(
        "How many orders are there?", agent.database.introspect()
    )
    assert "CREATE TABLE orders" in example.messages[-1]["content"]


def test_a_sql_skill_without_a_database_is_a_clear_error() -> None:
    with pytest.raises(TuneError, match="database"):
        build_dataset(analytics_skill())


# -- files --------------------------------------------------------------------------------------


def test_question_answer_jsonl_and_csv_and_chat_jsonl_files(tmp_path: Path) -> None:
    skill = _bare(smart_home_skill(), [])
    qa = _jsonl(
        tmp_path / "qa.jsonl",
        [{"question": "Turn on the kitchen lights", "answer": json.dumps(LIGHTS_ON)}],
    )
    table = tmp_path / "more.csv"
    with table.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "answer"])
        writer.writerow(["Lock the front door", json.dumps(LOCK)])
    chat = _jsonl(
        tmp_path / "chat.jsonl",
        [
            {
                "messages": [
                    {"role": "system", "content": "ignored: the agent writes its own"},
                    *_conversation("Lights on in the kitchen please", LIGHTS_ON),
                ]
            },
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]},
        ],
    )
    data = build_dataset(skill, files=[qa, table, chat], val_fraction=0.0)
    assert data.counts["file:qa.jsonl"] == 1 and data.counts["file:more.csv"] == 1
    assert data.counts["file:chat.jsonl"] == 1 and data.counts["invalid_dropped"] == 1
    texts = {e.messages[-1]["content"]: e.target for e in data.train}
    assert texts == {
        "Turn on the kitchen lights": json.dumps(LIGHTS_ON),
        "Lock the front door": json.dumps(LOCK),
        "Lights on in the kitchen please": json.dumps(LIGHTS_ON),
    }
    assert {e.source for e in data.train} == {"file:qa.jsonl", "file:more.csv", "file:chat.jsonl"}


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    skill = smart_home_skill()
    with pytest.raises(TuneError, match="does not exist"):
        build_dataset(skill, files=[tmp_path / "missing.jsonl"])
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "x"}\n', encoding="utf-8")
    with pytest.raises(TuneError, match=r"broken\.jsonl.*answer"):
        build_dataset(skill, files=[broken])
    wrong = tmp_path / "data.txt"
    wrong.write_text("question,answer\n", encoding="utf-8")
    with pytest.raises(TuneError, match=r"\.jsonl or \.csv"):
        build_dataset(skill, files=[wrong])


# -- validation, dedupe, split, empty data ------------------------------------------------------


def test_examples_that_fail_the_contract_are_dropped_and_counted(tmp_path: Path) -> None:
    skill = _bare(smart_home_skill(), [])
    rows = [
        {"question": "Turn on the kitchen lights", "answer": json.dumps(LIGHTS_ON)},
        {
            "question": "Open the pod bay doors",
            "answer": '{"name": "open_pod_bay", "parameters": {}}',
        },
        {
            "question": "Lights to purple",
            "answer": '{"name": "toggle_lights", "parameters": {"state": "purple"}}',
        },
        {"question": "Say hi", "answer": "hello"},
    ]
    data = build_dataset(skill, files=[_jsonl(tmp_path / "mixed.jsonl", rows)])
    assert data.counts["invalid_dropped"] == 3 and data.counts["file:mixed.jsonl"] == 1
    assert [e.target for e in data.train] == [json.dumps(LIGHTS_ON)] and data.val == ()


def test_nothing_valid_is_a_clear_error(tmp_path: Path) -> None:
    skill = _bare(smart_home_skill(), [])
    rows = [{"question": "Lights to purple", "answer": '{"name": "toggle_lights", '
             '"parameters": {"state": "purple"}}'}]  # fmt: skip
    with pytest.raises(TuneError, match=r"none of the 1 examples.*purple"):
        build_dataset(skill, files=[_jsonl(tmp_path / "bad.jsonl", rows)])


def test_no_data_at_all_is_a_clear_error(tmp_path: Path) -> None:
    skill = _bare(smart_home_skill(), [])
    with pytest.raises(TuneError, match="no training data.*--data"):
        build_dataset(skill)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(TuneError, match="no training data"):
        build_dataset(smart_home_skill(), files=[empty], include_skill_examples=False)


def test_duplicates_are_dropped_across_sources(tmp_path: Path) -> None:
    example = Example("Turn on the kitchen lights", LIGHTS_ON)
    skill = _bare(smart_home_skill(), [example, example])
    reordered = {"name": "toggle_lights", "parameters": {"room": "kitchen", "state": "on"}}
    rows = [{"question": "Turn on the kitchen lights", "answer": json.dumps(reordered)}]
    data = build_dataset(skill, files=[_jsonl(tmp_path / "dup.jsonl", rows)])
    assert data.counts["duplicates_dropped"] == 2 and data.counts["skill"] == 1
    assert "file:dup.jsonl" not in data.counts
    assert len(data.train) + len(data.val) == 1


def test_split_is_deterministic_order_independent_and_keeps_one_val_example() -> None:
    skill = smart_home_skill()
    reversed_skill = _bare(skill, list(reversed(skill.examples)))
    first, again = build_dataset(skill, seed=3), build_dataset(reversed_skill, seed=3)
    assert [e.key for e in first.train] == [e.key for e in again.train]
    assert [e.key for e in first.val] == [e.key for e in again.val]
    assert first.sha256 == again.sha256
    other = build_dataset(skill, seed=4)
    assert {e.key for e in other.val} != {e.key for e in first.val}
    assert other.sha256 != first.sha256
    assert len(first.val) == round(first.counts["skill"] * 0.2)
    two = build_dataset(_bare(skill, list(skill.examples[:2])))
    assert len(two.train) == 1 and len(two.val) == 1
    one = build_dataset(_bare(skill, list(skill.examples[:1])))
    assert len(one.train) == 1 and one.val == ()
    with pytest.raises(TuneError, match="val_fraction"):
        build_dataset(skill, val_fraction=1.0)


def test_split_never_takes_every_example() -> None:
    examples = [
        TrainExample(({"role": "user", "content": str(i)},), str(i), "skill") for i in range(3)
    ]
    train, val = split(examples, val_fraction=0.9, seed=0)
    assert len(train) == 1 and len(val) == 2


# -- escalations ----------------------------------------------------------------------------------

NUMBER = JSONContract(
    {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 0}},
        "required": ["n"],
        "additionalProperties": False,
    }
)

_TOOL_GRAPH = """
from brickwork.agents.toolcall import ToolCallAgent
from brickwork.graphs.builder import END, Specialist, build_graph
from brickwork.skills.examples import smart_home_skill

NAME = "tool_graph"


def build(*, checkpointer=None):
    agent = ToolCallAgent(smart_home_skill())
    return build_graph(
        [Specialist("toolcall", agent, lambda s: s["messages"] or s["text"], next=END)],
        checkpointer=checkpointer,
    )


graph = build()
"""


def _fake(small: str, frontier: str) -> FunctionModel:
    def answer(body: dict[str, Any]) -> ModelStep:
        return ModelStep(frontier if body["model"] == "fake-frontier" else small)

    return FunctionModel(answer)


async def _run(graph: str, store: RunStore, model: FunctionModel, *requests: Any) -> list[Any]:
    results = []
    async with model.pool() as pool:
        app = App.from_graph(graph, pool=pool, store=store, checkpoints=None)
        for request in requests:
            if isinstance(request, tuple):
                text, options = request
                results.append(await app.ainvoke(text, **options))
            else:
                results.append(await app.ainvoke(request))
        await app.aclose()
    return results


async def test_escalations_fixed_by_the_frontier_become_examples(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    graph = tmp_path / "tool_graph.py"
    graph.write_text(_TOOL_GRAPH, encoding="utf-8")
    history = _conversation("Turn on the kitchen lights", LIGHTS_ON, "Lock the front door")
    fixed = await _run(
        str(graph),
        store,
        _fake("not json", json.dumps(LOCK)),
        "Lock the front door",
        ("Lock the front door, please", {"messages": history}),
        ("Lock the front door now", {"mode": "frontier"}),
    )
    assert all(r.ok and r.escalations for r in fixed)
    # Not captured: accepted on the small model, and failed on the frontier model too.
    await _run(str(graph), store, _fake(json.dumps(LIGHTS_ON), "x"), "Turn on the kitchen lights")
    failed = await _run(str(graph), store, _fake("not json", "still not json"), "Lock it")
    assert failed[0].status == "failed"

    skill = smart_home_skill()
    data = build_dataset(
        skill, store=store, from_escalations=True, include_skill_examples=False, val_fraction=0
    )
    assert data.counts["escalation"] == 3 and data.counts["invalid_dropped"] == 0
    agent = ToolCallAgent(skill, few_shot=0)
    expected = {
        json.dumps(agent.messages("Lock the front door")),
        json.dumps(agent.messages(history)),
        json.dumps(agent.messages("Lock the front door now")),
    }
    assert {json.dumps(list(e.messages)) for e in data.train} == expected
    assert all(e.target == json.dumps(LOCK) for e in data.train)
    run_ids = {r.run_id for r in fixed}
    assert {e.source.split(":")[1].split("/")[0] for e in data.train} == run_ids
    assert all(e.source.endswith("/toolcall") for e in data.train)
    # Another skill's escalations do not match this one.
    with pytest.raises(TuneError, match="no training data"):
        build_dataset(
            smart_home_intent_skill(),
            store=store,
            from_escalations=True,
            include_skill_examples=False,
        )


async def test_frontier_answers_that_fail_the_skills_contract_are_dropped(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    graph = str(Path(__file__).resolve().parents[1] / "fixtures" / "two_step_graph.py")
    await _run(graph, store, _fake('{"n": -1}', '{"n": 8}'), "eight")
    strict = Skill(
        "number",
        "Give the number.",
        JSONContract(
            {**NUMBER.json_schema, "properties": {"n": {"type": "integer", "minimum": 10}}}
        ),
    )
    with pytest.raises(TuneError, match=r"none of the 1 examples.*escalation:"):
        build_dataset(strict, store=store, from_escalations=True)
    same = Skill("number", "Give the number.", NUMBER)
    data = build_dataset(same, store=store, from_escalations=True, val_fraction=0)
    (example,) = data.train
    assert example.target == '{"n": 8}'
    assert list(example.messages) == ExtractAgent(same, few_shot=0).messages("eight")


def test_split_keeps_the_turns_of_a_conversation_on_one_side() -> None:
    def first_user(example: TrainExample) -> str:
        return next(str(m["content"]) for m in example.messages if m["role"] == "user")

    skill = _shared_smart_home()
    for seed in range(3):
        data = build_dataset(skill, seed=seed)
        train = {first_user(e) for e in data.train}
        val = {first_user(e) for e in data.val}
        assert train and val and not train & val
        assert 0.1 < len(data.val) / (len(data.train) + len(data.val)) < 0.3


def test_training_progress_without_a_terminal_is_a_plain_line_every_5_percent(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from brickwork.tune.train import _progress_bar

    with _progress_bar(True, 40) as advance:  # stderr is captured here: not a terminal
        for step in range(40):
            advance(1.0 / (step + 1), 1 + step // 20)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 20
    assert lines[0].startswith("training epoch 1 step 2/40 loss 0.5000 (avg 0.7500)")
    assert lines[-1].startswith("training epoch 2 step 40/40 loss 0.0250")
    assert lines[-1].endswith("~0 s left")
