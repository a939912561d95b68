"""The supervisor's own job: planning multi-step requests on the frontier model.

Escalation itself needs no special agent: the graph re-runs the failing node's agent with
`model="frontier"`, under the same contract and the same validators. Planning is different: a
request such as "dim the office lights, lock the back door and tell me the thermostat mode" is
split by the frontier model into steps that each run on a small specialist.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from brickwork.agents.base import AgentResult, call_with, repair_loop
from brickwork.serving.pool import ModelPool
from brickwork.serving.types import Message

__all__ = ["PLAN_SCHEMA", "Planner"]

MAX_STEPS = 6

PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "steps": {
            "type": "array",
            "items": {"type": "string", "minLength": 3, "maxLength": 200},
            "minItems": 1,
            "maxItems": MAX_STEPS,
        }
    },
    "required": ["steps"],
    "additionalProperties": False,
}

_SYSTEM = (
    "You split a user's request into independent single-action steps for specialist "
    "assistants. {scope} Each step is one short imperative sentence that names the device or "
    "thing it is about, keeps every detail from the request, and can be done on its own. "
    'Answer with JSON: {{"steps": ["...", "..."]}}.'
)


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]{3,}", text.lower())} - _STOP


_STOP = {"the", "and", "then", "please", "tell", "what", "set", "turn", "put", "make"}


class Planner:
    """Writes a plan (a list of step requests) with the frontier model; validated, repaired once.

    Args:
        scope: One sentence on what the specialists can do (put in the prompt).
        max_repairs: Repair turns when the plan is not valid.
    """

    def __init__(self, scope: str, *, max_repairs: int = 1) -> None:
        self.scope = scope
        self.max_repairs = max_repairs

    def messages(self, text: str) -> list[Message]:
        """The planning prompt."""
        return [
            {"role": "system", "content": _SYSTEM.format(scope=self.scope)},
            {"role": "user", "content": text},
        ]

    async def run(
        self, input: str | Sequence[Message], *, pool: ModelPool, model: str | None = None
    ) -> AgentResult[list[str]]:
        """Plan `input`; the value is the list of step requests."""
        text = input if isinstance(input, str) else str(input[-1].get("content", ""))
        call = call_with(pool, model or "frontier", json_schema=PLAN_SCHEMA, max_tokens=400)

        async def validate(output: str) -> tuple[Any, list[str], Any]:
            import json

            try:
                steps = json.loads(output)["steps"]
            except (ValueError, KeyError, TypeError):
                return (
                    None,
                    [f"not a JSON object with a steps list: {output[:200]!r}"],
                    "invalid_output",
                )
            if not isinstance(steps, list) or not steps:
                return None, ["steps must be a non-empty list of strings"], "invalid_output"
            cleaned = [str(s).strip() for s in steps if str(s).strip()]
            errors = [f"step {i + 1} is empty" for i, s in enumerate(steps) if not str(s).strip()]
            if len(cleaned) > MAX_STEPS:
                errors.append(f"at most {MAX_STEPS} steps, got {len(cleaned)}")
            if len({c.lower() for c in cleaned}) < len(cleaned):
                errors.append("two steps are the same; each step must be a different action")
            words = _words(text)
            errors += [
                f"step {step!r} shares no word with the request; keep the request's own details"
                for step in cleaned
                if not _words(step) & words
            ]
            return (
                (cleaned, [], "invalid_output") if not errors else (None, errors, "invalid_output")
            )

        value, attempts, signals = await repair_loop(
            self.messages(text), call, validate, max_repairs=self.max_repairs
        )
        return AgentResult(value, tuple(signals), tuple(attempts), method="plan")
