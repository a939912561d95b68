"""The tool-calling agent: one validated (and executed) call of a registry tool per request.

The model sees the skill's instructions, one compact signature line per tool and few-shot
examples; its output is constrained to the registry's call schema (an `anyOf` of
`{"name": const, "parameters": schema}`), then checked by the registry's validator. A rejected
call gets one repair turn that shows the validator's messages. A valid call is executed with
the skill's time limit; tool errors and timeouts become signals (the small model does not
repair them: the call is kept and reported).

Calls are checked against the user's own words (`brickwork.agents.injection`): with
`grounded=True` every argument value must appear in them (except a label's, such as
`intent_unclear.reason`: the examples show which values are judged rather than said) and
every closed choice the last turn names ("on heat mode"), or the turn before when the last
one refers back to it ("Lock it for me"), must be in the call (the call schema pins such a
choice, so constrained decoding cannot leave it out), and a call of a `sensitive`
tool that the request does not plainly ask for is not executed: `extra["needs_confirmation"]`
says why, and the graph stops to ask the user (see `graphs.builder`).

With an `EmbeddingKNN` over the examples' answered turns (`choice_examples`), the examples vote
on the tool first, on the small tier only: a clear vote narrows the call schema to that one
tool (and a tool without parameters is called without any model call); an unclear vote narrows
it to the few tools the vote found plausible. Tiers above the small one choose freely, so an
escalation can undo a wrong vote.

```python
agent = ToolCallAgent(smart_home_skill(hub))
result = await agent.run("Turn on the kitchen lights", pool=pool)
result.value                 # ToolCall(name='toggle_lights', parameters={...})
result.extra["tool_result"]  # ToolResult of the executed call
result.extra["needs_confirmation"]  # None, or why a sensitive call was not run
```
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from brickwork.agents.base import (
    AgentResult,
    Attempt,
    Signal,
    SignalKind,
    call_with,
    on_bottom_tier,
    repair_loop,
    shots_for,
    with_top_tier_prompt,
)
from brickwork.agents.grounding import (
    is_grounded,
    label_parameters,
    named_choices,
    overlooked_choices,
    pin_named_choices,
)
from brickwork.agents.injection import injected_call, not_plainly_asked, own_text
from brickwork.errors import (
    SkillError,
    ToolArgumentsError,
    ToolError,
    ToolTimeoutError,
    UnknownToolError,
)
from brickwork.serving.pool import ModelPool
from brickwork.serving.types import Completion, Message
from brickwork.skills.skill import Example, Skill, ToolContract
from brickwork.tools.registry import Tool, ToolRegistry, ToolResult

if TYPE_CHECKING:
    from brickwork.agents.embeddings import EmbeddingKNN, KNNVote

__all__ = [
    "DEFAULT_FEW_SHOT",
    "DEFAULT_TOOL_KNN_THRESHOLD",
    "MIN_VOTE_PRECISION",
    "AnsweredTurn",
    "ToolCall",
    "ToolCallAgent",
    "answered_turns",
    "choice_examples",
    "normalise_messages",
    "parse_conversation",
    "tool_signature",
    "ungrounded_arguments",
]

DEFAULT_FEW_SHOT = 6
"""Examples shown to the model when the agent is not told how many."""

DEFAULT_TOOL_KNN_THRESHOLD = 0.6
"""A kNN vote share from which the small tier may call only the voted tool."""

MIN_VOTE_PRECISION = 0.9
"""The vote is used only when its clear votes on its own examples (each left out) were right
at least this often: a vote that misleads binds the small tier to a wrong tool."""

_ANSWER_FORMAT = (
    'Answer with one JSON object {"name": <tool name>, "parameters": {<argument>: <value>}} '
    "and nothing else. Arguments marked ? are optional: leave them out unless the user "
    "stated them."
)
_CUT_OFF = "the answer was cut off at the {limit}-token limit; write the call without extra spaces"
_SCALARS = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "null": "None",
    "object": "dict",
}


@dataclass(frozen=True)
class ToolCall:
    """One call of a tool, as the model stated it (before defaults are filled in)."""

    name: str
    parameters: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The call as the JSON text the model writes."""
        return json.dumps({"name": self.name, "parameters": self.parameters})


