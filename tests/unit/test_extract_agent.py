"""ExtractAgent: schema-constrained request, jsonschema + Pydantic validation, one repair turn."""

from __future__ import annotations

import json
from datetime import date
from typing import Any, Self

import pytest
from pydantic import BaseModel, model_validator

from brickwork.agents.extract import ExtractAgent
from brickwork.errors import SkillError
from brickwork.skills.examples import (
    TransferRequest,
    banking_intent_skill,
    banking_transfer_extraction_skill,
)
from brickwork.skills.skill import JSONContract, Skill, Thresholds
from brickwork.testing import FunctionModel, ModelStep, ScriptedModel

VALID = '{"amount": 250, "currency": "EUR", "recipient": "Marta Silva", "reference": null}'
REPAIR_HEAD = "Your previous answer was rejected:\n"


class Booking(BaseModel):
    """A stay whose dates the JSON schema alone cannot order."""

    check_in: date
    check_out: date

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.check_out <= self.check_in:
            raise ValueError("check_out must be after check_in")
        return self


BOOKING = Skill(name="booking", instructions="Extract the stay.", contract=JSONContract(Booking))
PLAIN = Skill(
    name="plain",
    instructions="Extract the city.",
    contract=JSONContract(
        {
            "type": "object",
            "properties": {"city": {"type": "string", "minLength": 2}},
            "required": ["city"],
            "additionalProperties": False,
        }
    ),
)


async def _run(model: ScriptedModel | FunctionModel, skill: Skill, text: str = "x") -> Any:
    async with model.pool() as pool:
        result = await ExtractAgent(skill).run(text, pool=pool)
    if isinstance(model, ScriptedModel):
        model.assert_consumed()
    return result


async def test_wire_payload_is_schema_constrained_and_valid_output_is_the_model() -> None:
    skill = banking_transfer_extraction_skill()
    model = ScriptedModel([VALID])
    result = await _run(model, skill, "Send 250 euros to Marta Silva")
    schema = TransferRequest.model_json_schema()
    [body] = model.requests
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "banking_transfer_extraction", "schema": schema},
    }
    assert body["model"] == "fake-slm"
    assert body["max_tokens"] == 512 and body["temperature"] == 0.0
    system, *shots, user = body["messages"]
    assert system["role"] == "system"
    assert system["content"].startswith(skill.instructions)
    assert json.dumps(schema) in system["content"]
    assert [m["role"] for m in shots] == ["user", "assistant"] * 3
    assert shots[0]["content"] == skill.examples[0].input
    assert json.loads(shots[1]["content"]) == skill.examples[0].output
    assert user == {"role": "user", "content": "Send 250 euros to Marta Silva"}
    assert result.ok and result.repairs == 0
    assert result.value == TransferRequest(amount=250, currency="EUR", recipient="Marta Silva")
    assert result.attempts[0].output == VALID


async def test_pydantic_only_failure_is_repaired_with_the_validator_text() -> None:
    bad = '{"check_in": "2025-03-10", "check_out": "2025-03-08"}'
    good = '{"check_in": "2025-03-10", "check_out": "2025-03-12"}'
    model = ScriptedModel([bad, good])
    result = await _run(model, BOOKING)
    assert result.ok and result.repairs == 1
    assert result.value == Booking(check_in=date(2025, 3, 10), check_out=date(2025, 3, 12))
    first, second = result.attempts
    assert first.errors == ("$: Value error, check_out must be after check_in",)
    repair_request = model.requests[1]["messages"]
    assert repair_request[:-2] == model.requests[0]["messages"]
    assert repair_request[-2] == {"role": "assistant", "content": bad}
    assert repair_request[-1]["role"] == "user"
    assert repair_request[-1]["content"].startswith(REPAIR_HEAD)
    assert "check_out must be after check_in" in repair_request[-1]["content"]
    assert second.errors == ()


