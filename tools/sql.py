"""Database handles and schema descriptions for the text-to-SQL specialist.

`Database` says where the data lives (an SQLite or DuckDB file, or a PostgreSQL URL with an
optional read-only role and schema; a superuser or server-file role is refused unless
`allow_privileged=True`); `Database.introspect()` returns a `SchemaInfo`, which renders
compact `CREATE TABLE` text for prompts (`to_ddl`) and picks the tables a question is about
(`relevant`). The safety checks live in `brickwork.tools.sql_safety`, execution on read-only
connections in `brickwork.tools.sql_exec`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from brickwork.errors import ConfigError

__all__ = ["ColumnInfo", "Database", "Dialect", "SchemaInfo", "TableInfo", "quote_name"]

Dialect = Literal["sqlite", "duckdb", "postgres"]

_DEFAULT_NAMESPACE: dict[Dialect, str] = {"sqlite": "main", "duckdb": "main", "postgres": "public"}
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Names that must be quoted in DDL shown to a model (keywords common as column names).
_RESERVED_TEXT = (
    "all and as asc by case check column create default delete desc distinct drop else end "
    "from group having in index insert into is join key limit not null offset on or order "
    "primary references select set table then to union unique update user values when where "
    "window with"
)
_RESERVED = frozenset(_RESERVED_TEXT.split())
_STOPWORDS_TEXT = (
    "a an the of in on for to by with and or is are was were be what which who whom whose how "
    "many much list show give find get me all each every per their there has have had do does "
    "did than that this these those from at as it its any most least top number count id"
)
_STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
#: Query parameters of a `postgresql://` URL that brickwork reads (and removes before connecting).
_URL_OPTIONS = ("role", "schema", "allow_privileged")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class ColumnInfo:
    """One column: its name, declared type and keys.

    Attributes:
        name: The column name as the database spells it.
        type: The declared type (`INTEGER`, `VARCHAR`, `numeric(10,2)`, ...).
        not_null: True when the column is declared NOT NULL.
        primary_key: True when the column is (part of) the primary key.
        unique: True when the column alone is declared UNIQUE.
        references: `(table, column)` when the column is a foreign key.
    """

    name: str
    type: str
    not_null: bool = False
    primary_key: bool = False
    unique: bool = False
    references: tuple[str, str] | None = None


@dataclass(frozen=True)
class TableInfo:
    """One table (or view) and its columns, in declaration order."""

    name: str
    columns: tuple[ColumnInfo, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        """The column names, in order."""
        return tuple(column.name for column in self.columns)

    def column(self, name: str) -> ColumnInfo | None:
        """The column called `name` (case-insensitive), or None."""
        wanted = name.lower()
        return next((c for c in self.columns if c.name.lower() == wanted), None)


@dataclass(frozen=True)
class SchemaInfo:
    """The tables a query may use, as found by `Database.introspect()` or parsed from DDL.

    Attributes:
        dialect: The dialect the schema belongs to.
        tables: The tables, in a stable order.
        namespace: The database schema the tables live in (`main`, `public`, ...).
    """

    dialect: Dialect
    tables: tuple[TableInfo, ...]
    namespace: str | None = None

    @property
    def table_names(self) -> tuple[str, ...]:
        """The table names, in order."""
        return tuple(table.name for table in self.tables)

    def table(self, name: str) -> TableInfo | None:
        """The table called `name` (case-insensitive), or None."""
        wanted = name.lower()
        return next((t for t in self.tables if t.name.lower() == wanted), None)

    def subset(self, tables: Iterable[str]) -> SchemaInfo:
        """A schema with only the named tables (kept in this schema's order).

        Raises:
            ConfigError: A name is not a table of this schema.
        """
        wanted = {name.lower() for name in tables}
        unknown = wanted - {name.lower() for name in self.table_names}
        if unknown:
            raise ConfigError(
                f"unknown table(s) {sorted(unknown)!r}; the schema has {list(self.table_names)!r}"
            )
        kept = tuple(t for t in self.tables if t.name.lower() in wanted)
        return replace(self, tables=kept)

    def to_ddl(self, tables: Iterable[str] | None = None) -> str:
        """Compact `CREATE TABLE` text for a prompt, one column per line.

        Args:
            tables: Only these tables (default: all).

        Returns:
            The statements separated by blank lines, in the layout of the training data.
        """
        schema = self if tables is None else self.subset(tables)
        return "\n\n".join(_table_ddl(t, self.dialect) for t in schema.tables)

    def relevant(
        self, question: str, max_tables: int = 5, *, max_columns: int | None = None
    ) -> SchemaInfo:
        """The tables (and columns) whose names share the most words with `question`.

        Tables are scored by word overlap of their own name (weighted 3) and their column
        names with the question (plural `s` and `ies` folded). Tables that link two chosen
        tables through foreign keys are added while there is room, so joins stay possible.
        When nothing matches, the first `max_tables` tables are returned.

        Args:
            question: The user's question.
            max_tables: At most this many tables.
            max_columns: When set, wider tables keep their key columns and matching columns
                first, then the remaining columns in order, up to this many.

        Returns:
            A smaller `SchemaInfo` (tables in this schema's order).
        """
        words = _words(question)
        scored = [(self._score(t, words), i) for i, t in enumerate(self.tables)]
        ranked = [i for score, i in sorted(scored, key=lambda s: (-s[0], s[1])) if score > 0]
        chosen = ranked[:max_tables] or list(range(min(max_tables, len(self.tables))))
        for i, table in enumerate(self.tables):
            if len(chosen) >= max_tables:
                break
            if i not in chosen and len(self._neighbours(table, chosen)) >= 2:
                chosen.append(i)
        tables = [self.tables[i] for i in sorted(chosen)]
        if max_columns is not None:
            tables = [_narrow(t, words, max_columns) for t in tables]
        return replace(self, tables=tuple(tables))

    def _score(self, table: TableInfo, words: set[str]) -> int:
        score = 3 * len(_words(table.name) & words)
        return score + sum(1 for c in table.columns if _words(c.name) & words)

    def _neighbours(self, table: TableInfo, chosen: list[int]) -> set[str]:
        names = {self.tables[i].name.lower() for i in chosen}
        linked = {c.references[0].lower() for c in table.columns if c.references} & names
        for i in chosen:
            for column in self.tables[i].columns:
                if column.references and column.references[0].lower() == table.name.lower():
                    linked.add(self.tables[i].name.lower())
        return linked

    @classmethod
    def from_ddl(cls, ddl: str, dialect: Dialect = "sqlite") -> SchemaInfo:
        """Parse `CREATE TABLE` statements (as in a prompt or a dataset row) into a schema.

        Raises:
            ConfigError: The text is not parseable or holds something other than CREATE TABLE.
        """
        return cls(dialect=dialect, tables=_parse_ddl(ddl, dialect))


@dataclass(frozen=True, repr=False)
class Database:
    """Where a text-to-SQL agent's data lives; passed per run, never a global.

    Build one with `Database.sqlite(path)`, `Database.duckdb(path)`,
    `Database.postgres(url, role=..., schema=...)` or `Database.from_url(url)`.

    Agent SQL never runs as a PostgreSQL superuser or a member of `pg_read_server_files`,
    `pg_write_server_files` or `pg_execute_server_program` (the session user or the `role`):
    connecting raises `PrivilegedRoleError`, which shows the SQL that creates a read-only role.

    Attributes:
        dialect: `"sqlite"`, `"duckdb"` or `"postgres"`.
        path: The database file (SQLite and DuckDB).
        url: The connection URL (PostgreSQL).
        role: A PostgreSQL role to `SET ROLE` to before querying (a read-only role). The URL's
            user must not be privileged either: a query can switch back to it.
        schema: The PostgreSQL schema the tables live in (default `public`).
        allow_privileged: Run even when the PostgreSQL role is a superuser or may read or
            write server files (logged as a warning); only `check_sql` then stands between
            generated SQL and the server's files.
    """

    dialect: Dialect
    path: Path | None = None
    url: str | None = field(default=None)
    role: str | None = None
    schema: str | None = None
    allow_privileged: bool = False

    def __post_init__(self) -> None:
        if self.dialect in ("sqlite", "duckdb") and self.path is None:
            raise ConfigError(f"a {self.dialect} Database needs a file path; pass path=...")
        if self.dialect == "postgres" and not self.url:
            raise ConfigError("a postgres Database needs a URL like 'postgresql://user@host/db'")
        if self.dialect not in _DEFAULT_NAMESPACE:
            raise ConfigError(f"unknown dialect {self.dialect!r}; use sqlite, duckdb or postgres")

    @classmethod
    def sqlite(cls, path: str | Path) -> Database:
        """An SQLite database file (opened read-only when queried)."""
        return cls(dialect="sqlite", path=Path(path).expanduser())

    @classmethod
    def duckdb(cls, path: str | Path) -> Database:
        """A DuckDB database file (opened read-only when queried)."""
        return cls(dialect="duckdb", path=Path(path).expanduser())

    @classmethod
    def postgres(
        cls,
        url: str,
        *,
        role: str | None = None,
        schema: str | None = None,
        allow_privileged: bool = False,
    ) -> Database:
        """A PostgreSQL database, best reached as a read-only login role (the URL's user).

        Args:
            url: `postgresql://user@host/db`; `?role=`, `?schema=` and `?allow_privileged=true`
                in it are read here (explicit arguments win) and not sent to the server.
            role: A read-only role to `SET ROLE` to (the URL's user must not be privileged).
            schema: The schema the tables live in (default `public`).
            allow_privileged: Run even as a superuser or server-file role (logs a warning).

        Raises:
            ConfigError: A brickwork URL option has a value that is not a boolean.
        """
        plain, options = _url_options(url)
        return cls(
            dialect="postgres",
            url=plain,
            role=role or options.get("role"),
            schema=schema or options.get("schema") or "public",
            allow_privileged=allow_privileged
            or _flag("allow_privileged", options.get("allow_privileged", "false")),
        )

    @classmethod
    def from_url(cls, url: str) -> Database:
        """`sqlite:///path`, `duckdb:///path` or `postgresql://...` to a `Database`.

        Raises:
            ConfigError: The scheme is not one of these.
        """
        scheme, _, rest = url.partition("://")
        if scheme == "sqlite":
            return cls.sqlite(rest[1:] if rest.startswith("/") else rest)
        if scheme == "duckdb":
            return cls.duckdb(rest[1:] if rest.startswith("/") else rest)
        if scheme in ("postgres", "postgresql"):
            return cls.postgres(url)
        raise ConfigError(
            f"unsupported database URL {_redact(url)!r}; "
            "use sqlite:///file.db, duckdb:///file.duckdb or postgresql://user@host/db"
            "[?role=...&schema=...]"
        )

    @property
    def namespace(self) -> str:
        """The schema tables are looked up in (`main` for files, `public` by default)."""
        return self.schema or _DEFAULT_NAMESPACE[self.dialect]

    def introspect(self) -> SchemaInfo:
        """Read the tables, columns, primary and foreign keys over a read-only connection.

        Raises:
            ConfigError: The database file does not exist.
            SQLExecutionError: The database could not be reached or refused the catalog queries.
        """
        from brickwork.tools.sql_exec import introspect

        return introspect(self)

    def __repr__(self) -> str:
        where = str(self.path) if self.url is None else _redact(self.url)
        extra = "".join(
            f", {name}={value!r}"
            for name, value in (
                ("role", self.role),
                ("schema", self.schema),
                ("allow_privileged", self.allow_privileged),
            )
            if value
        )
        return f"Database({self.dialect!r}, {where!r}{extra})"


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _url_options(url: str) -> tuple[str, dict[str, str]]:
    """`url` without brickwork's own query parameters, and those parameters."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    options = {key: value for key, value in pairs if key in _URL_OPTIONS}
    if not options:
        return url, {}
    rest = urlencode([(key, value) for key, value in pairs if key not in _URL_OPTIONS])
    return urlunsplit(parts._replace(query=rest)), options


def _flag(name: str, value: str) -> bool:
    if value.lower() in _TRUE | {""}:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError(f"URL option {name}={value!r} is not a boolean; use {name}=true or false")


def quote_name(name: str, dialect: Dialect) -> str:
    """`name` as an identifier, double-quoted only when it has to be."""
    plain = _PLAIN_NAME.fullmatch(name) and name.lower() not in _RESERVED
    if plain and (dialect != "postgres" or name == name.lower()):
        return name
    return '"' + name.replace('"', '""') + '"'


def _table_ddl(table: TableInfo, dialect: Dialect) -> str:
    keys = [c for c in table.columns if c.primary_key]
    lines = []
    for column in table.columns:
        parts = [quote_name(column.name, dialect), column.type or "TEXT"]
        if column.primary_key and len(keys) == 1:
            parts.append("PRIMARY KEY")
        elif column.not_null:
            parts.append("NOT NULL")
        if column.unique and not column.primary_key:
            parts.append("UNIQUE")
        if column.references:
            ref_table, ref_column = column.references
            parts.append(
                f"REFERENCES {quote_name(ref_table, dialect)}({quote_name(ref_column, dialect)})"
            )
        lines.append("  " + " ".join(parts))
    if len(keys) > 1:
        lines.append(f"  PRIMARY KEY ({', '.join(quote_name(c.name, dialect) for c in keys)})")
    body = ",\n".join(lines)
    return f"CREATE TABLE {quote_name(table.name, dialect)} (\n{body}\n);"


def _words(text: str) -> set[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", text).lower()
    words: set[str] = set()
    for word in re.findall(r"[a-z0-9]+", spaced):
        if word in _STOPWORDS:
            continue
        words.add(word)
        if word.endswith("ies") and len(word) > 4:
            words.add(word[:-3] + "y")
        elif word.endswith("s") and not word.endswith("ss") and len(word) > 3:
            words.add(word[:-1])
    return words


def _narrow(table: TableInfo, words: set[str], max_columns: int) -> TableInfo:
    if len(table.columns) <= max_columns:
        return table

    def rank(item: tuple[int, ColumnInfo]) -> tuple[int, int]:
        i, column = item
        keyed = column.primary_key or column.references is not None
        return (0 if keyed else 1 if _words(column.name) & words else 2, i)

    kept = sorted(sorted(enumerate(table.columns), key=rank)[:max_columns])
    return replace(table, columns=tuple(column for _, column in kept))


def _parse_ddl(ddl: str, dialect: Dialect) -> tuple[TableInfo, ...]:
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    try:
        statements = [s for s in sqlglot.parse(ddl, read=dialect) if s is not None]
    except SqlglotError as error:
        raise ConfigError(f"cannot parse the DDL as {dialect}: {error}") from error
    tables = []
    for statement in statements:
        schema = statement.this if isinstance(statement, exp.Create) else None
        if not isinstance(schema, exp.Schema) or str(statement.args.get("kind")) != "TABLE":
            raise ConfigError(f"expected only CREATE TABLE statements, got {statement.sql()!r}")
        keys: set[str] = set()
        refs: dict[str, tuple[str, str]] = {}
        for item in schema.expressions:
            if isinstance(item, exp.PrimaryKey):
                keys.update(e.name.lower() for e in item.expressions)
            elif isinstance(item, exp.ForeignKey):
                target = item.args["reference"].this
                for mine, theirs in zip(item.expressions, target.expressions, strict=False):
                    refs[mine.name.lower()] = (target.this.name, theirs.name)
        columns = [
            _column_from_def(item, keys, refs)
            for item in schema.expressions
            if isinstance(item, exp.ColumnDef)
        ]
        tables.append(TableInfo(name=schema.this.name, columns=tuple(columns)))
    if not tables:
        raise ConfigError("the DDL holds no CREATE TABLE statement")
    return tuple(tables)


def _column_from_def(item: object, keys: set[str], refs: dict[str, tuple[str, str]]) -> ColumnInfo:
    from sqlglot import exp

    assert isinstance(item, exp.ColumnDef)
    name = item.name
    kind = item.args.get("kind")
    # sqlglot's generic spelling, with the two renames that keep SQLite-style DDL recognisable.
    type_ = {"INT": "INTEGER", "DOUBLE": "REAL"}.get(kind.sql(), kind.sql()) if kind else ""
    not_null = primary = unique = False
    reference = refs.get(name.lower())
    for constraint in item.constraints:
        ckind = constraint.args.get("kind")
        if isinstance(ckind, exp.PrimaryKeyColumnConstraint):
            primary = True
        elif isinstance(ckind, exp.NotNullColumnConstraint) and not ckind.args.get("allow_null"):
            not_null = True
        elif isinstance(ckind, exp.UniqueColumnConstraint):
            unique = True
        elif isinstance(ckind, exp.Reference) and isinstance(ckind.this, exp.Schema):
            target = ckind.this
            ref_column = target.expressions[0].name if target.expressions else "id"
            reference = (target.this.name, ref_column)
    return ColumnInfo(
        name=name,
        type=type_,
        not_null=not_null or primary,
        primary_key=primary or name.lower() in keys,
        unique=unique,
        references=reference,
    )
