"""Any text a run holds can be stored and read back, on SQLite and PostgreSQL.

Lone UTF-16 surrogates (JSON's `"\\ud83d"` decodes to one) used to lose the run on SQLite
(`UnicodeEncodeError`) and on PostgreSQL (jsonb refuses them); a row written with one escaped
in its JSON made every later read of that run fail to encode as UTF-8.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from brickwork.store import RunStore
from tests.integration.test_store_conformance import (  # noqa: F401 - fixtures
    Backend,
    _summary,
    backend,
    store,
)

LONE = "\ud83d"


def test_lone_surrogates_are_stored_as_replacement_characters(store: RunStore) -> None:  # noqa: F811
    events = [
        {"run_id": "s1", "kind": "run_started", "text": f"hi {LONE}", "at": 1.0, "node": None},
        {"run_id": "s1", "kind": "node_finished", "node": f"n{LONE}", "at": 2.0,
         "output": {f"k{LONE}": [f"v{LONE}", "\U0001f600"]}},
    ]  # fmt: skip
    store.save(
        _summary("s1", text=f"hi {LONE}", answer=f"a{LONE}", error=f"e{LONE}", flags=(LONE,)),
        events,
    )
    assert store.flush(5.0) and store.dropped == 0
    found = store.run("s1")
    assert found is not None
    summary, stored = found
    assert (summary.text, summary.answer, summary.error) == ("hi \ufffd", "a\ufffd", "e\ufffd")
    assert summary.flags == ("\ufffd",)
    assert stored[0]["text"] == "hi \ufffd"
    assert stored[1]["node"] == "n\ufffd"
    assert stored[1]["output"] == {"k\ufffd": ["v\ufffd", "\U0001f600"]}  # real emoji kept
    json.dumps(stored, ensure_ascii=False).encode("utf-8")  # answerable as UTF-8 JSON


def test_a_row_written_with_an_escaped_surrogate_is_still_readable(tmp_path: Path) -> None:
    where = tmp_path / "runs.sqlite"
    with RunStore(where) as writer:
        writer.save(_summary("old"), [{"run_id": "old", "kind": "run_started", "at": 1.0}])
        assert writer.flush(5.0)

    legacy = json.dumps({"run_id": "old", "kind": "run_started", "text": LONE, "at": 1.0})
    assert "\\ud83d" in legacy  # what json.dumps wrote before: an escaped lone surrogate
    with sqlite3.connect(where) as conn:
        conn.execute("UPDATE events SET body = ? WHERE run_id = 'old'", (legacy,))
    with RunStore(where) as reader:
        found = reader.run("old")
        assert found is not None
        assert found[1][0]["text"] == "\ufffd"
        json.dumps(found[1], ensure_ascii=False).encode("utf-8")
