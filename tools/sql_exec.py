"""Running queries on read-only connections, with row and time limits, and scoring them.

`execute_readonly` is the one door generated SQL goes through: `check_sql`, then `EXPLAIN`,
then execution on a connection the database itself keeps read-only (SQLite `mode=ro` +
`query_only` + an authorizer; DuckDB `read_only` with file access and extensions switched off;
PostgreSQL read-only transactions, an optional role, `statement_timeout`). Database errors
become `SQLExecutionError` carrying the database's own message (for the repair turn), time-outs
become `SQLTimeoutError`.

A read-only transaction does not stop a PostgreSQL superuser (or a member of
`pg_read_server_files` / `pg_write_server_files` / `pg_execute_server_program`) from reading
and writing the server's files (`COPY ... TO`, `pg_read_file`, `pg_ls_dir`), so a connection
whose session user or `SET ROLE` role is one raises `PrivilegedRoleError` (with the SQL of
`read_only_role_sql`) unless `Database.allow_privileged` is set. The session user counts even
with `role=`: a query can switch back to it with `set_config('role', 'none', false)`. With the
opt-in, statements that return no rows (`COPY ... TO`, `DO`, `SET`) are refused before they run;
file-reading functions inside a SELECT are then stopped only by `check_sql`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as dt_time
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from brickwork.errors import (
    ConfigError,
    MissingDependencyError,
    PrivilegedRoleError,
    SQLError,
    SQLExecutionError,
    SQLTimeoutError,
)
from brickwork.tools.sql import (
    ColumnInfo,
    Database,
    Dialect,
    SchemaInfo,
    TableInfo,
    _redact,
    quote_name,
)
from brickwork.tools.sql_safety import DENIED_FUNCTIONS, check_sql

__all__ = [
    "QueryResult",
    "aexecute_readonly",
    "execute_readonly",
    "execute_unchecked",
    "execution_match",
    "introspect",
    "read_only_role_sql",
    "results_match",
]

_log = logging.getLogger(__name__)
_INTROSPECT_TIMEOUT_S = 10.0
_MAX_PERMUTED_COLUMNS = 8


@dataclass(frozen=True)
class QueryResult:
    """What a query returned.

    Attributes:
        columns: The result's column names.
        rows: At most `max_rows` rows, as tuples of Python values.
        truncated: True when the query had more than `max_rows` rows.
        elapsed_s: Wall time of the execution and fetch, in seconds.
        sql: The SQL text that ran (normalised, with the row limit applied).
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: bool
    elapsed_s: float
    sql: str


def introspect(db: Database) -> SchemaInfo:
    """The tables, columns and keys of `db`, read over a read-only connection."""
    with _connect(db, _INTROSPECT_TIMEOUT_S) as conn:
        return _introspect_with(conn, db)


def execute_readonly(
    db: Database,
    sql: str,
    *,
    schema: SchemaInfo | None = None,
    max_rows: int = 1000,
    timeout_s: float = 5.0,
    read: Dialect | None = None,
) -> QueryResult:
    """Check, EXPLAIN and run one generated query on a read-only connection.

    Args:
        db: The database.
        sql: The query, as the model wrote it.
        schema: The schema to check against (default: introspected on the same connection).
        max_rows: Return at most this many rows; `truncated` says whether there were more.
        timeout_s: Cancel the query after this many seconds.
        read: The dialect `sql` is written in, when it is not `db.dialect`.

    Returns:
        The columns, rows and timing.

    Raises:
        UnsafeSQLError: `check_sql` rejected the query.
        SQLExecutionError: The database refused it (its message is kept).
        SQLTimeoutError: It ran past `timeout_s`.
    """
    _check_limits(max_rows, timeout_s)
    if schema is not None:
        checked = check_sql(sql, schema, db.dialect, read=read)
    with _connect(db, timeout_s) as conn:
        if schema is None:
            checked = check_sql(sql, _introspect_with(conn, db), db.dialect, read=read)
        text = _limited(checked.sql, db.dialect, max_rows + 1)
        conn.query(conn.explain_prefix + text, None)
        return _run(conn, text, max_rows)


