from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from brickwork.errors import SkillError
from brickwork.skills.examples import (
    BANKING_INTENTS,
    TransferRequest,
    analytics_skill,
    banking_intent_skill,
    banking_transfer_extraction_skill,
    smart_home_skill,
)
from brickwork.skills.loaders import load_examples, load_skill
from brickwork.skills.skill import (
    Example,
    JSONContract,
    LabelSet,
    ModelBinding,
    Skill,
    SQLContract,
    Thresholds,
    ToolContract,
)
from brickwork.tools.smart_home import SmartHomeHub
from tests._paths import SHARED_DATA

SHARED = SHARED_DATA

# The shop database the analytics skill runs on (the tables another module generates).
SHOP_DDL = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, city TEXT, signup_date DATE);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, category TEXT, price REAL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id),
                     order_date DATE, status TEXT);
CREATE TABLE order_items (order_id INTEGER REFERENCES orders(id),
                          product_id INTEGER REFERENCES products(id),
                          quantity INTEGER, unit_price REAL);
"""


def _write(folder: Path, job: Any, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = job if isinstance(job, str) else json.dumps(job)
    (folder / "job_description.json").write_text(text)
    for name, content in files.items():
        (folder / name.replace("_", ".")).write_text(content)
    return folder


# --- the Skill brick ---------------------------------------------------------------------------


def test_binding_logical_name_and_with_binding() -> None:
    assert ModelBinding().logical_name == "slm"
    assert ModelBinding("slm", "intent-lora").logical_name == "slm:intent-lora"
    skill = banking_intent_skill()
    rebound = skill.with_binding("slm", adapter="banking-lora")
    assert rebound.binding.logical_name == "slm:banking-lora"
    assert skill.binding.logical_name == "slm"  # the original is untouched
    assert rebound.with_binding(ModelBinding("frontier")).binding.logical_name == "frontier"
    assert rebound.examples == skill.examples and rebound.contract is skill.contract
    with pytest.raises(SkillError, match="'slm:x'"):
        ModelBinding("slm:x")


def test_thresholds_are_checked() -> None:
    assert Thresholds().min_confidence == 0.6 and Thresholds().max_repairs == 1
    with pytest.raises(SkillError, match=r"min_confidence 1\.5"):
        Thresholds(min_confidence=1.5)
    with pytest.raises(SkillError, match="max_repairs -1"):
        Thresholds(max_repairs=-1)


def test_skill_is_frozen_and_checks_its_examples() -> None:
    labels = LabelSet({"yes": "Agrees.", "no": "Disagrees."})
    skill = Skill("answer", "Say yes or no.", labels, [Example("ok?", "yes")])
    assert skill.kind == "intent" and isinstance(skill.examples, tuple)
    with pytest.raises(AttributeError):
        skill.name = "other"  # type: ignore[misc]
    with pytest.raises(SkillError, match="example #1: label 'maybe' is not one of"):
        Skill("answer", "x", labels, [Example("a", "no"), Example("b", "maybe")])
    with pytest.raises(SkillError, match="skill name 'two words'"):
        Skill("two words", "x", labels)
    with pytest.raises(SkillError, match="at least one label"):
        LabelSet({})


def test_json_contract_from_schema_dict() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    contract = JSONContract(schema)
    assert contract.model is None and contract.json_schema == schema
    assert Skill("count", "Count.", contract, [Example("three", {"n": 3})]).kind == "extract"
    with pytest.raises(SkillError, match=r"\$: 'n' is a required property"):
        Skill("count", "Count.", contract, [Example("three", {"m": 3})])
    with pytest.raises(SkillError, match="not a valid JSON schema"):
        JSONContract({"type": 12})


def test_few_shot_round_robins_over_labels_and_tools() -> None:
    skill = banking_intent_skill()
    picked = skill.few_shot(6)
    assert [example.output for example in picked] == list(BANKING_INTENTS)
    assert skill.few_shot(0) == ()
    assert len(skill.few_shot(1000)) == len(skill.examples)
    tools = smart_home_skill().few_shot(5)
    assert len({example.output["name"] for example in tools}) == 5
    analytics = analytics_skill()
    assert analytics.few_shot(2) == tuple(analytics.examples[:2])
    with pytest.raises(SkillError, match="k=-1"):
        skill.few_shot(-1)


def test_example_messages() -> None:
    assert Example("hi", "x").messages() == [{"role": "user", "content": "hi"}]
    history = [{"role": "user", "content": "a"}]
    assert Example(history, "x").messages() == history


# --- example skills ----------------------------------------------------------------------------


def test_smart_home_examples_validate_through_the_registry() -> None:
    hub = SmartHomeHub()
    skill = smart_home_skill(hub)
    assert isinstance(skill.contract, ToolContract) and skill.kind == "toolcall"
    assert len(skill.examples) >= 10
    registry = skill.contract.registry
    call_schema = jsonschema.Draft202012Validator(registry.call_schema())
    for example in skill.examples:
        call = example.output
        registry.validate(call["name"], call["parameters"])
        assert call_schema.is_valid(call)
        assert example.messages()[-1]["role"] == "user"
    assert {e.output["name"] for e in skill.examples} == set(registry.names())


def test_banking_intent_examples_use_declared_labels() -> None:
    skill = banking_intent_skill()
    assert isinstance(skill.contract, LabelSet) and len(skill.contract.labels) == 6
    assert len(skill.examples) >= 20
    assert all(example.output in skill.contract.labels for example in skill.examples)
    assert {example.output for example in skill.examples} == set(skill.contract.labels)


def test_transfer_extraction_examples_fit_the_model() -> None:
    skill = banking_transfer_extraction_skill()
    assert isinstance(skill.contract, JSONContract)
    assert skill.contract.model is TransferRequest
    assert len(skill.examples) >= 8
    validator = jsonschema.Draft202012Validator(skill.contract.json_schema)
    for example in skill.examples:
        request = TransferRequest.model_validate(example.output)
        assert request.amount > 0 and len(request.currency) == 3
        assert validator.is_valid(example.output)
    with pytest.raises(ValueError, match="currency"):
        TransferRequest.model_validate({"amount": 5, "currency": "euro", "recipient": "A"})


def test_analytics_examples_run_on_the_shop_schema() -> None:
    skill = analytics_skill(database="shop.db")
    assert isinstance(skill.contract, SQLContract)
    assert skill.contract.dialect == "sqlite" and skill.contract.database == "shop.db"
    connection = sqlite3.connect(":memory:")
    try:
        connection.executescript(SHOP_DDL)
        for example in skill.examples:
            assert example.output.lstrip().upper().startswith("SELECT")
            connection.execute(example.output).fetchall()
    finally:
        connection.close()


# --- loaders on the shared benchmark folders ---------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "kind", "first_output_type"),
    [
        ("banking8", "intent", str),
        ("ecommerce", "intent", str),
        ("smart_home", "toolcall", dict),
        ("bank_voice", "toolcall", dict),
        ("text2sql", "sql", str),
    ],
)
def test_load_shared_folders(folder: str, kind: str, first_output_type: type) -> None:
    path = SHARED / folder
    if not (path / "job_description.json").is_file():
        pytest.skip(f"{path} is not available")
    skill = load_skill(path)
    job = json.loads((path / "job_description.json").read_text())
    assert skill.name == folder and skill.kind == kind
    assert skill.instructions.startswith(job["task_description"])
    assert len(skill.examples) > 10
    assert isinstance(skill.examples[0].output, first_output_type)
    if kind == "toolcall":
        assert isinstance(skill.contract, ToolContract)
        assert skill.contract.registry.names() == tuple(t["function"]["name"] for t in job["tools"])
        assert isinstance(skill.examples[0].input, list)
    if kind == "intent":
        assert isinstance(skill.contract, LabelSet)
        assert skill.contract.names == tuple(job["classes_description"])
    if kind == "sql":
        assert isinstance(skill.contract, SQLContract) and skill.contract.dialect == "sqlite"
        assert "CREATE TABLE" in str(skill.examples[0].input)
    assert load_skill(path / "job_description.json", name="renamed").name == "renamed"


# --- loaders on malformed files ----------------------------------------------------------------

LABELS = {"task_description": "Classify.", "classes_description": {"a": "A.", "b": "B."}}


def test_loader_reads_csv_and_jsonl(tmp_path: Path) -> None:
    folder = _write(tmp_path / "my-skill", LABELS, train_csv='question,answer\n"x, y",a\nz,b\n')
    skill = load_skill(folder)
    assert skill.name == "my_skill"
    assert [(e.input, e.output) for e in skill.examples] == [("x, y", "a"), ("z", "b")]
    rows = [
        {"question": "[not json", "answer": "{not json"},
        {"question": [{"role": "user", "content": "hi"}], "answer": {"k": 1}},
        {"question": "[1, 2]", "answer": "[1, 2]"},
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    examples = load_examples(path)
    assert [(e.input, e.output) for e in examples] == [
        ("[not json", "{not json"),
        ([{"role": "user", "content": "hi"}], {"k": 1}),
        ("[1, 2]", "[1, 2]"),
    ]


def test_folder_without_examples_loads_zero_shot(tmp_path: Path) -> None:
    assert load_skill(_write(tmp_path / "bare", LABELS)).examples == ()


def test_sql_dialect_and_output_schema(tmp_path: Path) -> None:
    job = {"task_description": "Write one PostgreSQL query for the question."}
    assert load_skill(_write(tmp_path / "pg", job)).contract == SQLContract(dialect="postgres")
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    extract = {"task_description": "Find the city.", "output_schema": schema}
    rows = json.dumps({"question": "I live in Porto", "answer": '{"city": "Porto"}'})
    skill = load_skill(_write(tmp_path / "ex", extract, train_jsonl=rows))
    assert skill.kind == "extract" and skill.examples[0].output == {"city": "Porto"}


@pytest.mark.parametrize(
    ("job", "files", "match"),
    [
        ("{broken", {}, "is not valid JSON"),
        ("[1, 2]", {}, "must hold a JSON object, not list"),
        ({"classes_description": {"a": "A"}}, {}, "no 'task_description'"),
        ({"task_description": "Summarise the text."}, {}, "cannot tell what kind of skill"),
        ({"task_description": "x", "classes_description": ["a"]}, {}, "must map labels"),
        ({"task_description": "x", "tools": []}, {}, "non-empty list"),
        ({"task_description": "x", "tools": [{"function": {}}]}, {}, "bad tool definition"),
        (LABELS, {"train_csv": "text,label\nx,a\n"}, r"train\.csv:1: CSV header"),
        (LABELS, {"train_csv": ""}, "empty CSV file"),
        (LABELS, {"train_csv": "question,answer\nx,c\n"}, "label 'c' is not one of"),
        (LABELS, {"train_jsonl": '{"question": "x", "answer": "a"}\n{oops'}, r"jsonl:2: not"),
        (LABELS, {"train_jsonl": '["x", "a"]'}, r"jsonl:1: expected a JSON object"),
        (LABELS, {"train_jsonl": '{"question": "x"}'}, r"jsonl:1: row has no \['answer'\]"),
        (LABELS, {"train_jsonl": '{"question": 3, "answer": "a"}'}, "neither text nor"),
    ],
)
def test_malformed_skill_folders(
    tmp_path: Path, job: Any, files: dict[str, str], match: str
) -> None:
    folder = _write(tmp_path / "bad", job, **files)
    with pytest.raises(SkillError, match=match):
        load_skill(folder)


def test_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(SkillError, match="no job description at"):
        load_skill(tmp_path)
    with pytest.raises(SkillError, match="does not exist"):
        load_examples(tmp_path / "nope.jsonl")
    (tmp_path / "rows.txt").write_text("question,answer\n")
    with pytest.raises(SkillError, match=r"must end in \.jsonl or \.csv"):
        load_examples(tmp_path / "rows.txt")


def test_tool_examples_are_validated_when_loading(tmp_path: Path) -> None:
    tools = [{"type": "function", "function": {"name": "ping", "parameters": {"type": "object"}}}]
    job = {"task_description": "Call tools.", "tools": tools}
    ok = json.dumps({"question": "ping", "answer": '{"name": "ping", "parameters": {}}'})
    assert load_skill(_write(tmp_path / "ok", job, train_jsonl=ok)).kind == "toolcall"
    bad = json.dumps({"question": "x", "answer": '{"name": "pong", "parameters": {}}'})
    with pytest.raises(SkillError, match="unknown tool 'pong'"):
        load_skill(_write(tmp_path / "bad", job, train_jsonl=bad))
