"""The SQL tools against real SQLite, DuckDB and PostgreSQL databases.

PostgreSQL runs at 127.0.0.1:5432 (database `test`); each run loads the sample shop into its own
schema and drops it afterwards. Override the URL with BRICKWORK_TEST_POSTGRES_URL. That URL's
user is a superuser, which brickwork refuses for agent SQL: the queries run as a read-only login
role created with `read_only_role_sql` (the SQL the refusal shows) and dropped afterwards.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from brickwork.errors import (
    ConfigError,
    PrivilegedRoleError,
    SQLExecutionError,
    SQLTimeoutError,
    UnsafeSQLError,
)
from brickwork.tools.sample_db import (
    create_sample_db,
    create_sample_duckdb,
    database_from_ddl,
    load_sample_postgres,
    sample_rows,
)
from brickwork.tools.sql import Database, SchemaInfo
from brickwork.tools.sql_exec import (
    aexecute_readonly,
    execute_readonly,
    execute_unchecked,
    execution_match,
    read_only_role_sql,
)
from tests._paths import SHARED_DATA

PG_URL = os.environ.get("BRICKWORK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TRAIN = SHARED_DATA / "text2sql" / "train.jsonl"
DIALECTS = ["sqlite", "duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
SLOW_COUNT = (
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000000) "
    "SELECT COUNT(*) FROM c"
)
READ_ONLY_MESSAGE = {
    "sqlite": "attempt to write a readonly database",
    "duckdb": "read-only mode",
    "postgres": "read-only transaction",
}
SHOP = sample_rows()


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> Database:
    return Database.sqlite(create_sample_db(tmp_path_factory.mktemp("sqlite") / "shop.db"))


@pytest.fixture(scope="module")
def duckdb_db(tmp_path_factory: pytest.TempPathFactory) -> Database:
    return Database.duckdb(create_sample_duckdb(tmp_path_factory.mktemp("duck") / "shop.duckdb"))


def _admin(*statements: str) -> None:
    """Run `statements` as the URL's (super)user."""
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


