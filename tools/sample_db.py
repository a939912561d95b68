"""Deterministic sample databases: a small shop, and databases built from CREATE TABLE text.

`create_sample_db` / `create_sample_duckdb` / `load_sample_postgres` hold the same shop data
(customers, products, orders, order_items; seeded, so every run and every dialect gets identical
rows). `database_from_ddl` turns a dataset row's schema into an SQLite file filled with rows that
fit each column's type and name, for execution-match scoring.
"""

from __future__ import annotations

import os
import random
import sqlite3
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from brickwork.errors import MissingDependencyError
from brickwork.tools.sql import ColumnInfo, Database, Dialect, SchemaInfo, TableInfo, quote_name

__all__ = [
    "SAMPLE_VERSION",
    "create_sample_db",
    "create_sample_duckdb",
    "database_from_ddl",
    "load_sample_postgres",
    "sample_ddl",
    "sample_rows",
]

#: Bumped whenever the sample data changes; stored as SQLite's `user_version`.
SAMPLE_VERSION = 1

_TYPES: dict[str, dict[Dialect, str]] = {
    "int": {"sqlite": "INTEGER", "duckdb": "INTEGER", "postgres": "integer"},
    "text": {"sqlite": "TEXT", "duckdb": "VARCHAR", "postgres": "text"},
    "real": {"sqlite": "REAL", "duckdb": "DOUBLE", "postgres": "double precision"},
    "date": {"sqlite": "DATE", "duckdb": "DATE", "postgres": "date"},
}
# table -> [(column, logical type, constraint)]
_SHOP: dict[str, list[tuple[str, str, str]]] = {
    "customers": [
        ("id", "int", "PRIMARY KEY"), ("name", "text", "NOT NULL"), ("email", "text", "UNIQUE"),
        ("city", "text", ""), ("country", "text", ""), ("segment", "text", ""),
        ("signup_date", "date", ""),
    ],
    "products": [
        ("id", "int", "PRIMARY KEY"), ("name", "text", "NOT NULL"), ("category", "text", ""),
        ("price", "real", ""), ("stock_quantity", "int", ""),
    ],
    "orders": [
        ("id", "int", "PRIMARY KEY"), ("customer_id", "int", "NOT NULL REFERENCES customers(id)"),
        ("order_date", "date", ""), ("status", "text", ""), ("total_amount", "real", ""),
    ],
    "order_items": [
        ("id", "int", "PRIMARY KEY"), ("order_id", "int", "NOT NULL REFERENCES orders(id)"),
        ("product_id", "int", "NOT NULL REFERENCES products(id)"), ("quantity", "int", ""),
        ("unit_price", "real", ""),
    ],
}  # fmt: skip

_FIRST_TEXT = (
    "Alice Bruno Chloe Daniel Elena Farid Grace Hiro Ines James Julia Kofi Laura Mateo Nadia "
    "Oscar Priya Quentin Rosa Samuel Tara Umar Vera William Xenia Yusuf Zoe Amara Jonas Lena"
)
_FIRST = _FIRST_TEXT.split()
_LAST_TEXT = (
    "Smith Garcia Müller Rossi Dubois Kowalski Tanaka Silva Okafor Johnson Novak Larsen "
    "Fischer Moreau Costa Haddad Ivanova Brown Nguyen Patel"
)
_LAST = _LAST_TEXT.split()
_CITIES = (
    ("New York", "USA"), ("Los Angeles", "USA"), ("Chicago", "USA"), ("Toronto", "Canada"),
    ("London", "UK"), ("Manchester", "UK"), ("Paris", "France"), ("Lyon", "France"),
    ("Berlin", "Germany"), ("Munich", "Germany"), ("Madrid", "Spain"), ("Lisbon", "Portugal"),
    ("Milan", "Italy"), ("Warsaw", "Poland"), ("Tokyo", "Japan"), ("Sydney", "Australia"),
)  # fmt: skip
_CATALOG = {
    "Electronics": ("Laptop", "Smartphone", "Headphones", "Monitor", "Keyboard", "Webcam"),
    "Home": ("Desk Lamp", "Coffee Maker", "Blender", "Throw Pillow", "Wall Clock"),
    "Books": ("Cookbook", "Travel Guide", "Mystery Novel", "Atlas", "Poetry Collection"),
    "Sports": ("Yoga Mat", "Running Shoes", "Tennis Racket", "Water Bottle", "Dumbbell Set"),
    "Toys": ("Puzzle", "Board Game", "Building Blocks", "Kite", "Plush Bear"),
}
_PRICES = {"Electronics": (25, 1500), "Home": (10, 250), "Books": (8, 60),
           "Sports": (10, 300), "Toys": (5, 120)}  # fmt: skip