async def aexecute_readonly(
    db: Database,
    sql: str,
    *,
    schema: SchemaInfo | None = None,
    max_rows: int = 1000,
    timeout_s: float = 5.0,
    read: Dialect | None = None,
) -> QueryResult:
    """`execute_readonly` in a worker thread, for use from asyncio code."""
    return await asyncio.to_thread(
        execute_readonly,
        db,
        sql,
        schema=schema,
        max_rows=max_rows,
        timeout_s=timeout_s,
        read=read,
    )


def execute_unchecked(
    db: Database, sql: str, *, max_rows: int = 1000, timeout_s: float = 5.0
) -> QueryResult:
    """Run `sql` as given on a read-only connection, without `check_sql` or EXPLAIN.

    For trusted SQL only (gold queries in evaluation, tests of the read-only connection).
    The connection still refuses writes and the time limit still applies.
    """
    _check_limits(max_rows, timeout_s)
    with _connect(db, timeout_s) as conn:
        return _run(conn, sql, max_rows)


def execution_match(
    db: Database,
    gold_sql: str,
    predicted_sql: str,
    *,
    schema: SchemaInfo | None = None,
    timeout_s: float = 5.0,
    max_rows: int = 10_000,
    read: Dialect | None = None,
) -> bool:
    """Whether the predicted query returns the gold query's result on `db`.

    The gold query runs unchecked (it is trusted) and the prediction through
    `execute_readonly`; a prediction that is rejected, fails or times out does not match.
    Rows compare as multisets unless the gold query ends in ORDER BY; column names are
    ignored and columns may come in another order.

    Raises:
        SQLError: The gold query itself failed (a data problem, not a wrong prediction).
    """
    gold = execute_unchecked(db, gold_sql, max_rows=max_rows, timeout_s=timeout_s)
    try:
        predicted = execute_readonly(
            db, predicted_sql, schema=schema, max_rows=max_rows, timeout_s=timeout_s, read=read
        )
    except SQLError:
        return False
    return results_match(gold, predicted, ordered=_ordered(gold_sql, db.dialect))


def results_match(gold: QueryResult, predicted: QueryResult, *, ordered: bool) -> bool:
    """Whether two results hold the same rows (values normalised, column names ignored).

    Args:
        gold: The reference result.
        predicted: The result to score.
        ordered: Compare rows in order (the gold query has ORDER BY) instead of as multisets.
    """
    gold_rows = [tuple(_normalise(v) for v in row) for row in gold.rows]
    pred_rows = [tuple(_normalise(v) for v in row) for row in predicted.rows]
    if not gold_rows and not pred_rows:
        return True
    width = len(gold_rows[0]) if gold_rows else len(gold.columns)
    if len(pred_rows) != len(gold_rows) or any(len(r) != width for r in pred_rows):
        return False
    if _same(gold_rows, pred_rows, ordered):
        return True
    if width > _MAX_PERMUTED_COLUMNS:
        return False
    gold_cols = [Counter(row[i] for row in gold_rows) for i in range(width)]
    pred_cols = [Counter(row[j] for row in pred_rows) for j in range(width)]
    options = [[j for j in range(width) if pred_cols[j] == gold_cols[i]] for i in range(width)]
    for order in itertools.product(*options):
        if len(set(order)) == width:
            permuted = [tuple(row[j] for j in order) for row in pred_rows]
            if _same(gold_rows, permuted, ordered):
                return True
    return False


def read_only_role_sql(
    role: str, *, database: str, schema: str = "public", password: str | None = None
) -> tuple[str, ...]:
    """The statements that create a PostgreSQL login role which can only read `schema`.

    Run them as an administrator, then connect as `role` (the URL's user). This is the SQL
    `PrivilegedRoleError` shows.

    Args:
        role: The new role's name.
        database: The database it may connect to.
        schema: The schema whose tables it may read.
        password: Its password (no PASSWORD clause when None).
    """
    who, where = quote_name(role, "postgres"), quote_name(schema, "postgres")
    secret = f" PASSWORD {_literal(password)}" if password is not None else ""
    return (
        f"CREATE ROLE {who} LOGIN{secret}",
        f"GRANT CONNECT ON DATABASE {quote_name(database, 'postgres')} TO {who}",
        f"GRANT USAGE ON SCHEMA {where} TO {who}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {where} TO {who}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {where} GRANT SELECT ON TABLES TO {who}",
    )