async def test_truncated_output_is_repaired() -> None:
    model = ScriptedModel(['{"amount": 250, "curr', VALID])
    result = await _run(model, banking_transfer_extraction_skill())
    assert result.ok and result.repairs == 1
    assert "not valid JSON" in result.attempts[0].errors[0]
    assert "not valid JSON" in model.requests[1]["messages"][-1]["content"]


def test_cut_off_outputs_say_so() -> None:
    agent = ExtractAgent(banking_transfer_extraction_skill(), max_tokens=8)
    value, errors = agent.validate('{"amount": 2', finish_reason="length")
    assert value is None
    assert errors[0] == ("the answer was cut off at the 8-token limit; write a shorter JSON object")
    assert "not valid JSON" in errors[1]
    assert agent.validate(VALID, finish_reason="length")[1] == []


async def test_invalid_twice_is_an_invalid_output_signal_without_value() -> None:
    bad = '{"amount": -5, "currency": "euros", "recipient": "Tom"}'
    model = ScriptedModel([bad, bad])
    result = await _run(model, banking_transfer_extraction_skill())
    assert result.value is None and result.repairs == 1
    [signal] = result.signals
    assert signal.kind == "invalid_output" and signal.attempt == 1
    errors = ["$.amount: -5 is less than or equal to the minimum of 0", "$.currency: 'euros' "]
    assert signal.detail.startswith(errors[0])
    assert errors[1] in signal.detail and "does not match" in signal.detail
    assert "$.amount: -5 is less than" in model.requests[1]["messages"][-1]["content"]
    assert all(a.errors for a in result.attempts)


async def test_max_repairs_zero_means_no_repair_turn() -> None:
    skill = Skill(
        name="booking",
        instructions="Extract the stay.",
        contract=JSONContract(Booking),
        thresholds=Thresholds(max_repairs=0),
    )
    model = ScriptedModel(['{"check_in": "2025-03-10", "check_out": "2025-03-10"}'])
    result = await _run(model, skill)
    assert result.value is None and len(result.attempts) == 1
    assert [s.kind for s in result.signals] == ["invalid_output"]


async def test_plain_schema_yields_a_dict_and_is_checked_by_jsonschema() -> None:
    answers = iter(['{"city": "X"}', '{"city": "Oslo"}'])
    model = FunctionModel(lambda body: next(answers))
    result = await _run(model, PLAIN, "I live in Oslo")
    assert result.value == {"city": "Oslo"}
    assert result.attempts[0].errors == ("$.city: 'X' is too short",)
    assert model.requests[0]["response_format"]["json_schema"]["schema"] == PLAIN.contract.schema


def test_plain_schema_answers_must_be_objects() -> None:
    loose = Skill(name="loose", instructions="Anything.", contract=JSONContract({}))
    assert ExtractAgent(loose).validate("[1, 2]") == (
        None,
        ["$: the answer must be a JSON object, not list"],
    )


@pytest.mark.parametrize("status", [500, 422])
async def test_model_failure_is_a_model_error_signal(status: int) -> None:
    model = ScriptedModel([ModelStep(status=status, text="down")])
    result = await _run(model, BOOKING)
    assert result.value is None
    [signal] = result.signals
    assert signal.kind == "model_error" and "down" in signal.detail
    assert result.attempts[0].output is None


async def test_model_override_goes_to_that_model() -> None:
    model = ScriptedModel([VALID])
    async with model.pool() as pool:
        agent = ExtractAgent(banking_transfer_extraction_skill())
        result = await agent.run("send 250 EUR to Marta Silva", pool=pool, model="frontier")
    assert result.ok and model.requests[0]["model"] == "fake-frontier"


def test_agent_needs_a_json_contract() -> None:
    with pytest.raises(SkillError, match="JSONContract"):
        ExtractAgent(banking_intent_skill())
    with pytest.raises(SkillError, match="max_tokens"):
        ExtractAgent(BOOKING, max_tokens=0)