_STATUSES = (
    ("completed",) * 12 + ("shipped",) * 3 + ("pending",) * 2 + ("cancelled",) * 2 + ("returned",)
)
_SEGMENTS = ("consumer", "consumer", "consumer", "premium", "business")


def sample_ddl(dialect: Dialect = "sqlite") -> str:
    """The shop's CREATE TABLE statements in `dialect`."""
    statements = []
    for table, columns in _SHOP.items():
        lines = [
            f"  {name} {_TYPES[kind][dialect]}{' ' + extra if extra else ''}"
            for name, kind, extra in columns
        ]
        statements.append(f"CREATE TABLE {table} (\n" + ",\n".join(lines) + "\n);")
    return "\n\n".join(statements)


def sample_rows(seed: int = 7) -> dict[str, list[tuple[Any, ...]]]:
    """The shop's rows (dates as `datetime.date`), identical for a given seed."""
    rng = random.Random(seed)
    customers = []
    for i in range(1, 81):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        city, country = rng.choice(_CITIES)
        email = f"{first}.{last}{i}@example.com".lower().replace("ü", "ue")
        signup = date(2022, 1, 1) + timedelta(days=rng.randrange(900))
        segment = rng.choice(_SEGMENTS)
        customers.append((i, f"{first} {last}", email, city, country, segment, signup))
    products: list[tuple[Any, ...]] = []
    for category, names in _CATALOG.items():
        low, high = _PRICES[category]
        for name in names:
            price = round(rng.uniform(low, high), 2)
            stock = 0 if rng.random() < 0.12 else rng.randrange(1, 250)
            products.append((len(products) + 1, name, category, price, stock))
    orders: list[tuple[Any, ...]] = []
    items: list[tuple[Any, ...]] = []
    for order_id in range(1, 241):
        customer = rng.choice(customers)
        ordered = customer[6] + timedelta(days=rng.randrange(1, 400))
        total = 0.0
        for _ in range(rng.choice((1, 1, 2, 2, 3, 4))):
            product = rng.choice(products)
            quantity = rng.choice((1, 1, 1, 2, 2, 3, 5))
            items.append((len(items) + 1, order_id, product[0], quantity, product[3]))
            total += quantity * product[3]
        orders.append((order_id, customer[0], ordered, rng.choice(_STATUSES), round(total, 2)))
    return {"customers": customers, "products": products, "orders": orders, "order_items": items}


def create_sample_db(path: str | Path) -> Path:
    """Write the sample shop as an SQLite file at `path` (kept if already current).

    The file is built next to `path` and renamed into place, so readers never see half of it.
    """
    target = Path(path)
    if target.is_file() and _sqlite_version(target) == SAMPLE_VERSION:
        return target

    def build(temp: Path) -> None:
        conn = sqlite3.connect(temp)
        try:
            conn.executescript(sample_ddl("sqlite"))
            for table, rows in sample_rows().items():
                marks = ", ".join("?" for _ in rows[0])
                conn.executemany(f"INSERT INTO {table} VALUES ({marks})", [_iso(r) for r in rows])
            conn.execute(f"PRAGMA user_version = {SAMPLE_VERSION}")
            conn.commit()
        finally:
            conn.close()

    return _write_atomically(target, build)


def create_sample_duckdb(path: str | Path) -> Path:
    """Write the sample shop as a DuckDB file at `path` (kept if it already exists)."""
    target = Path(path)
    if target.is_file():
        return target
    try:
        import duckdb
    except ImportError as error:
        raise MissingDependencyError("duckdb", "duckdb", "DuckDB databases") from error

    def build(temp: Path) -> None:
        conn = duckdb.connect(str(temp))
        try:
            conn.execute(sample_ddl("duckdb"))
            for table, rows in sample_rows().items():
                for start in range(0, len(rows), 100):  # executemany is slow in DuckDB
                    chunk = rows[start : start + 100]
                    group = "(" + ", ".join("?" for _ in chunk[0]) + ")"
                    values = ", ".join(group for _ in chunk)
                    params = [value for row in chunk for value in row]
                    conn.execute(f"INSERT INTO {table} VALUES {values}", params)
        finally:
            conn.close()

    return _write_atomically(target, build)