def _drop_schema(schema: str) -> None:
    _admin(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _drop_roles(*roles: str) -> None:
    for role in roles:
        _admin(
            f"DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN "
            f'DROP OWNED BY "{role}"; DROP ROLE "{role}"; END IF; END $$'
        )


def _url_as(user: str, password: str) -> str:
    parts = urlsplit(PG_URL)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


def _database_name() -> str:
    return urlsplit(PG_URL).path.lstrip("/") or "postgres"


def _new_role(prefix: str) -> tuple[str, str]:
    return f"{prefix}_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex


@pytest.fixture(scope="module")
def postgres_schema() -> Iterator[str]:
    """The sample shop in a schema of its own, loaded as the superuser."""
    schema = f"brickwork_test_{uuid.uuid4().hex[:12]}"
    try:
        load_sample_postgres(PG_URL, schema=schema)
        yield schema
    finally:
        _drop_schema(schema)


@pytest.fixture(scope="module")
def postgres_db(postgres_schema: str) -> Iterator[Database]:
    """The shop as a read-only login role made with the SQL the refusal shows."""
    role, password = _new_role("bw_reader")
    try:
        _admin(
            *read_only_role_sql(
                role, database=_database_name(), schema=postgres_schema, password=password
            )
        )
        yield Database.postgres(_url_as(role, password), schema=postgres_schema)
    finally:
        _drop_roles(role)


@pytest.fixture
def superuser_db(postgres_schema: str) -> Database:
    """The shop as the URL's superuser, with the explicit opt-in."""
    return Database.postgres(PG_URL, schema=postgres_schema, allow_privileged=True)


@pytest.fixture(params=DIALECTS)
def db(request: pytest.FixtureRequest) -> Database:
    return request.getfixturevalue(f"{request.param}_db")  # type: ignore[no-any-return]


def count(db: Database, table: str) -> int:
    return int(execute_readonly(db, f"SELECT COUNT(*) FROM {table}").rows[0][0])


# --- introspection and plain queries -------------------------------------------------------


def test_introspect_reads_tables_and_keys(db: Database) -> None:
    schema = db.introspect()
    assert schema.table_names == ("customers", "products", "orders", "order_items")
    assert schema.dialect == db.dialect
    orders = schema.table("orders")
    assert orders is not None
    customer_id = orders.column("customer_id")
    assert customer_id is not None
    assert customer_id.references == ("customers", "id")
    assert customer_id.not_null
    customers = schema.table("customers")
    assert customers is not None
    assert [c.name for c in customers.columns if c.primary_key] == ["id"]
    assert customers.column("email").unique  # type: ignore[union-attr]
    ddl = schema.to_ddl(["order_items"])
    assert "product_id" in ddl
    assert "REFERENCES products(id)" in ddl


def test_query_results_agree_with_the_generated_rows(db: Database) -> None:
    completed = [o for o in SHOP["orders"] if o[3] == "completed"]
    result = execute_readonly(
        db, "SELECT COUNT(*) AS n, SUM(total_amount) AS revenue FROM orders "
        "WHERE status = 'completed'"
    )  # fmt: skip
    assert result.columns == ("n", "revenue")
    assert result.rows[0][0] == len(completed)
    assert result.rows[0][1] == pytest.approx(sum(o[4] for o in completed))
    assert not result.truncated
    assert result.elapsed_s >= 0

    sold: Counter[str] = Counter()
    names = {p[0]: p[1] for p in SHOP["products"]}
    for item in SHOP["order_items"]:
        sold[names[item[2]]] += item[3]
    top = execute_readonly(
        db,
        "SELECT p.name, SUM(oi.quantity) AS units FROM products p "
        "JOIN order_items oi ON oi.product_id = p.id GROUP BY p.name ORDER BY units DESC, p.name",
        max_rows=3,
    )
    expected = sorted(sold.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    assert [(name, int(units)) for name, units in top.rows] == expected
    assert top.truncated


def test_row_limit_truncates(db: Database) -> None:
    items = len(SHOP["order_items"])
    limited = execute_readonly(db, "SELECT id FROM order_items", max_rows=10)
    assert len(limited.rows) == 10
    assert limited.truncated
    assert limited.sql.endswith("LIMIT 11")  # the server never sends more than we keep
    whole = execute_readonly(db, "SELECT id FROM order_items", max_rows=items)
    assert len(whole.rows) == items
    assert not whole.truncated
    short = execute_readonly(db, "SELECT id FROM order_items LIMIT 5", max_rows=10)
    assert (len(short.rows), short.truncated) == (5, False)
    capped = execute_readonly(db, "SELECT id FROM order_items LIMIT 500", max_rows=10)
    assert (len(capped.rows), capped.truncated) == (10, True)


async def test_async_wrapper_returns_the_same_result(db: Database) -> None:
    sql = "SELECT category, COUNT(*) FROM products GROUP BY category ORDER BY category"
    result = await aexecute_readonly(db, sql)
    assert result.rows == execute_readonly(db, sql).rows
    assert [row[0] for row in result.rows] == sorted({p[2] for p in SHOP["products"]})


# --- the database itself stays read-only ---------------------------------------------------


@pytest.mark.parametrize(
    "write",
    [
        "INSERT INTO customers (id, name) VALUES (100000, 'Mallory')",
        "UPDATE orders SET status = 'refunded'",
        "DELETE FROM order_items",
        "CREATE TABLE stolen (a INTEGER)",
        "DROP TABLE order_items",
    ],
)
def test_a_write_that_slips_past_the_checker_is_refused_by_the_database(
    db: Database, write: str
) -> None:
    with pytest.raises(UnsafeSQLError):
        execute_readonly(db, write)
    before = count(db, "order_items"), count(db, "customers")
    with pytest.raises(SQLExecutionError) as info:
        execute_unchecked(db, write)  # no check_sql: only the connection stands in the way
    assert READ_ONLY_MESSAGE[db.dialect] in str(info.value)
    assert (count(db, "order_items"), count(db, "customers")) == before
    statuses = execute_readonly(db, "SELECT DISTINCT status FROM orders").rows
    assert ("refunded",) not in statuses


def test_smuggled_second_statement_is_refused_by_the_driver(db: Database) -> None:
    with pytest.raises(SQLExecutionError):
        # In one PostgreSQL simple-protocol string this would delete every row.
        execute_unchecked(
            db, "SELECT 1; COMMIT; SET TRANSACTION READ WRITE; DELETE FROM order_items"
        )
    assert count(db, "order_items") == len(SHOP["order_items"])


@pytest.mark.parametrize(
    "sql",
    [
        "ATTACH DATABASE ':memory:' AS scratch",
        "PRAGMA query_only = OFF",
        "SELECT load_extension('/tmp/evil.so')",
    ],
)
def test_sqlite_connection_refuses_attach_pragma_and_extensions(
    sqlite_db: Database, sql: str
) -> None:
    with pytest.raises(SQLExecutionError, match="not authorized"):
        execute_unchecked(sqlite_db, sql)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM read_csv('/etc/hosts')", "disabled by configuration"),
        ("ATTACH '/tmp/brickwork-should-not-exist.duckdb' AS other", "disabled by configuration"),
        ("INSTALL httpfs", "disabled by configuration"),
        ("SET enable_external_access = true", "locked"),
    ],
)
def test_duckdb_connection_refuses_files_and_extensions(
    duckdb_db: Database, sql: str, message: str
) -> None:
    with pytest.raises(SQLExecutionError, match=message):
        execute_unchecked(duckdb_db, sql)
    assert not Path("/tmp/brickwork-should-not-exist.duckdb").exists()


