"""What a user reads about a failed run says nothing internal; the run's error and trace do.

A tool that fails with an exception naming an internal URL and an exception type fails the
run on both models (scripted fakes); `RunResult.answer` is redacted, `RunResult.error` and
the node events keep every detail an operator needs.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from brickwork.app import App
from brickwork.events import NodeFinished, RunFinished
from brickwork.store import RunStore
from brickwork.tools.smart_home import SmartHomeHub
from tests.fixtures.graph_fakes import Agents, call

INTERNAL = "http://10.20.30.40:8400/v1/hub"


class HubConnectError(Exception):
    """What a real hub client might raise when its bridge is down."""


def broken_hub() -> SmartHomeHub:
    """A hub whose light switch fails like an unreachable device bridge."""
    hub = SmartHomeHub()

    @functools.wraps(hub.toggle_lights)
    def toggle_lights(**_: Any) -> Any:
        raise HubConnectError(
            f"httpx.ConnectError: cannot reach {INTERNAL} (see /var/lib/brickwork/hub.log)"
        )

    hub.toggle_lights = toggle_lights  # type: ignore[method-assign]
    return hub


async def test_a_failed_runs_answer_is_redacted_and_its_error_keeps_the_detail(
    tmp_path: Path,
) -> None:
    agents = Agents(
        intent=lambda text, model: "device_command",
        call=lambda text, model: call("toggle_lights", room="kitchen", state="on"),
    )
    store = RunStore(tmp_path / "runs.sqlite")
    async with agents.model().pool() as pool:
        app = App.from_graph(
            "smart_home", pool=pool, store=store, checkpoints=None,
            graph_options={"knn": False, "hub": broken_hub()},
        )  # fmt: skip
        result = await app.ainvoke("Turn on the kitchen lights")
        await app.aclose()
    assert result.status == "failed"
    assert {model for kind, model, _ in agents.seen if kind == "call"} == {"slm", "frontier"}
    # What the user sees: why, in words, without the address, the file or the exception names.
    assert result.answer.startswith("Not done: ") and "cannot reach" in result.answer
    for internal in ("10.20.30.40", "8400", "/var/lib", "HubConnectError", "ConnectError",
                     "httpx"):  # fmt: skip
        assert internal not in result.answer, result.answer
    finished = result.events[-1]
    assert isinstance(finished, RunFinished) and finished.answer == result.answer
    # What the operator sees: the error and the trace keep the detail.
    assert result.error is not None and INTERNAL in result.error
    failed = [e for e in result.events if isinstance(e, NodeFinished) and not e.ok]
    assert any(INTERNAL in (e.error or "") for e in failed)
    found = store.run(result.run_id)
    assert found is not None
    summary, events = found
    assert summary.answer == result.answer and INTERNAL in (summary.error or "")
    assert any(INTERNAL in str(e) for e in events)


async def test_a_confirmation_question_is_shown_as_it_is(tmp_path: Path) -> None:
    agents = Agents(
        intent=lambda text, model: "device_command",
        call=lambda text, model: call("lock_door", door="front", state="unlock"),
    )
    async with agents.model().pool() as pool:
        app = App.from_graph(
            "smart_home", pool=pool, checkpoints=tmp_path / "state.sqlite",
            graph_options={"knn": False},
        )  # fmt: skip
        stopped = await app.ainvoke("Is the front door unlocked?")
        pending = await app.apending(stopped.run_id)
        await app.aclose()
    assert stopped.status == "needs_confirmation"
    assert pending is not None and pending["question"] == stopped.answer
    assert pending["call"] == {"name": "lock_door", "parameters": {"door": "front",
                                                                   "state": "unlock"}}  # fmt: skip
