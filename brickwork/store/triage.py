"""What an operator does with the escalation queue: acknowledge entries, send them to training.

Acknowledgements are a small JSONL file beside the run store (SQLite: `runs.acknowledged.jsonl`
next to `runs.sqlite`; PostgreSQL: one file per database in the cache), one key per line, so
they survive restarts without a schema change and never touch the runs themselves.

Sending to the flywheel appends the escalations the top tier fixed as `question`/`answer`
rows (the format `brickwork tune SKILL --data FILE` reads) to one file per graph node under
`<cache>/tune-data/`; an entry already in the file is not written twice.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brickwork._settings import cache_dir
from brickwork.store.base import EscalationRecord, RunStore

__all__ = [
    "Acknowledgements",
    "FlywheelExport",
    "acknowledgements_path",
    "escalation_key",
    "export_escalations",
    "flywheel_path",
]

_SUPERVISOR = "supervisor"
_lock = threading.Lock()


def escalation_key(record: EscalationRecord) -> str:
    """One escalation decision's identity: its run, node and time (ms)."""
    return f"{record.run_id}/{record.node}/{round(record.at * 1000)}"


def acknowledgements_path(store: RunStore) -> Path:
    """Where the acknowledgements of `store`'s escalations are kept."""
    if store.path is not None:
        return store.path.with_name(f"{store.path.stem}.acknowledged.jsonl")
    digest = hashlib.sha256(store.where.encode()).hexdigest()[:12]
    return cache_dir() / f"acknowledged-{digest}.jsonl"


class Acknowledgements:
    """The acknowledged escalations of one run store (append-only JSONL of keys)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def keys(self) -> set[str]:
        """Every acknowledged key (an unreadable line is skipped)."""
        if not self.path.is_file():
            return set()
        found = set()
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                key = json.loads(line).get("key")
            except (ValueError, AttributeError):
                continue
            if isinstance(key, str):
                found.add(key)
        return found

    def add(self, records: Iterable[EscalationRecord]) -> int:
        """Acknowledge `records`; returns how many were new."""
        with _lock:
            known = self.keys()
            new = [r for r in records if escalation_key(r) not in known]
            if not new:
                return 0
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                for record in dict.fromkeys(new):
                    row = {"key": escalation_key(record), "graph": record.graph}
                    out.write(json.dumps(row) + "\n")
        return len(new)


def flywheel_path(graph: str, node: str, folder: Path | None = None) -> Path:
    """The training-data file of one graph node's escalations."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{graph}-{node}")
    return (folder or cache_dir() / "tune-data") / f"escalations-{safe}.jsonl"


@dataclass
class FlywheelExport:
    """What `export_escalations` did.

    Attributes:
        written: Rows appended, per file.
        skipped: Entries not written, each with why (not fixed, already there, ...).
    """

    written: dict[Path, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Rows appended in all."""
        return sum(self.written.values())


def export_escalations(
    store: RunStore, records: Sequence[EscalationRecord], *, folder: Path | None = None
) -> FlywheelExport:
    """Append the fixed escalations among `records` to their node's training-data file.

    The question is the escalated node's last user message (the request for a one-turn
    node), the answer the output of the tier that fixed it (a tool call, a label, the SQL or
    the JSON object), so `brickwork tune SKILL --data FILE` validates it against the skill's
    contract like any other example file.
    """
    result = FlywheelExport()
    with _lock:
        for record in dict.fromkeys(records):
            where = f"{record.node} of run {record.run_id}"
            if record.action != "escalate" or not record.fixed:
                result.skipped.append(f"{where}: the escalation did not fix it")
                continue
            stored = store.run(record.run_id)
            row = _row(record, stored[1]) if stored is not None else None
            if row is None:
                result.skipped.append(f"{where}: no output to learn from (a plan, or no fix)")
                continue
            path = flywheel_path(record.graph, record.node, folder)
            if row["source"] in _sources(path):
                result.skipped.append(f"{where}: already in {path.name}")
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(row) + "\n")
            result.written[path] = result.written.get(path, 0) + 1
    return result


def _sources(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    found = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            found.add(str(json.loads(line).get("source")))
        except (ValueError, AttributeError):
            continue
    return found


def _row(record: EscalationRecord, events: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The training row of one escalation, from the fix after the decision.

    The fix is the supervisor's re-run of the node on a higher tier; None when it failed or
    wrote a plan.
    """
    decided = False
    for event in events:
        kind = event.get("kind")
        if not decided:
            decided = (
                kind == "escalation"
                and event.get("node") == record.node
                and abs(float(event.get("at", record.at)) - record.at) < 1e-3
            )
            continue
        if kind != "node_finished" or event.get("node") not in (record.node, _SUPERVISOR):
            continue
        if event.get("node") == record.node and not event.get("ok"):
            continue  # the node's own failed finish, before the tier above re-runs it
        if not event.get("ok") or event.get("method") == "plan":
            return None
        answer = _value(event.get("output"))
        if answer is None:
            return None
        return {
            "question": _question(event) or record.text,
            "answer": json.dumps(answer) if isinstance(answer, dict) else answer,
            "source": f"escalation:{record.run_id}/{record.node}",
            "teacher": str(event.get("model") or ""),
        }
    return None


def _question(finished: Mapping[str, Any]) -> str | None:
    attempts = finished.get("attempts") or []
    messages = attempts[0].get("messages") if attempts else None
    for message in reversed(messages or []):
        if message.get("role") == "user" and message.get("content"):
            return str(message["content"])
    return None


def _value(output: Any) -> Any:
    """The agent's value inside a node output: the call, label or SQL, else the object."""
    if isinstance(output, Mapping):
        keys = set(output)
        for key, shape in _SHAPES.items():
            if key in keys and keys <= shape:
                value = output[key]
                return dict(value) if isinstance(value, Mapping) else value
        return dict(output)
    return output


#: Node outputs that wrap the agent's value (see graphs.builder): key -> every key they have.
_SHAPES = {
    "call": {"call", "result"},
    "label": {"label", "confidence", "method"},
    "sql": {"sql", "columns", "rows", "result"},
}