@pytest.mark.postgres
def test_postgres_read_only_role_is_used(postgres_schema: str) -> None:
    # role= with an unprivileged login user: SET ROLE narrows it to three tables.
    role, _ = _new_role("bw_ro")
    user, password = _new_role("bw_app")
    schema = f'"{postgres_schema}"'
    tables = ("customers", "products", "orders")  # not order_items
    try:
        _admin(
            f'CREATE ROLE "{role}" NOLOGIN',
            f'GRANT USAGE ON SCHEMA {schema} TO "{role}"',
            *(f'GRANT SELECT ON {schema}.{table} TO "{role}"' for table in tables),
            f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}'",
            f'GRANT "{role}" TO "{user}"',
        )
        reader = Database.postgres(_url_as(user, password), role=role, schema=postgres_schema)
        who = execute_unchecked(
            reader, "SELECT current_user, has_table_privilege('customers', 'INSERT')"
        )
        assert who.rows == ((role, False),)
        assert reader.introspect().table_names == tables
        assert count(reader, "orders") == len(SHOP["orders"])
        with pytest.raises(UnsafeSQLError, match="unknown table 'order_items'"):
            execute_readonly(reader, "SELECT COUNT(*) FROM order_items")
        with pytest.raises(SQLExecutionError, match="permission denied"):
            execute_unchecked(reader, "SELECT COUNT(*) FROM order_items")
        via_url = Database.from_url(
            f"{_url_as(user, password)}?role={role}&schema={postgres_schema}"
        )
        assert via_url == reader
        assert count(via_url, "orders") == len(SHOP["orders"])
    finally:
        _drop_roles(user, role)


# --- privileged roles are refused unless the caller opts in ---------------------------------

READ_PASSWD = "SELECT pg_read_file('/etc/passwd')"
LIST_DATA_DIR = "SELECT * FROM pg_ls_dir('.')"


def copy_to(folder: Path) -> str:
    return f"COPY (SELECT name FROM customers) TO '{folder}/bw_out.csv'"


@pytest.fixture
def server_writable(tmp_path: Path) -> Path:
    """A folder the PostgreSQL server could write to, were it allowed to."""
    tmp_path.chmod(0o777)
    return tmp_path


@pytest.mark.postgres
def test_superuser_url_is_refused_with_how_to_create_a_read_only_role(
    postgres_schema: str, server_writable: Path
) -> None:
    superuser = Database.postgres(PG_URL, schema=postgres_schema)
    attempts = [
        superuser.introspect,
        lambda: execute_readonly(superuser, "SELECT COUNT(*) FROM orders"),
        lambda: execute_unchecked(superuser, READ_PASSWD),
        lambda: execute_unchecked(superuser, copy_to(server_writable)),
        lambda: Database.from_url(f"{PG_URL}?schema={postgres_schema}").introspect(),
    ]
    for attempt in attempts:
        with pytest.raises(PrivilegedRoleError) as info:
            attempt()
        assert isinstance(info.value, ConfigError)  # raised, never repaired by the model
    message = str(info.value)
    user = urlsplit(PG_URL).username
    assert info.value.role == user
    assert f"as PostgreSQL role {user!r}, the URL's user: it is a superuser" in message
    for statement in read_only_role_sql(
        "brickwork_reader", database=_database_name(), schema=postgres_schema, password="<password>"
    ):
        assert f"    {statement};\n" in message
    assert "put it in the URL ('postgresql://brickwork_reader:<password>@" in message
    assert "role='brickwork_reader'" in message
    assert "allow_privileged=True" in message
    assert list(server_writable.iterdir()) == []


