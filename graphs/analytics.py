"""analytics: answer questions about a shop with one read-only SQL query.

    sql --> END        (escalates to the supervisor when the query is unsafe, invalid or fails)

The shop database (customers, products, orders, order_items) is a SQLite file that brickwork
generates itself, deterministically, on the first run (`<cache>/sample/shop.sqlite`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from brickwork._settings import cache_dir
from brickwork.agents.sql import SQLAgent
from brickwork.graphs.builder import END, GraphState, LazyAgent, Specialist, build_graph
from brickwork.skills.examples import analytics_skill
from brickwork.tools.sample_db import create_sample_db
from brickwork.tools.sql import Database

NAME = "analytics"
DESCRIPTION = "Text-to-SQL over a sample shop database, read-only, with escalation."

MAX_ROWS_SHOWN = 10


def read_question(state: GraphState) -> str:
    """The question is the request text."""
    return state.get("text", "")


def write_answer(result: Any) -> dict[str, Any]:
    """The query that ran and (the head of) its rows."""
    value = result.value
    return {
        "sql": value.sql,
        "columns": list(value.columns),
        "rows": [list(row) for row in value.rows],
        "truncated": value.truncated,
    }


def answer(state: GraphState) -> str:
    """The rows as a small text table, with the SQL that produced them."""
    output = state.get("outputs", {}).get("sql")
    if not output:
        return ""
    lines = [" | ".join(output["columns"])]
    lines += [" | ".join(str(v) for v in row) for row in output["rows"][:MAX_ROWS_SHOWN]]
    more = len(output["rows"]) - MAX_ROWS_SHOWN
    if more > 0 or output["truncated"]:
        cut = ", truncated" if output["truncated"] else ""
        lines.append(f"... ({max(more, 0)} more rows{cut})")
    return "\n".join(lines) + f"\n[sql] {output['sql']}"


def build(*, checkpointer: Any = None, database: Path | None = None) -> Any:
    """Compile the graph; the database is created (if needed) on the first run, not here."""

    def make_agent() -> SQLAgent:
        path = create_sample_db(database or cache_dir() / "sample" / "shop.sqlite")
        return SQLAgent(analytics_skill(), database=Database.sqlite(path), max_tokens=160)

    sql = LazyAgent(make_agent)
    return build_graph(
        [Specialist("sql", sql, read_question, next=END, write=write_answer)],
        checkpointer=checkpointer,
    )


graph = build()