def _check_limits(max_rows: int, timeout_s: float) -> None:
    if max_rows < 0 or not timeout_s > 0:
        raise ConfigError(
            f"max_rows must be >= 0 and timeout_s > 0, got max_rows={max_rows!r}, "
            f"timeout_s={timeout_s!r}"
        )


def _run(conn: _Connection, sql: str, max_rows: int) -> QueryResult:
    started = time.monotonic()
    columns, rows = conn.query(sql, max_rows + 1)
    return QueryResult(
        columns=columns,
        rows=tuple(tuple(row) for row in rows[:max_rows]),
        truncated=len(rows) > max_rows,
        elapsed_s=time.monotonic() - started,
        sql=sql,
    )


def _limited(sql: str, dialect: Dialect, limit: int) -> str:
    """`sql` with a LIMIT of at most `limit`, so no server sends more rows than we keep."""
    try:
        query = sqlglot.parse_one(sql, read=dialect)
    except SqlglotError:
        return sql
    current = query.args.get("limit")
    if isinstance(query, exp.Select | exp.SetOperation) and current is None:
        return query.limit(limit).sql(dialect=dialect)
    if isinstance(current, exp.Limit) and isinstance(current.expression, exp.Literal):
        value = current.expression
        if value.is_int and int(value.name) > limit:
            current.set("expression", exp.Literal.number(limit))
        return query.sql(dialect=dialect)
    return f"SELECT * FROM ({sql}) AS _brickwork_limited LIMIT {limit}"


def _ordered(sql: str, dialect: Dialect) -> bool:
    try:
        query = sqlglot.parse_one(sql, read=dialect)
    except SqlglotError:
        return False
    return query.args.get("order") is not None


def _same(gold: Sequence[tuple[Any, ...]], pred: Sequence[tuple[Any, ...]], ordered: bool) -> bool:
    return list(gold) == list(pred) if ordered else Counter(gold) == Counter(pred)


def _normalise(value: Any) -> Any:
    """One spelling per value: numbers as rounded floats, dates as ISO text, bytes as bytes."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float | Decimal):
        number = float(value)
        if math.isnan(number) or math.isinf(number):
            return str(number)
        return float(f"{number:.9g}") + 0.0
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | dt_time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value)


# --- connections -------------------------------------------------------------------------

_Rows = list[tuple[Any, ...]]


class _Connection(ABC):
    """A read-only connection with a deadline; `query` maps errors to brickwork's."""

    explain_prefix = "EXPLAIN "

    def __init__(self, dialect: Dialect, timeout_s: float) -> None:
        self.dialect = dialect
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s

    @abstractmethod
    def query(self, sql: str, limit: int | None) -> tuple[tuple[str, ...], _Rows]:
        """Run one statement and fetch up to `limit` rows (all when None)."""

    def close(self) -> None:  # noqa: B027 - connections without resources need no close
        """Close the connection (never commits)."""

    def _timeout(self) -> SQLTimeoutError:
        return SQLTimeoutError(
            f"the query ran longer than {self.timeout_s:g}s and was cancelled; "
            "make it cheaper (filter earlier, fewer joins, aggregate before joining)"
        )

    def _failed(self, error: Exception) -> SQLExecutionError:
        return SQLExecutionError(f"{self.dialect} rejected the query: {str(error).strip()}")


@contextlib.contextmanager
def _connect(db: Database, timeout_s: float) -> Iterator[_Connection]:
    conn: _Connection
    if db.dialect == "sqlite":
        conn = _SQLite(db, timeout_s)
    elif db.dialect == "duckdb":
        conn = _DuckDB(db, timeout_s)
    else:
        conn = _Postgres(db, timeout_s)
    try:
        yield conn
    finally:
        conn.close()


