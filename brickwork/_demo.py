"""A small JSON-schema contract for smart-home commands, used by serving tests and benchmarks."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["DEFAULT_COMMANDS", "SmartHomeCommand"]

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
