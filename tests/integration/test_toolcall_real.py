"""ToolCallAgent on the real embedded model: every answer is a validated call or carries signals.

The model is tiny (135M parameters), so nothing here asserts it picks the right tool; the
assertions are structural: constrained output validates, valid calls change the hub the way
the call says, failures come back as signals, and the trace holds what was sent and received.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from brickwork.agents.base import AgentResult
from brickwork.agents.toolcall import ToolCall, ToolCallAgent, parse_conversation, tool_signature
from brickwork.serving.pool import ModelPool
from brickwork.skills.examples import smart_home_skill
from brickwork.skills.loaders import load_skill
from brickwork.tools.smart_home import SmartHomeHub
from tests._paths import SHARED_DATA

pytestmark = pytest.mark.vllm

SMART_HOME = SHARED_DATA / "smart_home"
COMMANDS = [
    "Turn on the kitchen lights",
    "Switch off the bedroom lights please",
    "Set the thermostat to 72 degrees",
    "Put the heating on",
    "Unlock the garage door",
    "Lock every door",
    "Start movie night",
    "Is the front door locked?",
    "What's the capital of France?",
    "Toggle the hallway lights",
]
VALUE_FAILURES = {"invalid_output", "unknown_tool", "invalid_arguments", "model_error"}
CALL_FAILURES = {"tool_error", "tool_timeout"}


def _check_effect(call: ToolCall, before: dict[str, Any], hub: SmartHomeHub) -> None:
    """The hub changed exactly as the executed call says (hub semantics for left-out args)."""
    after = hub.snapshot()
    params = call.parameters
    if call.name == "toggle_lights":
        rooms = [params["room"]] if "room" in params else list(before["lights"])
        for room, light in after["lights"].items():
            was = before["lights"][room]["on"]
            if room not in rooms:
                assert light["on"] == was, room
            elif "state" in params:
                assert light["on"] == (params["state"] == "on"), room
            else:
                assert light["on"] == (not was), room
        assert after["doors"] == before["doors"]
        assert after["thermostat"] == before["thermostat"]
    elif call.name == "set_thermostat":
        expected = {**before["thermostat"], **params}
        assert after["thermostat"] == expected
        assert (after["lights"], after["doors"]) == (before["lights"], before["doors"])
    elif call.name == "lock_door":
        doors = [params["door"]] if "door" in params else list(before["doors"])
        for door, lock in after["doors"].items():
            expected_locked = params.get("state") != "unlock" if door in doors else None
            if expected_locked is None:
                assert lock == before["doors"][door], door
            else:
                assert lock["locked"] == expected_locked, door
        assert (after["lights"], after["thermostat"]) == (before["lights"], before["thermostat"])
    elif call.name == "set_scene":
        assert hub.scene == params["scene"]
    else:  # get_device_status, intent_unclear: read-only
        assert after == before
        assert call.name in ("get_device_status", "intent_unclear")


def _check_result(result: AgentResult[ToolCall], agent: ToolCallAgent) -> None:
    """Structural truths every result must satisfy, right or wrong."""
    assert result.attempts, "at least one model call is recorded"
    assert 1 <= len(result.attempts) <= agent.skill.thresholds.max_repairs + 1
    system = result.attempts[0].messages[0]
    assert system["role"] == "system"
    for line in (tool_signature(t) for t in agent.registry):
        assert line in system["content"]
    for attempt in result.attempts:
        if attempt.completion is not None:
            assert attempt.output == attempt.completion.text
            assert attempt.completion.model == "slm"
    if result.value is None:
        assert result.signals
        assert {s.kind for s in result.signals} <= VALUE_FAILURES
        return
    # A value is always a call the registry accepts.
    agent.registry.validate(result.value.name, result.value.parameters)
    assert result.attempts[-1].errors == ()
    assert {s.kind for s in result.signals} <= CALL_FAILURES


async def _run_on_fresh_hub(
    text: str, pool: ModelPool
) -> tuple[AgentResult[ToolCall], ToolCallAgent, SmartHomeHub, dict[str, Any]]:
    hub = SmartHomeHub()
    agent = ToolCallAgent(smart_home_skill(hub))
    before = hub.snapshot()
    return await agent.run(text, pool=pool), agent, hub, before


async def test_every_output_is_a_validated_executed_call_or_signals(slm_pool: ModelPool) -> None:
    runs = await asyncio.gather(*(_run_on_fresh_hub(text, slm_pool) for text in COMMANDS))
    executed = 0
    for result, agent, hub, before in runs:
        _check_result(result, agent)
        if result.value is None or result.extra.get("needs_confirmation"):
            # No value, or a sensitive call the request did not plainly ask for: not run.
            assert result.extra["tool_result"] is None
            assert hub.snapshot() == before  # nothing ran
            continue
        tool_result = result.extra["tool_result"]
        assert tool_result is not None
        if result.ok:
            assert tool_result.ok
            _check_effect(result.value, before, hub)
            executed += 1
        else:
            assert tool_result.error is not None
            assert str(tool_result.error) in result.signals[-1].detail
    # Constrained decoding makes validated calls the norm, not the exception.
    assert sum(r.value is not None for r, *_ in runs) >= len(COMMANDS) // 2
    print(f"\n{executed}/{len(COMMANDS)} commands executed cleanly")


async def test_multi_turn_conversation_from_the_data_runs(slm_pool: ModelPool) -> None:
    path = SMART_HOME / "train.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    longest = max(rows, key=lambda row: len(json.loads(row["question"])))
    for row in (rows[0], longest):
        hub = SmartHomeHub()
        agent = ToolCallAgent(smart_home_skill(hub))
        before = hub.snapshot()
        result = await agent.run(row["question"], pool=slm_pool)
        _check_result(result, agent)
        history = parse_conversation(row["question"])
        assert len(history) == len(json.loads(row["question"]))
        sent = list(result.attempts[0].messages)
        assert sent[-len(history) :] == history  # the whole history, in order, at the end
        assert all(isinstance(m["content"], str) for m in sent)
        if result.ok:
            _check_effect(result.value, before, hub)  # type: ignore[arg-type]


async def test_loaded_schema_only_skill_validates_without_executing(slm_pool: ModelPool) -> None:
    if not (SMART_HOME / "job_description.json").is_file():
        pytest.skip(f"{SMART_HOME} is not available")
    skill = load_skill(SMART_HOME)
    agent = ToolCallAgent(skill, few_shot=3)
    result = await agent.run("Lock the back door", pool=slm_pool)
    _check_result(result, agent)
    assert result.extra["tool_result"] is None  # schema-only tools are never run


async def test_cut_off_output_is_repaired_once_then_signalled(slm_pool: ModelPool) -> None:
    agent = ToolCallAgent(smart_home_skill(), max_tokens=3, execute=False)
    result = await agent.run("Turn on the kitchen lights", pool=slm_pool)
    assert result.value is None
    assert [s.kind for s in result.signals] == ["invalid_output"]
    assert len(result.attempts) == 2
    first, repair = result.attempts
    assert first.completion is not None and first.completion.finish_reason == "length"
    assert repair.messages[-2] == {"role": "assistant", "content": first.output}
    assert "not JSON" in repair.messages[-1]["content"]
    assert "cut off at the 3-token limit" in repair.messages[-1]["content"]
    assert first.errors[0] in repair.messages[-1]["content"]


async def test_a_clear_tool_vote_binds_the_real_models_call(slm_pool: ModelPool) -> None:
    """The real MiniLM kNN over the skill's answered turns narrows vLLM's constrained decoding."""
    from brickwork.agents.embeddings import EmbeddingKNN
    from brickwork.agents.toolcall import choice_examples

    skill = smart_home_skill(SmartHomeHub())
    knn = EmbeddingKNN.from_examples(choice_examples(skill.examples))
    # The skill's 15 examples are too few for a vote to trust (measured: half of its clear
    # leave-one-out votes were wrong), so by default the agent leaves every tool open.
    guarded = ToolCallAgent(skill, execute=False, knn=knn)
    assert guarded.vote_precision is not None and guarded.vote_precision < 0.9
    agent = ToolCallAgent(skill, execute=False, knn=knn, knn_threshold=0.5, min_vote_precision=0)
    result = await agent.run("Please unlock the side door for the delivery", pool=slm_pool)
    vote = result.extra["knn"]
    print("vote:", vote, "call:", result.value, [a.output for a in result.attempts])
    assert vote["tools"] == [vote["label"]] and vote["share"] >= 0.5
    for attempt in result.attempts:  # whatever it answers, only the voted tool could be written
        assert attempt.output is not None and json.loads(attempt.output)["name"] == vote["label"]
    assert result.value is not None or result.signals


async def test_named_choices_are_pinned_in_the_real_models_call(slm_pool: ModelPool) -> None:
    """vLLM decodes with the pinned schema: a tool whose closed choice the user named can only
    be written with that choice ("heat" in "Set the heat to 70"), whichever tool the model picks.
    """
    agent = ToolCallAgent(smart_home_skill(SmartHomeHub()), execute=False, grounded=True)
    requests = [
        "Set the heat to 70",
        "Bump it up to 75 on heat mode",
        "Are the bedroom lights still on?",
        "Fine, just unlock the front door for the guests",
    ]
    results = await asyncio.gather(*(agent.run(text, pool=slm_pool) for text in requests))
    written = 0
    for text, result in zip(requests, results, strict=True):
        pinned = result.extra["pinned"]
        print(text, "| pinned:", pinned, "| calls:", [a.output for a in result.attempts])
        assert pinned, text  # every request names at least one closed choice of some tool
        for attempt in result.attempts:
            call = json.loads(attempt.output or "{}")
            for key, values in pinned.get(call.get("name"), {}).items():
                written += 1
                assert call["parameters"].get(key) in values, (text, call)
    assert written  # the model picked a pinned tool at least once: the check was exercised
