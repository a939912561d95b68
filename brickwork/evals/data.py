"""What `brickwork eval` evaluates: rows of data, a graph to run them on, and what "right" means.

A row is a `question` (text, or a chat history such as the multi-turn tool sets of the common
data format) and an `answer`. A target is a graph module (`graphs.smart_home`, a `.py` file) or
a skill folder (`job_description.json` + a train file), which runs as a one-node graph around
the agent of the skill's kind. An `Expectation` says, per row, which node outputs have a gold
answer (`checks`, node -> check) and whether the run as a whole is right (`overall`).

How the example graphs' outputs map onto a row's answer (`EXPECTATIONS`):

- smart_home: a `{name, parameters}` call is compared with `outputs.toolcall.call` by
  `tool_call_equivalent` (an `intent_unclear` gold call is also met by the intent node routing
  the request out of scope); a list of calls with the plan's steps; a label (e.g.
  `out_of_scope`) with `outputs.intent.label`. The intent node is checked too, with the label
  the gold call implies.
- support: the intent label, `exact_label` on `outputs.intent.label`.
- analytics: `execution_match` of `outputs.sql.sql` against the gold SQL on the sample shop DB.

`Split` halves a data file for training a router on one part and evaluating it on the other:
a row's part comes from a hash of its question and a seed, so the same question always lands
in the same part (whatever `--limit` or the file's order), and repeated questions never sit in
both.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import threading
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brickwork.errors import ConfigError
from brickwork.graphs import GraphModule, load_graph

if TYPE_CHECKING:
    from brickwork.skills.skill import Example

__all__ = [
    "EXPECTATIONS",
    "EvalRow",
    "EvalTarget",
    "Expectation",
    "Split",
    "load_rows",
    "load_target",
]

#: A check of one node's output: its structured output, or the small model's raw text.
Check = Callable[[Any], bool]


@dataclass(frozen=True)
class EvalRow:
    """One example: the request (text and, for chats, the messages) and its gold answer."""

    index: int
    text: str
    messages: tuple[dict[str, Any], ...]
    answer: Any
    key: str  # the question as text, to match it against a skill's examples


@dataclass(frozen=True)
class Expectation:
    """What is right for one row: per-node checks, and the whole run's check over outputs."""

    checks: Mapping[str, Check]
    overall: Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True)
class EvalTarget:
    """A graph to run rows on, and how to score them."""

    graph: GraphModule
    expect: Callable[[EvalRow], Expectation]
    graph_options: Mapping[str, Any]
    default_data: Path | None = None


@dataclass(frozen=True)
class Split:
    """One part of a data file split in two by a seeded hash of each row's question.

    Attributes:
        part: "train" (a `fraction` of the rows) or "test" (the rest).
        seed: Another seed, another split.
        fraction: The share of rows in the train part.
    """

    part: str
    seed: int = 0
    fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.part not in ("train", "test"):
            raise ConfigError(f"split part must be train or test, got {self.part!r}")
        if not 0.0 < self.fraction < 1.0:
            raise ConfigError(f"split fraction must be between 0 and 1, got {self.fraction!r}")

    def holds(self, key: str) -> bool:
        """Whether the row whose question is `key` is in this part."""
        digest = hashlib.sha256(f"{self.seed}\x00{key}".encode()).digest()
        in_train = int.from_bytes(digest[:8], "big") / 2**64 < self.fraction
        return in_train == (self.part == "train")


