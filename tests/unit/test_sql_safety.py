"""The SQL safety pipeline, schema rendering and result comparison: pure logic, no database."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from brickwork.errors import ConfigError, UnsafeSQLError
from brickwork.tools.sample_db import sample_ddl
from brickwork.tools.sql import Database, SchemaInfo
from brickwork.tools.sql_exec import QueryResult, read_only_role_sql, results_match
from brickwork.tools.sql_safety import check_sql


@pytest.fixture(scope="module")
def shop() -> SchemaInfo:
    return SchemaInfo.from_ddl(sample_ddl("sqlite"))


def rejected(sql: str, schema: SchemaInfo, dialect: str = "sqlite") -> str:
    with pytest.raises(UnsafeSQLError) as info:
        check_sql(sql, schema, dialect)  # type: ignore[arg-type]
    return str(info.value)


# --- statements that must never pass -------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("SELECT 1; DROP TABLE customers", "DROP"),
        ("SELECT * FROM customers; DELETE FROM orders", "DELETE"),
        ("SELECT 1 /* harmless */; DROP TABLE customers", "found 2"),
        ("SELECT 1;\n-- comment\nUPDATE customers SET name = 'x'", "UPDATE"),
        ("BEGIN; DELETE FROM customers; COMMIT", "found 3"),
    ],
)
def test_more_than_one_statement_is_rejected(shop: SchemaInfo, sql: str, named: str) -> None:
    message = rejected(sql, shop)
    assert "exactly one statement" in message
    assert named in message


@pytest.mark.parametrize(
    ("sql", "dialect", "named"),
    [
        ("DELETE FROM customers", "sqlite", "DELETE"),
        ("update customers set name = 'x'", "sqlite", "UPDATE"),
        ("INSERT INTO customers (id, name) VALUES (1, 'a')", "sqlite", "INSERT"),
        ("REPLACE INTO customers VALUES (1)", "sqlite", "REPLACE"),
        ("CREATE TABLE x (a INTEGER)", "sqlite", "CREATE"),
        ("DROP TABLE customers", "sqlite", "DROP"),
        ("ALTER TABLE customers ADD COLUMN x TEXT", "sqlite", "ALTER"),
        ("PRAGMA query_only = OFF", "sqlite", "PRAGMA"),
        ("PRAGMA table_info(customers)", "sqlite", "PRAGMA"),
        ("ATTACH DATABASE '/tmp/x.db' AS x", "sqlite", "ATTACH"),
        ("DETACH DATABASE x", "sqlite", "DETACH"),
        ("VACUUM INTO '/tmp/copy.db'", "sqlite", "VACUUM"),
        ("TRUNCATE customers", "postgres", "TRUNCATE"),
        ("GRANT ALL ON customers TO public", "postgres", "GRANT"),
        ("MERGE INTO customers c USING orders o ON c.id = o.id WHEN MATCHED THEN DELETE",
         "postgres", "MERGE"),
        ("COPY customers TO PROGRAM 'rm -rf /'", "postgres", "COPY"),
        ("SET statement_timeout = 0", "postgres", "SET"),
        ("BEGIN", "postgres", "BEGIN"),
        ("COMMIT", "postgres", "COMMIT"),
        ("CALL refresh_everything()", "postgres", "CALL"),
        ("DO $$ BEGIN PERFORM 1; END $$", "postgres", "DO"),
        ("EXPLAIN ANALYZE SELECT 1", "postgres", "EXPLAIN"),
        ("INSTALL httpfs", "duckdb", "INSTALL"),
        ("LOAD httpfs", "duckdb", "LOAD"),
        ("SET threads = 1", "duckdb", "SET"),
        ("ATTACH '/tmp/other.duckdb' AS o", "duckdb", "ATTACH"),
        ("COPY customers TO '/tmp/out.csv'", "duckdb", "COPY"),
        ("CALL pragma_version()", "duckdb", "CALL"),
    ],
)  # fmt: skip
def test_statements_other_than_select_are_rejected(
    shop: SchemaInfo, sql: str, dialect: str, named: str
) -> None:
    message = rejected(sql, shop, dialect)
    assert "only read-only SELECT" in message
    assert named in message


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("WITH x AS (DELETE FROM orders RETURNING *) SELECT * FROM x", "DELETE"),
        ("WITH x AS (UPDATE customers SET name = 'a' RETURNING id) SELECT id FROM x", "UPDATE"),
        ("WITH x AS (INSERT INTO customers (id, name) VALUES (1, 'a') RETURNING id) "
         "SELECT id FROM x", "INSERT"),
        ("SELECT * INTO stolen FROM customers", "SELECT ... INTO"),
        ("SELECT * INTO TEMP stolen FROM customers", "SELECT ... INTO"),
        ("SELECT * FROM customers FOR UPDATE", "FOR UPDATE"),
    ],
)  # fmt: skip
def test_writes_hidden_inside_a_select_are_rejected(shop: SchemaInfo, sql: str, named: str) -> None:
    message = rejected(sql, shop, "postgres")
    assert named in message
    assert "only read-only SELECT queries may run" in message


@pytest.mark.parametrize(
    ("sql", "dialect", "function"),
    [
        ("SELECT load_extension('/tmp/evil.so')", "sqlite", "load_extension"),
        ("SELECT readfile('/etc/passwd')", "sqlite", "readfile"),
        ("SELECT writefile('/tmp/x', 'y')", "sqlite", "writefile"),
        ("SELECT fts3_tokenizer('simple')", "sqlite", "fts3_tokenizer"),
        ("SELECT * FROM read_csv('/etc/passwd')", "duckdb", "read_csv"),
        ("SELECT * FROM read_csv_auto('/etc/passwd')", "duckdb", "read_csv_auto"),
        ("SELECT * FROM read_parquet('s3://bucket/x.parquet')", "duckdb", "read_parquet"),
        ("SELECT * FROM read_json_auto('x.json')", "duckdb", "read_json_auto"),
        ("SELECT * FROM read_text('/etc/passwd')", "duckdb", "read_text"),
        ("SELECT * FROM read_blob('/etc/shadow')", "duckdb", "read_blob"),
        ("SELECT * FROM glob('/etc/*')", "duckdb", "glob"),
        ("SELECT * FROM sqlite_scan('other.db', 't')", "duckdb", "sqlite_scan"),
        ("SELECT * FROM duckdb_settings()", "duckdb", "duckdb_settings"),
        ("SELECT * FROM query('DROP TABLE customers')", "duckdb", "query"),
        ("SELECT getenv('HOME')", "duckdb", "getenv"),
        ("SELECT pg_read_file('/etc/passwd')", "postgres", "pg_read_file"),
        ("SELECT pg_read_binary_file('/etc/passwd')", "postgres", "pg_read_binary_file"),
        ("SELECT * FROM pg_ls_dir('.')", "postgres", "pg_ls_dir"),
        ("SELECT lo_import('/etc/passwd')", "postgres", "lo_import"),
        ("SELECT lo_export(1, '/tmp/x')", "postgres", "lo_export"),
        ("SELECT * FROM dblink('host=evil', 'select 1') AS t(a int)", "postgres", "dblink"),
        ("SELECT pg_sleep(10)", "postgres", "pg_sleep"),
        ("SELECT pg_catalog.pg_sleep(10)", "postgres", "pg_sleep"),
        ("SELECT set_config('statement_timeout', '0', true)", "postgres", "set_config"),
        ("SELECT current_setting('data_directory')", "postgres", "current_setting"),
        ("SELECT nextval('orders_id_seq')", "postgres", "nextval"),
        ("SELECT query_to_xml('select * from pg_authid', true, true, '')", "postgres",
         "query_to_xml"),
        ("SELECT name FROM customers WHERE id = (SELECT pg_terminate_backend(1))", "postgres",
         "pg_terminate_backend"),
    ],
)  # fmt: skip
def test_file_system_and_session_functions_are_rejected(
    shop: SchemaInfo, sql: str, dialect: str, function: str
) -> None:
    message = rejected(sql, shop, dialect)
    assert f"function {function}()" in message
    assert "is not allowed" in message


@pytest.mark.parametrize(
    ("sql", "dialect"),
    [
        ("SELECT * FROM generate_series(1, 1000000000)", "postgres"),
        ("SELECT * FROM range(10)", "duckdb"),
        ("SELECT * FROM unnest(ARRAY[1, 2]) AS u(x)", "postgres"),
        ("SELECT * FROM json_each('{\"a\": 1}')", "sqlite"),
    ],
)
def test_table_functions_in_from_are_rejected(shop: SchemaInfo, sql: str, dialect: str) -> None:
    assert "table function" in rejected(sql, shop, dialect)


# --- grounding in the schema ---------------------------------------------------------------


def test_unknown_table_is_named_with_the_known_ones(shop: SchemaInfo) -> None:
    message = rejected("SELECT * FROM invoices", shop)
    assert "unknown table 'invoices'" in message
    assert "customers, products, orders, order_items" in message


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM pg_catalog.pg_authid",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM other.customers",
    ],
)
def test_tables_outside_the_schema_are_rejected(shop: SchemaInfo, sql: str) -> None:
    assert "outside the database's schema" in rejected(sql, shop, "postgres")


def test_duckdb_replacement_scan_of_a_file_is_an_unknown_table(shop: SchemaInfo) -> None:
    assert "unknown table 'data.csv'" in rejected("SELECT * FROM 'data.csv'", shop, "duckdb")


def test_unknown_qualified_column_lists_the_table_columns(shop: SchemaInfo) -> None:
    message = rejected(
        "SELECT c.name, o.total FROM customers c JOIN orders o ON o.customer_id = c.id", shop
    )
    assert "column 'total' does not exist in 'orders'" in message
    assert "total_amount" in message


def test_unknown_unqualified_column_is_rejected(shop: SchemaInfo) -> None:
    message = rejected("SELECT nope FROM customers", shop)
    assert "column 'nope' does not exist in any table in scope (customers)" in message


def test_column_from_a_table_not_in_from_is_rejected(shop: SchemaInfo) -> None:
    # `status` is a column of orders, but orders is not in this query.
    assert "'status'" in rejected("SELECT COUNT(*) FROM customers WHERE status = 'x'", shop)


def test_double_quoted_string_gets_a_hint(shop: SchemaInfo) -> None:
    message = rejected('SELECT COUNT(*) FROM orders WHERE status = "completed"', shop)
    assert "'completed'" in message
    assert "single quotes" in message


def test_table_name_used_after_it_was_aliased_is_rejected(shop: SchemaInfo) -> None:
    message = rejected("SELECT customers.name FROM customers c", shop)
    assert "alias 'customers'" in message
    assert "names: c" in message


def test_derived_table_columns_are_checked(shop: SchemaInfo) -> None:
    sql = "SELECT t.b FROM (SELECT name AS a FROM customers) AS t"
    assert "column 'b' does not exist" in rejected(sql, shop)
    ok = check_sql("SELECT t.a FROM (SELECT name AS a FROM customers) AS t", shop)
    assert ok.tables == ("customers",)


def test_empty_and_unparseable_sql_are_rejected(shop: SchemaInfo) -> None:
    assert "empty" in rejected("   ", shop)
    assert "cannot parse" in rejected("SELECT FROM WHERE (", shop)


# --- legitimate queries pass, normalised ---------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "tables"),
    [
        ("SELECT c.name, SUM(o.total_amount) AS spent FROM customers c "
         "JOIN orders o ON o.customer_id = c.id GROUP BY c.name HAVING spent > 100 "
         "ORDER BY spent DESC LIMIT 5", ("customers", "orders")),
        ("WITH big AS (SELECT customer_id, SUM(total_amount) AS spent FROM orders "
         "GROUP BY customer_id) SELECT c.name, b.spent FROM customers c "
         "JOIN big b ON b.customer_id = c.id", ("customers", "orders")),
        ("SELECT name FROM customers WHERE id IN "
         "(SELECT customer_id FROM orders WHERE status = 'completed')", ("customers", "orders")),
        ("SELECT name FROM customers c WHERE EXISTS "
         "(SELECT 1 FROM orders o WHERE o.customer_id = c.id)", ("customers", "orders")),
        ("SELECT name FROM products p WHERE price > "
         "(SELECT AVG(price) FROM products WHERE category = p.category)", ("products",)),
        ("SELECT city FROM customers UNION SELECT status FROM orders ORDER BY city",
         ("customers", "orders")),
        ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) "
         "SELECT n FROM r", ()),
        ("SELECT name AS n FROM customers ORDER BY n", ("customers",)),
        ("SELECT city, COUNT(*) AS cnt FROM customers GROUP BY city HAVING cnt > 2",
         ("customers",)),
        ("SELECT c.* FROM customers c LEFT JOIN orders o ON c.id = o.customer_id "
         "WHERE o.id IS NULL", ("customers", "orders")),
        ("SELECT name, RANK() OVER (PARTITION BY category ORDER BY price DESC) AS r "
         "FROM products", ("products",)),
        ("SELECT strftime('%Y', order_date) AS y, COUNT(*) FROM orders GROUP BY y", ("orders",)),
        ("SELECT p.name, SUM(oi.quantity) FROM products p JOIN order_items oi "
         "ON p.id = oi.product_id GROUP BY p.id, p.name", ("order_items", "products")),
        ("SELECT * FROM main.customers", ("customers",)),
        ("SELECT rowid, name FROM customers", ("customers",)),
    ],
)  # fmt: skip
def test_legitimate_queries_pass(shop: SchemaInfo, sql: str, tables: tuple[str, ...]) -> None:
    checked = check_sql(sql, shop, "sqlite")
    assert checked.tables == tables
    assert checked.dialect == "sqlite"
    # The normalised text is itself a query the checker accepts.
    assert check_sql(checked.sql, shop, "sqlite").sql == checked.sql


def test_comments_are_stripped_from_the_normalised_sql(shop: SchemaInfo) -> None:
    checked = check_sql("SELECT name FROM customers -- ; DROP TABLE customers", shop)
    assert checked.sql == "SELECT name FROM customers"
    checked = check_sql("SELECT name FROM customers /* ; DELETE FROM orders */;", shop)
    assert checked.sql == "SELECT name FROM customers"
    checked = check_sql("SELECT name FROM customers; -- trailing", shop)
    assert checked.sql == "SELECT name FROM customers"


def test_sql_is_transpiled_from_the_model_dialect(shop: SchemaInfo) -> None:
    sql = "SELECT strftime('%Y', order_date) AS y, COUNT(*) FROM orders GROUP BY y"
    checked = check_sql(sql, shop, "postgres", read="sqlite")
    assert checked.dialect == "postgres"
    assert "STRFTIME" not in checked.sql.upper()
    assert "TO_CHAR" in checked.sql.upper()


def test_dialect_defaults_to_the_schema_dialect() -> None:
    schema = SchemaInfo.from_ddl("CREATE TABLE t (a INTEGER)", "duckdb")
    assert check_sql("SELECT a FROM t", schema).dialect == "duckdb"


def test_a_subset_schema_limits_what_may_be_read(shop: SchemaInfo) -> None:
    only_products = shop.subset(["products"])
    assert check_sql("SELECT name FROM products", only_products).tables == ("products",)
    assert "unknown table 'customers'" in rejected("SELECT name FROM customers", only_products)


# --- schema descriptions -------------------------------------------------------------------


def test_from_ddl_reads_keys_and_to_ddl_renders_them_back(shop: SchemaInfo) -> None:
    assert shop.table_names == ("customers", "products", "orders", "order_items")
    item = shop.table("ORDER_ITEMS")
    assert item is not None
    product = item.column("product_id")
    assert product is not None
    assert product.references == ("products", "id")
    assert product.not_null
    email = shop.table("customers").column("email")  # type: ignore[union-attr]
    assert email is not None
    assert email.unique
    assert shop.to_ddl() == sample_ddl("sqlite")
    assert shop.to_ddl(["products"]).startswith("CREATE TABLE products (\n  id INTEGER PRIMARY KEY")


def test_to_ddl_quotes_awkward_names_and_composite_keys() -> None:
    schema = SchemaInfo.from_ddl(
        'CREATE TABLE "order" ("group" TEXT, a INTEGER, b INTEGER, PRIMARY KEY (a, b))',
        "postgres",
    )
    ddl = schema.to_ddl()
    assert 'CREATE TABLE "order" (' in ddl
    assert '"group" TEXT' in ddl
    assert "PRIMARY KEY (a, b)" in ddl


def test_from_ddl_rejects_anything_but_create_table() -> None:
    with pytest.raises(ConfigError, match="only CREATE TABLE"):
        SchemaInfo.from_ddl("CREATE TABLE t (a INTEGER); DROP TABLE t")
    with pytest.raises(ConfigError, match="only CREATE TABLE"):
        SchemaInfo.from_ddl("CREATE TABLE t AS SELECT 1 AS a")


def test_to_ddl_of_an_unknown_table_is_a_config_error(shop: SchemaInfo) -> None:
    with pytest.raises(ConfigError, match="invoices"):
        shop.to_ddl(["invoices"])


def test_relevant_picks_tables_by_word_overlap(shop: SchemaInfo) -> None:
    picked = shop.relevant("What is the average price of products per category?", 1)
    assert picked.table_names == ("products",)
    picked = shop.relevant("How many customers live in each city?", 2)
    assert picked.table_names[0] == "customers"


def test_relevant_adds_a_linking_table_when_there_is_room() -> None:
    schema = SchemaInfo.from_ddl(
        "CREATE TABLE students (id INTEGER PRIMARY KEY, name TEXT);"
        "CREATE TABLE rooms (id INTEGER PRIMARY KEY, building TEXT);"
        "CREATE TABLE courses (id INTEGER PRIMARY KEY, title TEXT);"
        "CREATE TABLE registrations (id INTEGER PRIMARY KEY, "
        "learner INTEGER REFERENCES students(id), class INTEGER REFERENCES courses(id))"
    )
    question = "Which students take the course Algebra?"
    # registrations shares no word with the question, but it is how students reach courses.
    assert schema.relevant(question, 2).table_names == ("students", "courses")
    assert schema.relevant(question, 3).table_names == ("students", "courses", "registrations")
    assert schema.relevant(question, 4).table_names == ("students", "courses", "registrations")


def test_relevant_without_any_match_keeps_the_first_tables(shop: SchemaInfo) -> None:
    assert shop.relevant("zzz qqq", 2).table_names == ("customers", "products")


def test_relevant_can_narrow_wide_tables(shop: SchemaInfo) -> None:
    picked = shop.relevant("Which city has the most customers?", 1, max_columns=3)
    table = picked.tables[0]
    assert table.name == "customers"
    assert table.column_names == ("id", "name", "city")


# --- handles and result comparison ---------------------------------------------------------


def test_database_handles_validate_and_hide_passwords(tmp_path: object) -> None:
    db = Database.from_url("postgresql://reader:s3cret@db.example/analytics")
    assert db.dialect == "postgres"
    assert db.namespace == "public"
    assert "s3cret" not in repr(db)
    assert Database.from_url("sqlite:///tmp/shop.db").path is not None
    assert Database.from_url("duckdb:///tmp/shop.duckdb").dialect == "duckdb"
    with pytest.raises(ConfigError, match="unsupported database URL"):
        Database.from_url("mysql://x@y/z")
    with pytest.raises(ConfigError, match="needs a file path"):
        Database(dialect="sqlite")


def test_postgres_url_options_are_read_and_not_sent_to_the_server() -> None:
    url = "postgresql://app:pw@db.example:5432/shop?sslmode=require"
    db = Database.from_url(f"{url}&role=reader&schema=sales&allow_privileged=true")
    assert db.url == url  # libpq would refuse the unknown parameters
    assert (db.role, db.namespace, db.allow_privileged) == ("reader", "sales", True)
    assert "allow_privileged=True" in repr(db)
    assert "pw" not in repr(db)
    plain = Database.from_url("postgresql://app@db.example/shop")
    assert (plain.role, plain.namespace, plain.allow_privileged) == (None, "public", False)
    assert plain == Database.postgres("postgresql://app@db.example/shop?allow_privileged=0")
    explicit = Database.postgres(
        f"{url}&role=reader", role="other", schema="s", allow_privileged=True
    )
    assert (explicit.role, explicit.namespace, explicit.allow_privileged) == ("other", "s", True)
    with pytest.raises(ConfigError, match=r"allow_privileged='maybe' is not a boolean"):
        Database.from_url("postgresql://app@db.example/shop?allow_privileged=maybe")


def test_read_only_role_sql_quotes_names_and_grants_only_reads() -> None:
    statements = read_only_role_sql("Reader", database="my-db", schema="public", password="it's")
    assert statements == (
        "CREATE ROLE \"Reader\" LOGIN PASSWORD 'it''s'",
        'GRANT CONNECT ON DATABASE "my-db" TO "Reader"',
        'GRANT USAGE ON SCHEMA public TO "Reader"',
        'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "Reader"',
        'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO "Reader"',
    )
    assert read_only_role_sql("r", database="d")[0] == "CREATE ROLE r LOGIN"


def result(rows: list[tuple[object, ...]], columns: tuple[str, ...] = ("a", "b")) -> QueryResult:
    return QueryResult(columns=columns, rows=tuple(rows), truncated=False, elapsed_s=0.0, sql="")


def test_results_match_ignores_names_order_and_number_spelling() -> None:
    gold = result([(1, "x"), (2, "y")])
    assert results_match(gold, result([(2.0, "y"), (Decimal("1.000"), "x")], ("n", "m")),
                         ordered=False)  # fmt: skip
    assert results_match(gold, result([("y", 2), ("x", 1)]), ordered=False)  # columns swapped
    assert not results_match(gold, result([(2, "y"), (1, "x")]), ordered=True)
    assert not results_match(gold, result([(1, "x")]), ordered=False)
    assert not results_match(gold, result([(1, "x"), (2, "z")]), ordered=False)
    assert not results_match(gold, result([(1, "x", 0), (2, "y", 0)]), ordered=False)


def test_results_match_normalises_floats_and_dates() -> None:
    gold = result([(0.1 + 0.2, "2024-01-05")])
    assert results_match(gold, result([(0.3, date(2024, 1, 5))]), ordered=True)
    assert not results_match(gold, result([(0.31, date(2024, 1, 5))]), ordered=True)
    assert results_match(result([]), result([], ("x",)), ordered=False)


def test_a_construct_the_dialect_cannot_express_is_refused_with_the_reason(
    shop: SchemaInfo,
) -> None:
    # sqlglot used to log "DATEDIFF unsupported for '100'." to stderr and write SQLite SQL
    # that dropped the argument; the model gets the reason in its repair turn instead.
    why = rejected("SELECT DATEDIFF(order_date, order_date, 100) FROM orders", shop)
    assert "cannot write the query as sqlite SQL" in why and "DATEDIFF unsupported" in why