class ToolCallAgent:
    """Runs a `ToolContract` skill: prompt, constrained call, validation, repair, execution.

    Args:
        skill: A skill whose contract is a `ToolContract`.
        execute: Run the validated call on the registry (tools with no implementation are
            never run: their call is the output).
        few_shot: How many of the skill's examples to show (`DEFAULT_FEW_SHOT` if None).
        max_tokens: Upper bound on the generated call.
        grounded: Every argument value must appear in the user's own words (text embedded
            in the request, such as "ignore previous instructions and ...", does not count),
            and a closed choice the user's last turn names (or, when it refers back, the
            turn before) must be in the call
            (`agents.grounding.overlooked_choices`; the call schema pins such choices, and
            `extra["pinned"]` says which). Parameters the skill's examples show
            to be labels (`intent_unclear.reason`; see `labels`) are not checked.
        knn: A kNN over (user turn -> tool name) examples (see `choice_examples`); on the
            small tier its vote narrows the tools the model may call.
        knn_threshold: A vote share from which only the voted tool may be called.
        max_candidates: Tools left to the model when the vote is unclear.
        min_vote_precision: The vote is used only if its clear votes on its own examples,
            each left out, were right at least this often (`vote_precision`); otherwise
            every tool stays open and `extra["knn"]` says why.

    Raises:
        SkillError: The skill's contract is not a `ToolContract`, or a kNN setting is out of
            range.
    """

    def __init__(
        self,
        skill: Skill,
        *,
        execute: bool = True,
        few_shot: int | None = None,
        max_tokens: int = 256,
        grounded: bool = False,
        knn: EmbeddingKNN | None = None,
        knn_threshold: float = DEFAULT_TOOL_KNN_THRESHOLD,
        max_candidates: int = 3,
        min_vote_precision: float = MIN_VOTE_PRECISION,
    ) -> None:
        if not isinstance(skill.contract, ToolContract):
            raise SkillError(
                f"ToolCallAgent needs a skill with a ToolContract; skill {skill.name!r} has "
                f"kind {skill.kind!r}: run it with the agent of that kind"
            )
        if (few_shot is not None and few_shot < 0) or max_tokens < 1:
            raise SkillError(
                f"few_shot={few_shot!r} must be 0 or more and max_tokens={max_tokens!r} positive"
            )
        self.skill = skill
        self.registry: ToolRegistry = skill.contract.registry
        self.execute = execute
        self.few_shot = DEFAULT_FEW_SHOT if few_shot is None else few_shot
        self.max_tokens = max_tokens
        if not 0.0 < knn_threshold <= 1.0 or max_candidates < 1:
            raise SkillError(
                f"knn_threshold={knn_threshold!r} must be in (0, 1] and "
                f"max_candidates={max_candidates!r} 1 or more"
            )
        self.grounded = grounded
        self.knn = knn
        self.knn_threshold = knn_threshold
        self.max_candidates = max_candidates
        self.min_vote_precision = min_vote_precision
        #: Share of the kNN's clear leave-one-out votes that were right (None: no kNN).
        self.vote_precision: float | None = None
        if knn is not None:
            right, clear = knn.clear_vote_precision(knn_threshold)
            self.vote_precision = right / clear if clear else 0.0
        #: (tool, parameter) pairs grounding leaves alone: the examples show their values are
        #: the model's judgement, not the user's words (`agents.grounding.label_parameters`).
        self.labels: frozenset[tuple[str, str]] = frozenset()
        if grounded:
            self.labels = label_parameters(
                (turn.name, turn.parameters, own_text(" ".join(turn.said)))
                for turn in answered_turns(skill.examples)
            )
        self._schema = self.registry.call_schema()

    def system_prompt(self) -> str:
        """The instructions, one signature line per tool, and the answer format."""
        tools = "\n".join(tool_signature(t) for t in self.registry)
        return f"{self.skill.instructions}\n\nTools:\n{tools}\n\n{_ANSWER_FORMAT}"

    def messages(
        self, conversation: str | Sequence[Message], *, few_shot: int | None = None
    ) -> list[Message]:
        """The full prompt for one request: system, few-shot turns, then the conversation.

        Args:
            conversation: A user text, a conversation in the data format (a JSON list of
                chat messages), or chat messages.
            few_shot: Examples to show instead of the agent's `few_shot`.
        """
        if isinstance(conversation, str):
            turns = parse_conversation(conversation)
        else:
            turns = normalise_messages(conversation)
        if not turns:
            raise ValueError("the conversation is empty; give at least one user message")
        prompt: list[Message] = [{"role": "system", "content": self.system_prompt()}]
        for example in self.skill.few_shot(self.few_shot if few_shot is None else few_shot):
            prompt += _example_turns(example)
        return prompt + turns

    async def run(
        self,
        input: str | Sequence[Message],
        *,
        pool: ModelPool,
        model: str | None = None,
    ) -> AgentResult[ToolCall]:
        """Produce one validated call for the last user turn, and execute it.

        Args:
            input: A user text, a data-format conversation string, or chat messages.
            pool: The model pool.
            model: A logical model name overriding the skill's binding (e.g. "frontier").

        Returns:
            The call (None when no attempt validated) with signals for every failure:
            "invalid_output", "unknown_tool", "invalid_arguments", "tool_error",
            "tool_timeout", "model_error" or "model_timeout". `extra["tool_result"]` holds the
            `ToolResult` (None when the call was not executed).

        Raises:
            UnknownModelError: No endpoint serves the model (a configuration error).
        """
        logical = model or self.skill.binding.logical_name
        turns = parse_conversation(input) if isinstance(input, str) else normalise_messages(input)
        extra: dict[str, Any] = {"model": logical, "tool_result": None, "needs_confirmation": None}
        said = _user_text(turns)
        own = own_text(said)
        users = [m for m in turns if m.get("role") == "user"]
        last_turn = own_text(_text(users[-1].get("content"))) if users else ""
        previous = own_text(_text(users[-2].get("content"))) if len(users) > 1 else None
        tools = await self._vote(turns, pool, logical, extra)
        schema = self.registry.call_schema(only=tools) if tools else self._schema
        if self.grounded:
            schema, pinned = _pinned(schema, last_turn, previous)
            extra["pinned"] = pinned
        send = call_with(pool, logical, json_schema=schema, max_tokens=self.max_tokens)
        finish_reasons: list[str | None] = []

        async def call(messages: Sequence[Message]) -> Completion:
            completion = await send(messages)
            finish_reasons.append(completion.finish_reason)
            return completion

        async def validate(text: str) -> tuple[ToolCall | None, list[str], SignalKind]:
            value, errors, kind = self._validate(text)
            if value is not None and self.grounded:
                labels = {key for tool, key in self.labels if tool == value.name}
                errors = ungrounded_arguments(value.parameters, own, skip=labels)
                errors += overlooked_choices(
                    value.parameters, self.registry.get(value.name).parameters, last_turn, previous
                )
                found = self.registry.get(value.name)
                planted = injected_call(value.name, said, verbs=found.verbs)
                errors += [planted] if planted else []
                if errors:
                    value, kind = None, "invalid_arguments"
            if errors and finish_reasons and finish_reasons[-1] == "length":
                errors.insert(0, _CUT_OFF.format(limit=self.max_tokens))
            return value, errors, kind

        value: Any = None
        attempts: list[Attempt] = []
        signals: list[Signal] = []
        if (
            tools
            and len(tools) == 1
            and not self.registry.get(tools[0]).parameters.get("properties")
        ):
            # The vote is clear and the tool takes nothing: no model call can add anything.
            value, _, _ = await validate(json.dumps({"name": tools[0], "parameters": {}}))
            extra["knn"]["decided"] = value is not None
        if value is None:
            shots = shots_for(logical, self.few_shot)
            shown = self.messages(input, few_shot=shots)
            top = self.messages(input) if shots < self.few_shot else shown
            value, attempts, signals = await repair_loop(
                shown,
                with_top_tier_prompt(call, shown, top),
                validate,
                max_repairs=self.skill.thresholds.max_repairs,
            )
        if isinstance(value, ToolCall):
            extra["needs_confirmation"] = self.confirmation_needed(value, said)
        if isinstance(value, ToolCall) and self.execute and extra["needs_confirmation"] is None:
            result = await self._execute(value)
            extra["tool_result"] = result
            if result is not None and result.error is not None:
                kind = _error_kind(result.error)
                signals = [*signals, Signal(kind, str(result.error), len(attempts) - 1)]
        return AgentResult(
            value=value if isinstance(value, ToolCall) else None,
            signals=tuple(signals),
            attempts=tuple(attempts),
            method="knn" if extra.get("knn", {}).get("decided") else logical.partition(":")[0],
            extra=extra,
        )

    async def _vote(
        self, turns: Sequence[Message], pool: ModelPool, logical: str, extra: dict[str, Any]
    ) -> tuple[str, ...]:
        """The tools the small tier may call after the kNN vote (empty: every tool).

        Tiers above the small one are not narrowed: an escalation chooses freely.
        """
        if self.knn is None or not on_bottom_tier(pool, logical):
            return ()
        if (self.vote_precision or 0.0) < self.min_vote_precision:
            extra["knn"] = {
                "unused": f"its clear votes on its own examples were right "
                f"{self.vote_precision or 0.0:.0%} of the time, below "
                f"{self.min_vote_precision:.0%}: every tool stays open",
                "decided": False,
            }
            return ()
        from brickwork.agents.embeddings import query_text

        started = time.perf_counter()
        try:
            vote = await self.knn.aclassify(query_text(turns))
        except SkillError:
            return ()  # no user text to vote on: the model sees every tool
        known = {tool.name for tool in self.registry}
        if vote.share >= self.knn_threshold:
            tools: tuple[str, ...] = (vote.label,)
        else:
            tools = vote.candidates(self.max_candidates)
        tools = tuple(name for name in tools if name in known)
        extra["knn"] = _vote_record(vote, tools, time.perf_counter() - started)
        return tools

    def _validate(self, text: str) -> tuple[ToolCall | None, list[str], SignalKind]:
        try:
            data = json.loads(text)
        except ValueError as exc:
            return None, [f"the answer is not JSON ({exc}): {text[:200]!r}"], "invalid_output"
        problem = _shape_problem(data)
        if problem:
            return None, [problem], "invalid_output"
        parameters = dict(data.get("parameters", {}))
        try:
            self.registry.validate(data["name"], parameters)
        except UnknownToolError as exc:
            return None, [str(exc)], "unknown_tool"
        except ToolArgumentsError as exc:
            return None, [str(exc)], "invalid_arguments"
        return ToolCall(data["name"], parameters), [], "invalid_output"

    def confirmation_needed(self, call: ToolCall, said: str) -> str | None:
        """Why `call` must be confirmed before it runs (None: it may run now).

        Only calls of `sensitive` tools are checked: they run only when the user's own words
        (`said` without embedded instructions) plainly ask for the action and its arguments.
        """
        found = self.registry.get(call.name)
        if not found.sensitive:
            return None
        return not_plainly_asked(call.name, call.parameters, said, verbs=found.action_verbs)

    async def execute_call(self, call: ToolCall) -> ToolResult | None:
        """Run a call on the registry with the skill's time limit (after a confirmation).

        Returns:
            The result, or None for a schema-only tool (nothing to run).
        """
        return await self._execute(call)

    async def _execute(self, value: ToolCall) -> ToolResult | None:
        found = self.registry.get(value.name)
        if found.function is None:
            return None  # a schema-only tool: the call itself is the output
        limit = self.skill.thresholds.tool_timeout_s
        if found.timeout_s is not None:
            limit = min(limit, found.timeout_s)
        return await self.registry.execute(value.name, value.parameters, timeout_s=limit)


