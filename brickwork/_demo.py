"""Smart-home workloads for serving tests, benchmarks and capacity measurements.

A small JSON-schema contract for smart-home commands, and the schema-constrained tool calls
the smart_home graph sends (`tool_call_bodies`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["DEFAULT_COMMANDS", "SmartHomeCommand", "tool_call_bodies"]

DEFAULT_COMMANDS = (
    "Turn on the kitchen lights",
    "Set the living room lights to 30 percent",
    "Lock the front door",
    "Set the thermostat to 21 degrees",
    "Switch off the bedroom lamp",
    "Unlock the garage door",
)

_SYSTEM = (
    "You control a smart home. Answer with one JSON object naming the device, the room and "
    "the action. Devices: light, thermostat, lock. Actions: turn_on, turn_off, set_level, "
    "lock, unlock. Use value only for levels and temperatures."
)


class SmartHomeCommand(BaseModel):
    """One device command; the JSON schema the small model is constrained to."""

    device: Literal["light", "thermostat", "lock"]
    room: str = Field(max_length=40)
    action: Literal["turn_on", "turn_off", "set_level", "lock", "unlock"]
    value: int | None = None


def tool_call_bodies(max_tokens: int = 64) -> list[dict[str, Any]]:
    """Chat-completion bodies (no "model") of the smart_home graph's tool call.

    One per example phrasing of the skill: the specialist's zero-shot prompt and the call
    schema. Varied prompts, so vLLM's prefix cache shares only the system prompt, as in production.
    """
    from brickwork.agents.toolcall import ToolCallAgent
    from brickwork.skills.examples import smart_home_skill
    from brickwork.tools.smart_home import SmartHomeHub

    agent = ToolCallAgent(smart_home_skill(SmartHomeHub()), execute=False)
    schema = agent.registry.call_schema()
    return [
        {
            "messages": agent.messages(example.input, few_shot=0),
            "max_tokens": max_tokens,
            "temperature": 0,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "call", "schema": schema},
            },
        }
        for example in agent.skill.examples
        if isinstance(example.input, str)
    ]