def load_rows(
    path: str | Path, limit: int | None = None, split: Split | None = None
) -> list[EvalRow]:
    """Rows of a JSONL or CSV file (or a skill folder's train file), `limit` spread evenly.

    With `split`, only the rows of that part (`limit` then spreads over the part). A row's
    `index` is always its line in the file.

    Raises:
        SkillError: The file is missing or malformed (the message names the line).
    """
    from brickwork.agents.toolcall import normalise_messages
    from brickwork.skills.loaders import EXAMPLE_FILES, load_examples

    path = Path(path)
    if path.is_dir():
        found = [path / name for name in EXAMPLE_FILES if (path / name).is_file()]
        if not found:
            raise ConfigError(f"folder {str(path)!r} has no {' or '.join(EXAMPLE_FILES)}")
        path = found[0]
    examples = load_examples(path)
    kept = list(range(len(examples)))
    if split is not None:
        kept = [i for i in kept if split.holds(_example_key(examples[i].input))]
    picked = [kept[i] for i in _spread(len(kept), limit)]
    rows = []
    for index in picked:
        example = examples[index]
        messages: tuple[dict[str, Any], ...] = ()
        if isinstance(example.input, str):
            text, key = example.input, example.input
        else:
            messages = tuple(dict(m) for m in normalise_messages(example.input))
            users = [m["content"] for m in messages if m["role"] == "user"]
            text, key = (users[-1] if users else ""), _example_key(list(messages))
        rows.append(EvalRow(index, text, messages, example.output, key))
    return rows


def _spread(total: int, limit: int | None) -> list[int]:
    """Every index, or `limit` of them spread evenly (data files are often grouped by label)."""
    if limit is None or limit >= total:
        return list(range(total))
    if limit < 1:
        raise ConfigError(f"--limit must be 1 or more, got {limit!r}")
    return sorted({math.floor(i * total / limit) for i in range(limit)})


# -- checks -------------------------------------------------------------------------------------


def _label_of(output: Any) -> str | None:
    if isinstance(output, Mapping):
        label = output.get("label")
        return label if isinstance(label, str) else None
    return output.strip() if isinstance(output, str) else None


def label_check(gold: str) -> Check:
    """Exact label match on an intent output or raw label text."""
    from brickwork.agents.scoring import exact_label

    return lambda output: exact_label(_label_of(output), str(gold))


def call_check(gold: Any, tools: Any) -> Check:
    """Tool-call equivalence on a node output (`{call, result}` or a call) or raw call JSON."""
    from brickwork.agents.scoring import tool_call_equivalent

    def check(output: Any) -> bool:
        if isinstance(output, Mapping) and "call" in output:
            output = output["call"]
        return output is not None and tool_call_equivalent(output, gold, tools)

    return check


def sql_check(database: Callable[[], Any], gold: str) -> Check:
    """Execution match on the database, for a `{sql, ...}` output or the model's raw text."""
    from brickwork.agents.sql import parse_sql_output
    from brickwork.tools.sql_exec import execution_match

    def check(output: Any) -> bool:
        sql = output.get("sql") if isinstance(output, Mapping) else None
        if isinstance(output, str):
            sql, _ = parse_sql_output(output)
        return isinstance(sql, str) and execution_match(database(), gold, sql)

    return check


def fields_check(gold: Mapping[str, Any]) -> Check:
    """Every gold field right (`field_match` of 1.0), on an output or its JSON text."""
    from brickwork.agents.scoring import field_match

    def check(output: Any) -> bool:
        if isinstance(output, str):
            try:
                output = json.loads(output)
            except ValueError:
                return False
        return isinstance(output, Mapping) and field_match(output, gold) >= 1.0

    return check


def _node(name: str, check: Check) -> Callable[[Mapping[str, Any]], bool]:
    return lambda outputs: name in outputs and check(outputs[name])


# -- the example graphs -------------------------------------------------------------------------


