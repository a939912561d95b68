"""Benchmark scorers: exact label, tool-call equivalence (with defaults dropped), field match."""

from __future__ import annotations

import json

import pytest

from brickwork.agents.scoring import exact_label, field_match, tool_call_equivalent
from brickwork.agents.toolcall import ToolCall
from brickwork.errors import SkillError
from brickwork.tools.registry import ToolRegistry, tool
from brickwork.tools.smart_home import SmartHomeHub
from tests._paths import SHARED_DATA

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_statement",
            "parameters": {
                "type": "object",
                "properties": {
                    "account_type": {"type": "string", "enum": ["checking", "savings"]},
                    "period": {
                        "type": "string",
                        "enum": ["last_month", "last_year"],
                        "default": "last_month",
                    },
                    "paper": {"type": "boolean", "default": False},
                },
            },
        },
    },
    {"type": "function", "function": {"name": "goodbye", "parameters": {"type": "object"}}},
]


def _call(name: str, **parameters: object) -> dict[str, object]:
    return {"name": name, "parameters": parameters}


def test_equal_calls_in_any_form() -> None:
    gold = _call("get_statement", account_type="savings", period="last_year")
    assert tool_call_equivalent(gold, gold, TOOLS)
    assert tool_call_equivalent(json.dumps(gold), json.dumps(gold), TOOLS)
    pred = ToolCall("get_statement", {"period": "last_year", "account_type": "savings"})
    assert tool_call_equivalent(pred, json.dumps(gold), TOOLS)


def test_parameters_equal_to_the_default_are_dropped_on_both_sides() -> None:
    gold = _call("get_statement", account_type="checking")
    assert tool_call_equivalent(
        _call("get_statement", account_type="checking", period="last_month"), gold, TOOLS
    )
    assert tool_call_equivalent(
        _call("get_statement", account_type="checking", paper=False), gold, TOOLS
    )
    stated = _call("get_statement", account_type="checking", period="last_month")
    assert tool_call_equivalent(_call("get_statement", account_type="checking"), stated, TOOLS)
    # A non-default value is a real parameter.
    assert not tool_call_equivalent(
        _call("get_statement", account_type="checking", period="last_year"), gold, TOOLS
    )
    # False is the default, 0 is not False.
    assert not tool_call_equivalent(
        _call("get_statement", account_type="checking", paper=0), gold, TOOLS
    )


def test_extra_and_missing_keys_are_errors() -> None:
    gold = _call("get_statement", account_type="checking", period="last_year")
    assert not tool_call_equivalent(_call("get_statement", account_type="checking"), gold, TOOLS)
    assert not tool_call_equivalent(
        _call("get_statement", account_type="checking", period="last_year", extra=1), gold, TOOLS
    )
    # Without a default, an extra key the gold left out is an error too (no null = absent).
    assert not tool_call_equivalent(
        _call("get_statement", account_type=None, period="last_year"),
        _call("get_statement", period="last_year"),
        TOOLS,
    )


def test_names_and_values_must_match_exactly() -> None:
    assert not tool_call_equivalent(_call("goodbye"), _call("get_statement"), TOOLS)
    assert not tool_call_equivalent(
        _call("get_statement", account_type="Savings"),
        _call("get_statement", account_type="savings"),
        TOOLS,
    )
    assert tool_call_equivalent(_call("goodbye"), '{"name": "goodbye", "parameters": {}}', TOOLS)
    assert tool_call_equivalent({"name": "goodbye"}, _call("goodbye"), TOOLS)


def test_numbers_compare_as_json_numbers() -> None:
    registry = SmartHomeHub().registry()
    gold = _call("set_thermostat", temperature=72)
    assert tool_call_equivalent(_call("set_thermostat", temperature=72.0), gold, registry)
    assert not tool_call_equivalent(_call("set_thermostat", temperature="72"), gold, registry)
    assert not tool_call_equivalent(_call("set_thermostat", temperature=True), gold, registry)


def test_unreadable_predictions_are_wrong_and_bad_gold_raises() -> None:
    gold = _call("goodbye")
    for pred in (None, "", "not json", '{"name": "goodbye"', "[]", {"name": 3}, 5):
        assert not tool_call_equivalent(pred, gold, TOOLS)
    assert not tool_call_equivalent({"name": "goodbye", "parameters": {}, "x": 1}, gold, TOOLS)
    assert not tool_call_equivalent({"name": "goodbye", "parameters": []}, gold, TOOLS)
    with pytest.raises(SkillError, match="gold answer"):
        tool_call_equivalent(gold, "goodbye()", TOOLS)


def test_schemas_as_registry_or_mapping() -> None:
    @tool
    def report(kind: str = "short", pages: int | None = None) -> str:
        """Write a report.

        Args:
            kind: Which report.
            pages: How long.
        """
        return kind

    registry = ToolRegistry([report])
    assert tool_call_equivalent(_call("report", kind="short"), _call("report"), registry)
    mapping = {"report": {"type": "object", "properties": {"kind": {"default": "short"}}}}
    assert tool_call_equivalent(_call("report", kind="short"), _call("report"), mapping)
    assert not tool_call_equivalent(_call("report", kind="long"), _call("report"), mapping)
    # Unknown to the schemas: no defaults to drop, plain comparison.
    assert not tool_call_equivalent(_call("other", kind="short"), _call("other"), mapping)
    assert tool_call_equivalent(_call("other", kind="x"), _call("other", kind="x"), mapping)


def test_smart_home_gold_answers_are_equivalent_to_themselves() -> None:
    path = SHARED_DATA / "smart_home"
    if not (path / "train.jsonl").is_file():
        pytest.skip("shared smart_home data is not available")
    tools = json.loads((path / "job_description.json").read_text())["tools"]
    rows = [json.loads(line) for line in (path / "train.jsonl").read_text().splitlines()]
    answers = [row["answer"] for row in rows]
    assert all(tool_call_equivalent(a, a, tools) for a in answers)
    # Calls of different tools never match.
    different = [
        (a, b) for a in answers for b in answers if json.loads(a)["name"] != json.loads(b)["name"]
    ]
    assert different
    assert not any(tool_call_equivalent(a, b, tools) for a, b in different)


def test_exact_label() -> None:
    assert exact_label("change_pin", "change_pin")
    assert exact_label(" change_pin\n", "change_pin")
    assert not exact_label("Change_pin", "change_pin")
    assert not exact_label(None, "change_pin")
    assert not exact_label("", "change_pin")


def test_field_match() -> None:
    gold = {"amount": 50, "currency": "EUR", "recipient": "Anna", "reference": None}
    assert field_match(gold, gold) == 1.0
    assert field_match({**gold, "amount": 50.0}, gold) == 1.0
    assert field_match({**gold, "currency": "USD"}, gold) == 0.75
    assert field_match({"amount": 50, "recipient": "Anna", "extra": 1}, gold) == 0.5
    assert field_match({**gold, "reference": "None"}, gold) == 0.75
    assert field_match(None, gold) == 0.0
    assert field_match({}, {}) == 1.0
    assert field_match({"a": 1}, {}) == 0.0
    assert field_match({"tags": ["a", "b"]}, {"tags": ["b", "a"]}) == 0.0
    assert field_match({"flag": 1}, {"flag": True}) == 0.0
