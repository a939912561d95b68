"""The `Skill` brick: instructions, an output contract, examples, a model binding, thresholds.

A skill is declarative and frozen: agents read it, nothing mutates it. Its contract says what
a valid output is, and so which agent kind runs it:

| contract        | output                                   | agent kind |
|-----------------|------------------------------------------|------------|
| `LabelSet`      | one label string                         | intent     |
| `JSONContract`  | a JSON object (Pydantic model or schema) | extract    |
| `ToolContract`  | `{"name": ..., "parameters": {...}}`     | toolcall   |
| `SQLContract`   | one SQL query string                     | sql        |

Examples are checked against the contract when the skill is built, so a skill with a bad
example never reaches a prompt.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import jsonschema
from pydantic import BaseModel, ValidationError

from brickwork.errors import SkillError, ToolError
from brickwork.tools.registry import ToolRegistry

__all__ = [
    "Contract",
    "Example",
    "JSONContract",
    "LabelSet",
    "ModelBinding",
    "SQLContract",
    "Skill",
    "SkillKind",
    "Thresholds",
    "ToolContract",
]

SkillKind: TypeAlias = Literal["intent", "extract", "toolcall", "sql"]
Message: TypeAlias = dict[str, Any]


@dataclass(frozen=True)
class Example:
    """One demonstration: an input (text or a chat history) and the expected output.

    Attributes:
        input: The user text, or a list of chat messages ending with the user turn.
        output: What the skill should produce (label, JSON object, tool call or SQL).
    """

    input: str | list[Message]
    output: Any

    def messages(self) -> list[Message]:
        """The input as chat messages (a text input becomes one user message)."""
        if isinstance(self.input, str):
            return [{"role": "user", "content": self.input}]
        return list(self.input)


@dataclass(frozen=True)
class LabelSet:
    """A closed set of labels, each with a description the model can read."""

    labels: Mapping[str, str]

    def __post_init__(self) -> None:
        if not self.labels:
            raise SkillError("a LabelSet needs at least one label; add labels with descriptions")
        for label in self.labels:
            if not isinstance(label, str) or not label.strip():
                raise SkillError(f"label {label!r} is not a non-empty string; rename it")
        object.__setattr__(self, "labels", dict(self.labels))

    @property
    def names(self) -> tuple[str, ...]:
        """The labels, in declaration order."""
        return tuple(self.labels)


@dataclass(frozen=True)
class JSONContract:
    """Output is a JSON object described by a Pydantic model or a JSON schema."""

    schema: Mapping[str, Any] | type[BaseModel]

    def __post_init__(self) -> None:
        if isinstance(self.schema, type):
            if not issubclass(self.schema, BaseModel):
                raise SkillError(f"{self.schema!r} is not a Pydantic model; pass one or a dict")
            return
        try:
            jsonschema.Draft202012Validator.check_schema(dict(self.schema))
        except jsonschema.SchemaError as exc:
            raise SkillError(
                f"the JSON contract is not a valid JSON schema: {exc.message}"
            ) from exc

    @property
    def model(self) -> type[BaseModel] | None:
        """The Pydantic model, when the contract was given as one."""
        return self.schema if isinstance(self.schema, type) else None

    @property
    def json_schema(self) -> dict[str, Any]:
        """The JSON schema of a valid output."""
        if isinstance(self.schema, type):
            return self.schema.model_json_schema()
        return dict(self.schema)


@dataclass(frozen=True)
class ToolContract:
    """Output is one call of a tool in `registry`."""

    registry: ToolRegistry


@dataclass(frozen=True)
class SQLContract:
    """Output is one read-only SQL query over `database`.

    Attributes:
        database: A database handle or description, filled in by the graph (None when each
            input carries its own schema, as in the text-to-SQL benchmark).
        dialect: The SQL dialect, as sqlglot names it ("sqlite", "postgres", "duckdb").
    """

    database: Any = None
    dialect: str = "sqlite"


Contract: TypeAlias = LabelSet | JSONContract | ToolContract | SQLContract
_KINDS: dict[type[Any], SkillKind] = {
    LabelSet: "intent",
    JSONContract: "extract",
    ToolContract: "toolcall",
    SQLContract: "sql",
}


@dataclass(frozen=True)
class ModelBinding:
    """Which logical model (and LoRA adapter) runs a skill.

    Attributes:
        model: The logical model name in the pool.
        adapter: A LoRA adapter on that model; None runs the adapter promoted for the skill
            (`brickwork tune --promote`, see `brickwork.tune.adapters`), or else the base model.
        pinned: Use exactly this binding and ignore promoted adapters (e.g. in tests).
    """

    model: str = "slm"
    adapter: str | None = None
    pinned: bool = False

    def __post_init__(self) -> None:
        if not self.model or ":" in self.model:
            raise SkillError(f"model name {self.model!r} must be non-empty and without ':'")
        if self.adapter is not None and (not self.adapter or ":" in self.adapter):
            raise SkillError(f"adapter name {self.adapter!r} must be non-empty and without ':'")

    @property
    def logical_name(self) -> str:
        """The name the model pool serves: "slm" or "slm:<adapter>"."""
        return self.model if self.adapter is None else f"{self.model}:{self.adapter}"


@dataclass(frozen=True)
class Thresholds:
    """Per-skill limits that feed the escalation policy.

    Attributes:
        min_confidence: Below this confidence (0-1) an answer is a low-confidence signal.
        max_repairs: Repair turns on the small model before escalating.
        tool_timeout_s: Time limit of one tool call or query.
    """

    min_confidence: float = 0.6
    max_repairs: int = 1
    tool_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence <= 1.0:
            raise SkillError(f"min_confidence {self.min_confidence!r} must be between 0 and 1")
        if self.max_repairs < 0:
            raise SkillError(f"max_repairs {self.max_repairs!r} must be 0 or more")
        if self.tool_timeout_s <= 0:
            raise SkillError(f"tool_timeout_s {self.tool_timeout_s!r} must be positive")


@dataclass(frozen=True)
class Skill:
    """A declarative brick an agent runs.

    Attributes:
        name: Identifier used in graphs, traces and evals.
        instructions: The task prompt.
        contract: What a valid output is.
        examples: Demonstrations, checked against the contract.
        binding: The model that runs the skill.
        thresholds: Limits for confidence, repairs and tool time.
    """

    name: str
    instructions: str
    contract: Contract
    examples: Sequence[Example] = ()
    binding: ModelBinding = field(default_factory=ModelBinding)
    thresholds: Thresholds = field(default_factory=Thresholds)

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "_").replace(".", "_").isidentifier():
            raise SkillError(f"skill name {self.name!r} must look like an identifier")
        if type(self.contract) not in _KINDS:
            raise SkillError(f"skill {self.name!r}: {self.contract!r} is not a contract")
        object.__setattr__(self, "examples", tuple(self.examples))
        for index, example in enumerate(self.examples):
            problem = _check_output(self.contract, example.output)
            if problem:
                raise SkillError(f"skill {self.name!r}, example #{index}: {problem}")

    @property
    def kind(self) -> SkillKind:
        """The agent kind this skill needs, from its contract."""
        return _KINDS[type(self.contract)]

    def with_binding(self, model: str | ModelBinding = "slm", adapter: str | None = None) -> Skill:
        """A copy of this skill bound to another model or adapter.

        Args:
            model: A logical model name, or a whole binding.
            adapter: LoRA adapter name (ignored when `model` is a binding).

        Returns:
            The new skill.
        """
        binding = model if isinstance(model, ModelBinding) else ModelBinding(model, adapter)
        return dataclasses.replace(self, binding=binding)

    def check_output(self, output: Any) -> str | None:
        """Why `output` breaks this skill's contract, or None when it satisfies it."""
        return _check_output(self.contract, output)

    def effective_binding(self, served: Collection[str] | None = None) -> ModelBinding:
        """The binding to run with: this skill's own, or the adapter promoted for it.

        A promoted adapter (`brickwork.tune.adapters.binding_for(self.name)`) applies when the
        skill's binding names no adapter and is not `pinned`, and, when `served` is given,
        only if `served` holds its logical name (so a pool without the adapter keeps working).

        Args:
            served: The logical model names the pool serves, or None to skip that check.
        """
        if self.binding.adapter is not None or self.binding.pinned:
            return self.binding
        from brickwork.tune.adapters import binding_for

        adapter = binding_for(self.name)
        if adapter is None:
            return self.binding
        promoted = ModelBinding(self.binding.model, adapter)
        if served is not None and promoted.logical_name not in served:
            return self.binding
        return promoted

    def few_shot(self, k: int) -> tuple[Example, ...]:
        """Up to `k` examples, spread over labels (or tools) before repeating one.

        The choice is deterministic: examples are taken in order, round-robin over the
        example's label (intent skills) or tool name (tool skills).
        """
        if k < 0:
            raise SkillError(f"few_shot(k={k!r}): k must be 0 or more")
        groups: dict[Any, list[Example]] = {}
        for example in self.examples:
            groups.setdefault(_group_key(self.contract, example.output), []).append(example)
        ordered = [
            example
            for row in itertools.zip_longest(*groups.values())
            for example in row
            if example is not None
        ]
        return tuple(ordered[:k])