def load_sample_postgres(url: str, schema: str = "brickwork_sample") -> Database:
    """(Re)create the sample shop in PostgreSQL schema `schema`, in one transaction.

    Returns:
        A `Database` pointing at that schema.
    """
    try:
        import psycopg
        from psycopg import sql as pgsql
    except ImportError as error:
        raise MissingDependencyError("psycopg", "postgres", "PostgreSQL databases") from error
    name = pgsql.Identifier(schema)
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(name))
        cursor.execute(pgsql.SQL("CREATE SCHEMA {}").format(name))
        cursor.execute(pgsql.SQL("SET LOCAL search_path TO {}").format(name))
        cursor.execute(sample_ddl("postgres").encode())
        for table, rows in sample_rows().items():
            with cursor.copy(
                pgsql.SQL("COPY {} FROM STDIN").format(pgsql.Identifier(table))
            ) as copy:
                for row in rows:
                    copy.write_row(row)
    return Database.postgres(url, schema=schema)


def database_from_ddl(ddl: str, path: str | Path, rows_per_table: int = 20, seed: int = 0) -> Path:
    """Create an SQLite file from CREATE TABLE text and fill it with fitting rows.

    Values follow column types and names (people's names, cities, emails, prices, dates,
    statuses...), foreign keys point at existing rows, and the same `(ddl, seed)` always gives
    the same file. An existing file at `path` is replaced.

    Args:
        ddl: One or more CREATE TABLE statements (nothing else is accepted).
        path: Where to write the database.
        rows_per_table: Rows generated for each table.
        seed: Seed of the generator.

    Raises:
        ConfigError: The text is not only CREATE TABLE statements.
    """
    schema = SchemaInfo.from_ddl(ddl, "sqlite")  # validates: CREATE TABLE statements only
    rows = _fill_rows(schema, rows_per_table, random.Random(seed))

    def build(temp: Path) -> None:
        conn = sqlite3.connect(temp)
        try:
            conn.executescript(ddl)
            for table in schema.tables:
                columns = ", ".join(quote_name(c.name, "sqlite") for c in table.columns)
                marks = ", ".join("?" for _ in table.columns)
                statement = (
                    f"INSERT INTO {quote_name(table.name, 'sqlite')} ({columns}) VALUES ({marks})"
                )
                for row in rows[table.name]:
                    try:
                        conn.execute(statement, row)
                    except sqlite3.IntegrityError:
                        continue  # a CHECK or UNIQUE constraint we did not model; skip the row
            conn.commit()
        finally:
            conn.close()

    return _write_atomically(Path(path), build)