@dataclass(frozen=True)
class AnsweredTurn:
    """One user turn of an example and the one tool call that answered it."""

    #: Everything the user said up to and including this turn, in order.
    said: tuple[str, ...]
    name: str
    parameters: Mapping[str, Any]


def answered_turns(examples: Iterable[Example]) -> list[AnsweredTurn]:
    """Every user turn of a tool skill's examples that one tool call answered.

    The final user turn of an example with its output, and each earlier user turn answered
    by exactly one tool call in the history with that call. Turns without text or a tool name
    are skipped.
    """
    found: list[AnsweredTurn] = []
    for example in examples:
        said: list[str] = []
        fresh = False  # the previous message is a user turn with text
        for message in example.messages():
            if message.get("role") == "user":
                text = _text(message.get("content"))
                said += [text] if text else []
                fresh = bool(text)
                continue
            calls = message.get("tool_calls") if message.get("role") == "assistant" else None
            if fresh and isinstance(calls, list) and len(calls) == 1:
                turn = _answered(said, calls[0])
                found += [turn] if turn else []
            fresh = False
        turn = _answered(said, example.output) if fresh else None
        found += [turn] if turn else []
    return found


def choice_examples(examples: Iterable[Example]) -> list[Example]:
    """(user turn -> tool name) examples for a tool-choice kNN, from a tool skill's examples.

    One per `answered_turns` item: the user's turn, labelled with the name of the tool that
    answered it.
    """
    return [Example(turn.said[-1], turn.name) for turn in answered_turns(examples)]


