"""SVG snapshots of the TUI's key screens, compared with the files in tests/unit/snapshots/.

The store is filled from real App runs (the package's fake model) whose ids, times and
latencies are then made fixed, so each screen renders the same on every machine. After a
deliberate change to a screen, rewrite the files with

    BRICKWORK_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/unit/test_tui_snapshots.py

and look at them (they are SVG pictures) before committing. The pictures depend on the
Textual and Rich releases that drew them (`snapshots/versions.txt`); with other releases the
comparison is skipped, saying so, until the files are rewritten.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from brickwork.store import RunStore, RunSummary
from brickwork.tui.app import BrickworkTUI
from tests.unit.test_tui import SIZE, _filled, press, settle

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("BRICKWORK_UPDATE_SNAPSHOTS") == "1"
VERSIONS = SNAPSHOTS / "versions.txt"
#: 2026-01-02 03:04:05 UTC: every stored time is counted from here.
EPOCH = 1767323045.0


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC while the screens render times."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _fixed(event: dict[str, Any], run_id: str, started: float, index: int) -> dict[str, Any]:
    event = {**event, "run_id": run_id}
    if "at" in event:
        event["at"] = started + 0.25 * index
    if "latency_s" in event:
        event["latency_s"] = 0.125 * (index + 1)
    return event


@pytest.fixture
async def fixed_store(tmp_path: Path, utc: None) -> RunStore:
    """The four runs of test_tui's `filled`, re-saved with fixed ids, times and latencies."""
    source = RunStore(tmp_path / "real.sqlite")
    store = RunStore(tmp_path / "fixed.sqlite")
    async for filled in _filled(source):
        for number, result in enumerate(filled.results.values()):
            run = source.run(result.run_id)
            assert run is not None
            summary, events = run
            run_id = f"run{number:013d}"
            started = EPOCH + 60.0 * number
            store.save(
                RunSummary(
                    run_id,
                    summary.graph,
                    summary.tenant,
                    summary.mode,
                    summary.text,
                    summary.status,
                    summary.answer,
                    summary.error,
                    summary.cost_usd,
                    summary.frontier_only_usd,
                    1.5 + number,
                    summary.escalations,
                    summary.flags,
                    started,
                ),
                [_fixed(e, run_id, started, i) for i, e in enumerate(events)],
            )
    assert store.flush(5.0)
    return store


def _versions() -> str:
    return "".join(f"{p} {metadata.version(p)}\n" for p in ("textual", "rich"))


def _compare(name: str, svg: str, tmp_path: Path) -> None:
    expected = SNAPSHOTS / name
    if UPDATE:
        SNAPSHOTS.mkdir(exist_ok=True)
        expected.write_text(svg)
        VERSIONS.write_text(_versions())
        return
    made_with = VERSIONS.read_text() if VERSIONS.is_file() else "(unknown)"
    if made_with != _versions():
        pytest.skip(f"snapshots drawn by {made_with!r}, this is {_versions()!r}: rewrite them")
    assert expected.is_file(), f"no snapshot {expected}; make it with BRICKWORK_UPDATE_SNAPSHOTS=1"
    if expected.read_text() != svg:
        actual = tmp_path / name
        actual.write_text(svg)
        pytest.fail(
            f"{name} differs from its snapshot: compare {actual} with {expected}; if the change "
            "is wanted, rewrite the snapshots with BRICKWORK_UPDATE_SNAPSHOTS=1"
        )


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("dashboard.svg", ()),
        ("runs.svg", ("r",)),
        ("run_detail.svg", ("r", "down", "down", "enter")),
        ("escalations.svg", ("e",)),
    ],
)
async def test_screen_matches_its_snapshot(
    fixed_store: RunStore, tmp_path: Path, name: str, keys: tuple[str, ...]
) -> None:
    tui = BrickworkTUI({}, fixed_store, refresh_s=3600)
    async with tui.run_test(size=SIZE) as pilot:
        await settle(pilot)
        if keys:
            await press(pilot, *keys)
        svg = tui.export_screenshot(title="brickwork")
    _compare(name, svg, tmp_path)
