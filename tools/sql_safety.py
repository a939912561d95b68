"""The safety pipeline every generated query passes before it reaches a database.

`check_sql` parses with sqlglot and allows exactly one read-only query: a SELECT (with CTEs,
subqueries and set operations) over the schema's tables and columns, calling no function that
reads files, sleeps, changes settings or runs SQL text. Anything else raises `UnsafeSQLError`
whose message names what was rejected; it is shown to the model in a repair turn and to
operators. The database-side guards (read-only connections, time limits) are the second layer,
in `brickwork.tools.sql_exec`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError
from sqlglot.optimizer.scope import Scope, traverse_scope

from brickwork.errors import UnsafeSQLError
from brickwork.tools.sql import Dialect, SchemaInfo

__all__ = ["DENIED_FUNCTIONS", "CheckedSQL", "check_sql"]

#: Functions no generated query may call: file and network access, sleeping, settings,
#: sequences, and functions that run SQL given as text. Matched case-insensitively, together
#: with the prefixes and suffixes below.
DENIED_FUNCTIONS = frozenset(
    {
        # SQLite (and its shell / fileio extension)
        "load_extension", "readfile", "writefile", "fts3_tokenizer", "edit", "fsdir",
        "zipfile", "sqlar_compress", "sqlar_uncompress", "lsmode",
        # DuckDB
        "glob", "query", "query_table", "getenv", "current_setting", "which_secret",
        "sniff_csv", "st_read", "st_read_meta", "checkpoint", "force_checkpoint",
        "sql_auto_complete", "load_aws_credentials", "iceberg_metadata", "iceberg_snapshots",
        # PostgreSQL
        "dblink", "set_config", "nextval", "setval", "currval", "lastval", "ts_stat",
        "ts_rewrite", "lo_import", "lo_export", "pg_sleep", "pg_read_file", "pg_ls_dir",
        "pg_read_binary_file", "current_query", "txid_current",
        # others some dialect may map to
        "sleep", "benchmark", "load_file",
    }
)  # fmt: skip
_DENIED_PREFIXES = ("read_", "pg_", "lo_", "dblink", "duckdb_", "pragma_", "sqlite_", "parquet_")
_DENIED_PARTS = ("_to_xml", "_scan", "xact_", "txid_", "advisory_")

# Statement kinds that never belong in a read-only query, wherever they appear in the tree.
_FORBIDDEN: dict[type[exp.Expr], str] = {
    getattr(exp, name): label
    for name, label in {
        "Insert": "INSERT", "Update": "UPDATE", "Delete": "DELETE", "Merge": "MERGE",
        "Create": "CREATE", "Drop": "DROP", "Alter": "ALTER", "TruncateTable": "TRUNCATE",
        "Grant": "GRANT", "Revoke": "REVOKE", "Command": "command", "Pragma": "PRAGMA",
        "Attach": "ATTACH", "Detach": "DETACH", "Install": "INSTALL", "Copy": "COPY",
        "Set": "SET", "Use": "USE", "Transaction": "BEGIN", "Commit": "COMMIT",
        "Rollback": "ROLLBACK", "Into": "SELECT ... INTO", "Lock": "SELECT ... FOR UPDATE/SHARE",
        "Analyze": "ANALYZE", "Describe": "DESCRIBE", "Show": "SHOW", "Kill": "KILL",
        "Refresh": "REFRESH", "Cache": "CACHE", "Uncache": "UNCACHE", "LoadData": "LOAD DATA",
        "Execute": "EXECUTE", "Export": "EXPORT", "Summarize": "SUMMARIZE",
    }.items()
    if hasattr(exp, name)
}  # fmt: skip
_PSEUDO_COLUMNS = {"sqlite": {"rowid", "oid", "_rowid_"}, "duckdb": {"rowid"}, "postgres": set()}


@dataclass(frozen=True)
class CheckedSQL:
    """A query that passed `check_sql`.

    Attributes:
        sql: The normalised query in the target dialect (comments removed); run this text.
        tables: The schema tables it reads, in the schema's spelling, sorted.
        dialect: The dialect `sql` is written in.
    """

    sql: str
    tables: tuple[str, ...]
    dialect: Dialect


def check_sql(
    sql: str, schema: SchemaInfo, dialect: Dialect | None = None, *, read: Dialect | None = None
) -> CheckedSQL:
    """Accept one read-only SELECT over `schema`, or raise `UnsafeSQLError` saying why not.

    Args:
        sql: The query text, as a model wrote it.
        schema: The tables and columns the query may use (pass the full schema, not the
            prompt's `relevant()` subset, unless the subset is all it may read).
        dialect: The dialect to check and normalise to (default: the schema's).
        read: The dialect `sql` is written in, when it differs (it is transpiled).

    Returns:
        The normalised SQL and the tables it uses.

    Raises:
        UnsafeSQLError: Not parseable, not exactly one statement, not a read-only SELECT,
            a denied function or table function, or an unknown table, alias or column.
    """
    target: Dialect = dialect or schema.dialect
    source: Dialect = read or target
    statement = _parse_one(sql, source)
    _check_tree(statement, source)
    ctes = {cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)}
    tables = {_check_table(t, schema, ctes, source) for t in statement.find_all(exp.Table)}
    try:
        scopes = list(traverse_scope(statement))
    except SqlglotError as error:
        raise UnsafeSQLError(f"cannot resolve the query's tables and aliases: {error}") from error
    seen: set[int] = set()
    for scope in scopes:  # inner scopes come first, so each column is checked where it lives
        _check_columns(scope, schema, target, seen)
    try:
        # A construct the target cannot express is refused (with sqlglot's reason, which the
        # repair turn shows the model), not logged to stderr and run half-translated.
        normalised = statement.sql(
            dialect=target, comments=False, unsupported_level=ErrorLevel.RAISE
        )
    except SqlglotError as error:
        raise UnsafeSQLError(f"cannot write the query as {target} SQL: {error}") from error
    return CheckedSQL(sql=normalised, tables=tuple(sorted(tables - {""})), dialect=target)


def _parse_one(sql: str, read: Dialect) -> exp.Expr:
    if not sql.strip():
        raise UnsafeSQLError("the SQL is empty; write one SELECT query")
    try:
        parsed = sqlglot.parse(sql, read=read)
        # A trailing comment after the last ';' parses as an empty Semicolon statement.
        statements = [s for s in parsed if s is not None and not isinstance(s, exp.Semicolon)]
    except SqlglotError as error:
        raise UnsafeSQLError(f"cannot parse the SQL as {read}: {error}") from error
    if len(statements) != 1:
        kinds = ", ".join(_kind(s) for s in statements) or "none"
        raise UnsafeSQLError(
            f"expected exactly one statement, found {len(statements)} ({kinds}); "
            "send a single SELECT query with no ';' between statements"
        )
    statement = statements[0]
    if not isinstance(statement, exp.Select | exp.SetOperation | exp.Subquery):
        raise UnsafeSQLError(
            f"only read-only SELECT queries are allowed, not {_kind(statement)}: "
            f"{_shorten(sql.strip())!r}"
        )
    return statement


def _check_tree(statement: exp.Expr, dialect: Dialect) -> None:
    for node in statement.walk():
        label = _FORBIDDEN.get(type(node))
        if label is not None:
            raise UnsafeSQLError(
                f"{_kind(node) if label == 'command' else label} is not allowed: only "
                f"read-only SELECT queries may run (found {_snippet(node, dialect)!r})"
            )
        if isinstance(node, exp.Func):
            name = _denied_function(node)
            if name is not None:
                raise UnsafeSQLError(
                    f"function {name}() is not allowed (file, network, settings or "
                    "session access); use plain SQL over the schema's tables"
                )
        if isinstance(node, exp.Unnest | exp.Lateral) and isinstance(
            node.parent, exp.From | exp.Join
        ):
            if isinstance(node, exp.Lateral) and isinstance(node.this, exp.Subquery):
                continue
            raise UnsafeSQLError(
                f"table function {_snippet(node, dialect)!r} in FROM is not allowed; "
                "select from the schema's tables"
            )


def _denied_function(node: exp.Func) -> str | None:
    if isinstance(node, exp.Anonymous | exp.AnonymousAggFunc):
        names = [node.name.lower()]
    else:
        names = [name.lower() for name in node.sql_names()]
    for name in names:
        if (
            name in DENIED_FUNCTIONS
            or name.startswith(_DENIED_PREFIXES)
            or any(part in name for part in _DENIED_PARTS)
        ):
            return name
    return None


def _check_table(table: exp.Table, schema: SchemaInfo, ctes: set[str], dialect: Dialect) -> str:
    if not isinstance(table.this, exp.Identifier):
        raise UnsafeSQLError(
            f"table function {_snippet(table, dialect)!r} in FROM is not allowed; "
            "select from the schema's tables"
        )
    name = table.name
    if table.catalog or (table.db and not _same_namespace(table.db, schema)):
        where = f" {schema.namespace!r}" if schema.namespace else ""
        raise UnsafeSQLError(
            f"table {table.sql(dialect=dialect)!r} is outside the database's schema{where}; "
            "use the unqualified table name"
        )
    if not table.db and name.lower() in ctes:
        return ""
    found = schema.table(name)
    if found is None:
        raise UnsafeSQLError(
            f"unknown table {name!r}; the tables are: {_listing(schema.table_names)}"
        )
    return found.name


def _same_namespace(db: str, schema: SchemaInfo) -> bool:
    allowed = {schema.namespace.lower()} if schema.namespace else set()
    if schema.dialect in ("sqlite", "duckdb"):
        allowed.add("main")
    return db.lower() in allowed


def _check_columns(scope: Scope, schema: SchemaInfo, dialect: Dialect, seen: set[int]) -> None:
    aliases = _select_aliases(scope.expression)
    for column in scope.columns:
        if id(column) in seen:
            continue
        seen.add(id(column))
        if column.find_ancestor(exp.Lambda) is not None:
            continue
        name = column.name.lower()
        if column.table:
            known = _resolve(scope, column.table)
            if known is None:
                raise UnsafeSQLError(
                    f"table or alias {column.table!r} in {column.sql()!r} is not defined in "
                    f"this query; the FROM clause names: {_listing(_in_scope(scope))}"
                )
            label, columns = _source_columns(known, schema)
            if columns is None or isinstance(column.this, exp.Star) or name in columns:
                continue
            raise UnsafeSQLError(
                f"column {column.name!r} does not exist in {label!r}; its columns are: "
                f"{_listing(sorted(columns))}"
            )
        if aliases is None or name in aliases or name in _PSEUDO_COLUMNS[dialect]:
            continue
        sources = _visible_sources(scope)
        if name in {alias.lower() for alias in sources}:
            continue  # a whole-row reference to a table alias (PostgreSQL)
        resolved = [_source_columns(source, schema) for source in sources.values()]
        if any(cols is None or name in cols for _, cols in resolved):
            continue
        hint = " (use single quotes for string literals)" if column.this.quoted else ""
        raise UnsafeSQLError(
            f"column {column.name!r} does not exist in any table in scope "
            f"({_listing([label for label, _ in resolved])}){hint}"
        )


def _visible_sources(scope: Scope) -> dict[str, Any]:
    sources: dict[str, Any] = {}
    current: Scope | None = scope
    while current is not None:
        for alias, (_, source) in current.selected_sources.items():
            sources.setdefault(alias, source)
        current = current.parent
    return sources


def _resolve(scope: Scope, alias: str) -> Any:
    wanted = alias.lower()
    return next((s for a, s in _visible_sources(scope).items() if a.lower() == wanted), None)


def _in_scope(scope: Scope) -> list[str]:
    return list(_visible_sources(scope))


def _source_columns(source: Any, schema: SchemaInfo) -> tuple[str, set[str] | None]:
    """A source's label and lower-cased column names (None: unknown, accept any)."""
    if isinstance(source, exp.Table):
        alias_columns = _alias_columns(source)
        if alias_columns:
            return source.alias_or_name, alias_columns
        table = schema.table(source.name)
        if table is None:  # a CTE the scope did not resolve; checked elsewhere
            return source.name, None
        return table.name, {c.lower() for c in table.column_names}
    expression = source.expression if isinstance(source, Scope) else source
    label = expression.alias_or_name if isinstance(expression, exp.Expr) else "subquery"
    return label or "subquery", _output_names(expression)


def _output_names(expression: Any) -> set[str] | None:
    if not isinstance(expression, exp.Expr):
        return None
    top = expression  # a recursive CTE's body is seen through one branch of its UNION
    while isinstance(top.parent, exp.SetOperation):
        top = top.parent
    for holder in (expression, top, top.parent):
        names = _alias_columns(holder) if isinstance(holder, exp.Expr) else set()
        if names:
            return names
    if isinstance(expression, exp.SetOperation):
        return _output_names(expression.left)
    if isinstance(expression, exp.Select):
        if any(isinstance(p, exp.Star) or p.is_star for p in expression.expressions):
            return None
        return {name.lower() for name in expression.named_selects}
    if isinstance(expression, exp.Subquery):
        return _output_names(expression.this)
    return None


def _select_aliases(expression: exp.Expr) -> set[str] | None:
    """Names ORDER BY / GROUP BY / HAVING may use besides columns (None: any name).

    These are a SELECT's aliases, or a set operation's output names.
    """
    if isinstance(expression, exp.SetOperation):
        return _output_names(expression)
    if isinstance(expression, exp.Select):
        return {p.alias.lower() for p in expression.expressions if isinstance(p, exp.Alias)}
    return set()


def _alias_columns(node: exp.Expr) -> set[str]:
    alias = node.args.get("alias")
    if isinstance(alias, exp.TableAlias):
        return {c.name.lower() for c in alias.columns}
    return set()


def _kind(node: exp.Expr) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    label = _FORBIDDEN.get(type(node))
    return label if label and label != "command" else node.key.upper()


def _snippet(node: exp.Expr, dialect: Dialect) -> str:
    try:
        return _shorten(node.sql(dialect=dialect, comments=False))
    except SqlglotError:
        return node.key


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _listing(names: Any, limit: int = 30) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
