"""Training data for `brickwork tune`: examples -> the exact prompts and targets of the agent.

A training example is what the skill's agent sends at inference (its own message builder,
zero-shot: the adapter replaces the few-shot examples) and what the constrained decoding should
produce (the call JSON for tools, the label for intents, the JSON object for extraction, the
`{"sql": ...}` object for SQL). Examples come from three places:

- the skill's own examples;
- files: `question`/`answer` JSONL or CSV (`brickwork.skills.load_examples`), or OpenAI chat
  fine-tuning JSONL (`{"messages": [..., {"role": "assistant", ...}]}`);
- the run store's escalations: a node the frontier model fixed, whose output passed the
  validators, is a teacher-labelled example (distillation).

Multi-turn tool conversations give one example per user turn that an assistant call answers.
Every target is checked against the skill's contract; invalid ones are dropped and counted,
duplicates (same messages and target) too. The validation split is deterministic for a seed.

```python
data = build_dataset(skill, files=["more.jsonl"], store=RunStore(), from_escalations=True)
data.counts   # {"skill": 152, "file:more.jsonl": 20, "escalation": 7, "duplicates_dropped": 3, ...}
```
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brickwork.errors import BrickworkError, SkillError, TuneError
from brickwork.serving.types import Message
from brickwork.skills.loaders import load_examples
from brickwork.skills.skill import (
    Example,
    JSONContract,
    LabelSet,
    Skill,
    SQLContract,
    ToolContract,
    _check_output,
)
from brickwork.store import RunStore

__all__ = [
    "TrainExample",
    "TuneDataset",
    "all_for_training",
    "build_dataset",
    "dataset_sha256",
    "escalation_examples",
    "prompt_builder",
    "split",
    "target_text",
    "with_training_examples",
]

#: Builds the agent's zero-shot prompt for a conversation.
PromptBuilder = Callable[[list[dict[str, Any]]], list[Message]]

_SUPERVISOR = "supervisor"
_MAX_PROBLEMS_SHOWN = 5


@dataclass(frozen=True)
class TrainExample:
    """One supervised example: the agent's prompt and the text the model must produce.

    Attributes:
        messages: The exact chat messages the skill's agent sends at inference (zero-shot).
        target: The assistant text the model must produce (call JSON, label, JSON object).
        source: "skill", "file:<name>" or "escalation:<run_id>/<node>".
        example: The skill `Example` it came from (for evaluation), if any.
    """

    messages: tuple[dict[str, str], ...]
    target: str
    source: str
    example: Example | None = None

    @property
    def key(self) -> str:
        """Canonical JSON of (messages, target): equal keys are duplicates."""
        return json.dumps(
            {"messages": list(self.messages), "target": self.target},
            sort_keys=True,
            ensure_ascii=False,
        )


@dataclass(frozen=True)
class TuneDataset:
    """De-duplicated, validated examples split into training and validation sets.

    Attributes:
        train: Training examples, in training order.
        val: Validation examples.
        sha256: Hash of the canonical JSON of both sets (independent of input order).
        counts: Examples kept per source ("skill", "file:<name>", "escalation"), "train",
            "val", "duplicates_dropped" and "invalid_dropped".
    """

    train: tuple[TrainExample, ...]
    val: tuple[TrainExample, ...]
    sha256: str
    counts: dict[str, int]


def build_dataset(
    skill: Skill,
    *,
    files: Sequence[str | Path] = (),
    store: RunStore | None = None,
    from_escalations: bool = False,
    include_skill_examples: bool = True,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> TuneDataset:
    """Build the training set of `skill` from its examples, files and escalations.

    Args:
        skill: The skill to tune (its kind picks the agent whose prompts are reproduced).
        files: Extra example files (`.jsonl` / `.csv` with `question` and `answer`, or chat
            JSONL with `messages`).
        store: The run store escalations are read from (the default store when None).
        from_escalations: Add the frontier model's validated answers of escalated nodes
            that ran this skill.
        include_skill_examples: Use the skill's own examples.
        val_fraction: Share of examples held out for validation (at least one when there
            are two or more examples and the share is positive).
        seed: Seed of the split.

    Returns:
        The dataset.

    Raises:
        TuneError: No examples at all, none valid, a bad argument, or a file that cannot be
            read (the message names the file).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise TuneError(f"val_fraction={val_fraction!r} must be at least 0 and below 1")
    build = prompt_builder(skill)
    candidates: list[tuple[TrainExample | None, str]] = []
    counts: dict[str, int] = {}
    if include_skill_examples:
        candidates += _from_examples(skill, build, skill.examples, "skill")
    for file in files:
        path = Path(file)
        candidates += _from_examples(skill, build, _read_file(path), f"file:{path.name}")
    if from_escalations:
        candidates += escalation_examples(skill, store if store is not None else RunStore())
    if not candidates:
        own = "gave none" if include_skill_examples else "were left out"
        given = "the --data files held none" if files else "no --data file was given"
        escalated = (
            f"no escalation in {str(store.path) if store else 'the run store'!r} matched it"
            if from_escalations
            else "escalations were not asked for (--from-escalations)"
        )
        raise TuneError(
            f"no training data for skill {skill.name!r}: its examples {own}, {given} and "
            f"{escalated}; give examples with --data FILE"
        )
    problems = [problem for example, problem in candidates if example is None]
    seen: dict[str, TrainExample] = {}
    duplicates = 0
    for example, _ in candidates:
        if example is None:
            continue
        if example.key in seen:
            duplicates += 1
            continue
        seen[example.key] = example
        group = _source_group(example.source)
        counts[group] = counts.get(group, 0) + 1
    if not seen:
        shown = "; ".join(problems[:_MAX_PROBLEMS_SHOWN])
        raise TuneError(
            f"none of the {len(candidates)} examples for skill {skill.name!r} passes its "
            f"contract: {shown}"
        )
    train, val = split(list(seen.values()), val_fraction=val_fraction, seed=seed)
    counts.update(
        train=len(train),
        val=len(val),
        duplicates_dropped=duplicates,
        invalid_dropped=len(problems),
    )
    return TuneDataset(tuple(train), tuple(val), dataset_sha256(train, val), counts)


