"""Scorers that compare an agent's output with a gold answer, as the benchmarks define them.

- `exact_label`: classification; the label strings must be equal.
- `tool_call_equivalent`: function calling; both sides parsed as `{name, parameters}`,
  parameters equal to their schema default dropped, then name and parameter dict must be
  equal (an extra or a missing key is a mismatch).
- `field_match`: extraction; the share of gold fields the prediction got right.

Values compare as JSON values: `1 == 1.0`, but `True != 1` and `"1" != 1`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

from brickwork.agents.toolcall import ToolCall
from brickwork.errors import SkillError
from brickwork.tools.registry import ToolRegistry

__all__ = ["ToolSchemas", "exact_label", "field_match", "tool_call_equivalent"]

#: Tool parameter schemas: a registry, OpenAI function-tool definitions (the `tools` list of a
#: job description), or a mapping of tool name to its parameters schema.
ToolSchemas: TypeAlias = (
    ToolRegistry | Iterable[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]]
)


def exact_label(pred: str | None, gold: str) -> bool:
    """True when the predicted label is the gold label (surrounding whitespace ignored)."""
    return pred is not None and pred.strip() == gold.strip()


def tool_call_equivalent(predicted: Any, gold: Any, tool_schemas: ToolSchemas) -> bool:
    """The benchmark's tool-call equivalence.

    Args:
        predicted: The model's call: a `ToolCall`, a `{name, parameters}` mapping, its JSON
            text, or None (no call, never equivalent).
        gold: The expected call, in the same forms.
        tool_schemas: Where parameter defaults are read from (see `ToolSchemas`).

    Returns:
        True when the names are equal and the parameter dicts, without parameters equal to
        their schema default, are equal. A prediction that cannot be read as a call is False.

    Raises:
        SkillError: The gold answer cannot be read as a call (the data file is wrong).
    """
    gold_call = _as_call(gold)
    if gold_call is None:
        raise SkillError(f"gold answer {gold!r:.120} is not a {{name, parameters}} tool call")
    pred_call = _as_call(predicted)
    if pred_call is None or pred_call[0] != gold_call[0]:
        return False
    properties = _properties(tool_schemas).get(gold_call[0], {})
    return _equal(
        _without_defaults(pred_call[1], properties), _without_defaults(gold_call[1], properties)
    )


def field_match(pred: Mapping[str, Any] | None, gold: Mapping[str, Any]) -> float:
    """Share of gold fields whose predicted value equals the gold value (0.0 to 1.0).

    An empty gold object scores 1.0 against an empty prediction and 0.0 otherwise.
    """
    if pred is None:
        return 0.0
    if not gold:
        return 0.0 if pred else 1.0
    hits = sum(1 for key, value in gold.items() if key in pred and _equal(pred[key], value))
    return hits / len(gold)


def _as_call(value: Any) -> tuple[str, dict[str, Any]] | None:
    if isinstance(value, ToolCall):
        return value.name, dict(value.parameters)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, Mapping) or set(value) - {"name", "parameters"}:
        return None
    name, parameters = value.get("name"), value.get("parameters", {})
    if not isinstance(name, str) or not isinstance(parameters, Mapping):
        return None
    return name, dict(parameters)


def _properties(schemas: ToolSchemas) -> dict[str, dict[str, Any]]:
    """Tool name -> the `properties` of its parameters schema."""
    pairs: list[tuple[Any, Mapping[str, Any]]]
    if isinstance(schemas, ToolRegistry):
        pairs = [(t.name, t.parameters) for t in schemas]
    elif isinstance(schemas, Mapping):
        pairs = list(schemas.items())
    else:
        pairs = []
        for item in schemas:
            spec = item.get("function", item)
            pairs.append((spec.get("name"), spec.get("parameters") or {}))
    return {str(name): dict(schema.get("properties") or {}) for name, schema in pairs}


def _without_defaults(parameters: dict[str, Any], properties: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: value
        for key, value in parameters.items()
        if not (
            isinstance(properties.get(key), Mapping)
            and "default" in properties[key]
            and _equal(value, properties[key]["default"])
        )
    }


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: like `==`, but booleans never equal numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return _plain(a, b)


def _plain(a: Any, b: Any) -> bool:
    if _number(a) and _number(b):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
