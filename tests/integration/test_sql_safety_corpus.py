"""Hostile and invalid SQL against real SQLite, DuckDB and PostgreSQL: refused or stopped, no harm.

Every statement of the corpus goes through `execute_readonly` (the one door generated SQL
takes) on the sample shop in each database. Each must be refused (`UnsafeSQLError`) or stopped
(`SQLTimeoutError` / `SQLExecutionError`) with a message that names the problem, and afterwards
each database must be exactly as before: a checksum over the table list and every table's rows,
the database files' bytes, and no file written anywhere the statements point at. The writes
are also sent past the checker (`execute_unchecked`) to show the read-only connection alone
refuses them.

PostgreSQL runs at 127.0.0.1:5432 (database `test`); the shop is loaded into a schema of its
own and dropped afterwards. Override the URL with BRICKWORK_TEST_POSTGRES_URL. The statements
run as a read-only login role (`read_only_role_sql`), as agent SQL must: brickwork refuses the
URL's superuser, whose read-only transaction would still read and write the server's files.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import pytest

from brickwork.errors import SQLError, SQLExecutionError, SQLTimeoutError, UnsafeSQLError
from brickwork.tools.sample_db import create_sample_db, create_sample_duckdb, load_sample_postgres
from brickwork.tools.sql import Database, SchemaInfo
from brickwork.tools.sql_exec import execute_readonly, execute_unchecked, read_only_role_sql

PG_URL = os.environ.get("BRICKWORK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
DIALECTS = ["sqlite", "duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
TIMEOUT_S = 1.0
#: Generous: a slow query must be cut at about TIMEOUT_S, on a busy machine too.
STOPPED_WITHIN_S = 15.0

Kind = Literal["write", "stacked", "admin", "unknown", "function", "slow", "invalid"]


@dataclass(frozen=True)
class Case:
    """One hostile statement and the pattern its error message must match."""

    id: str
    kind: Kind
    sql: str
    reason: str


def refused(keyword: str) -> str:
    """The statement is refused as not a read-only query (or not SQL), and is named."""
    because = r"only read-only SELECT|is not allowed|cannot parse the SQL"
    return rf"(?is)^(?=.*(?:{because}))(?=.*{re.escape(keyword)})"


def stacked(count: int) -> str:
    return rf"expected exactly one statement, found {count} \("


def function(name: str) -> str:
    return rf"function {re.escape(name)}\(\) is not allowed \(file, network, settings"


UNKNOWN_TABLE = r"unknown table '[^']+'; the tables are: customers, products, orders, order_items"
OUTSIDE = r"is outside the database's schema '\w+'; use the unqualified table name"
SLOW = rf"ran longer than {TIMEOUT_S:g}s and was cancelled"


def write(id: str, sql: str, keyword: str) -> Case:
    return Case(id, "write", sql, refused(keyword))


CORPUS: tuple[Case, ...] = (
    # --- writes, in every spelling the dialects know ---------------------------------------
    write("insert", "INSERT INTO customers (id, name) VALUES (9999, 'Mallory')", "INSERT"),
    write("insert-select", "INSERT INTO orders SELECT * FROM orders", "INSERT"),
    write("update", "UPDATE orders SET status = 'refunded'", "UPDATE"),
    write("update-returning", "UPDATE customers SET email = NULL WHERE id = 1 RETURNING *",
          "UPDATE"),
    write("delete", "DELETE FROM order_items", "DELETE"),
    write("drop-table", "DROP TABLE customers", "DROP"),
    write("create-table", "CREATE TABLE bw_pwned (a INTEGER)", "CREATE"),
    write("create-table-as", "CREATE TABLE bw_pwned AS SELECT * FROM customers", "CREATE"),
    write("create-view", "CREATE VIEW bw_pwned AS SELECT 1 AS a", "CREATE"),
    write("create-index", "CREATE INDEX bw_pwned ON customers (email)", "CREATE"),
    write("alter-add-column", "ALTER TABLE customers ADD COLUMN bw_pwned TEXT", "ALTER"),
    write("alter-rename", "ALTER TABLE customers RENAME TO bw_pwned", "ALTER"),
    write("truncate", "TRUNCATE TABLE orders", "TRUNCATE"),
    write("replace", "REPLACE INTO customers (id, name) VALUES (1, 'Mallory')", "REPLACE"),
    write("merge", "MERGE INTO customers c USING orders o ON c.id = o.customer_id "
          "WHEN MATCHED THEN DELETE", "MERGE"),
    write("grant", "GRANT ALL ON customers TO PUBLIC", "GRANT"),
    write("revoke", "REVOKE SELECT ON customers FROM PUBLIC", "REVOKE"),
    write("delete-in-cte", "WITH gone AS (DELETE FROM orders RETURNING id) "
          "SELECT COUNT(*) FROM gone", "DELETE"),
    write("select-into", "SELECT * INTO bw_pwned FROM customers", "INTO"),
    # --- a second statement smuggled behind a first, comments and quotes ------------------
    Case("stacked-drop", "stacked", "SELECT 1; DROP TABLE customers", stacked(2)),
    Case("stacked-delete", "stacked", "SELECT * FROM customers; DELETE FROM orders", stacked(2)),
    Case("stacked-commit-write", "stacked",
         "SELECT 1; COMMIT; SET TRANSACTION READ WRITE; DELETE FROM order_items", stacked(4)),
    Case("stacked-three", "stacked", "SELECT 'a'; DELETE FROM orders; SELECT 'b'", stacked(3)),
    Case("line-comment-then-drop", "stacked", "SELECT 1 --\n; DROP TABLE customers", stacked(2)),
    Case("block-comment-then-drop", "stacked", "SELECT 1 /* */; DROP TABLE customers",
         stacked(2)),
    Case("semicolon-hidden-in-comment", "stacked",
         "SELECT /* ; DROP TABLE customers; */ name FROM customers; DROP TABLE orders",
         stacked(2)),
    Case("comment-hides-newline", "stacked",
         "SELECT name FROM customers -- ; harmless\nWHERE id = 1; UPDATE customers SET name = 'x'",
         stacked(2)),
    Case("select-in-comment", "write", "/* SELECT * FROM customers */ DELETE FROM orders",
         refused("DELETE")),
    Case("quote-closed-early", "stacked",
         "SELECT name FROM customers WHERE name = 'x' OR 1=1; DROP TABLE customers; --'",
         stacked(2)),
    Case("doubled-quote-then-drop", "stacked",
         "SELECT name FROM customers WHERE name = 'O''Brien'; DROP TABLE customers", stacked(2)),
    Case("escape-string-then-drop", "stacked", "SELECT E'\\''; DROP TABLE customers; --'",
         rf"{stacked(2)}|column 'E' does not exist"),  # E'' is not SQLite syntax
    Case("backquoted-then-drop", "stacked", "SELECT `name` FROM `customers`; DROP TABLE orders",
         rf"{stacked(2)}|cannot parse the SQL"),
    Case("semicolon-in-column-name", "unknown",
         'SELECT "name; DROP TABLE customers" FROM customers',
         r"column 'name; DROP TABLE customers' does not exist in any table in scope"),
    Case("semicolon-in-table-name", "unknown", 'SELECT * FROM "customers; DROP TABLE orders"',
         r"unknown table 'customers; DROP TABLE orders'"),
    Case("quote-in-column-name", "unknown",
         'SELECT "id"" FROM customers; DROP TABLE orders; --" FROM customers',
         r"column 'id\" FROM customers; DROP TABLE orders; --' does not exist"),
    Case("fullwidth-semicolon", "invalid", "SELECT * FROM customers\uff1bDROP TABLE orders",
         r"cannot parse the SQL as \w+"),
    Case("only-a-comment", "invalid", "-- DROP TABLE customers", stacked(0)),
    # --- sessions, settings, files and extensions -----------------------------------------
    Case("attach", "admin", "ATTACH DATABASE '{scratch}/bw_pwned.db' AS pwned", refused("ATTACH")),
    Case("detach", "admin", "DETACH DATABASE main", refused("DETACH")),
    Case("pragma-query-only", "admin", "PRAGMA query_only = OFF", refused("PRAGMA")),
    Case("pragma-writable-schema", "admin", "PRAGMA writable_schema = ON", refused("PRAGMA")),
    Case("vacuum", "admin", "VACUUM", refused("VACUUM")),
    Case("vacuum-into", "admin", "VACUUM INTO '{scratch}/bw_copy.db'", refused("VACUUM")),
    Case("copy-to-file", "admin", "COPY customers TO '{scratch}/bw_out.csv'", refused("COPY")),
    Case("copy-from-file", "admin", "COPY customers FROM '{scratch}/bw_in.csv'", refused("COPY")),
    Case("copy-to-program", "admin", "COPY (SELECT 1) TO PROGRAM 'touch {scratch}/bw_program'",
         refused("COPY")),
    Case("export-database", "admin", "EXPORT DATABASE '{scratch}/bw_export'", refused("EXPORT")),
    Case("load-extension", "admin", "LOAD httpfs", refused("LOAD")),
    Case("install-extension", "admin", "INSTALL httpfs", refused("INSTALL")),
    Case("set-timeout", "admin", "SET statement_timeout = 0", refused("SET")),
    Case("set-read-write", "admin", "SET default_transaction_read_only = off", refused("SET")),
    Case("reset-all", "admin", "RESET ALL", refused("RESET")),
    Case("call", "admin", "CALL pragma_version()", refused("CALL")),
    Case("begin", "admin", "BEGIN", refused("BEGIN")),
    Case("commit", "admin", "COMMIT", refused("COMMIT")),
    Case("rollback", "admin", "ROLLBACK", refused("ROLLBACK")),
    Case("checkpoint", "admin", "CHECKPOINT", refused("CHECKPOINT")),
    Case("select-for-update", "admin", "SELECT * FROM customers FOR UPDATE",
         refused("FOR UPDATE")),
    Case("lock-table", "admin", "LOCK TABLE customers IN ACCESS EXCLUSIVE MODE", refused("LOCK")),
    Case("listen", "admin", "LISTEN bw_channel", refused("LISTEN")),
    Case("prepare", "admin", "PREPARE bw_plan AS SELECT 1", refused("PREPARE")),
    Case("explain-analyze-delete", "admin", "EXPLAIN ANALYZE DELETE FROM orders",
         refused("EXPLAIN")),
    Case("do-block", "admin", "DO $$ BEGIN DELETE FROM orders; END $$", refused("DO")),
    # --- tables and columns that are not the schema's -------------------------------------
    Case("unknown-table", "unknown", "SELECT * FROM secrets", UNKNOWN_TABLE),
    Case("unknown-table-in-join", "unknown",
         "SELECT * FROM customers c JOIN secrets s ON s.id = c.id", UNKNOWN_TABLE),
    Case("unknown-column", "unknown", "SELECT password FROM customers",
         r"column 'password' does not exist in any table in scope \(customers\)"),
    Case("unknown-qualified-column", "unknown", "SELECT c.password_hash FROM customers AS c",
         r"column 'password_hash' does not exist in 'customers'; its columns are: city"),
    Case("sqlite-master", "unknown", "SELECT * FROM sqlite_master", UNKNOWN_TABLE),
    Case("union-with-catalog", "unknown",
         "SELECT name FROM customers UNION SELECT passwd FROM pg_shadow", UNKNOWN_TABLE),
    Case("information-schema", "unknown", "SELECT * FROM information_schema.tables", OUTSIDE),
    Case("pg-shadow", "unknown", "SELECT usename, passwd FROM pg_catalog.pg_shadow", OUTSIDE),
    Case("other-database", "unknown", "SELECT * FROM other_db.customers", OUTSIDE),
    # --- functions that read files, run SQL text, change settings or sleep ----------------
    Case("read-csv", "function", "SELECT * FROM read_csv('/etc/passwd')", function("read_csv")),
    Case("read-csv-in-subquery", "function",
         "SELECT name FROM customers WHERE id = (SELECT id FROM read_csv('/etc/passwd') LIMIT 1)",
         function("read_csv")),
    Case("read-text", "function", "SELECT read_text('/etc/passwd')", function("read_text")),
    Case("read-parquet", "function", "SELECT * FROM read_parquet('{scratch}/x.parquet')",
         function("read_parquet")),
    Case("readfile", "function", "SELECT readfile('/etc/passwd')", function("readfile")),
    Case("writefile", "function", "SELECT writefile('{scratch}/bw_written', 'x')",
         function("writefile")),
    Case("load-extension-function", "function", "SELECT load_extension('/tmp/evil.so')",
         function("load_extension")),
    Case("pg-read-file", "function", "SELECT pg_read_file('/etc/passwd')",
         function("pg_read_file")),
    Case("pg-read-binary-file", "function", "SELECT pg_read_binary_file('/etc/passwd')",
         function("pg_read_binary_file")),
    Case("pg-ls-dir", "function", "SELECT * FROM pg_ls_dir('.')", function("pg_ls_dir")),
    Case("lo-import", "function", "SELECT lo_import('/etc/passwd')", function("lo_import")),
    Case("lo-export", "function", "SELECT lo_export(1, '{scratch}/bw_lo')", function("lo_export")),
    Case("glob", "function", "SELECT * FROM glob('/etc/*')",
         rf"{function('glob')}|cannot parse the SQL"),  # GLOB is an operator in most dialects
    Case("query-text", "function", "SELECT * FROM query('DELETE FROM orders')", function("query")),
    Case("getenv", "function", "SELECT getenv('HOME')", function("getenv")),
    Case("current-setting", "function", "SELECT current_setting('data_directory')",
         function("current_setting")),
    Case("set-config", "function",
         "SELECT set_config('default_transaction_read_only', 'off', false)",
         function("set_config")),
    Case("nextval", "function", "SELECT nextval('bw_seq')", function("nextval")),
    Case("pg-sleep", "function", "SELECT pg_sleep(30)", function("pg_sleep")),
    Case("dblink", "function",
         "SELECT * FROM dblink('host=127.0.0.1', 'DELETE FROM orders') AS t(x int)",
         function("dblink")),
    # --- queries that would run for hours --------------------------------------------------
    Case("recursive-count-to-1e12", "slow",
         "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000000) "
         "SELECT COUNT(*) FROM c", SLOW),
    Case("four-way-cross-join", "slow",
         "SELECT COUNT(*) FROM order_items a, order_items b, order_items c, order_items d", SLOW),
    Case("correlated-cross-join", "slow",
         "SELECT (SELECT COUNT(*) FROM order_items x, order_items y, order_items z "
         "WHERE x.id * y.id - z.id = c.id + x.quantity) FROM customers c", SLOW),
)  # fmt: skip


# --- the databases and their fingerprints --------------------------------------------------


@dataclass
class Target:
    """A sample database, its schema, and what must not change."""

    db: Database
    schema: SchemaInfo
    checksum: Callable[[], str]
    files: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        self.baseline = self.checksum()
        self.folders = {f.parent: sorted(f.parent.iterdir()) for f in self.files}
        self.digests = {f: _file_digest(f) for f in self.files}

    def assert_unchanged(self) -> None:
        assert self.checksum() == self.baseline, f"{self.db!r} changed"
        for path, digest in self.digests.items():
            assert _file_digest(path) == digest, f"the bytes of {path} changed"
        for folder, listing in self.folders.items():
            assert sorted(folder.iterdir()) == listing, f"files appeared in {folder}"


def _digest(data: Any) -> str:
    return hashlib.sha256(repr(data).encode()).hexdigest()


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sorted_rows(rows: list[Any]) -> list[str]:
    return sorted(repr(tuple(row)) for row in rows)


def _sqlite_checksum(path: Path) -> Callable[[], str]:
    def checksum() -> str:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            objects = conn.execute(
                "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
            ).fetchall()
            data: list[Any] = [objects]
            for type_, name, _, _ in objects:
                if type_ == "table":
                    rows = conn.execute(f'SELECT * FROM "{name}"').fetchall()
                    data.append((name, _sorted_rows(rows)))
        finally:
            conn.close()
        return _digest(data)

    return checksum


def _duckdb_checksum(path: Path) -> Callable[[], str]:
    import duckdb

    def checksum() -> str:
        conn = duckdb.connect(str(path), read_only=True)
        try:
            tables = conn.execute(
                "SELECT schema_name, table_name, sql FROM duckdb_tables() ORDER BY ALL"
            ).fetchall()
            views = conn.execute(
                "SELECT schema_name, view_name, sql FROM duckdb_views() WHERE NOT internal "
                "ORDER BY ALL"
            ).fetchall()
            others = conn.execute(
                "SELECT 'index', index_name FROM duckdb_indexes() UNION ALL "
                "SELECT 'sequence', sequence_name FROM duckdb_sequences() UNION ALL "
                "SELECT 'database', database_name FROM duckdb_databases() ORDER BY ALL"
            ).fetchall()
            data: list[Any] = [tables, views, others]
            for schema, table, _ in tables:
                rows = conn.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall()
                data.append((table, _sorted_rows(rows)))
        finally:
            conn.close()
        return _digest(data)

    return checksum


def _postgres_checksum(schema: str) -> Callable[[], str]:
    import psycopg
    from psycopg import sql

    def checksum() -> str:
        with psycopg.connect(PG_URL) as conn:
            relations = conn.execute(
                "SELECT c.relname, c.relkind FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s ORDER BY 1",
                (schema,),
            ).fetchall()
            anywhere = conn.execute(
                "SELECT count(*) FROM pg_class WHERE relname LIKE 'bw\\_pwned%%'"
            ).fetchall()
            large_objects = conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchall()
            data: list[Any] = [relations, anywhere, large_objects]
            for name, kind in relations:
                if kind == "r":
                    query = sql.SQL("SELECT * FROM {}.{}").format(
                        sql.Identifier(schema), sql.Identifier(name)
                    )
                    data.append((name, _sorted_rows(conn.execute(query).fetchall())))
        return _digest(data)

    return checksum


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """Where the statements point file writes; world-writable, so a server could write it."""
    folder = Path(tempfile.mkdtemp(prefix="bw-corpus-"))
    folder.chmod(0o777)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def sqlite_target(tmp_path_factory: pytest.TempPathFactory) -> Target:
    path = create_sample_db(tmp_path_factory.mktemp("corpus-sqlite") / "shop.db")
    db = Database.sqlite(path)
    return Target(db, db.introspect(), _sqlite_checksum(path), (path,))


@pytest.fixture(scope="module")
def duckdb_target(tmp_path_factory: pytest.TempPathFactory) -> Target:
    path = create_sample_duckdb(tmp_path_factory.mktemp("corpus-duckdb") / "shop.duckdb")
    db = Database.duckdb(path)
    return Target(db, db.introspect(), _duckdb_checksum(path), (path,))


@pytest.fixture(scope="module")
def postgres_target() -> Iterator[Target]:
    """The shop as a read-only login role made with `read_only_role_sql`, never the superuser."""
    import psycopg
    from psycopg import sql

    schema = f"bw_corpus_{uuid.uuid4().hex[:12]}"
    role, password = f"bw_corpus_reader_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    parts = urlsplit(PG_URL)
    reader_url = urlunsplit(
        parts._replace(netloc=f"{role}:{password}@{parts.netloc.rpartition('@')[2]}")
    )
    try:
        load_sample_postgres(PG_URL, schema=schema)
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            database = conn.info.dbname
            for statement in read_only_role_sql(
                role, database=database, schema=schema, password=password
            ):
                conn.execute(statement.encode())
        db = Database.postgres(reader_url, schema=schema)
        yield Target(db, db.introspect(), _postgres_checksum(schema))
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture(params=DIALECTS)
def target(request: pytest.FixtureRequest) -> Target:
    return request.getfixturevalue(f"{request.param}_target")  # type: ignore[no-any-return]


# --- the tests -----------------------------------------------------------------------------


def test_corpus_covers_the_attack_surface() -> None:
    assert len(CORPUS) >= 40
    assert len({case.id for case in CORPUS}) == len(CORPUS)
    text = "\n".join(case.sql.upper() for case in CORPUS)
    for keyword in (
        "INSERT", "UPDATE", "DELETE", "DROP", "CREATE", "ALTER", "TRUNCATE", "REPLACE", "MERGE",
        "GRANT", "ATTACH", "DETACH", "PRAGMA", "VACUUM", "COPY", "LOAD", "INSTALL", "SET ",
        "CALL", "BEGIN", "COMMIT", " INTO ", "--", "/*", "READ_CSV", "READ_TEXT", "READFILE",
        "LOAD_EXTENSION", "PG_READ_FILE", "PG_LS_DIR", "LO_IMPORT", "RECURSIVE",
    ):  # fmt: skip
        assert keyword in text, keyword
    kinds = {case.kind for case in CORPUS}
    assert kinds == {"write", "stacked", "admin", "unknown", "function", "slow", "invalid"}


@pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.id)
def test_hostile_statement_is_refused_or_stopped(target: Target, case: Case, scratch: Path) -> None:
    sql = case.sql.replace("{scratch}", str(scratch))
    started = time.monotonic()
    with pytest.raises(SQLError) as info:
        execute_readonly(target.db, sql, schema=target.schema, timeout_s=TIMEOUT_S)
    elapsed = time.monotonic() - started
    assert isinstance(info.value, UnsafeSQLError | SQLTimeoutError | SQLExecutionError)
    message = str(info.value)
    assert message.strip(), "the error must say why"
    assert re.search(case.reason, message), f"{type(info.value).__name__}: {message!r}"
    if case.kind == "slow":
        assert isinstance(info.value, SQLTimeoutError)
    assert elapsed < STOPPED_WITHIN_S
    target.assert_unchanged()
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("case", [c for c in CORPUS if c.kind == "write"], ids=lambda case: case.id)
def test_the_read_only_connection_alone_refuses_every_write(target: Target, case: Case) -> None:
    # No check_sql: only the connection (read-only file / read-only transaction) stands between
    # the statement and the data.
    with pytest.raises(SQLExecutionError) as info:
        execute_unchecked(target.db, case.sql, timeout_s=5.0)
    assert str(info.value).startswith(f"{target.db.dialect} rejected the query: ")
    target.assert_unchanged()


def test_the_databases_still_answer_after_the_corpus(target: Target) -> None:
    result = execute_readonly(
        target.db, "SELECT COUNT(*) FROM order_items", schema=target.schema, timeout_s=5.0
    )
    assert result.rows[0][0] > 0
    target.assert_unchanged()


SERVER_FILE_CASES = (
    "copy-to-file", "copy-from-file", "copy-to-program", "pg-read-file", "pg-read-binary-file",
    "pg-ls-dir", "lo-import", "lo-export", "current-setting",
)  # fmt: skip


@pytest.mark.postgres
@pytest.mark.parametrize(
    "case", [c for c in CORPUS if c.id in SERVER_FILE_CASES], ids=lambda case: case.id
)
def test_the_read_only_role_alone_keeps_the_server_files_out_of_reach(
    postgres_target: Target, case: Case, scratch: Path
) -> None:
    # No check_sql: the role's own privileges and the read-only transaction refuse them.
    sql = case.sql.replace("{scratch}", str(scratch))
    with pytest.raises(SQLExecutionError, match=r"permission denied|must be superuser|read-only"):
        execute_unchecked(postgres_target.db, sql, timeout_s=5.0)
    postgres_target.assert_unchanged()
    assert list(scratch.iterdir()) == []