def _answered(said: Sequence[str], call: Any) -> AnsweredTurn | None:
    name = _call_name(call)
    if not name:
        return None
    spec = call.get("function", call)
    arguments = spec.get("arguments", spec.get("parameters"))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except ValueError:
            arguments = None
    return AnsweredTurn(tuple(said), name, arguments if isinstance(arguments, Mapping) else {})


def _call_name(call: Any) -> str | None:
    if not isinstance(call, Mapping):
        return None
    spec = call.get("function", call)
    name = spec.get("name") if isinstance(spec, Mapping) else None
    return name if isinstance(name, str) and name else None


def _pinned(
    schema: dict[str, Any], turn: str, previous: str | None
) -> tuple[dict[str, Any], dict[str, dict[str, list[str]]]]:
    """The call schema with each tool's closed choices that `turn` names pinned, and which.

    See `agents.grounding.pin_named_choices`: only calls the named-choice check would accept
    can be written. `schema` itself is left as it is (the agent's full schema is shared).
    """
    branches = []
    pinned: dict[str, dict[str, list[str]]] = {}
    for branch in schema["anyOf"]:
        parameters = branch["properties"]["parameters"]
        named = named_choices(parameters, turn, previous)
        if not named:
            branches.append(branch)
            continue
        pinned[branch["properties"]["name"]["const"]] = named
        narrowed = pin_named_choices(parameters, turn, previous)
        branches.append({**branch, "properties": {**branch["properties"], "parameters": narrowed}})
    return ({**schema, "anyOf": branches} if pinned else schema), pinned


