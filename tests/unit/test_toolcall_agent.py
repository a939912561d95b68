"""ToolCallAgent on scripted models: wire payload, validation, repair, execution and signals."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

import pytest

from brickwork.agents.toolcall import (
    ToolCall,
    ToolCallAgent,
    normalise_messages,
    parse_conversation,
    tool_signature,
)
from brickwork.errors import SkillError, ToolExecutionError, UnknownModelError
from brickwork.skills.examples import banking_intent_skill, smart_home_skill
from brickwork.skills.skill import Example, Skill, Thresholds, ToolContract
from brickwork.testing import FunctionModel, ModelStep, ScriptedModel
from brickwork.tools.registry import ToolRegistry, ToolResult, tool
from brickwork.tools.smart_home import SmartHomeHub

KITCHEN_ON = '{"name": "toggle_lights", "parameters": {"room": "kitchen", "state": "on"}}'
HISTORY = [
    {"role": "user", "content": "Lock the front door"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "type": "function",
                "function": {"name": "lock_door", "arguments": {"door": "front", "state": "lock"}},
            }
        ],
    },
    {"role": "user", "content": "Do the same for the back door"},
]
HISTORY_AS_SENT = [
    {"role": "user", "content": "Lock the front door"},
    {
        "role": "assistant",
        "content": '{"name": "lock_door", "parameters": {"door": "front", "state": "lock"}}',
    },
    {"role": "user", "content": "Do the same for the back door"},
]


def _body(model: ScriptedModel | FunctionModel, index: int = 0) -> dict[str, Any]:
    return model.requests[index]


async def _run(
    agent: ToolCallAgent, steps: list[str | ModelStep], text: Any = "Kitchen lights on"
) -> tuple[Any, ScriptedModel]:
    model = ScriptedModel(list(steps))
    async with model.pool() as pool:
        result = await agent.run(text, pool=pool)
    model.assert_consumed()
    return result, model


async def test_wire_payload_is_constrained_by_the_registry_call_schema() -> None:
    hub = SmartHomeHub()
    skill = smart_home_skill(hub)
    agent = ToolCallAgent(skill, few_shot=2)
    result, model = await _run(agent, [KITCHEN_ON])
    body = _body(model)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": hub.registry().call_schema()},
    }
    assert body["temperature"] == 0.0
    assert body["model"] == "fake-slm"
    system = body["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith(skill.instructions)
    assert (
        'toggle_lights(room?: "living_room"|"bedroom"|"kitchen"|"bathroom"|"office"|"hallway", '
        'state?: "on"|"off")  Turn lights on or off in a specified room.'
    ) in system["content"]
    assert "set_thermostat(temperature?: int 60..80, mode?: " in system["content"]
    # Two few-shot examples as prior turns, then the request.
    shots = skill.few_shot(2)
    assert body["messages"][1:5] == [
        {"role": "user", "content": shots[0].input},
        {"role": "assistant", "content": json.dumps(shots[0].output)},
        {"role": "user", "content": shots[1].input},
        {"role": "assistant", "content": json.dumps(shots[1].output)},
    ]
    assert body["messages"][5:] == [{"role": "user", "content": "Kitchen lights on"}]
    assert result.attempts[0].messages == tuple(body["messages"])


async def test_an_adapter_gets_the_zero_shot_prompt_it_was_tuned_on() -> None:
    hub = SmartHomeHub()
    agent = ToolCallAgent(smart_home_skill(hub), few_shot=2)
    model = ScriptedModel([KITCHEN_ON])
    async with model.pool() as pool:
        result = await agent.run("Kitchen lights on", pool=pool, model="slm:tuned")
    assert result.ok
    body = _body(model)
    assert body["model"] == "tuned"
    messages = body["messages"]
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages == agent.messages("Kitchen lights on", few_shot=0)


def _chars(messages: list[Any]) -> int:
    return sum(len(m["content"]) for m in messages)


async def test_an_adapters_counterfactual_counts_the_examples_the_top_tier_is_shown() -> None:
    agent = ToolCallAgent(smart_home_skill(SmartHomeHub()), few_shot=2)
    shown = agent.messages("Kitchen lights on", few_shot=0)
    top = agent.messages("Kitchen lights on")
    model = ScriptedModel([ModelStep(KITCHEN_ON, prompt_tokens=_chars(shown) // 4)])
    async with model.pool() as pool:
        tuned = await agent.run("Kitchen lights on", pool=pool, model="slm:tuned")
    (attempt,) = tuned.attempts
    assert attempt.completion is not None
    prompt = attempt.completion.usage.prompt_tokens
    # The top tier's prompt at the call's own tokens per character: about 4 characters each.
    assert attempt.completion.top_tier_prompt_tokens == pytest.approx(_chars(top) / 4, abs=1)
    assert attempt.completion.top_tier_prompt_tokens > prompt
    # A model shown the examples itself was sent the top tier's prompt: nothing to add.
    plain, _ = await _run(agent, [KITCHEN_ON])
    assert plain.attempts[0].completion.top_tier_prompt_tokens is None


async def test_valid_call_is_executed_on_the_hub() -> None:
    hub = SmartHomeHub()
    assert not hub.lights["kitchen"].on
    result, _ = await _run(ToolCallAgent(smart_home_skill(hub)), [KITCHEN_ON])
    assert result.ok
    assert result.value == ToolCall("toggle_lights", {"room": "kitchen", "state": "on"})
    assert result.repairs == 0
    assert hub.lights["kitchen"].on
    assert not hub.lights["office"].on
    tool_result = result.extra["tool_result"]
    assert isinstance(tool_result, ToolResult)
    assert tool_result.ok
    assert tool_result.value == {"lights": {"kitchen": {"on": True, "brightness": 100}}}
    assert result.method == "slm"
    assert len(result.completions) == 1


async def test_execute_false_validates_but_leaves_the_hub_alone() -> None:
    hub = SmartHomeHub()
    before = hub.snapshot()
    result, _ = await _run(ToolCallAgent(smart_home_skill(hub), execute=False), [KITCHEN_ON])
    assert result.ok
    assert result.extra["tool_result"] is None
    assert hub.snapshot() == before


async def test_unknown_tool_is_repaired_with_the_validator_message() -> None:
    hub = SmartHomeHub()
    bad = '{"name": "open_window", "parameters": {"room": "kitchen"}}'
    result, model = await _run(ToolCallAgent(smart_home_skill(hub)), [bad, KITCHEN_ON])
    assert result.ok
    assert result.repairs == 1
    assert "unknown tool 'open_window'" in result.attempts[0].errors[0]
    repair = _body(model, 1)["messages"]
    assert repair[-2] == {"role": "assistant", "content": bad}
    assert repair[-1]["role"] == "user"
    assert "unknown tool 'open_window'" in repair[-1]["content"]
    assert "toggle_lights" in repair[-1]["content"]  # the message lists the known tools
    assert repair[:-2] == _body(model, 0)["messages"]
    assert hub.lights["kitchen"].on


async def test_invalid_arguments_twice_give_a_signal_with_the_path() -> None:
    hub = SmartHomeHub()
    before = hub.snapshot()
    bad = '{"name": "set_thermostat", "parameters": {"temperature": 95}}'
    result, model = await _run(ToolCallAgent(smart_home_skill(hub)), [bad, bad])
    assert result.value is None
    assert not result.ok
    assert [s.kind for s in result.signals] == ["invalid_arguments"]
    assert "$.temperature" in result.signals[0].detail
    assert "95" in result.signals[0].detail
    assert result.signals[0].attempt == 1
    assert "$.temperature" in _body(model, 1)["messages"][-1]["content"]
    assert result.extra["tool_result"] is None
    assert hub.snapshot() == before


async def test_output_that_is_not_json_is_invalid_output() -> None:
    skill = smart_home_skill()
    agent = ToolCallAgent(skill)
    result, model = await _run(agent, ['{"name": "toggle_li', '["toggle_lights"]'])
    assert result.value is None
    assert [s.kind for s in result.signals] == ["invalid_output"]
    assert "is not a JSON object" in result.signals[0].detail
    assert "not JSON" in _body(model, 1)["messages"][-1]["content"]


async def test_extra_top_level_keys_are_rejected() -> None:
    result, _ = await _run(
        ToolCallAgent(smart_home_skill(), execute=False, few_shot=0),
        ['{"name": "set_scene", "parameters": {"scene": "party"}, "why": "fun"}', KITCHEN_ON],
    )
    assert result.ok
    assert "unexpected keys ['why']" in result.attempts[0].errors[0]


async def test_tool_error_is_a_signal_and_the_call_is_kept() -> None:
    hub = SmartHomeHub()
    # Valid against the schema (every argument is optional), but the hub needs a scene.
    result, _ = await _run(
        ToolCallAgent(smart_home_skill(hub)), ['{"name": "set_scene", "parameters": {}}']
    )
    assert result.value == ToolCall("set_scene", {})
    assert not result.ok
    assert result.repairs == 0  # tool errors are reported, not repaired
    assert [s.kind for s in result.signals] == ["tool_error"]
    assert "no scene given" in result.signals[0].detail
    tool_result = result.extra["tool_result"]
    assert isinstance(tool_result.error, ToolExecutionError)
    assert hub.scene is None


def _registry_skill(registry: ToolRegistry, **thresholds: Any) -> Skill:
    return Skill(
        name="custom",
        instructions="Call the tool.",
        contract=ToolContract(registry),
        thresholds=Thresholds(**thresholds),
    )


async def test_slow_tool_gives_a_tool_timeout_signal() -> None:
    started = asyncio.Event()

    @tool
    async def wait_for_ever(label: str) -> str:
        """Wait for an event that never comes.

        Args:
            label: Any text.
        """
        started.set()
        await asyncio.Event().wait()
        return label

    skill = _registry_skill(ToolRegistry([wait_for_ever]), tool_timeout_s=0.05)
    call = '{"name": "wait_for_ever", "parameters": {"label": "x"}}'
    result, _ = await _run(ToolCallAgent(skill), [call])
    assert started.is_set()
    assert result.value == ToolCall("wait_for_ever", {"label": "x"})
    assert [s.kind for s in result.signals] == ["tool_timeout"]
    assert "0.05 s" in result.signals[0].detail


async def test_tool_own_shorter_timeout_wins() -> None:
    @tool(timeout_s=0.05)
    async def hang() -> str:
        """Never return."""
        await asyncio.Event().wait()
        return ""

    skill = _registry_skill(ToolRegistry([hang]), tool_timeout_s=60)
    result, _ = await _run(ToolCallAgent(skill), ['{"name": "hang", "parameters": {}}'])
    assert [s.kind for s in result.signals] == ["tool_timeout"]


async def test_schema_only_tools_are_not_executed() -> None:
    registry = ToolRegistry.from_openai_schemas(
        [{"name": "greeting", "parameters": {"type": "object", "properties": {}}}]
    )
    result, _ = await _run(
        ToolCallAgent(_registry_skill(registry)), ['{"name": "greeting", "parameters": {}}']
    )
    assert result.ok
    assert result.extra["tool_result"] is None


async def test_multi_turn_messages_pass_through_in_order() -> None:
    agent = ToolCallAgent(smart_home_skill(), few_shot=0, execute=False)
    back = '{"name": "lock_door", "parameters": {"door": "back", "state": "lock"}}'
    result, model = await _run(agent, [back], text=HISTORY)
    assert _body(model)["messages"][1:] == HISTORY_AS_SENT
    assert result.value == ToolCall("lock_door", {"door": "back", "state": "lock"})
    # The data-format string gives the same request.
    _, again = await _run(agent, [back], text=json.dumps(HISTORY))
    assert _body(again)["messages"] == _body(model)["messages"]


def test_parse_conversation() -> None:
    assert parse_conversation(json.dumps(HISTORY)) == HISTORY_AS_SENT
    assert parse_conversation("Turn it off") == [{"role": "user", "content": "Turn it off"}]
    # Text that only looks like a list stays text.
    assert parse_conversation("[sic] lights") == [{"role": "user", "content": "[sic] lights"}]
    assert parse_conversation("[1, 2]") == [{"role": "user", "content": "[1, 2]"}]


def test_normalise_messages_handles_string_arguments_and_tool_results() -> None:
    messages = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"function": {"name": "greeting", "arguments": "{}"}}],
        },
        {"role": "tool", "content": "hello", "tool_call_id": "1"},
    ]
    assert normalise_messages(messages) == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": '{"name": "greeting", "parameters": {}}'},
        {"role": "user", "content": "Tool result: hello"},
    ]
    with pytest.raises(TypeError, match="message #0"):
        normalise_messages(["hi"])  # type: ignore[list-item]


def test_multi_turn_examples_render_as_prior_turns() -> None:
    hub = SmartHomeHub()
    skill = Skill(
        name="home",
        instructions="Control the house.",
        contract=ToolContract(hub.registry()),
        examples=[
            Example(HISTORY, {"name": "lock_door", "parameters": {"door": "back"}}),
        ],
    )
    messages = ToolCallAgent(skill).messages("Unlock it")
    assert messages[1:] == [
        *HISTORY_AS_SENT,
        {"role": "assistant", "content": '{"name": "lock_door", "parameters": {"door": "back"}}'},
        {"role": "user", "content": "Unlock it"},
    ]


async def test_model_override_and_model_error_signal() -> None:
    model = ScriptedModel([KITCHEN_ON, ModelStep(status=500, text="boom")])
    agent = ToolCallAgent(smart_home_skill(), execute=False)
    async with model.pool() as pool:
        first = await agent.run("Kitchen on", pool=pool, model="frontier")
        second = await agent.run("Kitchen on", pool=pool)
        with pytest.raises(UnknownModelError):
            await agent.run("Kitchen on", pool=pool, model="nope")
    model.assert_consumed()
    assert model.requests[0]["model"] == "fake-frontier"
    assert first.ok and first.method == "frontier"
    assert second.value is None
    assert [s.kind for s in second.signals] == ["model_error"]
    assert second.attempts[0].output is None


async def test_max_repairs_zero_makes_one_call() -> None:
    skill = Skill(
        name="no_repair",
        instructions="x",
        contract=ToolContract(SmartHomeHub().registry()),
        thresholds=Thresholds(max_repairs=0),
    )
    result, _ = await _run(ToolCallAgent(skill), ['{"name": "nope", "parameters": {}}'])
    assert [s.kind for s in result.signals] == ["unknown_tool"]
    assert len(result.attempts) == 1


def test_signature_rendering() -> None:
    @tool
    def book(
        restaurant: str,
        guests: int,
        seating: Literal["inside", "terrace"] = "inside",
        tags: list[str] | None = None,
    ) -> str:
        """Book a table.

        Args:
            restaurant: Name.
            guests: How many.
            seating: Where.
            tags: Labels.
        """
        return restaurant

    assert tool_signature(book) == (
        'book(restaurant: str, guests: int, seating?: "inside"|"terrace" = "inside", '
        "tags?: list[str])  Book a table."
    )


def test_non_tool_skill_is_refused() -> None:
    with pytest.raises(SkillError, match="skill 'banking_intent' has kind 'intent'"):
        ToolCallAgent(banking_intent_skill())


def test_bad_limits_are_refused() -> None:
    with pytest.raises(SkillError, match="few_shot=-1"):
        ToolCallAgent(smart_home_skill(), few_shot=-1)
    with pytest.raises(SkillError, match="max_tokens=0"):
        ToolCallAgent(smart_home_skill(), max_tokens=0)


def test_ungrounded_arguments_are_named() -> None:
    from brickwork.agents.toolcall import ungrounded_arguments

    assert (
        ungrounded_arguments({"room": "living_room", "state": "on"}, "Living room lights on") == []
    )
    assert ungrounded_arguments({"temperature": 72}, "heat it to 72 please") == []
    problems = ungrounded_arguments({"scene": "away", "temperature": 80}, "Lock the door at 9")
    assert len(problems) == 2
    assert "scene='away' does not appear" in problems[0]
    assert "temperature=80: the user said no such number" in problems[1]


async def test_grounded_agent_repairs_made_up_values_then_signals() -> None:
    from brickwork.agents.toolcall import ToolCallAgent
    from brickwork.skills.examples import smart_home_skill
    from brickwork.testing import ScriptedModel
    from brickwork.tools.smart_home import SmartHomeHub

    hub = SmartHomeHub()
    agent = ToolCallAgent(smart_home_skill(hub), grounded=True)
    made_up = '{"name": "set_scene", "parameters": {"scene": "away"}}'
    model = ScriptedModel([made_up, made_up])
    async with model.pool() as pool:
        result = await agent.run("Lock the front door", pool=pool)
    model.assert_consumed()
    assert result.value is None and [s.kind for s in result.signals] == ["invalid_arguments"]
    repair = model.requests[1]["messages"][-1]["content"]
    assert "scene='away' does not appear in the request" in repair
    assert hub.scene != "away"


# -- the tool-choice kNN ----------------------------------------------------------------------

CHOICE_AXES = ("lights", "door", "bye")


def _axis_encoder(texts: list[str]) -> Any:
    """One axis per keyword, plus a constant axis so no text embeds to zero."""
    import numpy as np

    return np.array(
        [[float(t.lower().count(axis)) for axis in CHOICE_AXES] + [0.01] for t in texts]
    )


def _choice_skill() -> Skill:
    registry = ToolRegistry()

    @registry.add
    def toggle_lights(room: Literal["kitchen", "office"], state: Literal["on", "off"]) -> str:
        """Switch lights."""
        return "done"

    @registry.add
    def lock_door(door: Literal["front", "back"]) -> str:
        """Lock a door."""
        return "locked"

    @registry.add
    def goodbye() -> str:
        """The user ends the conversation."""
        return "bye"

    examples = [
        Example(
            [
                {"role": "user", "content": "lights on in the kitchen"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"function": {"name": "toggle_lights", "arguments": {"room": "kitchen"}}}
                    ],
                },
                {"role": "user", "content": "bye now"},
            ],
            {"name": "goodbye", "parameters": {}},
        ),
        Example("lock the front door", {"name": "lock_door", "parameters": {"door": "front"}}),
        Example("lock the back door", {"name": "lock_door", "parameters": {"door": "back"}}),
        Example("bye bye", {"name": "goodbye", "parameters": {}}),
        Example(
            "office lights off",
            {"name": "toggle_lights", "parameters": {"room": "office", "state": "off"}},
        ),
    ]
    return Skill("home", "Call one tool.", ToolContract(registry), examples)


def _choice_knn(skill: Skill, **kw: Any) -> Any:
    from brickwork.agents.embeddings import EmbeddingKNN
    from brickwork.agents.toolcall import choice_examples

    return EmbeddingKNN.from_examples(choice_examples(skill.examples), encoder=_axis_encoder, **kw)


def test_choice_examples_take_every_answered_turn() -> None:
    from brickwork.agents.toolcall import choice_examples

    found = choice_examples(_choice_skill().examples)
    assert [(e.input, e.output) for e in found] == [
        ("lights on in the kitchen", "toggle_lights"),
        ("bye now", "goodbye"),
        ("lock the front door", "lock_door"),
        ("lock the back door", "lock_door"),
        ("bye bye", "goodbye"),
        ("office lights off", "toggle_lights"),
    ]
    # A turn answered by two calls, or by text, names no single tool: skipped.
    two = Example(
        [
            {"role": "user", "content": "both"},
            {"role": "assistant", "tool_calls": [{"name": "a"}, {"name": "b"}]},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "bye"},
        ],
        {"name": "goodbye", "parameters": {}},
    )
    assert [(e.input, e.output) for e in choice_examples([two])] == [("bye", "goodbye")]


def test_call_schema_can_allow_only_some_tools() -> None:
    registry = _choice_skill().contract.registry  # type: ignore[attr-defined]
    schema = registry.call_schema(only=["lock_door"])
    assert [b["properties"]["name"] for b in schema["anyOf"]] == [{"const": "lock_door"}]
    with pytest.raises(Exception, match="none of \\['nope'\\]"):
        registry.call_schema(only=["nope"])


async def test_a_clear_vote_for_a_tool_without_parameters_needs_no_model_call() -> None:
    skill = _choice_skill()
    agent = ToolCallAgent(skill, execute=False, knn=_choice_knn(skill))
    result, model = await _run(agent, [], text="ok bye")
    assert model.requests == []
    assert result.value == ToolCall("goodbye", {}) and result.method == "knn"
    assert result.extra["knn"]["decided"] is True and result.extra["knn"]["tools"] == ["goodbye"]


async def test_a_clear_vote_narrows_the_schema_to_the_voted_tool() -> None:
    skill = _choice_skill()
    agent = ToolCallAgent(skill, execute=False, knn=_choice_knn(skill))
    call = '{"name": "lock_door", "parameters": {"door": "back"}}'
    result, model = await _run(agent, [call], text="the back door please")
    schema = _body(model)["response_format"]["json_schema"]["schema"]
    assert [b["properties"]["name"] for b in schema["anyOf"]] == [{"const": "lock_door"}]
    assert result.value == ToolCall("lock_door", {"door": "back"}) and result.method == "slm"
    # The prompt still lists every tool: only the schema is narrowed.
    assert "goodbye()" in _body(model)["messages"][0]["content"]


async def test_an_unclear_vote_leaves_its_candidates_and_the_top_tier_chooses_freely() -> None:
    skill = _choice_skill()
    knn = _choice_knn(skill, k=4)
    agent = ToolCallAgent(skill, execute=False, knn=knn, knn_threshold=0.9, max_candidates=2)
    model = ScriptedModel(
        [
            '{"name": "lock_door", "parameters": {"door": "front"}}',
            '{"name": "goodbye", "parameters": {}}',
        ]
    )
    async with model.pool(tiers=("slm", "large")) as pool:
        small = await agent.run("lights door", pool=pool, model="slm")
        large = await agent.run("lights door", pool=pool, model="large")
    slm_schema = _body(model, 0)["response_format"]["json_schema"]["schema"]
    assert [b["properties"]["name"]["const"] for b in slm_schema["anyOf"]] == [
        "toggle_lights",
        "lock_door",
    ]
    assert small.extra["knn"]["share"] < 0.9 and small.value == ToolCall(
        "lock_door", {"door": "front"}
    )
    assert _body(model, 1)["response_format"]["json_schema"]["schema"] == (
        skill.contract.registry.call_schema()  # type: ignore[attr-defined]
    )
    assert "knn" not in large.extra and large.value == ToolCall("goodbye", {})


def test_knn_settings_out_of_range_are_refused() -> None:
    with pytest.raises(SkillError, match="knn_threshold"):
        ToolCallAgent(_choice_skill(), knn_threshold=0.0)
    with pytest.raises(SkillError, match="max_candidates"):
        ToolCallAgent(_choice_skill(), max_candidates=0)


# -- closed choices the user named --------------------------------------------------------------

THERMOSTAT = {
    "type": "object",
    "properties": {
        "temperature": {"type": "integer"},
        "mode": {"type": "string", "enum": ["heat", "cool", "auto"]},
        "room": {"type": "string", "enum": ["living_room", "bedroom"]},
    },
}


def test_a_named_choice_left_out_or_contradicted_is_reported() -> None:
    from brickwork.agents.grounding import overlooked_choices

    turn = "Bump it up to 75 on heat mode in the living room"
    assert overlooked_choices({"temperature": 75}, THERMOSTAT, turn) == [
        "the user said 'heat' (a value of mode) but the call has no mode",
        "the user said 'living_room' (a value of room) but the call has no room",
    ]
    full = {"temperature": 75, "mode": "heat", "room": "living_room"}
    assert overlooked_choices(full, THERMOSTAT, turn) == []
    # Another value than the one named; whole words only ("heated" names nothing).
    assert overlooked_choices({"mode": "cool"}, THERMOSTAT, "set the heat to 70") == [
        "the user said 'heat' (a value of mode) but the call has mode='cool'"
    ]
    assert overlooked_choices({}, THERMOSTAT, "the heated floor") == []
    # Two values named: either one will do ("doors" names "door": the plural counts).
    assert overlooked_choices({"mode": "auto"}, THERMOSTAT, "heat or auto?") == []
    status = {"properties": {"device_type": {"enum": ["lights", "door", "all"]}}}
    assert overlooked_choices({"device_type": "door"}, status, "Are all the doors locked?") == []


async def test_grounded_calls_get_a_repair_turn_for_a_named_choice_left_out() -> None:
    hub = SmartHomeHub()
    agent = ToolCallAgent(smart_home_skill(hub), grounded=True, execute=False, few_shot=0)
    history = [
        {"role": "user", "content": "Turn on the bedroom lights"},
        {"role": "assistant", "content": KITCHEN_ON},
        {"role": "user", "content": "Lock the front door"},
    ]
    partial = '{"name": "lock_door", "parameters": {"door": "front"}}'
    full = '{"name": "lock_door", "parameters": {"door": "front", "state": "lock"}}'
    result, model = await _run(agent, [partial, full], text=history)
    assert result.value == ToolCall("lock_door", {"door": "front", "state": "lock"})
    repair = _body(model, 1)["messages"][-1]["content"]
    assert "the user said 'lock' (a value of state) but the call has no state" in repair
    # Only the last turn counts: "on" and "bedroom" were said before, for another call.
    assert "bedroom" not in repair and "'on'" not in repair


async def test_a_vote_that_misleads_on_its_own_examples_is_not_used() -> None:
    from brickwork.agents.embeddings import EmbeddingKNN
    from brickwork.agents.toolcall import choice_examples

    skill = _choice_skill()
    trusted = ToolCallAgent(skill, execute=False, knn=_choice_knn(skill))
    assert trusted.vote_precision == 1.0
    # One example per tool but the lights: every clear leave-one-out vote says toggle_lights.
    few = [
        e
        for e in choice_examples(skill.examples)
        if e.input not in ("bye bye", "lock the back door")
    ]
    knn = EmbeddingKNN.from_examples(few, encoder=_axis_encoder)
    agent = ToolCallAgent(skill, execute=False, knn=knn)
    assert agent.vote_precision == pytest.approx(0.5)
    result, model = await _run(agent, ['{"name": "goodbye", "parameters": {}}'], text="ok bye")
    assert _body(model)["response_format"]["json_schema"]["schema"] == (
        skill.contract.registry.call_schema()  # type: ignore[attr-defined]
    )
    assert "right 50% of the time, below 90%" in result.extra["knn"]["unused"]
    assert result.method == "slm" and result.value == ToolCall("goodbye", {})


# -- labels: arguments the examples show are judged, not said ---------------------------------


def test_answered_turns_keep_what_was_said_and_the_arguments() -> None:
    from brickwork.agents.toolcall import AnsweredTurn, answered_turns

    back = {"name": "lock_door", "parameters": {"door": "back", "state": "lock"}}
    as_text = [
        {**HISTORY[0]},
        {
            "role": "assistant",
            "tool_calls": [{"function": {"name": "lock_door", "arguments": '{"door": "front"}'}}],
        },
        HISTORY[2],
    ]
    assert answered_turns([Example(HISTORY, back), Example(as_text, back)]) == [
        AnsweredTurn(("Lock the front door",), "lock_door", {"door": "front", "state": "lock"}),
        AnsweredTurn(
            ("Lock the front door", "Do the same for the back door"),
            "lock_door",
            back["parameters"],
        ),
        AnsweredTurn(("Lock the front door",), "lock_door", {"door": "front"}),
        AnsweredTurn(
            ("Lock the front door", "Do the same for the back door"),
            "lock_door",
            back["parameters"],
        ),
    ]


def test_a_parameter_whose_example_values_nobody_said_is_a_label() -> None:
    from brickwork.agents.grounding import label_parameters

    unclear = [
        ("intent_unclear", {"reason": "off_topic"}, "Can you order me a pizza?"),
        ("intent_unclear", {"reason": "unsupported_device"}, "Start the coffee maker"),
        ("intent_unclear", {"reason": "ambiguous"}, "Do the thing"),
    ]
    said = [
        ("set_thermostat", {"mode": "heat"}, "heat it to 70"),
        ("set_thermostat", {"mode": "cool"}, "Crank the AC down"),  # once not said: still said
        ("set_thermostat", {"mode": "cool"}, "cool mode please"),
    ]
    assert label_parameters(unclear + said) == {("intent_unclear", "reason")}
    # One unsaid value is not evidence enough; a quarter said is still a label, half is not.
    assert label_parameters(unclear[:1]) == frozenset()
    assert label_parameters(unclear[:1], min_seen=1) == {("intent_unclear", "reason")}
    quarter = [*unclear, ("intent_unclear", {"reason": "ambiguous"}, "that's ambiguous")]
    assert label_parameters(quarter) == {("intent_unclear", "reason")}
    half = [*quarter, ("intent_unclear", {"reason": "off_topic"}, "off topic, but...")]
    half = [*half, ("intent_unclear", {"reason": "ambiguous"}, "ambiguous again")]
    assert label_parameters(half) == frozenset()
    assert label_parameters(half, max_share=0.5) == {("intent_unclear", "reason")}


async def test_a_grounded_agent_leaves_a_label_alone_and_still_checks_the_rest() -> None:
    from brickwork.agents.toolcall import ungrounded_arguments

    hub = SmartHomeHub()
    agent = ToolCallAgent(smart_home_skill(hub), grounded=True, execute=False, few_shot=0)
    assert ("intent_unclear", "reason") in agent.labels
    assert ToolCallAgent(smart_home_skill(hub), execute=False).labels == frozenset()
    judged = '{"name": "intent_unclear", "parameters": {"reason": "off_topic"}}'
    result, _ = await _run(agent, [judged], text="Hey can you order me a pizza?")
    assert result.value == ToolCall("intent_unclear", {"reason": "off_topic"})
    # A made-up value of any other parameter is still refused.
    made_up = '{"name": "set_scene", "parameters": {"scene": "away"}}'
    result, _ = await _run(agent, [made_up, made_up], text="Hey can you order me a pizza?")
    assert result.value is None and [s.kind for s in result.signals] == ["invalid_arguments"]
    assert ungrounded_arguments({"reason": "x", "room": "y"}, "hi", skip={"reason"}) == [
        "room='y' does not appear in the request; use only values the user gave, or another tool"
    ]


async def test_a_named_choice_is_pinned_in_the_call_schema() -> None:
    from brickwork.agents.grounding import pin_named_choices

    assert pin_named_choices(THERMOSTAT, "Set the heat to 70") == {
        **THERMOSTAT,
        "properties": {**THERMOSTAT["properties"], "mode": {"type": "string", "enum": ["heat"]}},
        "required": ["mode"],
    }
    assert pin_named_choices(THERMOSTAT, "make it 70") == THERMOSTAT
    hub = SmartHomeHub()
    skill = smart_home_skill(hub)
    agent = ToolCallAgent(skill, grounded=True, execute=False, few_shot=0)
    full = json.dumps(agent.registry.call_schema(), sort_keys=True)
    heat = '{"name": "set_thermostat", "parameters": {"temperature": 70, "mode": "heat"}}'
    result, model = await _run(agent, [heat], text="Set the heat to 70")
    assert result.value == ToolCall("set_thermostat", {"temperature": 70, "mode": "heat"})
    assert result.extra["pinned"] == {"set_thermostat": {"mode": ["heat"]}}
    sent = _body(model)["response_format"]["json_schema"]["schema"]
    branch = next(b for b in sent["anyOf"] if b["properties"]["name"]["const"] == "set_thermostat")
    parameters = branch["properties"]["parameters"]
    assert parameters["properties"]["mode"]["enum"] == ["heat"]
    assert "mode" in parameters["required"]
    # The agent's full schema is shared by every request: left as it was.
    assert json.dumps(agent.registry.call_schema(), sort_keys=True) == full
    assert json.dumps(agent._schema, sort_keys=True) == full
    # Without grounding nothing is pinned.
    plain = ToolCallAgent(skill, execute=False, few_shot=0)
    result, model = await _run(plain, [heat], text="Set the heat to 70")
    assert "pinned" not in result.extra
    assert _body(model)["response_format"]["json_schema"]["schema"] == agent._schema


def test_a_turn_that_refers_back_carries_the_choices_named_before() -> None:
    from brickwork.agents.grounding import named_choices, overlooked_choices, refers_back

    door = {
        "properties": {"door": {"enum": ["front", "back"]}, "state": {"enum": ["lock", "unlock"]}}
    }
    assert refers_back("Lock it for me") and refers_back("The garage too")
    assert not refers_back("Lock the front door") and not refers_back("Italy")
    previous = "Is the front door locked?"
    assert named_choices(door, "Lock it for me", previous) == {
        "state": ["lock"],
        "door": ["front"],
    }
    # The last turn's own choice wins; without a word referring back nothing is carried.
    assert named_choices(door, "Lock that back door", previous)["door"] == ["back"]
    assert named_choices(door, "Lock the door", previous) == {"state": ["lock"]}
    assert overlooked_choices({"state": "lock"}, door, "Lock it for me", previous) == [
        "the user referred back to 'front' (a value of door) but the call has no door"
    ]
    assert overlooked_choices({"state": "lock"}, door, "Lock it for me") == []


async def test_a_grounded_agent_pins_what_a_turn_refers_back_to() -> None:
    agent = ToolCallAgent(smart_home_skill(SmartHomeHub()), grounded=True, execute=False)
    history = [
        {"role": "user", "content": "Is the front door locked?"},
        {
            "role": "assistant",
            "content": '{"name": "get_device_status", "parameters": '
            '{"device_type": "door", "room": "front"}}',
        },
        {"role": "user", "content": "Lock it for me"},
    ]
    left_out = '{"name": "lock_door", "parameters": {"state": "lock"}}'
    full = '{"name": "lock_door", "parameters": {"door": "front", "state": "lock"}}'
    result, model = await _run(agent, [left_out, full], text=history)
    assert result.extra["pinned"]["lock_door"] == {"state": ["lock"], "door": ["front"]}
    assert result.value == ToolCall("lock_door", {"door": "front", "state": "lock"})
    assert "referred back to 'front'" in _body(model, 1)["messages"][-1]["content"]
