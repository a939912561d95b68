"""Derive a tool's JSON schema from a typed Python function and its Google-style docstring.

The schema is what a small model is constrained to, so it is kept small and self-contained:
no titles, no `$ref` (definitions are inlined so the schema can be embedded anywhere), closed
objects, and `x: T | None = None` read as "may be left out" (the property has `T`'s schema and
is not required) rather than "may be null": models should omit what the user did not say.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

__all__ = ["DerivedSchema", "derive_schema", "parse_docstring"]

_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Returns|Return|Yields|"
    r"Raises|Examples?|Notes?|Attributes|See Also|Warnings?|Todo|References)\s*:\s*$"
)
_ARG_SECTIONS = frozenset({"Args", "Arguments", "Parameters", "Params"})
_ARG_LINE = re.compile(r"^\*{0,2}(?P<name>\w+)\s*(?:\([^)]*\))?\s*:\s*(?P<text>.*)$")
# Keywords whose values are data, not sub-schemas: never strip "title" inside them.
_DATA_KEYWORDS = frozenset({"default", "enum", "const", "examples"})
_NAMED_SCHEMAS = frozenset({"properties", "$defs", "definitions", "patternProperties"})


@dataclass(frozen=True)
class DerivedSchema:
    """What `derive_schema` learns from a function.

    Attributes:
        description: The docstring summary (first paragraph, on one line).
        parameters: The JSON schema of the keyword arguments.
        model: A Pydantic model validating (and coercing) the arguments; its fields are
            aliased to the parameter names.
    """

    description: str
    parameters: dict[str, Any]
    model: type[BaseModel]


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its summary and its `Args:` descriptions.

    Args:
        doc: The raw docstring (or None).

    Returns:
        The summary paragraph joined on one line, and a mapping of argument name to its
        description (continuation lines joined with spaces).
    """
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _SECTION.match(line.strip()):
            break
        summary.append(line.strip())
    args: dict[str, str] = {}
    section: str | None = None
    section_indent = 0
    current: str | None = None
    entry_indent: int | None = None
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        header = _SECTION.match(stripped)
        if header and (section is None or indent <= section_indent):
            section, section_indent, current, entry_indent = header.group(1), indent, None, None
            continue
        if section not in _ARG_SECTIONS or not stripped:
            continue
        if indent <= section_indent:
            section = None
            continue
        if entry_indent is None:
            entry_indent = indent
        match = _ARG_LINE.match(stripped)
        if indent == entry_indent and match:
            current = match.group("name")
            args[current] = match.group("text").strip()
        elif current is not None:
            args[current] = f"{args[current]} {stripped}".strip()
    return " ".join(summary), args


def derive_schema(func: Callable[..., Any], *, name: str) -> DerivedSchema:
    """Build the argument model and JSON schema of `func` from its signature and docstring.

    Args:
        func: A function (or bound method) whose parameters all carry type annotations.
        name: The tool name, used in error messages and the model's name.

    Returns:
        The summary, the parameters schema and the validating model.

    Raises:
        TypeError: A parameter is unannotated, positional-only or variadic, or a type is
            recursive (such a schema cannot be inlined).
    """
    signature = inspect.signature(func)
    hints = typing.get_type_hints(func, include_extras=True)
    summary, arg_docs = parse_docstring(inspect.getdoc(func))
    fields: dict[str, Any] = {}
    omittable: set[str] = set()
    for index, param in enumerate(signature.parameters.values()):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise TypeError(
                f"tool {name!r}: parameter {param.name!r} is {param.kind.description}; tools take "
                "keyword arguments only, so declare it as a normal named parameter"
            )
        if param.name not in hints and param.name in ("self", "cls"):
            raise TypeError(
                f"tool {name!r}: looks like a method; register the bound method "
                "(registry.add(obj.method)) instead of decorating it in the class"
            )
        if param.name not in hints:
            raise TypeError(
                f"tool {name!r}: parameter {param.name!r} has no type annotation; annotate it so "
                "its JSON schema can be derived"
            )
        default = ... if param.default is param.empty else param.default
        if param.default is None and _allows_none(hints[param.name]):
            omittable.add(param.name)
        # Fields get neutral names and the parameter name as alias, so parameters called
        # `schema`, `json` or `model_x` never clash with BaseModel attributes.
        fields[f"p{index}"] = (
            hints[param.name],
            Field(default, alias=param.name, description=arg_docs.get(param.name)),
        )
    model = create_model(
        f"{name}_arguments",
        __config__=ConfigDict(extra="forbid", populate_by_name=False),
        **fields,
    )
    raw = model.model_json_schema()
    inlined = _inline_refs(raw, raw.get("$defs", {}), (), name)
    properties: dict[str, Any] = {
        key: _strip_null(_clean(value)) if key in omittable else _clean(value)
        for key, value in inlined.get("properties", {}).items()
    }
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": list(inlined.get("required", [])),
        "additionalProperties": False,
    }
    return DerivedSchema(description=summary, parameters=parameters, model=model)


def _allows_none(annotation: Any) -> bool:
    """Whether `annotation` is `X | None` (possibly wrapped in Annotated)."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation is type(None) or type(None) in typing.get_args(annotation)


def _strip_null(schema: dict[str, Any]) -> dict[str, Any]:
    """Turn `{"anyOf": [S, {"type": "null"}], "default": None, ...}` into `S` plus the rest."""
    result = {key: value for key, value in schema.items() if key != "default"}
    branches = result.pop("anyOf", None)
    if branches is None:
        return result
    kept = [branch for branch in branches if branch != {"type": "null"}]
    if len(kept) == 1:
        return {**kept[0], **result}
    return {"anyOf": kept, **result}


def _clean(node: Any) -> Any:
    """Remove Pydantic's generated titles from a schema, leaving data values untouched."""
    if isinstance(node, list):
        return [_clean(item) for item in node]
    if not isinstance(node, dict):
        return node
    cleaned: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in _DATA_KEYWORDS:
            cleaned[key] = value
        elif key in _NAMED_SCHEMAS and isinstance(value, dict):
            cleaned[key] = {name: _clean(sub) for name, sub in value.items()}
        else:
            cleaned[key] = _clean(value)
    return cleaned


def _inline_refs(node: Any, defs: dict[str, Any], stack: tuple[str, ...], tool: str) -> Any:
    """Replace every `#/$defs/X` reference by a copy of X, and drop `$defs`."""
    if isinstance(node, list):
        return [_inline_refs(item, defs, stack, tool) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        key = ref.removeprefix("#/$defs/")
        if key in stack:
            raise TypeError(
                f"tool {tool!r}: type {key!r} is recursive; tool parameters must have finite "
                "schemas, so flatten the type or pass it as a JSON string"
            )
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        target = _inline_refs(defs[key], defs, (*stack, key), tool)
        return {**target, **_inline_refs(siblings, defs, stack, tool)}
    return {
        key: value if key in _DATA_KEYWORDS else _inline_refs(value, defs, stack, tool)
        for key, value in node.items()
        if key != "$defs"
    }