def _smart_home(options: dict[str, Any]) -> Callable[[EvalRow], Expectation]:
    from brickwork.tools.smart_home import SmartHomeHub

    tools = SmartHomeHub().registry()

    def expect(row: EvalRow) -> Expectation:
        gold = row.answer
        if isinstance(gold, str) and not gold.lstrip().startswith(("[", "{")):
            return Expectation({"intent": label_check(gold)}, _node("intent", label_check(gold)))
        if isinstance(gold, str):
            gold = json.loads(gold)
        if isinstance(gold, list):
            steps = {f"step_{i}": call_check(call, tools) for i, call in enumerate(gold, 1)}

            def plan(outputs: Mapping[str, Any]) -> bool:
                extra = f"step_{len(steps) + 1}" in outputs
                return not extra and all(_node(n, c)(outputs) for n, c in steps.items())

            return Expectation(steps, plan)
        call = call_check(gold, tools)
        name = gold.get("name") if isinstance(gold, Mapping) else None
        checks: dict[str, Check] = {"toolcall": call}
        if name != "intent_unclear":
            label = "status_question" if name == "get_device_status" else "device_command"
            checks["intent"] = label_check(label)

        def overall(outputs: Mapping[str, Any]) -> bool:
            declined = name == "intent_unclear" and "toolcall" not in outputs
            out_of_scope = declined and label_check("out_of_scope")(outputs.get("intent"))
            return _node("toolcall", call)(outputs) or out_of_scope

        return Expectation(checks, overall)

    return expect


def _support(options: dict[str, Any]) -> Callable[[EvalRow], Expectation]:
    def expect(row: EvalRow) -> Expectation:
        check = label_check(str(row.answer))
        return Expectation({"intent": check}, _node("intent", check))

    return expect


def _analytics(options: dict[str, Any]) -> Callable[[EvalRow], Expectation]:
    from brickwork.tools.sample_db import create_sample_db
    from brickwork.tools.sql import Database

    folder = Path(tempfile.mkdtemp(prefix="brickwork-eval-"))
    path = create_sample_db(folder / "shop.sqlite")
    options["database"] = path
    database = Database.sqlite(path)

    def expect(row: EvalRow) -> Expectation:
        check = sql_check(lambda: database, str(row.answer))
        return Expectation({"sql": check}, _node("sql", check))

    return expect


#: Graph name -> a factory of its row expectation (it may add build options, e.g. a database).
EXPECTATIONS: dict[str, Callable[[dict[str, Any]], Callable[[EvalRow], Expectation]]] = {
    "smart_home": _smart_home,
    "support": _support,
    "analytics": _analytics,
}


# -- targets ------------------------------------------------------------------------------------


def load_target(ref: str, *, knn: bool = False) -> EvalTarget:
    """A graph by reference, or a skill folder (or its `job_description.json`) as one node.

    `knn` lets a skill folder's examples vote first (a MiniLM kNN; the row itself left out):
    on an intent, the small model decides only when the vote is unsure (as the example graphs'
    intent nodes do); on a tool call, the vote narrows the tools the small tier may call.

    Raises:
        ConfigError: Unknown target, or a graph that has no expectation mapping.
    """
    path = Path(ref)
    if path.is_dir() or path.name == "job_description.json":
        return _skill_target(path if path.is_dir() else path.parent, knn=knn)
    graph = load_graph(ref)
    make = EXPECTATIONS.get(graph.name) or getattr(graph.module, "EVAL_EXPECT", None)
    if make is None:
        raise ConfigError(
            f"graph {ref!r} has no eval mapping; define EVAL_EXPECT(options) in it (see "
            f"brickwork.evals.data) or use one of: {', '.join(EXPECTATIONS)}"
        )
    options: dict[str, Any] = {}
    return EvalTarget(graph, make(options), options)