@pytest.mark.postgres
def test_superuser_url_with_a_read_only_role_is_still_refused() -> None:
    # SET ROLE is no boundary while the session user is a superuser: one SELECT switches back.
    role, _ = _new_role("bw_ro")
    try:
        _admin(f'CREATE ROLE "{role}" NOLOGIN')
        with pytest.raises(PrivilegedRoleError, match=rf"SET ROLE '{role}' does not help"):
            execute_unchecked(Database.postgres(PG_URL, role=role), "SELECT 1")
        opted_in = Database.postgres(PG_URL, role=role, allow_privileged=True)
        assert execute_unchecked(opted_in, "SELECT current_user").rows == ((role,),)
        escape = execute_unchecked(
            opted_in,
            "SELECT set_config('role', 'none', false), query_to_xml("
            "'SELECT current_user AS who, pg_read_file(''/etc/passwd'') AS f', false, false, '')",
        )
        assert f"<who>{urlsplit(PG_URL).username}</who>" in escape.rows[0][1]
        assert "root:" in escape.rows[0][1]
    finally:
        _drop_roles(role)


@pytest.mark.postgres
def test_opted_in_superuser_runs_and_logs_a_warning(
    superuser_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    opted_in = Database.from_url(f"{PG_URL}?schema={superuser_db.namespace}&allow_privileged=true")
    assert opted_in == superuser_db
    with caplog.at_level(logging.WARNING, logger="brickwork.tools.sql_exec"):
        assert count(opted_in, "orders") == len(SHOP["orders"])
        tables = opted_in.introspect().table_names
    assert tables == ("customers", "products", "orders", "order_items")
    # Logged once per URL and role (an earlier test may have logged it), not once per query.
    warnings = [r for r in caplog.records if "allow_privileged" in r.getMessage()]
    assert len(warnings) <= 1
    for record in warnings:
        assert record.levelno == logging.WARNING
        assert f"role {urlsplit(PG_URL).username!r}, a superuser" in record.getMessage()


@pytest.mark.postgres
def test_opted_in_superuser_keeps_the_executor_protections_it_can(
    superuser_db: Database, server_writable: Path
) -> None:
    # The checker still refuses every one of these on the agent's path.
    for sql in (copy_to(server_writable), READ_PASSWD, LIST_DATA_DIR):
        with pytest.raises(UnsafeSQLError):
            execute_readonly(superuser_db, sql)
    # Past the checker, statements that return no rows never reach the executor: COPY ... TO
    # a file or a program, DO blocks, settings and writes.
    for sql in (
        copy_to(server_writable),
        f"COPY (SELECT 1) TO PROGRAM 'touch {server_writable}/bw_program'",
        f"DO $$ BEGIN EXECUTE 'COPY (SELECT 1) TO ''{server_writable}/bw_do.csv'''; END $$",
        "SET default_transaction_read_only = off",
        "DELETE FROM order_items",
    ):
        with pytest.raises(SQLExecutionError, match="returns no rows; on a privileged"):
            execute_unchecked(superuser_db, sql)
    assert list(server_writable.iterdir()) == []
    assert count(superuser_db, "order_items") == len(SHOP["order_items"])
    # What the executor cannot stop: file-reading functions inside a SELECT run as the
    # superuser. Only check_sql (above) or a read-only role keeps them out.
    assert "root:" in execute_unchecked(superuser_db, READ_PASSWD).rows[0][0]
    assert execute_unchecked(superuser_db, LIST_DATA_DIR).rows


@pytest.mark.postgres
def test_a_fresh_read_only_role_cannot_touch_server_files(
    postgres_db: Database, server_writable: Path
) -> None:
    # The role made with read_only_role_sql: the server itself refuses, no checker involved.
    assert execute_unchecked(postgres_db, "SELECT current_user").rows[0][0].startswith("bw_reader")
    assert count(postgres_db, "order_items") == len(SHOP["order_items"])
    for sql, message in (
        (READ_PASSWD, "permission denied for function pg_read_file"),
        (LIST_DATA_DIR, "permission denied for function pg_ls_dir"),
        (copy_to(server_writable), "pg_write_server_files"),
        (f"COPY (SELECT 1) TO PROGRAM 'touch {server_writable}/x'", "pg_execute_server_program"),
    ):
        with pytest.raises(SQLExecutionError, match=message):
            execute_unchecked(postgres_db, sql)
    assert list(server_writable.iterdir()) == []


@pytest.mark.postgres
@pytest.mark.parametrize("via", ["login", "role="])
def test_a_member_of_pg_read_server_files_is_refused(postgres_schema: str, via: str) -> None:
    # Granted through an intermediate role: membership counts transitively, inherited or not.
    files, _ = _new_role("bw_files")
    user, password = _new_role("bw_app")
    try:
        _admin(
            f'CREATE ROLE "{files}" NOLOGIN',
            f'GRANT pg_read_server_files TO "{files}"',
            # The usual companion grant: the role's absolute paths need pg_read_server_files.
            f'GRANT EXECUTE ON FUNCTION pg_read_file(text) TO "{files}"',
            # NOINHERIT: the login user holds the file access only after SET ROLE.
            f"CREATE ROLE \"{user}\" LOGIN NOINHERIT PASSWORD '{password}'",
            f'GRANT "{files}" TO "{user}"',
        )
        role = files if via == "role=" else None
        db = Database.postgres(_url_as(user, password), role=role, schema=postgres_schema)
        with pytest.raises(PrivilegedRoleError) as info:
            execute_unchecked(db, READ_PASSWD)
        message = str(info.value)
        assert info.value.role == user  # the session user is checked first
        assert f"as PostgreSQL role {user!r}, the URL's user" in message
        assert ": it is a member of pg_read_server_files, so a query could" in message
        assert "CREATE ROLE brickwork_reader LOGIN" in message
        if via == "role=":  # with the opt-in, SET ROLE gains the file access
            opted_in = Database.postgres(
                _url_as(user, password), role=role, schema=postgres_schema, allow_privileged=True
            )
            assert "root:" in execute_unchecked(opted_in, READ_PASSWD).rows[0][0]
    finally:
        _drop_roles(user, files)


@pytest.mark.postgres
async def test_the_sql_agent_raises_instead_of_querying_as_a_superuser(
    postgres_schema: str, postgres_db: Database
) -> None:
    from brickwork.agents.sql import SQLAgent
    from brickwork.skills.examples import analytics_skill
    from brickwork.testing import ScriptedModel

    answer = '{"sql": "SELECT COUNT(*) AS n FROM orders"}'
    model = ScriptedModel([answer])
    async with model.pool() as pool:
        superuser = SQLAgent(
            analytics_skill(), database=Database.postgres(PG_URL, schema=postgres_schema)
        )
        with pytest.raises(PrivilegedRoleError, match="CREATE ROLE brickwork_reader LOGIN"):
            await superuser.run("How many orders are there?", pool=pool)
        reader = SQLAgent(analytics_skill(), database=postgres_db)
        result = await reader.run("How many orders are there?", pool=pool)
    model.assert_consumed()  # the refused agent never called the model
    assert result.ok
    assert result.value is not None
    assert result.value.rows == ((len(SHOP["orders"]),),)


# --- time limits and errors ----------------------------------------------------------------


def test_slow_query_times_out(db: Database) -> None:
    started = time.monotonic()
    with pytest.raises(SQLTimeoutError, match=r"longer than 0\.5s"):
        execute_readonly(db, SLOW_COUNT, timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert count(db, "products") == len(SHOP["products"])  # the database is still usable


@pytest.mark.postgres
def test_pg_sleep_is_denied_by_the_checker_and_cut_by_the_statement_timeout(
    postgres_db: Database,
) -> None:
    with pytest.raises(UnsafeSQLError, match=r"pg_sleep\(\)"):
        execute_readonly(postgres_db, "SELECT pg_sleep(30)")
    started = time.monotonic()
    with pytest.raises(SQLTimeoutError):
        execute_unchecked(postgres_db, "SELECT pg_sleep(30)", timeout_s=0.5)
    assert time.monotonic() - started < 5


def test_database_error_message_is_kept(db: Database) -> None:
    with pytest.raises(SQLExecutionError) as info:
        execute_readonly(db, "SELECT no_such_function(name) FROM customers")
    message = str(info.value)
    assert message.startswith(f"{db.dialect} rejected the query: ")
    assert "no_such_function" in message.lower()


def test_missing_database_file_is_a_config_error(tmp_path: Path) -> None:
    for db in (Database.sqlite(tmp_path / "nope.db"), Database.duckdb(tmp_path / "nope.duckdb")):
        with pytest.raises(ConfigError, match="does not exist"):
            execute_readonly(db, "SELECT 1")
        with pytest.raises(ConfigError, match="does not exist"):
            db.introspect()
    assert list(tmp_path.iterdir()) == []  # opening read-only never creates a file


# --- execution match -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gold", "predicted", "expected"),
    [
        ("SELECT name FROM products WHERE category = 'Electronics'",
         "SELECT p.name AS product FROM products p WHERE p.category = 'Electronics' "
         "ORDER BY p.price", True),
        ("SELECT city, COUNT(*) FROM customers GROUP BY city",
         "SELECT COUNT(*) AS n, c.city FROM customers c GROUP BY c.city", True),
        ("SELECT DISTINCT c.name FROM customers c JOIN orders o ON o.customer_id = c.id "
         "WHERE o.status = 'cancelled'",
         "SELECT DISTINCT name FROM customers WHERE id IN "
         "(SELECT customer_id FROM orders WHERE status = 'cancelled')", True),
        ("SELECT AVG(price) FROM products", "SELECT SUM(price) / COUNT(price) FROM products",
         True),
        ("SELECT name FROM products WHERE category = 'Electronics'",
         "SELECT name FROM products WHERE category = 'Books'", False),
        ("SELECT name FROM products ORDER BY price DESC",
         "SELECT name FROM products ORDER BY price ASC", False),
        ("SELECT name, price FROM products", "SELECT name FROM products", False),
        ("SELECT COUNT(*) FROM orders", "DELETE FROM orders", False),
        ("SELECT COUNT(*) FROM orders", "SELECT COUNT(*) FROM invoices", False),
        ("SELECT COUNT(*) FROM orders", SLOW_COUNT, False),
    ],
)  # fmt: skip
def test_execution_match(db: Database, gold: str, predicted: str, expected: bool) -> None:
    assert execution_match(db, gold, predicted, timeout_s=1.0) is expected
    assert count(db, "orders") == len(SHOP["orders"])


def test_execution_match_raises_when_the_gold_query_fails(db: Database) -> None:
    with pytest.raises(SQLExecutionError):
        execution_match(db, "SELECT nope FROM orders", "SELECT COUNT(*) FROM orders")


# --- sample databases ----------------------------------------------------------------------


def test_sample_databases_are_idempotent_and_leave_no_temp_files(tmp_path: Path) -> None:
    first = create_sample_db(tmp_path / "shop.db")
    stamp = first.stat().st_mtime_ns
    assert create_sample_db(tmp_path / "shop.db") == first
    assert first.stat().st_mtime_ns == stamp
    duck = create_sample_duckdb(tmp_path / "shop.duckdb")
    assert create_sample_duckdb(duck) == duck
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop.db", "shop.duckdb"]
    sql = "SELECT * FROM orders ORDER BY id"
    rows_sqlite = execute_readonly(Database.sqlite(first), sql, max_rows=1000).rows
    rows_duck = execute_readonly(Database.duckdb(duck), sql, max_rows=1000).rows
    assert [r[:2] + r[3:] for r in rows_sqlite] == [r[:2] + r[3:] for r in rows_duck]
    assert [r[2] for r in rows_sqlite] == [r[2].isoformat() for r in rows_duck]


def _dataset_rows(n: int) -> list[dict[str, str]]:
    if not TRAIN.is_file():
        pytest.skip(f"the text-to-SQL training data is not at {TRAIN}")
    rows = [json.loads(line) for line in TRAIN.read_text().splitlines() if line.strip()]
    single = [r for r in rows if r["question"].count("CREATE TABLE") == 1]
    joined = [r for r in rows if r["question"].count("CREATE TABLE") > 1]
    return (single[:1] + joined[: n - 1])[:n]


def _ddl(question: str) -> str:
    return question.split("Schema:\n", 1)[1].split("\n\nQuestion:", 1)[0]


_TYPEOF = {"INTEGER": {"integer"}, "REAL": {"real"}, "TEXT": {"text"}, "BOOLEAN": {"integer"},
           "DATE": {"text"}, "DATETIME": {"text"}}  # fmt: skip
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2})?")