def _vote_record(vote: KNNVote, tools: Sequence[str], latency_s: float) -> dict[str, Any]:
    return {
        "label": vote.label,
        "share": round(vote.share, 4),
        "tools": list(tools),
        "decided": False,
        "latency_s": latency_s,
    }


def ungrounded_arguments(
    parameters: Mapping[str, Any], said: str, *, skip: Collection[str] = ()
) -> list[str]:
    """Arguments whose value the user never said: a cheap check against made-up values.

    A string argument must appear in what the user said (after `agents.grounding`'s
    normalisation: case, underscores, currency symbols, dates), a number must be one of the
    numbers the user said. Booleans and the arguments named in `skip` (labels, see
    `agents.grounding.label_parameters`) are not checked.
    """
    problems = []
    for name, value in parameters.items():
        if name in skip or is_grounded(value, said):
            continue
        if isinstance(value, int | float):
            problems.append(
                f"{name}={value!r}: the user said no such number; use only values the user gave"
            )
        else:
            problems.append(
                f"{name}={value!r} does not appear in the request; use only values the user "
                "gave, or another tool"
            )
    return problems


def _user_text(messages: Sequence[Message]) -> str:
    return " ".join(_text(m.get("content")) for m in messages if m.get("role") == "user")


def tool_signature(tool: Tool[..., Any]) -> str:
    """One line describing a tool: `name(arg: type, opt?: "a"|"b")  Description`."""
    schema = tool.parameters
    required = set(schema.get("required", ()))
    arguments = []
    for name, spec in schema.get("properties", {}).items():
        text = f"{name}{'' if name in required else '?'}: {_type(spec)}"
        if isinstance(spec, Mapping) and "default" in spec:
            text += f" = {json.dumps(spec['default'])}"
        arguments.append(text)
    line = f"{tool.name}({', '.join(arguments)})"
    return f"{line}  {tool.description}" if tool.description else line