def with_training_examples(
    skill: Skill, dataset: TuneDataset, examples: Sequence[Example], source: str
) -> TuneDataset:
    """`dataset` plus `examples` on the training side only.

    For teacher-written data (`--synthetic`): the validation split stays the skill's own
    labelled examples, so scores stay comparable with and without the extra data. An example
    equal to one already in the dataset, or opening like a validation conversation, is
    dropped (a paraphrase of a validation question would flatter the adapter).
    """
    build = prompt_builder(skill)
    keys = {e.key for e in (*dataset.train, *dataset.val)}
    held_out = {_conversation_key(e) for e in dataset.val}
    added: list[TrainExample] = []
    duplicates = invalid = 0
    for example, _ in _from_examples(skill, build, examples, source):
        if example is None:
            invalid += 1
        elif example.key in keys or _conversation_key(example) in held_out:
            duplicates += 1
        else:
            keys.add(example.key)
            added.append(example)
    train = (*dataset.train, *added)
    counts = dict(dataset.counts)
    counts[source] = counts.get(source, 0) + len(added)
    counts["train"] = len(train)
    counts["duplicates_dropped"] = counts.get("duplicates_dropped", 0) + duplicates
    counts["invalid_dropped"] = counts.get("invalid_dropped", 0) + invalid
    return TuneDataset(train, dataset.val, dataset_sha256(train, dataset.val), counts)


def all_for_training(dataset: TuneDataset) -> TuneDataset:
    """Every example of `dataset` on the training side, none held out.

    The refit after the promotion gate: the gate judged the settings on the validation
    split; the adapter that is served then learns from those examples too.
    """
    train = (*dataset.train, *dataset.val)
    counts = {**dataset.counts, "train": len(train), "val": 0}
    return TuneDataset(train, (), dataset_sha256(train, ()), counts)


def _source_group(source: str) -> str:
    """The counting group of a source: "escalation" for every escalation, else the source."""
    return "escalation" if source.startswith("escalation:") else source


def split(
    examples: Sequence[TrainExample], *, val_fraction: float, seed: int
) -> tuple[list[TrainExample], list[TrainExample]]:
    """Shuffle with `seed` (from a canonical order, so input order does not matter) and split.

    The turns of one conversation (prompts that open with the same user message) stay on one
    side: a validation turn whose earlier turns were trained on would flatter the adapter.

    Returns:
        (train, val): val holds about round(n * val_fraction) examples (whole conversations),
        at least one when n >= 2 and val_fraction > 0, and never all of them.
    """
    groups: dict[str, list[TrainExample]] = {}
    for example in sorted(examples, key=lambda e: e.key):
        groups.setdefault(_conversation_key(example), []).append(example)
    ordered = [groups[key] for key in sorted(groups)]
    random.Random(seed).shuffle(ordered)
    n = len(examples)
    n_val = 0
    if n >= 2 and val_fraction > 0:
        n_val = min(n - 1, max(1, round(n * val_fraction)))
    val: list[TrainExample] = []
    train: list[TrainExample] = []
    for group in ordered:
        # Fill val with whole conversations; a lone conversation is split by turns rather
        # than leaving val empty or taking every example.
        if len(val) < n_val and (len(val) + len(group) <= n - 1 or len(groups) == 1):
            room = n_val - len(val) if len(groups) == 1 else len(group)
            val += group[:room]
            train += group[room:]
        else:
            train += group
    if not val and n_val:  # every conversation is too big to move whole: take turns
        val, train = train[:n_val], train[n_val:]
    return train, val