class _RowAgents:
    """An agent per question, whose examples leave that question out.

    Text-to-SQL rows also get a database built from their own DDL. `grounded` turns on the
    tool-call agent's check that every argument value was said by the user (as the example
    graphs run it); `brickwork eval` of a skill folder uses it, the tune gate does not.
    """

    def __init__(self, skill: Any, *, grounded: bool = False, knn: bool = False) -> None:
        self.skill = skill
        self.grounded = grounded
        self.knn = knn
        self._vectors: dict[str, Any] = {}  # text -> embedding, shared by the rows' kNNs
        self.folder = Path(tempfile.mkdtemp(prefix="brickwork-eval-"))
        self._agents: dict[str, Any] = {}
        self._databases: dict[str, Any] = {}
        self._lock = threading.Lock()

    def database(self, key: str) -> Any:
        from brickwork.agents.sql import split_schema_question
        from brickwork.tools.sample_db import database_from_ddl
        from brickwork.tools.sql import Database

        with self._lock:
            if key not in self._databases:
                ddl, _ = split_schema_question(key)
                if ddl is None:
                    raise ConfigError(f"SQL row {key[:80]!r} has no 'Schema:' part with its DDL")
                file = self.folder / f"row_{len(self._databases)}.sqlite"
                self._databases[key] = Database.sqlite(database_from_ddl(ddl, file))
            return self._databases[key]

    def agent(self, key: str) -> Any:
        from brickwork.agents.extract import ExtractAgent
        from brickwork.agents.intent import IntentAgent
        from brickwork.agents.sql import SQLAgent
        from brickwork.agents.toolcall import ToolCallAgent, choice_examples

        if key in self._agents:
            return self._agents[key]
        kept = [e for e in self.skill.examples if _example_key(e.input) != key]
        skill = replace(self.skill, examples=kept)
        kind = skill.kind
        if kind == "intent":
            agent: Any = IntentAgent(skill, knn=self._knn(kept) if self.knn else None)
        elif kind == "toolcall":
            knn = self._knn(choice_examples(kept)) if self.knn else None
            agent = ToolCallAgent(skill, execute=False, grounded=self.grounded, knn=knn)
        elif kind == "extract":
            agent = ExtractAgent(skill)
        else:
            agent = SQLAgent(skill, database=self.database(key))
        self._agents[key] = agent
        return agent

    def _knn(self, examples: Sequence[Example]) -> Any:
        """A kNN over `examples`, each text embedded once for all rows."""
        from brickwork.agents.embeddings import EmbeddingKNN, minilm_encoder

        encoder = minilm_encoder()

        def cached(texts: list[str]) -> Any:
            import numpy as np

            with self._lock:
                new = [t for t in dict.fromkeys(texts) if t not in self._vectors]
                if new:
                    self._vectors.update(zip(new, encoder(new), strict=True))
                return np.stack([self._vectors[t] for t in texts])

        return EmbeddingKNN.from_examples(examples, encoder=cached)

    async def run(self, input: Any, *, pool: Any, model: str | None = None) -> Any:
        key = input if isinstance(input, str) else _example_key(list(input))
        return await self.agent(key).run(input, pool=pool, model=model)


def _example_key(input: str | Sequence[Mapping[str, Any]]) -> str:
    """A question as text: itself, or its chat in the plain form the agents send."""
    from brickwork.agents.toolcall import normalise_messages

    if isinstance(input, str):
        return input
    return json.dumps(normalise_messages(list(input)), sort_keys=True)


def _skill_target(folder: Path, *, knn: bool = False) -> EvalTarget:
    from brickwork.graphs.builder import END, Specialist, build_graph
    from brickwork.skills.loaders import load_skill

    skill = load_skill(folder)
    kind = skill.kind
    # Tool calls checked as the example graphs check them: every value said by the user.
    agents = _RowAgents(skill, grounded=True, knn=knn)
    tools = getattr(skill.contract, "registry", None)

    def read(state: Mapping[str, Any]) -> Any:
        messages = state.get("messages")
        return messages if messages and kind != "sql" else str(state.get("text", ""))

    module = types.ModuleType(f"brickwork_eval_{skill.name}")
    module.NAME = f"{kind}:{skill.name}"  # type: ignore[attr-defined]
    module.build = lambda *, checkpointer=None: build_graph(  # type: ignore[attr-defined]
        [Specialist(kind, agents, read, next=END)], checkpointer=checkpointer
    )

    def expect(row: EvalRow) -> Expectation:
        gold = row.answer
        check: Check
        if kind == "intent":
            check = label_check(str(gold))
        elif kind == "toolcall":
            check = call_check(gold, tools)
        elif kind == "extract":
            check = fields_check(gold)
        else:
            check = sql_check(lambda: agents.database(row.key), str(gold))
        return Expectation({kind: check}, _node(kind, check))

    return EvalTarget(GraphModule(module.NAME, module), expect, {}, default_data=folder)
