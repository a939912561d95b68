"""SQLAgent on the real embedded model (SmolLM2-135M on vLLM) over real SQLite databases.

The model is tiny, so nothing here asserts it is right on any question. What must hold: every
run ends in executed rows or in signals (never an exception), constrained decoding yields the
`{"sql": ...}` object (unless cut off at the token limit), every answer passed the checks and
really is what the database returns, a repair turn shows the error of the attempt before it,
and the database is untouched. Accuracy on text-to-SQL rows is printed, not asserted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from brickwork.agents.base import AgentResult
from brickwork.agents.sql import SQLAgent, SQLAnswer, split_schema_question
from brickwork.serving.models import EMBEDDED_MODEL
from brickwork.serving.pool import ModelPool
from brickwork.skills.examples import analytics_skill
from brickwork.skills.loaders import load_skill
from brickwork.skills.skill import Skill, SQLContract
from brickwork.tools.sample_db import create_sample_db, database_from_ddl
from brickwork.tools.sql import Database, SchemaInfo
from brickwork.tools.sql_exec import execute_readonly, execution_match
from tests._paths import SHARED_DATA

pytestmark = pytest.mark.vllm

TEXT2SQL = SHARED_DATA / "text2sql"
QUESTIONS = (
    "How many products are in the Books category?",
    "What is the most expensive product?",
    "How many orders does each status have?",
    "Which customers live in Berlin?",
    "What is the total revenue of shipped orders?",
    "List the five most recent orders.",
    "How many customers are in the premium segment?",
    "What is the average quantity per order item?",
)
SQL_FAILURES = {"invalid_output", "unsafe_sql", "sql_error", "sql_timeout"}
#: Requests in flight at once: enough to batch on vLLM, few enough for a shared CPU server.
CONCURRENCY = 4
#: What these tests check is structural (rows or a signal, nothing written), not accuracy: a
#: lower limit than the agent's 256 keeps the 135M model's rambling answers (cut off, then
#: repaired) from setting each test's time (the same outcomes at 128 and 256, 2026-12-06).
MAX_TOKENS = 128


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_result(
    result: AgentResult[SQLAnswer], agent: SQLAgent, schema: SchemaInfo, question: str
) -> None:
    """The structural truths of one run, whatever the model wrote."""
    assert 1 <= len(result.attempts) <= agent.skill.thresholds.max_repairs + 1
    assert result.method == "slm"
    first = result.attempts[0].messages
    assert first[0]["role"] == "system"
    assert first[0]["content"].startswith(agent.skill.instructions)
    assert first[-1]["content"].endswith(f"Question: {question}")
    for table in result.extra["schema_tables"]:
        assert f"CREATE TABLE {table} (" in first[-1]["content"]
    for attempt in result.attempts:
        if attempt.completion is None:  # the endpoint failed (a busy shared server): a signal
            assert attempt is result.attempts[-1]
            assert [s.kind for s in result.signals] in (["model_timeout"], ["model_error"])
            assert result.value is None
            return
        assert attempt.completion.served_model == EMBEDDED_MODEL.served_name
        assert attempt.output is not None
        if attempt.completion.finish_reason != "length":
            decoded = json.loads(attempt.output)  # constrained decoding: always the object
            assert isinstance(decoded, dict)
            assert isinstance(decoded["sql"], str)
    for before, after in zip(result.attempts, result.attempts[1:], strict=False):
        assert before.errors, "a repair follows only a failed attempt"
        shown = after.messages[-1]["content"]
        assert after.messages[-2] == {"role": "assistant", "content": before.output}
        assert all(error in shown for error in before.errors)
    if result.value is not None:
        assert result.signals == ()
        assert not result.attempts[-1].errors
        again = execute_readonly(
            agent.database, result.value.sql, schema=schema, max_rows=agent.max_rows
        )
        assert again.rows == result.value.rows  # the rows are what the database returns
        assert result.value.columns == again.columns
        assert len(result.value.rows) <= agent.max_rows
        assert result.extra["rows"] == len(result.value.rows)
    else:
        (signal,) = result.signals
        assert signal.kind in SQL_FAILURES
        assert signal.detail
        assert signal.detail == "; ".join(result.attempts[-1].errors)


async def test_analytics_questions_end_in_rows_or_signals(
    slm_pool: ModelPool, tmp_path: Path
) -> None:
    path = create_sample_db(tmp_path / "shop.db")
    before = _digest(path)
    agent = SQLAgent(analytics_skill(Database.sqlite(path)), max_tokens=MAX_TOKENS)
    schema = await agent.schema()
    limit = asyncio.Semaphore(CONCURRENCY)

    async def ask(question: str) -> AgentResult[SQLAnswer]:
        async with limit:
            return await agent.run(question, pool=slm_pool)

    results = await asyncio.gather(*(ask(q) for q in QUESTIONS))
    for question, result in zip(QUESTIONS, results, strict=True):
        _check_result(result, agent, schema, question)
        assert result.extra["schema_tables"] == list(schema.table_names)
    answered = sum(r.value is not None for r in results)
    repaired = sum(r.repairs > 0 for r in results)
    print(f"\nanalytics: {answered}/{len(results)} executed, {repaired} needed a repair")
    assert _digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop.db"]


def _rows(count: int) -> list[dict[str, Any]]:
    train = TEXT2SQL / "train.jsonl"
    if not train.is_file():
        pytest.skip(f"the text-to-SQL data is not at {train}")
    rows = [json.loads(line) for line in train.read_text().splitlines() if line.strip()]
    return rows[:count]


def _bound(skill: Skill, database: Database, question: str) -> Skill:
    """The skill bound to one row's database, without that row among its examples."""
    assert isinstance(skill.contract, SQLContract)
    return dataclasses.replace(
        skill,
        contract=SQLContract(database=database, dialect=skill.contract.dialect),
        examples=[e for e in skill.examples if e.input != question],
    )


async def test_text2sql_rows_execute_or_signal(slm_pool: ModelPool, tmp_path: Path) -> None:
    rows = _rows(10)
    skill = load_skill(TEXT2SQL)
    assert skill.kind == "sql"
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(index: int, row: dict[str, Any]) -> tuple[bool, bool]:
        ddl, question = split_schema_question(row["question"])
        assert ddl is not None
        path = database_from_ddl(ddl, tmp_path / f"row{index}.db")
        before = _digest(path)
        agent = SQLAgent(
            _bound(skill, Database.sqlite(path), row["question"]), max_tokens=MAX_TOKENS
        )
        schema = await agent.schema()
        assert schema.to_ddl() == ddl  # the model sees the row's own schema
        async with limit:
            result = await agent.run(question, pool=slm_pool)
        _check_result(result, agent, schema, question)
        shots = result.attempts[0].messages[1:-1]
        assert shots, "the skill's examples are shown"
        assert all(m["content"] != row["question"] for m in shots)  # never the row itself
        correct = result.value is not None and execution_match(
            agent.database, row["answer"], result.value.sql
        )
        assert _digest(path) == before
        return correct, result.repairs > 0

    scores = await asyncio.gather(*(one(i, row) for i, row in enumerate(rows)))
    accuracy = sum(correct for correct, _ in scores) / len(scores)
    repairs = sum(repaired for _, repaired in scores) / len(scores)
    print(f"\ntext2sql ({len(scores)} rows): accuracy {accuracy:.0%}, repair share {repairs:.0%}")