def _conversation_key(example: TrainExample) -> str:
    """Turns of one conversation share a key: the conversation's first user message."""
    for message in example.messages:
        if message.get("role") == "user":
            return str(message.get("content"))
    return example.key


def dataset_sha256(train: Sequence[TrainExample], val: Sequence[TrainExample]) -> str:
    """sha256 of the canonical JSON of both sets (each sorted, so order does not matter)."""
    body = {
        "train": sorted(e.key for e in train),
        "val": sorted(e.key for e in val),
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


# -- prompts and targets ----------------------------------------------------------------------


def prompt_builder(skill: Skill) -> PromptBuilder:
    """The skill's agent's zero-shot message builder (conversation -> prompt messages).

    Raises:
        TuneError: A SQL skill without a database (its prompt shows the database's schema).
    """
    contract = skill.contract
    if isinstance(contract, ToolContract):
        from brickwork.agents.toolcall import ToolCallAgent

        tool_agent = ToolCallAgent(skill, execute=False, few_shot=0)
        return lambda conversation: tool_agent.messages(conversation)
    if isinstance(contract, LabelSet):
        from brickwork.agents.intent import IntentAgent

        intent_agent = IntentAgent(skill, few_shot=0)
        return lambda conversation: intent_agent.messages(conversation)
    if isinstance(contract, JSONContract):
        from brickwork.agents.extract import ExtractAgent

        extract_agent = ExtractAgent(skill, few_shot=0)
        return lambda conversation: extract_agent.messages(conversation)
    return _sql_builder(skill)


def _sql_builder(skill: Skill) -> PromptBuilder:
    from brickwork.agents.sql import SQLAgent, split_schema_question

    try:
        agent = SQLAgent(skill, few_shot=0)
    except SkillError as exc:
        raise TuneError(
            f"cannot build the prompts of SQL skill {skill.name!r}: {exc}. Its prompt shows "
            "the database's schema, so tuning needs the skill's database"
        ) from exc
    try:
        schema = agent.database.introspect()
    except BrickworkError as exc:
        raise TuneError(f"cannot read the schema of SQL skill {skill.name!r}: {exc}") from exc

    def build(conversation: list[dict[str, Any]]) -> list[Message]:
        _, question = split_schema_question(_last_user_text(conversation))
        return agent.messages(question, agent.prompt_schema(schema, question))

    return build


def target_text(skill: Skill, output: Any) -> tuple[str | None, str | None]:
    """The text the model must produce for `output`, or why `output` breaks the contract.

    Returns:
        (target, None) for a valid output, (None, problem) otherwise.
    """
    contract = skill.contract
    problem = _check_output(contract, output)
    if problem is not None:
        return None, problem
    if isinstance(contract, ToolContract):
        return json.dumps({"name": output["name"], "parameters": output["parameters"]}), None
    if isinstance(contract, LabelSet):
        return str(output), None
    if isinstance(contract, JSONContract):
        return json.dumps(output, ensure_ascii=False), None
    return _sql_target(contract, output)


def _sql_target(contract: SQLContract, output: Any) -> tuple[str | None, str | None]:
    from brickwork.agents.sql import parse_sql_output

    sql, problem = parse_sql_output(json.dumps({"sql": str(output)}))
    if sql is None:
        return None, problem
    return json.dumps({"sql": sql}, ensure_ascii=False), None


def _from_examples(
    skill: Skill, build: PromptBuilder, examples: Iterable[Example], source: str
) -> list[tuple[TrainExample | None, str]]:
    """Training examples (or None and the problem) for each turn of each example."""
    out: list[tuple[TrainExample | None, str]] = []
    for index, example in enumerate(examples):
        for turn in _turns(skill, example):
            if isinstance(turn, str):
                out.append((None, f"{source} example #{index}: {turn}"))
                continue
            target, problem = target_text(skill, turn.output)
            if target is None:
                out.append((None, f"{source} example #{index}: {problem}"))
                continue
            try:
                messages = _plain(build(turn.messages()))
            except (TypeError, ValueError) as exc:
                out.append((None, f"{source} example #{index}: {exc}"))
                continue
            out.append((TrainExample(messages, target, source, turn), ""))
    return out


def _turns(skill: Skill, example: Example) -> list[Example | str]:
    """The example, preceded (for tool skills) by one example per earlier answered user turn.

    An earlier assistant turn with exactly one tool call is the answer to the conversation
    before it; a turn with several calls cannot be one answer of the agent and is reported.
    """
    if not isinstance(skill.contract, ToolContract) or isinstance(example.input, str):
        return [example]
    turns: list[Example | str] = []
    history = example.messages()
    for position, message in enumerate(history):
        calls = message.get("tool_calls") if message.get("role") == "assistant" else None
        if not calls:
            continue
        if len(calls) != 1:
            turns.append(f"turn {position} holds {len(calls)} tool calls; the agent makes one")
            continue
        turns.append(Example(history[:position], _call(calls[0])))
    return [*turns, example]


def _call(item: Any) -> Any:
    """A data-format tool call (`{"function": {"name", "arguments"}}`) as `{name, parameters}`."""
    spec = item.get("function", item) if isinstance(item, Mapping) else {}
    arguments = spec.get("arguments", spec.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except ValueError:
            return {"name": spec.get("name"), "parameters": arguments}
    return {"name": spec.get("name"), "parameters": arguments}


def _plain(messages: Sequence[Mapping[str, Any]]) -> tuple[dict[str, str], ...]:
    return tuple({"role": str(m["role"]), "content": str(m.get("content") or "")} for m in messages)


def _last_user_text(conversation: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(conversation):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    raise ValueError("the conversation has no user message")


# -- files ------------------------------------------------------------------------------------


def _read_file(path: Path) -> list[Example]:
    """Examples from a `question`/`answer` file or a chat fine-tuning JSONL file."""
    if not path.is_file():
        raise TuneError(f"data file {str(path)!r} does not exist")
    try:
        if path.suffix == ".jsonl" and _is_chat_jsonl(path):
            return _chat_examples(path)
        return load_examples(path)
    except SkillError as exc:
        raise TuneError(f"cannot read data file {str(path)!r}: {exc}") from exc


def _is_chat_jsonl(path: Path) -> bool:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError:
                    return False
                return isinstance(row, dict) and "messages" in row
    return False


def _chat_examples(path: Path) -> list[Example]:
    """OpenAI chat fine-tuning rows: the last assistant message is the answer."""
    examples = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise SkillError(f"{path}:{number}: not valid JSON: {exc}") from exc
            messages = row.get("messages") if isinstance(row, dict) else None
            if not isinstance(messages, list) or len(messages) < 2:
                raise SkillError(f"{path}:{number}: 'messages' must list two messages or more")
            *history, last = messages
            if not isinstance(last, dict) or last.get("role") != "assistant":
                raise SkillError(f"{path}:{number}: the last message must be the assistant's")
            conversation = [m for m in history if m.get("role") != "system"]
            examples.append(Example(conversation, _chat_answer(last)))
    return examples


def _chat_answer(message: Mapping[str, Any]) -> Any:
    calls = message.get("tool_calls")
    if calls:
        return _call(calls[0]) if len(calls) == 1 else [_call(c) for c in calls]
    content = str(message.get("content") or "")
    if content.lstrip().startswith("{"):
        try:
            return json.loads(content)
        except ValueError:
            return content
    return content


# -- escalations ------------------------------------------------------------------------------


def escalation_examples(
    skill: Skill, store: RunStore, *, limit: int = 100_000
) -> list[tuple[TrainExample | None, str]]:
    """Teacher-labelled examples from escalated nodes the frontier model fixed.

    A node's run counts when an `escalation` event with action "escalate" is followed by a
    successful `node_finished` on the frontier model (the supervisor's, or the step's own for
    plan steps) whose prompt was built from this skill (its system message starts with the
    skill's instructions). The input is the conversation of the frontier's first attempt,
    with the system message and few-shot turns removed; the target is the node's output,
    checked against the contract.

    Returns:
        One entry per matching node run: (the example, ""), or (None, the problem) when its
        output fails the contract or its conversation cannot be recovered.
    """
    build = prompt_builder(skill)
    strip = _few_shot_stripper(skill)
    run_ids = dict.fromkeys(record.run_id for record in store.escalations(limit=limit))
    found: list[tuple[TrainExample | None, str]] = []
    for run_id in run_ids:
        stored = store.run(run_id)
        if stored is None:
            continue
        for node, finished in _fixed_nodes(stored[1]):
            attempts = finished.get("attempts") or []
            first = attempts[0].get("messages") if attempts else None
            if not first or not _ran_skill(skill, first):
                continue
            source = f"escalation:{run_id}/{node}"
            conversation = strip(first)
            if conversation is None:
                found.append(
                    (None, f"{source}: the request cannot be told from the few-shot turns")
                )
                continue
            output = _node_value(skill, finished.get("output"))
            target, problem = target_text(skill, output)
            if target is None:
                found.append((None, f"{source}: {problem}"))
                continue
            try:
                messages = _plain(build(conversation))
            except (TypeError, ValueError) as exc:
                found.append((None, f"{source}: {exc}"))
                continue
            example = Example(conversation, output)
            found.append((TrainExample(messages, target, source, example), ""))
    return found


def _fixed_nodes(events: Sequence[Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """(escalated node, the frontier's successful `node_finished`) pairs of one run."""
    pending: str | None = None
    fixed = []
    for event in events:
        kind = event.get("kind")
        if kind == "escalation":
            pending = str(event["node"]) if event.get("action") == "escalate" else None
        elif kind == "node_finished" and pending is not None:
            node = event.get("node")
            if node not in (pending, _SUPERVISOR) or event.get("model") != "frontier":
                continue
            if event.get("ok") and event.get("method") != "plan":
                fixed.append((pending, event))
            pending = None
    return fixed


def _ran_skill(skill: Skill, messages: Sequence[Mapping[str, Any]]) -> bool:
    system = messages[0]
    return system.get("role") == "system" and str(system.get("content", "")).startswith(
        f"{skill.instructions}\n\n"
    )


def _node_value(skill: Skill, output: Any) -> Any:
    """The agent's value inside a node's recorded output."""
    contract = skill.contract
    if isinstance(output, Mapping):
        if isinstance(contract, ToolContract) and isinstance(output.get("call"), Mapping):
            return dict(output["call"])
        if isinstance(contract, LabelSet):
            return output.get("label")
        if isinstance(contract, SQLContract):
            return output.get("sql")
    return output


def _few_shot_stripper(
    skill: Skill,
) -> Callable[[Sequence[Mapping[str, Any]]], list[dict[str, Any]] | None]:
    """Removes the system message and the skill's few-shot turns from a recorded prompt.

    The turns each example renders into are found with the agent's own builder (a copy of the
    skill holding that one example, shown as one few-shot example).
    """
    rendered: list[list[dict[str, str]]] = []
    for example in skill.examples:
        single = Skill(
            name=skill.name,
            instructions=skill.instructions,
            contract=skill.contract,
            examples=(example,),
        )
        try:
            full = _few_shot_prompt(single)
        except (BrickworkError, TypeError, ValueError):
            continue
        rendered.append([dict(m) for m in full[1:-1]])

    def strip(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
        rest = [{"role": str(m["role"]), "content": str(m.get("content") or "")} for m in messages]
        rest = rest[1:]
        progressed = True
        while progressed:
            progressed = False
            for turns in rendered:
                if turns and rest[: len(turns)] == turns and len(rest) > len(turns):
                    rest = rest[len(turns) :]
                    progressed = True
                    break
        if not rest or rest[-1]["role"] != "user":
            return None
        return rest

    return strip


_PROBE = "__brickwork_probe__"


def _few_shot_prompt(skill: Skill) -> list[Message]:
    """The prompt with the skill's one example as a few-shot turn, for the probe input."""
    contract = skill.contract
    if isinstance(contract, ToolContract):
        from brickwork.agents.toolcall import ToolCallAgent

        return ToolCallAgent(skill, execute=False, few_shot=1).messages([_probe()])
    if isinstance(contract, LabelSet):
        from brickwork.agents.intent import IntentAgent

        return IntentAgent(skill, few_shot=1).messages([_probe()])
    if isinstance(contract, JSONContract):
        from brickwork.agents.extract import ExtractAgent

        return ExtractAgent(skill, few_shot=1).messages([_probe()])
    from brickwork.agents.sql import SQLAgent

    agent = SQLAgent(skill, few_shot=1)
    return agent.messages(_PROBE, agent.database.introspect())


def _probe() -> dict[str, Any]:
    return {"role": "user", "content": _PROBE}