def test_database_from_ddl_on_dataset_rows(tmp_path: Path) -> None:
    rows = _dataset_rows(3)
    assert len(rows) == 3
    for k, row in enumerate(rows):
        ddl = _ddl(row["question"])
        db = Database.sqlite(database_from_ddl(ddl, tmp_path / f"{k}.db", rows_per_table=20))
        schema = db.introspect()
        assert schema.to_ddl() == ddl  # declared types and keys survive
        ids: dict[str, set[int]] = defaultdict(set)
        for table in schema.tables:
            data = execute_unchecked(db, f"SELECT * FROM {table.name}").rows
            assert len(data) == 20
            ids[table.name] = {r[0] for r in data}
            for column in table.columns:
                kinds = execute_unchecked(
                    db, f"SELECT DISTINCT typeof({column.name}) FROM {table.name}"
                ).rows
                assert {kind for (kind,) in kinds} <= _TYPEOF[column.type] | {"null"}, column
                if column.type in ("DATE", "DATETIME"):
                    values = execute_unchecked(db, f"SELECT {column.name} FROM {table.name}").rows
                    assert all(v is None or _DATE.fullmatch(v) for (v,) in values)
        for table in schema.tables:
            for column in table.columns:
                if column.references and column.references[0] in ids:
                    values = execute_unchecked(db, f"SELECT {column.name} FROM {table.name}").rows
                    assert {v for (v,) in values} <= ids[column.references[0]]
        gold = row["answer"]
        execute_readonly(db, gold)  # the gold query passes the checker and runs
        assert execution_match(db, gold, gold)

        again = Database.sqlite(database_from_ddl(ddl, tmp_path / f"{k}-again.db"))
        other = Database.sqlite(database_from_ddl(ddl, tmp_path / f"{k}-other.db", seed=1))
        first = schema.tables[0].name
        sql = f"SELECT * FROM {first} ORDER BY id"
        assert execute_unchecked(again, sql).rows == execute_unchecked(db, sql).rows
        assert execute_unchecked(other, sql).rows != execute_unchecked(db, sql).rows