def parse_conversation(text: str) -> list[Message]:
    """Chat messages from a user text or a data-format conversation.

    A JSON list of chat messages (the `question` field of multi-turn tool data) becomes those
    messages, with earlier assistant calls written as call JSON (see `normalise_messages`);
    any other text is one user message.
    """
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            decoded = json.loads(stripped)
        except ValueError:
            decoded = None
        if isinstance(decoded, list) and decoded and all(_is_message(m) for m in decoded):
            return normalise_messages(decoded)
    return [{"role": "user", "content": text}]


def normalise_messages(messages: Sequence[Message]) -> list[Message]:
    """Plain `role`/`content` messages any chat endpoint accepts, in the same order.

    Assistant `tool_calls` become the call JSON the agent itself answers with
    (`{"name": ..., "parameters": {...}}`, one per line), and tool results become user
    messages, so the model sees its earlier calls in the format it is asked to produce.
    """
    out: list[Message] = []
    for index, message in enumerate(messages):
        if not _is_message(message):
            raise TypeError(f"message #{index} {message!r:.80} is not a chat message with a role")
        role = message["role"]
        content = _text(message.get("content"))
        if role == "assistant" and message.get("tool_calls"):
            calls = "\n".join(_call_text(c) for c in message["tool_calls"])
            content = f"{content}\n{calls}" if content else calls
        elif role == "tool":
            role, content = "user", f"Tool result: {content}"
        out.append({"role": role, "content": content})
    return out


def _example_turns(example: Example) -> list[Message]:
    output = example.output
    answer = json.dumps(output) if isinstance(output, Mapping) else str(output)
    return [*normalise_messages(example.messages()), {"role": "assistant", "content": answer}]


def _shape_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return f'the answer {data!r:.120} is not a JSON object {{"name": ..., "parameters": ...}}'
    extra = sorted(set(data) - {"name", "parameters"})
    if extra:
        return f"the answer has unexpected keys {extra}; give only 'name' and 'parameters'"
    if not isinstance(data.get("name"), str):
        return f"the answer has no tool 'name' string: {data!r:.120}"
    if not isinstance(data.get("parameters", {}), dict):
        return f"'parameters' must be a JSON object, not {data['parameters']!r:.80}"
    return None


def _error_kind(error: ToolError) -> SignalKind:
    return "tool_timeout" if isinstance(error, ToolTimeoutError) else "tool_error"


def _type(spec: Any) -> str:
    if not isinstance(spec, Mapping):
        return "any"
    if "enum" in spec:
        return "|".join(json.dumps(v) for v in spec["enum"])
    if "const" in spec:
        return json.dumps(spec["const"])
    for key in ("anyOf", "oneOf"):
        if key in spec:
            return "|".join(_type(s) for s in spec[key])
    kind = spec.get("type")
    if isinstance(kind, list):
        return "|".join(_type({**spec, "type": k}) for k in kind)
    if kind == "array":
        return f"list[{_type(spec.get('items', {}))}]"
    text = _SCALARS.get(str(kind), "any")
    low, high = spec.get("minimum"), spec.get("maximum")
    if kind in ("integer", "number") and (low is not None or high is not None):
        text += f" {'' if low is None else low}..{'' if high is None else high}"
    return text


def _call_text(item: Any) -> str:
    spec = item.get("function", item) if isinstance(item, Mapping) else {}
    arguments = spec.get("arguments", spec.get("parameters", {}))
    if isinstance(arguments, str):
        # Text that is not JSON is kept as written: the model sees what the caller gave.
        with contextlib.suppress(ValueError):
            arguments = json.loads(arguments or "{}")
    return json.dumps({"name": spec.get("name"), "parameters": arguments})


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    return str(content)


def _is_message(item: Any) -> bool:
    return isinstance(item, Mapping) and isinstance(item.get("role"), str)
