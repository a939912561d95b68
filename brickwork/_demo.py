"""The first main job: smart-home commands through the pool as JSON-schema requests.

Until graphs exist this shows the serving layer end to end: each command goes to the logical
model `slm` with a JSON schema that constrains decoding, the output is validated with Pydantic,
and a table shows the answer, latency and tokens of every call.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from brickwork.serving.pool import ModelPool
from brickwork.serving.types import Completion

__all__ = ["DEFAULT_COMMANDS", "DemoResult", "SmartHomeCommand", "run_demo"]

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


@dataclass(frozen=True)
class DemoResult:
    """One command's outcome."""

    text: str
    completion: Completion | None
    command: SmartHomeCommand | None
    error: str | None


async def _one(pool: ModelPool, text: str) -> DemoResult:
    messages = [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": text}]
    try:
        value, completion = await pool.complete_json(
            "slm", messages, SmartHomeCommand.model_json_schema(), max_tokens=80
        )
    except Exception as exc:
        return DemoResult(text, None, None, f"{type(exc).__name__}: {exc}")
    try:
        return DemoResult(text, completion, SmartHomeCommand.model_validate(value), None)
    except ValidationError as exc:
        return DemoResult(text, completion, None, f"invalid: {exc.errors()[0]['msg']}")


async def run_demo(pool: ModelPool, commands: tuple[str, ...] = DEFAULT_COMMANDS) -> float:
    """Send every command at once, print the table; returns wall time in seconds."""
    from rich.console import Console
    from rich.table import Table

    started = time.perf_counter()
    results = await asyncio.gather(*(_one(pool, text) for text in commands))
    wall = time.perf_counter() - started
    table = Table(title="brickwork run: smart-home commands on the embedded small model")
    for column in ("request", "model output", "valid", "latency", "tokens in/out"):
        table.add_column(column, overflow="fold")
    for r in results:
        c = r.completion
        table.add_row(
            r.text,
            json.dumps(r.command.model_dump(exclude_none=True))
            if r.command
            else (c.text if c else ""),
            "[green]yes[/]" if r.command else f"[red]{r.error}[/]",
            f"{c.latency_s * 1000:.0f} ms" if c else "",
            f"{c.usage.prompt_tokens}/{c.usage.completion_tokens}" if c else "",
        )
    console = Console()
    console.print(table)
    served = {(c.endpoint, c.served_model) for r in results if (c := r.completion)}
    console.print(
        f"{len(commands)} requests in {wall:.2f} s ({len(commands) / wall:.2f} req/s) on "
        + ", ".join(f"{e} ({m})" for e, m in sorted(served))
    )
    return wall