def test_database_from_ddl_replaces_an_existing_file(tmp_path: Path) -> None:
    ddl = "CREATE TABLE t (id INTEGER PRIMARY KEY, city TEXT, price REAL)"
    path = database_from_ddl(ddl, tmp_path / "t.db", rows_per_table=5)
    path = database_from_ddl(ddl, path, rows_per_table=7)
    assert count(Database.sqlite(path), "t") == 7
    assert SchemaInfo.from_ddl(ddl).to_ddl() == Database.sqlite(path).introspect().to_ddl()


def test_database_from_ddl_keeps_unique_columns_unique(tmp_path: Path) -> None:
    ddl = (
        "CREATE TABLE departments (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, "
        "code INTEGER UNIQUE, budget INTEGER CHECK (budget > 0))"
    )
    db = Database.sqlite(database_from_ddl(ddl, tmp_path / "d.db", rows_per_table=30))
    counts = execute_unchecked(
        db, "SELECT COUNT(*), COUNT(DISTINCT name), COUNT(DISTINCT code) FROM departments"
    )
    assert counts.rows == ((30, 30, 30),)  # no row lost to a UNIQUE or CHECK constraint
    names = {name for (name,) in execute_unchecked(db, "SELECT name FROM departments").rows}
    assert "Sales" in names  # department names come from the department pool
