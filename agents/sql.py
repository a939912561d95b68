"""The text-to-SQL agent: one checked, read-only query per question, run on the real database.

Pipeline: the database's schema is introspected once per agent; a wide schema is cut down to
the tables the question is about (`SchemaInfo.relevant`); the small model writes the query
under a JSON schema (`{"sql": "..."}`), which keeps a tiny model from rambling; the query goes
through `check_sql` (one read-only SELECT over known tables and columns) and then
`aexecute_readonly` (EXPLAIN, then a read-only connection with row and time limits). A
rejected query gets one repair turn that shows the model the exact reason: the safety
checker's message or the database's own.

```python
agent = SQLAgent(analytics_skill(), database=Database.sqlite("shop.db"))
result = await agent.run("How many orders were cancelled?", pool=pool)
result.value.sql, result.value.rows   # the query that ran, and its rows
```
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from brickwork.agents.base import (
    AgentResult,
    Signal,
    SignalKind,
    repair_loop,
    shots_for,
    with_top_tier_prompt,
)
from brickwork.errors import (
    SkillError,
    SQLError,
    SQLTimeoutError,
    UnsafeSQLError,
)
from brickwork.serving.pool import ModelPool
from brickwork.serving.types import Completion, Message
from brickwork.skills.skill import Example, Skill, SQLContract
from brickwork.tools.sql import Database, Dialect, SchemaInfo
from brickwork.tools.sql_exec import aexecute_readonly
from brickwork.tools.sql_safety import check_sql

__all__ = [
    "DEFAULT_FEW_SHOT",
    "SQL_SCHEMA",
    "SQLAgent",
    "SQLAnswer",
    "parse_sql_output",
    "split_schema_question",
]

#: The decoding constraint: one JSON object holding the query.
SQL_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"sql": {"type": "string"}},
    "required": ["sql"],
}
DEFAULT_FEW_SHOT = 3
"""Examples shown to the model when the agent is not told how many."""

_DIALECT_NAMES: dict[str, str] = {"sqlite": "SQLite", "duckdb": "DuckDB", "postgres": "PostgreSQL"}
_ANSWER = (
    "Write one read-only {dialect} query (a SELECT) over the schema's tables and columns. "
    'Answer with one JSON object {{"sql": "<the query>"}} and nothing else.'
)
_FENCE = re.compile(r"^```[a-zA-Z]*\s*(.*?)\s*```$", re.DOTALL)
_SCHEMA_QUESTION = re.compile(r"^\s*Schema:\s*\n(.*?)\n\s*Question:\s*(.*)$", re.DOTALL)
_LOOKS_LIKE_SQL = re.compile(r"^\s*(SELECT|WITH)\b", re.IGNORECASE)
# sqlglot underlines the bad token of a parse error with terminal codes; a model copies them.
_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class SQLAnswer:
    """A query that passed the safety checks and ran, with what it returned.

    Attributes:
        sql: The checked, normalised query that ran (without the agent's row limit).
        columns: The result's column names.
        rows: At most the agent's `max_rows` rows.
        truncated: True when the query had more rows than were kept.
    """

    sql: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: bool


class SQLAgent:
    """Runs an `SQLContract` skill: schema grounding, generation, checks, execution, repair.

    Args:
        skill: A skill whose contract is an `SQLContract`.
        database: The database to query; overrides `skill.contract.database` (a `Database`
            or a URL such as `sqlite:///shop.db`).
        max_rows: Keep at most this many rows of a result.
        timeout_s: Cancel a query after this many seconds.
        max_prompt_tables: Schemas with more tables show only the question's relevant ones.
        few_shot: How many of the skill's examples to show as prior turns.
        max_tokens: Upper bound on the generated answer.

    Raises:
        SkillError: The skill is not a SQL skill, it names a dialect brickwork cannot run,
            no database was given, or an argument is out of range.
    """

    def __init__(
        self,
        skill: Skill,
        *,
        database: Database | None = None,
        max_rows: int = 200,
        timeout_s: float = 5.0,
        max_prompt_tables: int = 8,
        few_shot: int = DEFAULT_FEW_SHOT,
        max_tokens: int = 256,
    ) -> None:
        if not isinstance(skill.contract, SQLContract):
            raise SkillError(
                f"SQLAgent needs a skill with an SQLContract; skill {skill.name!r} has kind "
                f"{skill.kind!r}: run it with the agent of that kind"
            )
        if max_rows < 1 or timeout_s <= 0 or max_prompt_tables < 1 or few_shot < 0:
            raise SkillError(
                f"max_rows={max_rows!r}, timeout_s={timeout_s!r} and "
                f"max_prompt_tables={max_prompt_tables!r} must be positive and "
                f"few_shot={few_shot!r} 0 or more"
            )
        if max_tokens < 1:
            raise SkillError(f"max_tokens={max_tokens!r} must be positive")
        self.skill = skill
        self.database = _database(skill, database)
        self.dialect: Dialect = _dialect(skill.contract, self.database)
        self.max_rows = max_rows
        self.timeout_s = timeout_s
        self.max_prompt_tables = max_prompt_tables
        self.few_shot = few_shot
        self.max_tokens = max_tokens
        self._schema: SchemaInfo | None = None

    async def schema(self) -> SchemaInfo:
        """The database's full schema, introspected on first use and then cached.

        Raises:
            ConfigError: The database file does not exist.
            SQLExecutionError: The database could not be reached.
        """
        if self._schema is None:
            self._schema = await asyncio.to_thread(self.database.introspect)
        return self._schema

    def prompt_schema(self, schema: SchemaInfo, question: str) -> SchemaInfo:
        """The tables shown to the model: all, or the relevant ones of a wide schema."""
        if len(schema.tables) <= self.max_prompt_tables:
            return schema
        return schema.relevant(question, max_tables=self.max_prompt_tables)

    def messages(
        self, question: str, schema: SchemaInfo, *, few_shot: int | None = None
    ) -> list[Message]:
        """The prompt: instructions, dialect and answer format; examples; schema and question.

        The schema goes in the last user turn, next to the question, in the layout of
        text-to-SQL data (`Schema:` DDL, then `Question:`), which examples that carry their
        own schema share.
        """
        dialect = _DIALECT_NAMES[self.dialect]
        system = f"{self.skill.instructions}\n\n{_ANSWER.format(dialect=dialect)}"
        messages: list[Message] = [{"role": "system", "content": system}]
        for example in self.skill.few_shot(self.few_shot if few_shot is None else few_shot):
            messages += _example_turns(example)
        content = f"Schema:\n{schema.to_ddl()}\n\nQuestion: {question.strip()}"
        messages.append({"role": "user", "content": content})
        return messages

    async def run(
        self, question: str, *, pool: ModelPool, model: str | None = None
    ) -> AgentResult[SQLAnswer]:
        """Answer `question` with one checked query, run on the database.

        Args:
            question: The user's question. Text in the dataset layout (`Schema: ...` then
                `Question: ...`) is reduced to its question: the database's own schema is
                what the model sees.
            pool: The model pool.
            model: A logical model name overriding the skill's binding (e.g. "frontier").

        Returns:
            The answer (None when no attempt passed) and signals: "invalid_output",
            "unsafe_sql", "sql_error" (with the database's message), "sql_timeout",
            "model_error" or "model_timeout". `extra` holds `schema_tables` (the tables the
            prompt showed), `rows` (rows returned) and `model`.

        Raises:
            UnknownModelError: No endpoint serves the model (a configuration error).
            ConfigError: The database file does not exist.
        """
        logical = model or self.skill.binding.logical_name
        extra: dict[str, Any] = {"schema_tables": [], "rows": 0, "model": logical}
        method = logical.partition(":")[0]
        _, question = split_schema_question(question)
        try:
            schema = await self.schema()
        except SQLError as exc:
            signal = Signal("sql_error", f"cannot read the database's schema: {exc}")
            return AgentResult(value=None, signals=(signal,), method=method, extra=extra)
        shown = self.prompt_schema(schema, question)
        extra["schema_tables"] = list(shown.table_names)
        finish_reasons: list[str | None] = []

        async def call(messages: Sequence[Message]) -> Completion:
            completion = await pool.complete(
                logical,
                messages,
                json_schema=SQL_SCHEMA,
                schema_name=self.skill.name,
                max_tokens=self.max_tokens,
            )
            finish_reasons.append(completion.finish_reason)
            return completion

        async def validate(text: str) -> tuple[SQLAnswer | None, list[str], SignalKind]:
            value, errors, kind = await self.validate(text, schema)
            if errors and finish_reasons and finish_reasons[-1] == "length":
                errors.insert(
                    0,
                    f"the answer was cut off at the {self.max_tokens}-token limit; "
                    "write a shorter query",
                )
            return value, errors, kind

        shots = shots_for(logical, self.few_shot)
        prompt = self.messages(question, shown, few_shot=shots)
        top = self.messages(question, shown) if shots < self.few_shot else prompt
        value, attempts, signals = await repair_loop(
            prompt,
            with_top_tier_prompt(call, prompt, top),
            validate,
            max_repairs=self.skill.thresholds.max_repairs,
        )
        if isinstance(value, SQLAnswer):
            extra["rows"] = len(value.rows)
        return AgentResult(
            value=value if isinstance(value, SQLAnswer) else None,
            signals=tuple(signals),
            attempts=tuple(attempts),
            method=method,
            extra=extra,
        )

    async def validate(
        self, text: str, schema: SchemaInfo
    ) -> tuple[SQLAnswer | None, list[str], SignalKind]:
        """Parse a model output, check the query and run it.

        Args:
            text: The model's output (`{"sql": ...}`).
            schema: The full schema the query may read.

        Returns:
            (answer, [], _) when the query ran, else (None, [reason], signal kind).
        """
        sql, problem = parse_sql_output(text)
        if sql is None:
            return None, [problem or "the answer holds no query"], "invalid_output"
        read = self.dialect if self.dialect != self.database.dialect else None
        try:
            checked = check_sql(sql, schema, self.database.dialect, read=read)
            result = await aexecute_readonly(
                self.database,
                checked.sql,
                schema=schema,
                max_rows=self.max_rows,
                timeout_s=self.timeout_s,
            )
        except UnsafeSQLError as exc:
            return None, [_plain(exc)], "unsafe_sql"
        except SQLTimeoutError as exc:
            return None, [_plain(exc)], "sql_timeout"
        except SQLError as exc:  # SQLExecutionError: the database's own message
            return None, [_plain(exc)], "sql_error"
        answer = SQLAnswer(checked.sql, result.columns, result.rows, result.truncated)
        return answer, [], "invalid_output"


def parse_sql_output(text: str) -> tuple[str | None, str | None]:
    """The query in a model's answer, or the reason there is none.

    The answer should be `{"sql": "..."}`. Markdown fences and trailing semicolons around the
    query are removed; an answer that is not JSON but is plainly a query (starts with SELECT
    or WITH, as from an endpoint that ignores the JSON schema) is taken as the query.

    Returns:
        (sql, None), or (None, a message for the repair turn).
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        bare = _clean(text)
        if _LOOKS_LIKE_SQL.match(bare):
            return bare, None
        return None, f'the answer is not JSON ({exc}): {text[:200]!r}; answer {{"sql": "..."}}'
    if not isinstance(data, dict) or not isinstance(data.get("sql"), str):
        return None, f'the answer {text[:200]!r} is not a JSON object {{"sql": "<the query>"}}'
    sql = _clean(data["sql"])
    if not sql:
        return None, 'the "sql" string is empty; write one SELECT query'
    return sql, None


def split_schema_question(text: str) -> tuple[str | None, str]:
    """Split dataset text (`Schema:` DDL, a blank line, `Question:` text) into its parts.

    Returns:
        (ddl, question); (None, text) when the text is not in that layout.
    """
    match = _SCHEMA_QUESTION.match(text)
    if match is None:
        return None, text
    return match.group(1).strip(), match.group(2).strip()


def _plain(error: Exception) -> str:
    return _TERMINAL_CODES.sub("", str(error))


def _clean(sql: str) -> str:
    sql = sql.strip()
    fenced = _FENCE.match(sql)
    if fenced:
        sql = fenced.group(1).strip()
    return sql.rstrip("; \t\r\n")


def _example_turns(example: Example) -> list[Message]:
    turns: list[Message] = [dict(m) for m in example.messages()]
    last = turns[-1] if turns else None
    if last is not None and last.get("role") == "user":
        content = str(last.get("content", ""))
        if _SCHEMA_QUESTION.match(content) is None:
            turns[-1] = {**last, "content": f"Question: {content.strip()}"}
    answer = json.dumps({"sql": _clean(str(example.output))}, ensure_ascii=False)
    return [*turns, {"role": "assistant", "content": answer}]


def _database(skill: Skill, database: Database | None) -> Database:
    assert isinstance(skill.contract, SQLContract)
    found = database if database is not None else skill.contract.database
    if isinstance(found, str):
        return Database.from_url(found)
    if isinstance(found, Database):
        return found
    if found is None:
        raise SkillError(
            f"skill {skill.name!r} has no database; pass database=Database.sqlite(...) "
            "or build the skill with SQLContract(database=...)"
        )
    raise SkillError(
        f"skill {skill.name!r}: database {found!r} is not a Database or a database URL"
    )


def _dialect(contract: SQLContract, database: Database) -> Dialect:
    dialect = contract.dialect or database.dialect
    if dialect == "sqlite":
        return "sqlite"
    if dialect == "duckdb":
        return "duckdb"
    if dialect in ("postgres", "postgresql"):
        return "postgres"
    raise SkillError(
        f"SQL dialect {dialect!r} is not supported; use sqlite, duckdb or postgres "
        f"(the database is {database.dialect!r})"
    )