def _existing_file(db: Database) -> Path:
    assert db.path is not None
    if not db.path.is_file():
        raise ConfigError(
            f"{db.dialect} database file {str(db.path)!r} does not exist; "
            "check the path (brickwork.tools.sample_db can create a sample database)"
        )
    return db.path.resolve()


_SQLITE_READ_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "foreign_key_list", "index_list", "index_info"}
)


def _sqlite_authorizer(
    action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None
) -> int:
    # Second layer under check_sql: the engine itself refuses these whatever the SQL says.
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() not in _SQLITE_READ_PRAGMAS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


class _SQLite(_Connection):
    explain_prefix = "EXPLAIN QUERY PLAN "

    def __init__(self, db: Database, timeout_s: float) -> None:
        super().__init__("sqlite", timeout_s)
        uri = _existing_file(db).as_uri() + "?mode=ro"
        self._timed_out = False
        try:
            self._conn = sqlite3.connect(
                uri, uri=True, timeout=timeout_s, check_same_thread=False, isolation_level=None
            )
        except sqlite3.Error as error:
            raise self._failed(error) from error
        self._conn.execute("PRAGMA query_only = ON")
        self._conn.set_authorizer(_sqlite_authorizer)
        self._conn.set_progress_handler(self._progress, 1000)

    def _progress(self) -> int:
        if time.monotonic() > self.deadline:
            self._timed_out = True
            return 1  # non-zero interrupts the running statement
        return 0

    def query(self, sql: str, limit: int | None) -> tuple[tuple[str, ...], _Rows]:
        try:
            cursor = self._conn.execute(sql)
            rows = cursor.fetchall() if limit is None else cursor.fetchmany(limit)
            columns = tuple(d[0] for d in cursor.description or ())
            cursor.close()
        except sqlite3.Error as error:
            raise (self._timeout() if self._timed_out else self._failed(error)) from error
        return columns, rows

    def close(self) -> None:
        self._conn.close()


_DUCKDB_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "python_enable_replacements": False,
    "lock_configuration": True,
}


class _DuckDB(_Connection):
    def __init__(self, db: Database, timeout_s: float) -> None:
        super().__init__("duckdb", timeout_s)
        try:
            import duckdb
        except ImportError as error:
            raise MissingDependencyError("duckdb", "duckdb", "DuckDB databases") from error
        self._errors: type[Exception] = duckdb.Error
        path = _existing_file(db)
        try:
            self._conn = duckdb.connect(str(path), read_only=True, config=dict(_DUCKDB_CONFIG))
        except duckdb.Error as error:
            raise self._failed(error) from error
        self._timed_out = threading.Event()
        self._timer = threading.Timer(timeout_s, self._interrupt)
        self._timer.daemon = True
        self._timer.start()

    def _interrupt(self) -> None:
        self._timed_out.set()
        with contextlib.suppress(Exception):  # the connection may already be closed
            self._conn.interrupt()

    def query(self, sql: str, limit: int | None) -> tuple[tuple[str, ...], _Rows]:
        if self._timed_out.is_set():
            raise self._timeout()
        try:
            if len(self._conn.extract_statements(sql)) != 1:  # execute() would run them all
                raise SQLExecutionError("duckdb runs one statement per call; send exactly one")
            self._conn.execute(sql)
            columns = tuple(d[0] for d in self._conn.description or ())
            rows = self._conn.fetchall() if limit is None else self._conn.fetchmany(limit)
        except self._errors as error:
            raise (self._timeout() if self._timed_out.is_set() else self._failed(error)) from error
        return columns, [tuple(row) for row in rows]

    def close(self) -> None:
        self._timer.cancel()
        self._conn.close()


