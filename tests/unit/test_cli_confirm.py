"""`brickwork run` says how to answer a run waiting for a confirmation; `brickwork confirm`
answers it on the run's own graph, from the run store and the durable checkpoint.

The waiting run is made by an App on scripted fakes; the command then runs in the same
process as a user would run it, against the same store and the same checkpoint file (the
cache is a temporary folder). Answering needs no model, so its pool points nowhere.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from brickwork.app import App, RunResult
from brickwork.cli import _ask_to_confirm, main
from brickwork.store import RunStore
from tests.fixtures.graph_fakes import Agents, call


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BRICKWORK_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def nowhere(tmp_path: Path) -> Path:
    """A pool config whose models nobody serves: answering a confirmation calls none."""
    path = tmp_path / "pool.json"
    endpoint = {"base_url": "http://127.0.0.1:9/v1", "model": "none"}
    path.write_text(json.dumps({"models": {
        "slm": [{"name": "slm", **endpoint}],
        "frontier": [{"name": "frontier", **endpoint, "stand_in": True}],
    }}))  # fmt: skip
    return path


def waiting_run(store_path: Path) -> RunResult:
    """A smart_home run stopped before unlocking the front door (default checkpoint file)."""
    agents = Agents(
        intent=lambda text, model: "device_command",
        call=lambda text, model: call("lock_door", door="front", state="unlock"),
    )

    async def run() -> RunResult:
        async with agents.model().pool() as pool:
            app = App.from_graph(
                "smart_home", pool=pool, store=RunStore(store_path),
                graph_options={"knn": False},
            )  # fmt: skip
            result = await app.ainvoke("Is the front door unlocked?", tenant="home-7")
            await app.aclose()
            return result

    result = asyncio.run(run())
    assert result.status == "needs_confirmation"
    return result


def test_run_prints_the_question_and_the_command_that_answers_it(
    cache: Path, tmp_path: Path
) -> None:
    store = tmp_path / "my runs.sqlite"
    result = waiting_run(store)
    out = io.StringIO()
    _ask_to_confirm(result, str(store), Console(file=out, width=300))
    text = out.getvalue()
    assert f"run {result.run_id} needs your confirmation: Please confirm: should I " in text
    assert f"brickwork confirm {result.run_id} yes --store '{store}'" in text
    assert "no" in text and "decline" in text


@pytest.mark.parametrize(("answer", "status", "code"), [("yes", "ok", 0), ("no", "failed", 1)])
def test_confirm_resumes_the_run_on_its_own_graph(
    cache: Path, tmp_path: Path, nowhere: Path, capsys: pytest.CaptureFixture[str],
    answer: str, status: str, code: int,
) -> None:  # fmt: skip
    store_path = tmp_path / "runs.sqlite"
    result = waiting_run(store_path)
    args = ["confirm", result.run_id, answer, "--store", str(store_path), "--pool", str(nowhere)]
    assert main(args) == code
    printed = capsys.readouterr().out
    store = RunStore(store_path)
    found = store.run(result.run_id)
    store.close()
    assert found is not None
    summary, _ = found
    assert summary.status == status and summary.graph == "smart_home"
    assert summary.tenant == "home-7"  # resumed as the tenant it ran for
    if answer == "yes":
        assert "lock_door(door='front', state='unlock')" in summary.answer
    else:
        assert summary.answer == "Not done: you did not confirm it."
    assert summary.answer.split("(")[0] in printed
    # answered once: a second answer is refused and runs nothing
    assert main(args) == 2
    assert "is not waiting for a confirmation" in capsys.readouterr().err


def test_confirm_refuses_unknown_runs(
    cache: Path, tmp_path: Path, nowhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["confirm", "nope", "yes", "--store", str(tmp_path / "r.sqlite"), "--pool", str(nowhere)]
    assert main(args) == 2
    assert "no run 'nope' in the run store" in capsys.readouterr().err
