"""SQLAgent on scripted models over a real temporary SQLite shop: prompts, checks, repair."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from brickwork.agents.sql import (
    SQL_SCHEMA,
    SQLAgent,
    SQLAnswer,
    parse_sql_output,
    split_schema_question,
)
from brickwork.errors import SkillError
from brickwork.skills.examples import analytics_skill, banking_intent_skill
from brickwork.skills.skill import Example, Skill, SQLContract, Thresholds
from brickwork.testing import ModelStep, ScriptedModel
from brickwork.tools.sample_db import create_sample_db, sample_rows
from brickwork.tools.sql import Database

REPAIR_HEAD = "Your previous answer was rejected:\n"
SHOP = sample_rows()
CANCELLED = sum(1 for order in SHOP["orders"] if order[3] == "cancelled")
GOOD = '{"sql": "SELECT COUNT(*) AS n FROM orders WHERE status = \'cancelled\'"}'


@pytest.fixture(scope="module")
def shop_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_sample_db(tmp_path_factory.mktemp("shop") / "shop.db")


@pytest.fixture
def shop(shop_path: Path) -> Database:
    return Database.sqlite(shop_path)


def sql_answer(sql: str) -> str:
    return json.dumps({"sql": sql})


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def run(
    agent: SQLAgent, steps: list[str | ModelStep], question: str = "How many orders were cancelled?"
) -> tuple[Any, ScriptedModel]:
    model = ScriptedModel(list(steps))
    async with model.pool() as pool:
        result = await agent.run(question, pool=pool)
    model.assert_consumed()
    return result, model


def last_user(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"])


# --- the happy path and the wire payload ---------------------------------------------------


async def test_valid_query_runs_and_returns_rows(shop: Database) -> None:
    agent = SQLAgent(analytics_skill(), database=shop)
    result, model = await run(agent, [GOOD])
    assert result.ok
    assert result.value == SQLAnswer(
        sql="SELECT COUNT(*) AS n FROM orders WHERE status = 'cancelled'",
        columns=("n",),
        rows=((CANCELLED,),),
        truncated=False,
    )
    assert result.repairs == 0
    assert result.extra == {
        "schema_tables": ["customers", "products", "orders", "order_items"],
        "rows": 1,
        "model": "slm",
    }
    body = model.requests[0]
    assert body["model"] == "fake-slm"
    assert body["temperature"] == 0
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "analytics", "schema": SQL_SCHEMA},
    }
    system = body["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith(analytics_skill().instructions)
    assert "read-only SQLite query" in system["content"]
    question = last_user(body)
    assert question.startswith("Schema:\nCREATE TABLE customers (\n  id INTEGER PRIMARY KEY,")
    assert "REFERENCES customers(id)" in question
    assert question.endswith("\n\nQuestion: How many orders were cancelled?")


async def test_examples_are_rendered_as_question_and_json_turns(shop: Database) -> None:
    skill = analytics_skill()
    agent = SQLAgent(skill, database=shop, few_shot=2)
    _, model = await run(agent, [GOOD])
    messages = model.requests[0]["messages"]
    assert [m["role"] for m in messages] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    first = skill.examples[0]
    assert messages[1]["content"] == f"Question: {first.input}"
    assert json.loads(messages[2]["content"]) == {"sql": str(first.output).rstrip(";")}

    zero_shot = SQLAgent(skill, database=shop, few_shot=0)
    _, model = await run(zero_shot, [GOOD])
    assert [m["role"] for m in model.requests[0]["messages"]] == ["system", "user"]


async def test_examples_that_carry_their_schema_are_shown_as_they_are(shop: Database) -> None:
    text = "Schema:\nCREATE TABLE t (\n  id INTEGER PRIMARY KEY\n);\n\nQuestion: How many rows?"
    skill = Skill(
        name="t2s",
        instructions="Write SQL.",
        contract=SQLContract(database=shop),
        examples=[Example(text, "SELECT COUNT(*) FROM t;")],
    )
    _, model = await run(SQLAgent(skill), [GOOD])
    messages = model.requests[0]["messages"]
    assert messages[1] == {"role": "user", "content": text}
    assert messages[2] == {"role": "assistant", "content": '{"sql": "SELECT COUNT(*) FROM t"}'}


async def test_rows_are_limited_and_truncation_is_reported(shop: Database) -> None:
    agent = SQLAgent(analytics_skill(), database=shop, max_rows=5)
    result, _ = await run(agent, [sql_answer("SELECT id FROM order_items ORDER BY id")])
    assert result.ok
    assert result.value.rows == tuple((i,) for i in range(1, 6))
    assert result.value.truncated
    assert result.value.sql == "SELECT id FROM order_items ORDER BY id"  # without the row limit
    assert result.extra["rows"] == 5


@pytest.mark.parametrize(
    "output",
    [
        '{"sql": "```sql\\nSELECT COUNT(*) AS n FROM orders WHERE status = \'cancelled\';\\n```"}',
        '{"sql": "SELECT COUNT(*) AS n FROM orders WHERE status = \'cancelled\';;  "}',
        "```sql\nSELECT COUNT(*) AS n FROM orders WHERE status = 'cancelled';\n```",
        "SELECT COUNT(*) AS n FROM orders WHERE status = 'cancelled';",
    ],
)
async def test_fences_semicolons_and_bare_sql_are_tolerated(shop: Database, output: str) -> None:
    result, _ = await run(SQLAgent(analytics_skill(), database=shop), [output])
    assert result.ok
    assert result.value.rows == ((CANCELLED,),)


async def test_database_comes_from_the_contract_or_a_url(shop: Database) -> None:
    from_contract = SQLAgent(analytics_skill(shop))
    assert from_contract.database == shop
    from_url = SQLAgent(analytics_skill(f"sqlite:///{shop.path}"))
    assert from_url.database == shop
    other = Database.sqlite("/nowhere/else.db")
    assert SQLAgent(analytics_skill(other), database=shop).database == shop  # argument wins
    result, _ = await run(from_url, [GOOD])
    assert result.value.rows == ((CANCELLED,),)


async def test_skill_dialect_is_prompted_and_transpiled_to_the_database(shop: Database) -> None:
    skill = Skill(name="pg", instructions="Answer.", contract=SQLContract(shop, "postgres"))
    agent = SQLAgent(skill)
    assert agent.dialect == "postgres"
    query = "SELECT COUNT(*) AS n FROM customers WHERE name ILIKE 'a%'"
    result, model = await run(agent, [sql_answer(query)])
    assert "read-only PostgreSQL query" in model.requests[0]["messages"][0]["content"]
    assert result.ok
    assert (
        result.value.sql == "SELECT COUNT(*) AS n FROM customers WHERE LOWER(name) LIKE LOWER('a%')"
    )
    expected = sum(1 for c in SHOP["customers"] if c[1].lower().startswith("a"))
    assert result.value.rows == ((expected,),)


async def test_schema_is_introspected_once(shop: Database) -> None:
    agent = SQLAgent(analytics_skill(), database=shop)
    first = await agent.schema()
    assert await agent.schema() is first
    await run(agent, [GOOD])
    assert await agent.schema() is first
    assert first.table_names == ("customers", "products", "orders", "order_items")


async def test_dataset_layout_input_is_reduced_to_its_question(shop: Database) -> None:
    text = "Schema:\nCREATE TABLE other (\n  id INTEGER\n);\n\nQuestion: How many orders?"
    _, model = await run(SQLAgent(analytics_skill(), database=shop), [GOOD], text)
    prompt = last_user(model.requests[0])
    assert "CREATE TABLE other" not in prompt
    assert "CREATE TABLE orders" in prompt
    assert prompt.endswith("Question: How many orders?")


async def test_model_override_goes_to_that_model(shop: Database) -> None:
    agent = SQLAgent(analytics_skill(), database=shop)
    model = ScriptedModel([GOOD])
    async with model.pool() as pool:
        result = await agent.run("How many orders were cancelled?", pool=pool, model="frontier")
    assert model.requests[0]["model"] == "fake-frontier"
    assert result.method == "frontier"
    assert result.extra["model"] == "frontier"


# --- the repair turn -----------------------------------------------------------------------


async def test_unsafe_sql_is_repaired_with_the_reason_shown(
    shop: Database, shop_path: Path
) -> None:
    before = digest(shop_path)
    agent = SQLAgent(analytics_skill(), database=shop)
    result, model = await run(agent, [sql_answer("DELETE FROM orders"), GOOD])
    assert result.ok
    assert result.value.rows == ((CANCELLED,),)
    assert result.repairs == 1
    repair = model.requests[1]["messages"]
    assert repair[:-2] == model.requests[0]["messages"]
    assert repair[-2] == {"role": "assistant", "content": '{"sql": "DELETE FROM orders"}'}
    message = repair[-1]["content"]
    assert message.startswith(REPAIR_HEAD)
    assert "only read-only SELECT queries are allowed, not DELETE" in message
    assert result.attempts[0].errors == (message.split("\n- ", 1)[1].split("\nAnswer again")[0],)
    assert digest(shop_path) == before


async def test_unknown_column_error_reaches_the_repair_turn(shop: Database) -> None:
    agent = SQLAgent(analytics_skill(), database=shop)
    bad = sql_answer("SELECT COUNT(*) FROM orders WHERE state = 'cancelled'")
    qualified = sql_answer("SELECT COUNT(*) FROM orders o WHERE o.state = 'cancelled'")
    result, model = await run(agent, [bad, qualified])
    assert result.value is None
    assert "column 'state' does not exist in any table in scope (orders)" in last_user(
        model.requests[1]
    )
    (signal,) = result.signals
    assert signal.kind == "unsafe_sql"
    # A qualified column is checked against its table, whose columns the message lists.
    assert "column 'state' does not exist in 'orders'" in signal.detail
    assert "status" in signal.detail


async def test_database_error_message_reaches_the_repair_turn(shop: Database) -> None:
    agent = SQLAgent(analytics_skill(), database=shop)
    bad = sql_answer("SELECT no_such_function(status) FROM orders")
    result, model = await run(agent, [bad, GOOD])
    assert result.ok
    message = last_user(model.requests[1])
    assert "sqlite rejected the query: no such function: no_such_function" in message.lower()


async def test_parse_errors_reach_the_model_without_terminal_codes(shop: Database) -> None:
    bad = sql_answer("SELECT COUNT(*) FROM orders GROUP BY status GROUP BY id")
    result, model = await run(SQLAgent(analytics_skill(), database=shop), [bad, GOOD])
    assert result.ok
    message = last_user(model.requests[1])
    assert "Found multiple 'GROUP BY' clauses" in message
    assert "\x1b" not in message
    assert "GROUP BY status GROUP BY id" in message  # the underlined token, as plain text


async def test_two_failures_give_a_signal_with_the_error_and_no_value(shop: Database) -> None:
    agent = SQLAgent(analytics_skill(), database=shop)
    result, model = await run(
        agent, [sql_answer("DROP TABLE orders"), sql_answer("SELECT * FROM invoices")]
    )
    assert result.value is None
    assert not result.ok
    assert len(result.attempts) == 2
    (signal,) = result.signals
    assert signal.kind == "unsafe_sql"
    assert signal.attempt == 1
    assert "unknown table 'invoices'" in signal.detail
    assert "only read-only SELECT queries are allowed, not DROP" in last_user(model.requests[1])
    assert result.extra["rows"] == 0


async def test_database_failure_twice_is_an_sql_error_signal(shop: Database) -> None:
    bad = sql_answer("SELECT no_such_function(status) FROM orders")
    result, _ = await run(SQLAgent(analytics_skill(), database=shop), [bad, bad])
    assert result.value is None
    assert [s.kind for s in result.signals] == ["sql_error"]
    assert "no such function" in result.signals[0].detail


async def test_slow_query_is_an_sql_timeout_signal(shop: Database) -> None:
    slow = sql_answer(
        "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000000) "
        "SELECT COUNT(*) FROM c"
    )
    agent = SQLAgent(analytics_skill(), database=shop, timeout_s=0.3)
    result, model = await run(agent, [slow, slow])
    assert result.value is None
    assert [s.kind for s in result.signals] == ["sql_timeout"]
    assert "ran longer than 0.3s" in last_user(model.requests[1])


async def test_garbage_output_is_an_invalid_output_signal(shop: Database) -> None:
    agent = SQLAgent(analytics_skill(), database=shop)
    result, model = await run(agent, ["I think you should count the orders", '{"query": 1}'])
    assert result.value is None
    (signal,) = result.signals
    assert signal.kind == "invalid_output"
    assert "is not a JSON object" in signal.detail
    assert "the answer is not JSON" in last_user(model.requests[1])


async def test_no_repair_when_the_skill_allows_none(shop: Database) -> None:
    skill = dataclasses.replace(analytics_skill(), thresholds=Thresholds(max_repairs=0))
    result, _ = await run(SQLAgent(skill, database=shop), [sql_answer("DELETE FROM orders")])
    assert result.value is None
    assert len(result.attempts) == 1
    assert [s.kind for s in result.signals] == ["unsafe_sql"]


async def test_model_failure_is_a_model_error_signal(shop: Database) -> None:
    agent = SQLAgent(analytics_skill(), database=shop)
    result, _ = await run(agent, [ModelStep(text="overloaded", status=503)])
    assert result.value is None
    assert [s.kind for s in result.signals] == ["model_error"]


async def test_unreadable_database_is_an_sql_error_signal(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(b"this is not an SQLite database " * 8)
    agent = SQLAgent(analytics_skill(), database=Database.sqlite(path))
    result, model = await run(agent, [])
    assert model.requests == []
    assert result.value is None
    assert [s.kind for s in result.signals] == ["sql_error"]
    assert "file is not a database" in result.signals[0].detail


# --- schema grounding ----------------------------------------------------------------------

WIDE_TABLES = {
    "invoices": "id INTEGER PRIMARY KEY, vendor_id INTEGER REFERENCES vendors(id), amount REAL, "
    "due_date DATE",
    "vendors": "id INTEGER PRIMARY KEY, name TEXT, country TEXT",
    "employees": "id INTEGER PRIMARY KEY, name TEXT, salary INTEGER",
    "departments": "id INTEGER PRIMARY KEY, title TEXT",
    "projects": "id INTEGER PRIMARY KEY, codename TEXT, budget REAL",
    "warehouses": "id INTEGER PRIMARY KEY, city TEXT",
    "shipments": "id INTEGER PRIMARY KEY, carrier TEXT, weight REAL",
    "tickets": "id INTEGER PRIMARY KEY, priority TEXT, opened DATE",
    "campaigns": "id INTEGER PRIMARY KEY, channel TEXT, clicks INTEGER",
    "licenses": "id INTEGER PRIMARY KEY, product TEXT, seats INTEGER",
    "audits": "id INTEGER PRIMARY KEY, auditor TEXT, passed BOOLEAN",
    "meetings": "id INTEGER PRIMARY KEY, room TEXT, starts DATETIME",
}


@pytest.fixture
def wide(tmp_path: Path) -> Database:
    path = tmp_path / "wide.db"
    conn = sqlite3.connect(path)
    for name, columns in WIDE_TABLES.items():
        conn.execute(f"CREATE TABLE {name} ({columns})")
    conn.execute("INSERT INTO vendors VALUES (1, 'Acme', 'France')")
    conn.execute("INSERT INTO invoices VALUES (1, 1, 120.5, '2024-03-01')")
    conn.commit()
    conn.close()
    return Database.sqlite(path)


def wide_skill(database: Database) -> Skill:
    return Skill(name="ops", instructions="Answer with SQL.", contract=SQLContract(database))


async def test_wide_schema_shows_only_the_relevant_tables(wide: Database) -> None:
    agent = SQLAgent(wide_skill(wide), max_prompt_tables=3)
    question = "What is the total invoice amount per vendor country?"
    query = (
        "SELECT v.country, SUM(i.amount) FROM invoices i JOIN vendors v ON v.id = i.vendor_id "
        "GROUP BY v.country"
    )
    result, model = await run(agent, [sql_answer(query)], question)
    assert result.ok
    assert result.value.rows == (("France", 120.5),)
    prompt = last_user(model.requests[0])
    assert "CREATE TABLE invoices" in prompt
    assert "CREATE TABLE vendors" in prompt
    shown = prompt.count("CREATE TABLE ")
    assert 2 <= shown <= 3
    assert result.extra["schema_tables"][:2] == ["invoices", "vendors"]
    assert len(result.extra["schema_tables"]) == shown
    for unrelated in ("employees", "meetings", "audits", "campaigns", "licenses"):
        assert f"CREATE TABLE {unrelated}" not in prompt


async def test_a_table_left_out_of_the_prompt_may_still_be_queried(wide: Database) -> None:
    agent = SQLAgent(wide_skill(wide), max_prompt_tables=2)
    result, model = await run(
        agent, [sql_answer("SELECT COUNT(*) FROM meetings")], "Total invoice amount per vendor?"
    )
    assert "CREATE TABLE meetings" not in last_user(model.requests[0])
    assert result.ok  # the checker uses the whole schema, not the prompt's subset
    assert result.value.rows == ((0,),)


async def test_schema_within_the_limit_is_shown_whole(wide: Database) -> None:
    agent = SQLAgent(wide_skill(wide), max_prompt_tables=len(WIDE_TABLES))
    result, model = await run(agent, [sql_answer("SELECT COUNT(*) FROM vendors")], "Vendors?")
    assert result.extra["schema_tables"] == list(WIDE_TABLES)
    assert last_user(model.requests[0]).count("CREATE TABLE ") == len(WIDE_TABLES)


# --- construction and parsing --------------------------------------------------------------


def test_constructor_rejects_bad_skills_and_arguments(shop: Database) -> None:
    with pytest.raises(SkillError, match="needs a skill with an SQLContract"):
        SQLAgent(banking_intent_skill(), database=shop)
    with pytest.raises(SkillError, match="has no database"):
        SQLAgent(analytics_skill())
    with pytest.raises(SkillError, match="not a Database"):
        SQLAgent(analytics_skill(42))
    with pytest.raises(SkillError, match="dialect 'mysql' is not supported"):
        SQLAgent(Skill(name="m", instructions="x", contract=SQLContract(shop, dialect="mysql")))
    for bad in ({"max_rows": 0}, {"timeout_s": 0}, {"max_prompt_tables": 0}, {"few_shot": -1}):
        with pytest.raises(SkillError, match="must be"):
            SQLAgent(analytics_skill(), database=shop, **bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "sql", "problem"),
    [
        ('{"sql": "SELECT 1"}', "SELECT 1", None),
        ('{"sql": "  SELECT 1 ;\\n"}', "SELECT 1", None),
        ('{"sql": "```\\nSELECT 1\\n```"}', "SELECT 1", None),
        ("WITH x AS (SELECT 1) SELECT * FROM x;", "WITH x AS (SELECT 1) SELECT * FROM x", None),
        ('{"sql": ""}', None, "empty"),
        ('{"sql": 3}', None, "is not a JSON object"),
        ("[1, 2]", None, "is not a JSON object"),
        ('{"sql": "SELECT', None, "is not JSON"),
        ("DELETE FROM x", None, "is not JSON"),
    ],
)
def test_parse_sql_output(text: str, sql: str | None, problem: str | None) -> None:
    found, error = parse_sql_output(text)
    assert found == sql
    if problem is None:
        assert error is None
    else:
        assert error is not None
        assert problem in error


def test_split_schema_question() -> None:
    text = "Schema:\nCREATE TABLE t (\n  id INTEGER\n);\n\nQuestion: How many?"
    assert split_schema_question(text) == ("CREATE TABLE t (\n  id INTEGER\n);", "How many?")
    assert split_schema_question("How many?") == (None, "How many?")