def _iso(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(v.isoformat() if isinstance(v, date) else v for v in row)


def _sqlite_version(path: Path) -> int | None:
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def _write_atomically(target: Path, build: Callable[[Path], None]) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        build(temp)
        os.replace(temp, target)  # atomic; a concurrent builder wrote identical content
    finally:
        temp.unlink(missing_ok=True)
        temp.with_name(temp.name + ".wal").unlink(missing_ok=True)
    return target


# --- rows for arbitrary CREATE TABLE text -------------------------------------------------

_PEOPLE_TABLES = (
    "customer", "employee", "student", "patient", "user", "author", "doctor", "member",
    "instructor", "teacher", "person", "people", "staff", "client", "manager", "advisor",
)  # fmt: skip
_POOLS: dict[str, tuple[str, ...]] = {
    "department": ("Sales", "Engineering", "Marketing", "Finance", "HR", "Support"),
    "category": tuple(_CATALOG),
    "genre": ("Fiction", "Mystery", "Science", "History", "Fantasy", "Biography"),
    "major": ("Computer Science", "Biology", "Economics", "History", "Physics", "Mathematics"),
    "specialty": ("Cardiology", "Neurology", "Pediatrics", "Oncology", "Dermatology"),
    "diagnosis": ("Flu", "Diabetes", "Hypertension", "Asthma", "Migraine", "Fracture"),
    "status": ("completed", "completed", "pending", "shipped", "cancelled", "active"),
    "type": ("deposit", "withdrawal", "transfer", "payment", "standard", "premium"),
    "level": ("basic", "silver", "gold", "premium"),
    "segment": _SEGMENTS,
    "gender": ("female", "male", "other"),
    "grade": ("A", "B", "C", "D", "F"),
    "semester": ("Fall 2023", "Spring 2024", "Fall 2024", "Spring 2025"),
    "reason": ("Checkup", "Follow-up", "Consultation", "Vaccination", "Surgery"),
    "country": tuple(sorted({country for _, country in _CITIES})),
    "city": tuple(city for city, _ in _CITIES),
    "location": tuple(city for city, _ in _CITIES),
    "hospital": ("St. Mary", "General Hospital", "City Clinic", "Mercy Medical"),
    "origin": tuple(city for city, _ in _CITIES),
    "destination": tuple(city for city, _ in _CITIES),
    "instructor": tuple(f"Dr. {last}" for last in _LAST[:8]),
    "role": ("admin", "editor", "viewer", "analyst"),
    "priority": ("low", "medium", "high"),
}
_WORDS_TEXT = "quick reliable great simple modern classic bright quiet useful fresh"
_WORDS = _WORDS_TEXT.split()
_INT_RANGES: dict[str, tuple[int, int]] = {
    "age": (18, 85), "year": (2015, 2024), "quantity": (1, 10), "stock": (0, 200),
    "salary": (30_000, 150_000), "budget": (50_000, 900_000), "rating": (1, 5),
    "likes": (0, 500), "credits": (1, 5), "seats": (0, 300), "purchases": (0, 50),
    "capacity": (10, 500), "views": (0, 5000), "count": (0, 100),
}  # fmt: skip
_REAL_RANGES: dict[str, tuple[float, float]] = {
    "gpa": (2.0, 4.0), "rating": (1.0, 5.0), "price": (5.0, 1500.0), "amount": (10.0, 5000.0),
    "balance": (0.0, 20_000.0), "salary": (30_000.0, 150_000.0), "discount": (0.0, 0.5),
    "rate": (0.0, 0.2), "weight": (0.1, 50.0), "cost": (5.0, 800.0),
}  # fmt: skip


def _fill_rows(
    schema: SchemaInfo, count: int, rng: random.Random
) -> dict[str, list[tuple[Any, ...]]]:
    rows: dict[str, list[tuple[Any, ...]]] = {}
    for table in schema.tables:
        seen: dict[int, set[Any]] = {k: set() for k, c in enumerate(table.columns) if c.unique}
        rows[table.name] = []
        for i in range(1, count + 1):
            row = [_value(table, column, i, count, rng) for column in table.columns]
            for k, used in seen.items():  # UNIQUE columns: make repeats distinct
                if row[k] in used:
                    row[k] = f"{row[k]} {i}" if isinstance(row[k], str) else i
                used.add(row[k])
            rows[table.name].append(tuple(row))
    return rows


def _value(table: TableInfo, column: ColumnInfo, i: int, count: int, rng: random.Random) -> Any:
    name, kind = column.name.lower(), column.type.upper()
    if column.primary_key and "INT" in kind:
        return i
    if column.references or (name.endswith("_id") and "INT" in kind):
        return rng.randint(1, count)  # ids are 1..count in every generated table
    if not column.not_null and not column.unique and rng.random() < 0.05:
        return None
    if "BOOL" in kind or name.startswith(("is_", "has_")):
        return rng.randint(0, 1)
    if "DATE" in kind or "TIME" in kind:
        day = date(2019, 1, 1) + timedelta(days=rng.randrange(6 * 365))
        if "DATETIME" in kind or "TIMESTAMP" in kind:
            return (
                f"{day.isoformat()} {rng.randrange(8, 20):02d}:{rng.choice((0, 15, 30, 45)):02d}:00"
            )
        return day.isoformat()
    if "INT" in kind:
        low, high = next((r for k, r in _INT_RANGES.items() if k in name), (0, 1000))
        return 0 if "stock" in name and rng.random() < 0.15 else rng.randint(low, high)
    if any(k in kind for k in ("REAL", "FLOA", "DOUB", "NUM", "DEC")):
        low_f, high_f = next((r for k, r in _REAL_RANGES.items() if k in name), (0.0, 1000.0))
        return round(rng.uniform(low_f, high_f), 2)
    return _text(table.name.lower(), name, i, rng)


def _text(table: str, name: str, i: int, rng: random.Random) -> str:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    if "email" in name:
        return f"{first}.{last}{i}@example.com".lower()
    if name == "username":
        return f"{first.lower()}{i}"
    if "phone" in name:
        return f"555-{rng.randrange(1000, 10000)}"
    if "address" in name:
        return f"{rng.randrange(1, 999)} {rng.choice(_LAST)} Street, {rng.choice(_CITIES)[0]}"
    pool = next((p for k, p in _POOLS.items() if k in name), None)
    if pool is not None:
        return rng.choice(pool)
    if name.endswith("name"):
        person = name != "name" or any(t in table for t in _PEOPLE_TABLES)
        if person:
            return f"{first} {last}"
        if "product" in table or "item" in table:
            return rng.choice([p for names in _CATALOG.values() for p in names])
        if "department" in table:
            return _POOLS["department"][(i - 1) % len(_POOLS["department"])]
        if "categor" in table:
            return _POOLS["category"][(i - 1) % len(_POOLS["category"])]
        return f"{table.rstrip('s').replace('_', ' ').title()} {i}"
    if name in ("title", "description", "content", "comment", "bio", "notes", "body"):
        words = rng.sample(_WORDS, 3 if name == "title" else 6)
        return " ".join(words).capitalize()
    return f"{name.replace('_', ' ')} {rng.randint(1, 5)}"
