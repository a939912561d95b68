"""The escalation decision, exhaustively, without any model."""

from __future__ import annotations

import itertools

import pytest

from brickwork.escalation import REASONS, Decision, EscalationInput, Policy, decide, reason_for

SIGNAL_KINDS = [
    "invalid_output",
    "low_confidence",
    "unknown_tool",
    "invalid_arguments",
    "tool_error",
    "tool_timeout",
    "unsafe_sql",
    "sql_error",
    "sql_timeout",
    "model_error",
    "model_timeout",
]


def test_clean_value_is_accepted() -> None:
    assert decide(EscalationInput()) == Decision("accept")
    assert decide(EscalationInput(confidence=0.9)) == Decision("accept")


@pytest.mark.parametrize("kind", SIGNAL_KINDS)
@pytest.mark.parametrize("mode", ["slm", "hybrid", "frontier"])
@pytest.mark.parametrize("repairs_used", [0, 1])
def test_every_signal_in_every_mode(kind: str, mode: str, repairs_used: int) -> None:
    node = EscalationInput(signals=(kind,), has_value=False, repairs_used=repairs_used, mode=mode)  # type: ignore[arg-type]
    decision = decide(node)
    reason = reason_for([kind])
    assert reason in REASONS
    if mode == "frontier":
        assert decision == Decision("escalate", "frontier_mode", "frontier mode")
    elif reason in Policy().repairable and repairs_used == 0:
        assert decision.action == "repair" and decision.reason == reason
    elif mode == "slm":
        assert decision.action == "fail" and decision.reason == reason
    else:
        assert decision.action == "escalate" and decision.reason == reason


def test_tool_errors_and_timeouts_are_not_repaired_on_the_small_model() -> None:
    for kind in ("tool_error", "tool_timeout", "model_error", "model_timeout"):
        assert decide(EscalationInput(signals=(kind,), has_value=False)).action == "escalate"


def test_most_specific_reason_wins() -> None:
    assert reason_for(["low_confidence", "unsafe_sql"]) == "unsafe_sql"
    assert reason_for(["model_error", "invalid_arguments"]) == "invalid_tool_call"
    assert reason_for([]) is None
    assert reason_for(["something_new"]) == "validation_failed"


def test_low_confidence_from_the_number() -> None:
    policy = Policy(min_confidence=0.7)
    assert decide(EscalationInput(confidence=0.69), policy) == Decision(
        "escalate", "low_confidence", "low_confidence after 0 repair(s)"
    )
    assert decide(EscalationInput(confidence=0.7), policy).action == "accept"
    # slm mode keeps a low-confidence value rather than failing it.
    kept = decide(EscalationInput(confidence=0.1, mode="slm"), policy)
    assert kept.action == "accept" and kept.reason == "low_confidence"


def test_no_value_without_signals_is_a_validation_failure() -> None:
    decision = decide(EscalationInput(has_value=False, repairs_used=1))
    assert decision.action == "escalate" and decision.reason == "validation_failed"


def test_plan_needed_escalates_even_with_a_value() -> None:
    assert decide(EscalationInput(plan_needed=True)).reason == "plan_needed"
    assert decide(EscalationInput(plan_needed=True, mode="slm")).action == "fail"


def test_policy_can_turn_reasons_off_and_repairs_up() -> None:
    policy = Policy(escalate_on=frozenset({"sql_error"}), max_repairs=2)
    node = EscalationInput(signals=("sql_error",), has_value=False, repairs_used=1)
    assert decide(node, policy).action == "repair"
    node = EscalationInput(signals=("tool_error",), has_value=False)
    assert decide(node, policy) == Decision(
        "fail", "tool_error", "policy does not escalate this reason"
    )


@pytest.mark.parametrize(
    ("left", "cost", "action"),
    [
        (None, 5.0, "escalate"),
        (1.0, 0.5, "escalate"),
        (1.0, 1.0, "escalate"),
        (1.0, 1.0001, "fail"),
        (0.0, 0.001, "fail"),
        (-1.0, 0.0, "fail"),
    ],
)
def test_budget_edges(left: float | None, cost: float, action: str) -> None:
    node = EscalationInput(
        signals=("tool_error",), has_value=False, budget_left_usd=left, escalation_cost_usd=cost
    )
    decision = decide(node)
    assert decision.action == action
    if action == "fail":
        assert decision.reason == "budget_exhausted" and "left" in decision.detail


def test_frontier_mode_respects_the_budget_too() -> None:
    node = EscalationInput(mode="frontier", budget_left_usd=0.0, escalation_cost_usd=0.01)
    assert decide(node).reason == "budget_exhausted"


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="max_repairs"):
        Policy(max_repairs=-1)
    with pytest.raises(ValueError, match="min_confidence"):
        Policy(min_confidence=1.5)


def test_every_reason_is_reachable() -> None:
    seen = set()
    for kinds in itertools.chain.from_iterable(
        itertools.combinations(SIGNAL_KINDS, n) for n in (1, 2)
    ):
        seen.add(reason_for(kinds))
    seen |= {"plan_needed", "frontier_mode", "budget_exhausted"}
    assert seen == set(REASONS)