def _group_key(contract: Contract, output: Any) -> Any:
    if isinstance(contract, LabelSet):
        return output
    if isinstance(contract, ToolContract) and isinstance(output, dict):
        return output.get("name")
    return None


def _check_output(contract: Contract, output: Any) -> str | None:
    """Why `output` breaks the contract, or None when it satisfies it."""
    if isinstance(contract, LabelSet):
        if output not in contract.labels:
            return f"label {output!r} is not one of {list(contract.labels)}"
    elif isinstance(contract, SQLContract):
        if not isinstance(output, str) or not output.strip():
            return f"output {output!r} is not a SQL string"
    elif isinstance(contract, ToolContract):
        if not isinstance(output, dict) or set(output) != {"name", "parameters"}:
            return f"output {output!r} is not a call {{'name': ..., 'parameters': {{...}}}}"
        try:
            contract.registry.validate(output["name"], output["parameters"])
        except ToolError as exc:
            return str(exc)
    elif contract.model is not None:
        try:
            contract.model.model_validate(output)
        except ValidationError as exc:
            return f"output does not fit {contract.model.__name__}: {exc}"
    else:
        errors = list(jsonschema.Draft202012Validator(contract.json_schema).iter_errors(output))
        if errors:
            return "; ".join(f"{e.json_path}: {e.message}" for e in errors)
    return None
