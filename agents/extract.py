"""The extraction agent: one JSON object that satisfies a skill's `JSONContract`.

The small model decodes under the contract's JSON schema, so its output is usually valid JSON
of the right shape. Usually is not always: an answer cut off at `max_tokens` is not JSON, and a
Pydantic model can demand more than its JSON schema says (custom validators, cross-field
checks). So every output is checked with `jsonschema` (Draft 2020-12) and then the Pydantic
model, and a failed output gets one repair turn that shows the model the validators' messages.

With `grounded=True` every string, number and enum value must also appear in the user's own
words (`brickwork.agents.grounding`: case, number formats, currency symbols and codes, dates
normalised; instructions embedded in the text do not count). A value that does not is an
`ungrounded_value` signal, repaired and then escalated like any other. A field that is
legitimately inferred opts out with `Field(json_schema_extra={"derived": True})` (or
`"derived": true` in a plain JSON schema's property).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeAlias

import jsonschema
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from brickwork.agents.base import (
    AgentResult,
    SignalKind,
    repair_loop,
    shots_for,
    with_top_tier_prompt,
)
from brickwork.agents.grounding import ungrounded_values
from brickwork.agents.injection import own_text
from brickwork.errors import SkillError
from brickwork.serving.pool import ModelPool
from brickwork.serving.types import Completion, Message
from brickwork.skills.skill import JSONContract, Skill

__all__ = ["DEFAULT_MAX_TOKENS", "ExtractAgent", "Extraction"]

#: An extraction: an instance of the contract's Pydantic model, or a dict for a plain schema.
Extraction: TypeAlias = BaseModel | dict[str, Any]

DEFAULT_MAX_TOKENS = 512
_ANSWER = "Answer with one JSON object, and nothing else, that matches this JSON schema:\n{schema}"


class ExtractAgent:
    """Extracts a JSON object valid against a `JSONContract` skill.

    Args:
        skill: A skill whose contract is a `JSONContract`.
        few_shot: Examples shown as prior turns.
        max_tokens: Upper bound on the answer's length.
        grounded: Check that every value appears in the user's own words (fields marked
            `derived` are not checked).

    Raises:
        SkillError: The skill is not an extraction skill, or an argument is out of range.
    """

    def __init__(
        self,
        skill: Skill,
        *,
        few_shot: int = 3,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        grounded: bool = False,
    ) -> None:
        if not isinstance(skill.contract, JSONContract):
            raise SkillError(
                f"ExtractAgent needs a skill with a JSONContract; {skill.name!r} is a "
                f"{skill.kind!r} skill"
            )
        if few_shot < 0 or max_tokens < 1:
            raise SkillError(
                f"few_shot={few_shot!r} must be 0 or more and max_tokens={max_tokens!r} positive"
            )
        self.skill = skill
        self.contract: JSONContract = skill.contract
        full = self.contract.json_schema
        #: Top-level fields that are inferred, not said: grounding skips them.
        self.derived = frozenset(
            name
            for name, spec in (full.get("properties") or {}).items()
            if isinstance(spec, dict) and spec.get("derived") is True
        )
        # The marker is ours, not JSON schema: the wire schema goes without it.
        self.schema = _without_derived(full) if self.derived else full
        self.grounded = grounded
        self.few_shot = few_shot
        self.max_tokens = max_tokens
        self._validator = jsonschema.Draft202012Validator(
            self.schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        # The prompt before the input (instructions, schema, examples) per number of examples,
        # built once per skill rather than per run.
        self._prefixes: dict[int, tuple[Skill, list[Message]]] = {}

    async def run(
        self, input: str | Sequence[Message], *, pool: ModelPool, model: str | None = None
    ) -> AgentResult[Extraction]:
        """Extract from `input` (a text, or a chat history ending with the user's turn).

        Args:
            input: What to extract from.
            pool: Where the model runs.
            model: A logical model name to use instead of the skill's binding.

        Returns:
            The validated value (a Pydantic instance, or a dict for a plain schema) and every
            attempt; or no value and an `invalid_output` signal with the validators' messages
            (`model_error` / `model_timeout` when the endpoint failed).
        """
        name = model or self.skill.binding.logical_name
        finish_reasons: list[str | None] = []

        async def call(messages: Sequence[Message]) -> Completion:
            completion = await pool.complete(
                name,
                messages,
                json_schema=self.schema,
                schema_name=self.skill.name,
                max_tokens=self.max_tokens,
            )
            finish_reasons.append(completion.finish_reason)
            return completion

        said = own_text(_user_text(input)) if self.grounded else ""

        async def validate(text: str) -> tuple[Any, list[str], SignalKind]:
            value, errors = self.validate(text, finish_reason=finish_reasons[-1])
            if value is not None and self.grounded:
                errors = self.ungrounded(value, said)
                if errors:
                    return None, errors, "ungrounded_value"
            return value, errors, "invalid_output"

        shots = shots_for(name, self.few_shot)
        shown = self.messages(input, few_shot=shots)
        top = self.messages(input) if shots < self.few_shot else shown
        value, attempts, signals = await repair_loop(
            shown,
            with_top_tier_prompt(call, shown, top),
            validate,
            max_repairs=self.skill.thresholds.max_repairs,
        )
        return AgentResult(value=value, signals=tuple(signals), attempts=tuple(attempts))

    def validate(
        self, text: str, *, finish_reason: str | None = None
    ) -> tuple[Extraction | None, list[str]]:
        """Check an output against the contract: JSON, then the JSON schema, then Pydantic.

        Args:
            text: The model's output.
            finish_reason: Why generation stopped; "length" adds a note that it was cut off.

        Returns:
            (value, []) when valid, else (None, the validators' messages). Grounding is
            checked by `run` (see `ungrounded`), since it needs the input.
        """
        value, errors = self._check(text)
        if errors and finish_reason == "length":
            errors.insert(
                0,
                f"the answer was cut off at the {self.max_tokens}-token limit; "
                "write a shorter JSON object",
            )
        return value, errors

    def ungrounded(self, value: Extraction, said: str) -> list[str]:
        """Messages for the values of `value` that `said` does not contain (derived skipped)."""
        data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
        return ungrounded_values(data, said, skip=self.derived)

    def messages(
        self, input: str | Sequence[Message], *, few_shot: int | None = None
    ) -> list[Message]:
        """The prompt: instructions and schema, examples as prior turns, then the input.

        Args:
            input: The text, or a chat history ending with the user's turn.
            few_shot: Examples to show instead of the agent's `few_shot`.
        """
        prefix = self._prefix(self.few_shot if few_shot is None else few_shot)
        messages: list[Message] = [dict(m) for m in prefix]
        if isinstance(input, str):
            messages.append({"role": "user", "content": input})
        else:
            messages += [dict(m) for m in input]
        return messages

    def _prefix(self, k: int) -> list[Message]:
        cached = self._prefixes.get(k)
        if cached is not None and cached[0] is self.skill:
            return cached[1]
        schema = json.dumps(self.schema, ensure_ascii=False)
        system = f"{self.skill.instructions}\n\n{_ANSWER.format(schema=schema)}"
        messages: list[Message] = [{"role": "system", "content": system}]
        for example in self.skill.few_shot(k):
            messages += example.messages()
            answer = json.dumps(example.output, ensure_ascii=False)
            messages.append({"role": "assistant", "content": answer})
        self._prefixes[k] = (self.skill, messages)
        return messages

    def _check(self, text: str) -> tuple[Extraction | None, list[str]]:
        try:
            data = json.loads(text)
        except ValueError as exc:
            return None, [f"the answer is not valid JSON ({exc}): {text[:200]!r}"]
        problems = sorted(
            self._validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]
        )
        if problems:
            return None, [f"{e.json_path}: {e.message}" for e in problems]
        model = self.contract.model
        if model is None:
            if not isinstance(data, dict):
                return None, [f"$: the answer must be a JSON object, not {type(data).__name__}"]
            return data, []
        try:
            return model.model_validate_json(text), []
        except ValidationError as exc:
            return None, [_pydantic_message(error) for error in exc.errors(include_url=False)]


def _without_derived(schema: dict[str, Any]) -> dict[str, Any]:
    properties = {
        name: {k: v for k, v in spec.items() if k != "derived"} if isinstance(spec, dict) else spec
        for name, spec in (schema.get("properties") or {}).items()
    }
    return {**schema, "properties": properties}


def _user_text(input: str | Sequence[Message]) -> str:
    if isinstance(input, str):
        return input
    return " ".join(str(m.get("content") or "") for m in input if m.get("role") == "user")


def _pydantic_message(error: ErrorDetails) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
    return f"${path}: {error['msg']}"
