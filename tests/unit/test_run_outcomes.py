"""Run status tells the truth: failed tool calls, failed plan steps and made-up extractions."""

from __future__ import annotations

from typing import Any

import pytest

from brickwork.app import App, RunResult
from brickwork.cli import exit_code
from brickwork.events import NodeFinished
from brickwork.tools.bank import SimulatedBank
from brickwork.tools.smart_home import SmartHomeHub
from tests.fixtures.graph_fakes import Agents, call


async def _run(graph: str, agents: Agents, text: str, **options: Any) -> RunResult:
    async with agents.model().pool() as pool:
        app = App.from_graph(
            graph, pool=pool, checkpoints=None,
            graph_options={"knn": False, **options},
        )  # fmt: skip
        try:
            return await app.ainvoke(text)
        finally:
            await app.aclose()


async def test_a_tool_error_that_survives_escalation_fails_the_run() -> None:
    bank = SimulatedBank()
    agents = Agents(
        intent=lambda text, model: "account_closure",
        call=lambda text, model: call("close_account", account="credit_card"),
    )
    result = await _run("support", agents, "Please close my credit card account", bank=bank)
    assert result.status == "failed"
    assert [m for kind, m, _ in agents.seen if kind == "call"] == ["slm", "frontier"]
    assert "tool_error" in (result.error or "")
    assert result.answer == "Not done: the customer has no credit_card account."
    assert "BankError" not in result.answer and "None" not in result.answer
    assert "act:escalation_failed" in result.flags


async def test_a_tool_call_that_works_after_escalation_is_ok() -> None:
    bank = SimulatedBank(accounts={"current", "savings", "credit_card"})
    agents = Agents(
        intent=lambda text, model: "account_closure",
        call=lambda text, model: call("close_account", account="credit_card"),
    )
    result = await _run("support", agents, "Please close my credit card account", bank=bank)
    assert result.ok and "credit_card" not in bank.accounts
    assert "close_account(account='credit_card')" in result.answer


def _home_agents(plan: list[str], calls: dict[str, dict[str, Any]]) -> Agents:
    def answer(text: str, model: str) -> dict[str, Any]:
        return calls[text]

    return Agents(call=answer, plan=lambda text, model: plan)


REQUEST = "Dim the office lights, lock the garage door and tell me the thermostat mode"
PLAN = ["Dim the office lights", "Lock the garage door", "Tell me the thermostat mode"]


async def test_a_plan_whose_steps_all_fail_is_failed_and_says_so_in_words() -> None:
    bad = call("set_brightness", room="office", level=30)  # not a tool of the benchmark set
    agents = _home_agents(PLAN, dict.fromkeys(PLAN, bad))
    result = await _run("smart_home", agents, REQUEST)
    assert result.status == "failed"
    assert "?(" not in result.answer
    lines = result.answer.splitlines()
    assert len(lines) == 3 and all(": not done" in line for line in lines)
    assert lines[0].startswith("1. Dim the office lights: not done")
    steps = [e for e in result.events if isinstance(e, NodeFinished) and e.node.startswith("step")]
    assert [e.ok for e in steps] == [False, False, False]
    assert "execute_plan:incomplete" in result.flags


async def test_a_plan_with_one_failed_step_is_failed_and_lists_what_was_done() -> None:
    hub = SmartHomeHub()
    calls = {
        PLAN[0]: call("toggle_lights", room="office", state="off"),
        PLAN[1]: call("lock_door", door="garage", state="lock"),
        PLAN[2]: call("get_device_status", device_type="thermostat", room="thermostat"),
    }
    result = await _run("smart_home", _home_agents(PLAN, calls), REQUEST, hub=hub)
    assert result.status == "failed"
    lines = result.answer.splitlines()
    assert lines[0] == "1. Dim the office lights: done ({\"lights\": {\"office\": " \
        "{\"on\": false, \"brightness\": 100}}})."  # fmt: skip
    assert lines[1].startswith("2. Lock the garage door: done")
    assert lines[2].startswith("3. Tell me the thermostat mode: not done (no room or door")
    assert "DeviceError" not in result.answer


async def test_a_plan_whose_steps_all_succeed_is_ok() -> None:
    calls = {
        PLAN[0]: call("toggle_lights", room="office", state="off"),
        PLAN[1]: call("lock_door", door="garage", state="lock"),
        PLAN[2]: call("get_device_status", device_type="thermostat"),
    }
    result = await _run("smart_home", _home_agents(PLAN, calls), REQUEST)
    assert result.ok and len(result.answer.splitlines()) == 3
    assert all(": done" in line for line in result.answer.splitlines())


TRANSFER = "I sent 250 GBP to Maria Lopez on Monday and it still hasn't arrived"


async def test_made_up_extracted_values_are_repaired_then_escalated() -> None:
    invented = {"amount": 250, "currency": "USD", "recipient": "Maria Lopez",
                "reference": "pizza night"}  # fmt: skip
    right = {"amount": 250.0, "currency": "GBP", "recipient": "Maria Lopez"}
    agents = Agents(
        intent=lambda text, model: "transfer_not_arrived",
        extract=lambda text, model: invented if model == "slm" else right,
        call=lambda text, model: call(
            "trace_transfer", amount=250, currency="GBP", recipient="Maria Lopez"
        ),
    )
    result = await _run("support", agents, TRANSFER)
    assert result.ok, result.error
    assert result.outputs["supervisor"] == {**right, "reference": None}
    assert result.escalations[0] == {"node": "extract", "reason": "validation_failed"}
    [decision] = [e for e in result.events if e.kind == "escalation" and e.node == "extract"]
    assert [kind for kind, _ in decision.signals] == ["ungrounded_value"]
    assert "currency='USD' does not appear" in decision.signals[0][1]
    assert "reference='pizza night'" in decision.signals[0][1]
    assert [m for kind, m, _ in agents.seen if kind == "extract"] == ["slm", "slm", "frontier"]


@pytest.mark.parametrize(
    ("statuses", "code"),
    [(["ok"], 0), (["ok", "ok"], 0), (["failed"], 1), (["failed", "failed"], 1),
     (["ok", "failed", "ok"], 1), (["ok", "needs_confirmation"], 1)],
)  # fmt: skip
def test_cli_exit_code_is_non_zero_when_any_request_failed(statuses: list[str], code: int) -> None:
    class Result:
        def __init__(self, status: str) -> None:
            self.ok = status == "ok"

    assert exit_code([Result(s) for s in statuses]) == code  # type: ignore[arg-type]