class _Postgres(_Connection):
    def __init__(self, db: Database, timeout_s: float) -> None:
        super().__init__("postgres", timeout_s)
        try:
            import psycopg
            from psycopg import sql as pgsql
        except ImportError as error:
            raise MissingDependencyError("psycopg", "postgres", "PostgreSQL databases") from error
        self._psycopg = psycopg
        self._sql = pgsql
        assert db.url is not None
        try:
            self._conn = psycopg.connect(
                db.url, autocommit=True, connect_timeout=max(2, math.ceil(timeout_s))
            )
        except psycopg.Error as error:
            raise SQLExecutionError(
                f"cannot connect to {_redact(db.url)!r}: {str(error).strip()}"
            ) from error
        try:
            if db.role:
                self._conn.execute(pgsql.SQL("SET ROLE {}").format(pgsql.Identifier(db.role)))
            self._conn.execute(
                pgsql.SQL("SET search_path TO {}, pg_catalog").format(
                    pgsql.Identifier(db.namespace)
                )
            )
            self._conn.execute("SET default_transaction_read_only = on")
            roles = self._conn.execute(_PRIVILEGES).fetchall()
            privileged = [row for row in roles if row[2] or row[3]]
            self._conn.autocommit = False
            self._conn.read_only = True  # every transaction starts as BEGIN READ ONLY
        except psycopg.Error as error:
            self._conn.close()
            raise self._failed(error) from error
        #: With the opt-in on a privileged role: refuse statements that return no rows.
        self._rows_only = bool(privileged)
        if privileged:
            try:
                _allow_privileged(db, privileged, self._conn.info.dbname)
            except PrivilegedRoleError:
                self._conn.close()
                raise

    def query(self, sql: str, limit: int | None) -> tuple[tuple[str, ...], _Rows]:
        pgsql = self._sql
        remaining_ms = math.floor((self.deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            raise self._timeout()
        try:
            with self._conn.cursor() as cursor:
                cursor.execute(
                    pgsql.SQL("SET LOCAL statement_timeout = {}").format(
                        pgsql.Literal(remaining_ms)
                    )
                )
                if self._rows_only:
                    self._require_rows(sql)
                # A prepared statement holds exactly one command: no '; COMMIT; ...' tails.
                cursor.execute(sql, prepare=True)
                if cursor.description is None:
                    return (), []
                columns = tuple(d.name for d in cursor.description)
                rows = cursor.fetchall() if limit is None else cursor.fetchmany(limit)
        except self._psycopg.errors.QueryCanceled as error:
            raise self._timeout() from error
        except self._psycopg.Error as error:
            raise self._failed(error) from error
        return columns, [tuple(row) for row in rows]

    def _require_rows(self, sql: str) -> None:
        """Parse and describe `sql` without running it; refuse it when it returns no rows.

        On a privileged connection `COPY ... TO 'file'` or `TO PROGRAM` would write or run
        something on the server before any error reached us; such statements return no rows.
        """
        pgconn = self._conn.pgconn
        status = self._psycopg.pq.ExecStatus
        encoding = self._conn.info.encoding
        parsed = pgconn.prepare(b"", sql.encode(encoding))
        described = pgconn.describe_prepared(b"") if parsed.status == status.COMMAND_OK else parsed
        if described.status != status.COMMAND_OK:
            raise self._failed(self._psycopg.errors.error_from_result(described, encoding))
        if described.nfields == 0:
            raise SQLExecutionError(
                "postgres rejected the query: it returns no rows; on a privileged connection "
                "(allow_privileged=True) only queries that return rows run "
                "(COPY ... TO, DO, SET and writes are refused before they run)"
            )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.rollback()
        self._conn.close()


#: The session user and the current (SET ROLE) user: (which, name, the superuser role it is or
#: belongs to, the server-file roles it belongs to). pg_has_role(..., 'MEMBER') follows grants
#: transitively, with or without INHERIT (a member can always SET ROLE to them).
_PRIVILEGES = """SELECT u.which, u.name,
    CASE WHEN (SELECT rolsuper FROM pg_roles WHERE rolname = u.name) THEN u.name
    ELSE (SELECT min(s.rolname::text) FROM pg_roles s
          WHERE s.rolsuper AND pg_has_role(u.name::name, s.oid, 'MEMBER')) END,
    ARRAY(SELECT g.rolname::text FROM pg_roles g
          WHERE g.rolname IN ('pg_read_server_files', 'pg_write_server_files',
                              'pg_execute_server_program')
            AND pg_has_role(u.name::name, g.oid, 'MEMBER') ORDER BY 1)
FROM (VALUES (1, 'session', session_user::text), (2, 'current', current_user::text))
    AS u(n, which, name)
ORDER BY u.n"""
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _allow_privileged(db: Database, privileged: _Rows, dbname: str) -> None:
    """Raise `PrivilegedRoleError` for the first privileged role, or warn when opted in."""
    which, name, superuser, server_roles = privileged[0]
    if superuser == name:
        what = "a superuser"
    elif superuser:
        what = f"a member of the superuser role {superuser!r}"
    else:
        what = "a member of " + " and ".join(server_roles)
    assert db.url is not None
    if db.allow_privileged:
        with _warned_lock:
            fresh = (_redact(db.url), name) not in _warned
            _warned.add((_redact(db.url), name))
        if fresh:
            _log.warning(
                "running agent SQL on %s as PostgreSQL role %r, %s, because allow_privileged "
                "is set: only check_sql keeps generated SQL away from the server's files",
                _redact(db.url),
                name,
                what,
            )
        return
    reader = "brickwork_reader"
    grants = "\n".join(
        f"    {statement};"
        for statement in read_only_role_sql(
            reader,
            database=dbname,
            schema=db.namespace,
            password="<password>",  # noqa: S106 - a placeholder
        )
    )
    if which == "session" and db.role:
        who = f"the URL's user (SET ROLE {db.role!r} does not help: a query can switch back)"
    elif which == "session":
        who = "the URL's user"
    else:
        who = f"the role= given ({db.role!r})"
    raise PrivilegedRoleError(
        f"refusing to run agent SQL as PostgreSQL role {name!r}, {who}: it is {what}, so a "
        "query could read or write the server's files or run programs whatever the read-only "
        "transaction says. Create a read-only role as an administrator:\n"
        f"{grants}\n"
        f"then connect as it: put it in the URL ({_as_user(db.url, reader)!r}), or pass "
        f"role={reader!r} (Database.postgres(url, role=...) or ?role={reader} in the URL) "
        f"when the URL's user is itself unprivileged and a member of it (GRANT {reader} TO "
        "<user>). To run as this role anyway, pass allow_privileged=True (or "
        "?allow_privileged=true in the URL); a warning is logged.",
        role=name,
    )


def _as_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:<password>@{host}"))


# --- introspection ------------------------------------------------------------------------


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _introspect_with(conn: _Connection, db: Database) -> SchemaInfo:
    if db.dialect == "sqlite":
        tables = _sqlite_tables(conn)
    else:
        queries = _DUCKDB_CATALOG if db.dialect == "duckdb" else _POSTGRES_CATALOG
        ns = _literal(db.namespace)
        _, columns = conn.query(queries[0].format(ns=ns), None)
        _, keys = conn.query(queries[1].format(ns=ns), None)
        tables = _assemble(columns, keys)
    return SchemaInfo(dialect=db.dialect, tables=tables, namespace=db.namespace)


def _sqlite_tables(conn: _Connection) -> tuple[TableInfo, ...]:
    _, names = conn.query(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
        "AND name NOT LIKE 'sqlite!_%' ESCAPE '!' ORDER BY rowid",
        None,
    )
    columns: _Rows = []
    keys: _Rows = []
    for (table,) in names:
        quoted = '"' + table.replace('"', '""') + '"'
        _, info = conn.query(f"PRAGMA table_info({quoted})", None)
        columns += [(table, name, type_, notnull, pk) for _, name, type_, notnull, _, pk in info]
        keys += [(table, name, "p", None, None) for _, name, _, _, _, pk in info if pk]
        _, fks = conn.query(f"PRAGMA foreign_key_list({quoted})", None)
        keys += [(table, row[3], "f", row[2], row[4]) for row in fks]
        _, indexes = conn.query(f"PRAGMA index_list({quoted})", None)
        for index in indexes:
            if index[2] and index[3] == "u":
                _, parts = conn.query(f'PRAGMA index_info("{index[1]}")', None)
                if len(parts) == 1:
                    keys.append((table, parts[0][2], "u", None, None))
    return _assemble([(t, n, ty, nn) for t, n, ty, nn, _ in columns], keys)


def _assemble(columns: _Rows, keys: _Rows) -> tuple[TableInfo, ...]:
    """Tables from column rows and key rows.

    Column rows are `(table, column, type, not_null)`; key rows are
    `(table, column, kind, ref_table, ref_column)` with kind `p`, `f` or `u`.
    """
    primary = {(t, c) for t, c, kind, _, _ in keys if kind == "p"}
    unique = {(t, c) for t, c, kind, _, _ in keys if kind == "u"}
    refs = {(t, c): (rt, rc) for t, c, kind, rt, rc in keys if kind == "f"}
    by_table: dict[str, list[ColumnInfo]] = {}
    for table, name, type_, not_null in columns:
        ref = refs.get((table, name))
        by_table.setdefault(table, []).append(
            ColumnInfo(
                name=name,
                type=str(type_ or ""),
                not_null=bool(not_null) or (table, name) in primary,
                primary_key=(table, name) in primary,
                unique=(table, name) in unique,
                references=(ref[0], ref[1] or "id") if ref else None,
            )
        )
    return tuple(TableInfo(name=t, columns=tuple(cols)) for t, cols in by_table.items())


_DUCKDB_CATALOG = (
    """SELECT c.table_name, c.column_name, c.data_type, c.is_nullable = 'NO'
    FROM information_schema.columns c
    LEFT JOIN (
        SELECT table_name AS name, table_oid AS oid FROM duckdb_tables() WHERE schema_name = {ns}
        UNION ALL
        SELECT view_name, view_oid FROM duckdb_views() WHERE schema_name = {ns} AND NOT internal
    ) k ON k.name = c.table_name
    WHERE c.table_schema = {ns} AND c.table_catalog = current_database()
    ORDER BY k.oid, c.table_name, c.ordinal_position""",
    """SELECT table_name, UNNEST(constraint_column_names),
        CASE constraint_type WHEN 'PRIMARY KEY' THEN 'p' WHEN 'FOREIGN KEY' THEN 'f' ELSE 'u' END,
        referenced_table, UNNEST(CASE WHEN len(referenced_column_names) > 0
            THEN referenced_column_names ELSE [NULL::VARCHAR] END)
    FROM duckdb_constraints()
    WHERE schema_name = {ns} AND database_name = current_database()
      AND (constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY')
           OR (constraint_type = 'UNIQUE' AND len(constraint_column_names) = 1))""",
)

_POSTGRES_CATALOG = (
    """SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = {ns} AND c.relkind IN ('r', 'v', 'm', 'p', 'f') AND NOT c.relispartition
      AND a.attnum > 0 AND NOT a.attisdropped AND has_table_privilege(c.oid, 'SELECT')
    ORDER BY c.oid, a.attnum""",
    """SELECT cl.relname, a.attname, con.contype::text, fcl.relname, fa.attname
    FROM pg_constraint con
    JOIN pg_class cl ON cl.oid = con.conrelid
    JOIN pg_namespace n ON n.oid = cl.relnamespace
    CROSS JOIN LATERAL unnest(con.conkey, con.confkey) AS k(attnum, fattnum)
    JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
    LEFT JOIN pg_class fcl ON fcl.oid = con.confrelid
    LEFT JOIN pg_attribute fa ON fa.attrelid = con.confrelid AND fa.attnum = k.fattnum
    WHERE n.nspname = {ns}
      AND (con.contype IN ('p', 'f') OR (con.contype = 'u' AND cardinality(con.conkey) = 1))""",
)
