"""What a cached answer is keyed on: everything that determines a node's model output.

A key is the sha256 of the canonical JSON (sorted keys, no spaces) of: the graph and node, the
skill's name and version (`skill_version`: instructions, contract and examples), what the skill
is bound to (`binding`: a new adapter binding is a new key space), the tenant, the logical model
name as resolved (`slm:<adapter>`) with the endpoints' own model names, the full message list
(system prompt, conversation, few-shot turns, repair turns) and every request option (JSON
schema, choices, max_tokens, temperature, logprobs, stop, seed). Only exact matches hit.

Only deterministic requests are cached (`deterministic`: temperature 0, greedy decoding); a
sampled answer is a draw, and replaying one draw would hide the distribution.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from brickwork.serving.types import ChatRequest, Message

if TYPE_CHECKING:
    from brickwork.skills.skill import Skill

__all__ = [
    "KEY_FORMAT",
    "Scope",
    "canonical_json",
    "deterministic",
    "last_user_text",
    "request_key",
    "request_of",
    "semantic_space",
    "skill_version",
]

#: Bumped when the key's layout changes, so old entries are never read as new ones.
KEY_FORMAT = 1


@dataclass(frozen=True)
class Scope:
    """Where a model call is made from: the part of the key fixed for one node run.

    Attributes:
        graph: The graph's name.
        node: The node the call is accounted to.
        tenant: Who the run is for; entries are never shared across tenants.
        skill: The node's skill name ("-" for an agent without one).
        skill_version: `skill_version(skill)`: changes when its prompt, contract or examples do.
        binding: What the skill runs on (`brickwork.routing.binding_key`): a new binding is a
            new key space even before the pool serves the adapter.
    """

    graph: str
    node: str
    tenant: str
    skill: str = "-"
    skill_version: str = "-"
    binding: str = "-"


def _plain(value: Any) -> Any:
    """JSON-able form of schema and message values (mappings, sequences, dataclasses)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if hasattr(value, "model_json_schema"):  # a Pydantic model class given as a schema
        return _plain(value.model_json_schema())
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, unicode kept: one text per value."""
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def skill_version(skill: Skill | None) -> str:
    """A short hash of what a skill tells the model: instructions, contract and examples."""
    if skill is None:
        return "-"
    parts = {
        "instructions": skill.instructions,
        "contract": _contract_view(skill.contract),
        "examples": [[e.input, e.output] for e in skill.examples],
    }
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()[:16]


def _contract_view(contract: Any) -> Any:
    """A contract as stable data (no object addresses: keys are shared between processes)."""
    from brickwork.skills.skill import JSONContract, LabelSet, SQLContract, ToolContract

    if isinstance(contract, LabelSet):
        return {"labels": contract.labels}
    if isinstance(contract, JSONContract):
        return {"schema": contract.json_schema}
    if isinstance(contract, ToolContract):
        return {"tools": contract.registry.openai_tools()}
    if isinstance(contract, SQLContract):
        database = contract.database
        shown = database if isinstance(database, str) or database is None else type(database)
        return {"dialect": contract.dialect, "database": getattr(shown, "__name__", shown)}
    return repr(contract)


def deterministic(request: ChatRequest) -> bool:
    """True for greedy decoding (temperature 0): the only answers worth replaying."""
    return request.temperature == 0


def request_key(scope: Scope, model: str, served: Sequence[str], request: ChatRequest) -> str:
    """The sha256 (hex) of everything that determines this call's output.

    Args:
        scope: Graph, node, tenant, skill, skill version and binding.
        model: The logical model name as resolved (e.g. "slm:smart_home-specialist").
        served: The model names the endpoints are sent (base models, or the adapter).
        request: The full request: messages and options.
    """
    options = {
        f.name: getattr(request, f.name)
        for f in dataclasses.fields(request)
        if f.name != "messages"
    }
    body = {
        "format": KEY_FORMAT,
        "scope": dataclasses.asdict(scope),
        "model": model,
        "served": sorted(served),
        "messages": [dict(m) for m in request.messages],
        "options": options,
    }
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def last_user_text(request: ChatRequest) -> str | None:
    """The text of the request's last message when it is the user's (the new turn), else None.

    A request that ends with anything else (an assistant or tool turn) has no new user text to
    compare, so it is never looked up semantically.
    """
    if not request.messages:
        return None
    last = request.messages[-1]
    content = last.get("content")
    if last.get("role") != "user" or not isinstance(content, str) or not content.strip():
        return None
    return content


def semantic_space(
    scope: Scope, model: str, served: Sequence[str], request: ChatRequest
) -> str | None:
    """The sha256 of everything in `request_key` except the last user message, or None.

    Requests in one space differ only in the new user text: same graph, node, tenant, skill
    version, binding, model, system prompt, earlier turns, tools/schema and options. A semantic
    lookup compares the new text's embedding with the cached texts of its own space only, so
    it never crosses tenants, bindings or conversations. None when the request does not end
    with a user message (`last_user_text`).
    """
    if last_user_text(request) is None:
        return None
    options = {
        f.name: getattr(request, f.name)
        for f in dataclasses.fields(request)
        if f.name != "messages"
    }
    body = {
        "format": KEY_FORMAT,
        "semantic": True,
        "scope": dataclasses.asdict(scope),
        "model": model,
        "served": sorted(served),
        "messages": [dict(m) for m in request.messages[:-1]],
        "options": options,
    }
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def request_of(
    messages: Sequence[Message] | ChatRequest, options: Mapping[str, Any]
) -> ChatRequest:
    """The request `ModelPool.complete` would send for these arguments."""
    if isinstance(messages, ChatRequest):
        return messages
    return ChatRequest(messages=list(messages), **options)
