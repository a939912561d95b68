"""The escalation decision: a pure function of an agent's signals, a policy and the budget.

Agents report what went wrong (`Signal`s); this module alone decides what happens next:

    accept     the small model's value stands
    repair     give the small model another turn with the errors (if repairs are left)
    escalate   hand exactly this node to the frontier model, with a reason
    fail       stop this node, with a reason (e.g. the budget cannot cover an escalation)

No I/O, no clock, no model: everything it needs is in its arguments, so it is tested
exhaustively without a server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "REASONS",
    "Action",
    "Decision",
    "EscalationInput",
    "Mode",
    "Policy",
    "Reason",
    "decide",
    "reason_for",
]

Action = Literal["accept", "repair", "escalate", "fail"]
Mode = Literal["slm", "hybrid", "frontier"]

#: Why a node was escalated (or failed); one fixed set, shown to operators and evals.
Reason = Literal[
    "validation_failed",
    "low_confidence",
    "tool_error",
    "invalid_tool_call",
    "unsafe_sql",
    "sql_error",
    "timeout",
    "model_error",
    "plan_needed",
    "frontier_mode",
    "budget_exhausted",
]
REASONS: tuple[Reason, ...] = Reason.__args__  # type: ignore[attr-defined]

#: Agent signal kind -> escalation reason.
_SIGNAL_REASONS: Mapping[str, Reason] = {
    "invalid_output": "validation_failed",
    "ungrounded_value": "validation_failed",  # a made-up value: repaired, then escalated
    "low_confidence": "low_confidence",
    "unknown_tool": "invalid_tool_call",
    "invalid_arguments": "invalid_tool_call",
    "tool_error": "tool_error",
    "tool_timeout": "timeout",
    "unsafe_sql": "unsafe_sql",
    "sql_error": "sql_error",
    "sql_timeout": "timeout",
    "model_error": "model_error",
    "model_timeout": "timeout",
}
#: The order in which a reason is chosen when several signals are present (most specific first).
_PRIORITY: tuple[Reason, ...] = (
    "unsafe_sql",
    "invalid_tool_call",
    "validation_failed",
    "sql_error",
    "tool_error",
    "timeout",
    "model_error",
    "low_confidence",
)


def reason_for(signal_kinds: Iterable[str]) -> Reason | None:
    """The escalation reason for a set of signal kinds (None when there are none)."""
    reasons = {_SIGNAL_REASONS.get(kind, "validation_failed") for kind in signal_kinds}
    for reason in _PRIORITY:
        if reason in reasons:
            return reason
    return None


@dataclass(frozen=True)
class Policy:
    """When to repair and when to escalate; per graph, overridable per skill.

    Attributes:
        max_repairs: Small-model repair turns before escalation.
        min_confidence: Below this a value counts as a `low_confidence` signal.
        escalate_on: Reasons that escalate; any other reason fails the node.
        repairable: Reasons a repair turn can fix (a tool error or timeout is not the model's).
    """

    max_repairs: int = 1
    min_confidence: float = 0.5
    escalate_on: frozenset[Reason] = frozenset(
        {
            "validation_failed",
            "low_confidence",
            "tool_error",
            "invalid_tool_call",
            "unsafe_sql",
            "sql_error",
            "timeout",
            "model_error",
            "plan_needed",
        }
    )
    repairable: frozenset[Reason] = frozenset(
        {"validation_failed", "invalid_tool_call", "unsafe_sql", "sql_error"}
    )

    def __post_init__(self) -> None:
        if self.max_repairs < 0:
            raise ValueError(f"max_repairs must be >= 0, got {self.max_repairs!r}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence!r}")


@dataclass(frozen=True)
class EscalationInput:
    """Everything the decision looks at for one node.

    Attributes:
        signals: Signal kinds the agent reported (see `agents.base.SignalKind`).
        has_value: Whether the agent produced a value at all.
        repairs_used: Repair turns already spent on the small model.
        confidence: The agent's confidence, when it measures one.
        plan_needed: The request needs several steps (a planning job).
        mode: slm (never escalate), hybrid (escalate on need), frontier (always frontier).
        budget_left_usd: Money left for this run (None: no budget).
        escalation_cost_usd: Reserved estimate of what the escalation would cost.
    """

    signals: tuple[str, ...] = ()
    has_value: bool = True
    repairs_used: int = 0
    confidence: float | None = None
    plan_needed: bool = False
    mode: Mode = "hybrid"
    budget_left_usd: float | None = None
    escalation_cost_usd: float = 0.0
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """What to do with a node, and why."""

    action: Action
    reason: Reason | None = None
    detail: str = ""


def decide(node: EscalationInput, policy: Policy = Policy()) -> Decision:
    """Decide accept | repair | escalate(reason) | fail(reason) for one node."""
    if node.mode == "frontier":
        return _escalate("frontier_mode", node, policy, always=True)
    kinds = list(node.signals)
    if (
        node.confidence is not None
        and node.confidence < policy.min_confidence
        and "low_confidence" not in kinds
    ):
        kinds.append("low_confidence")
    reason: Reason | None = "plan_needed" if node.plan_needed else reason_for(kinds)
    if reason is None:
        if node.has_value:
            return Decision("accept")
        reason = "validation_failed"
    if reason in policy.repairable and node.repairs_used < policy.max_repairs:
        return Decision("repair", reason, f"repair {node.repairs_used + 1} of {policy.max_repairs}")
    if node.mode == "slm":
        if node.has_value and reason == "low_confidence":
            return Decision("accept", reason, "slm mode: kept the low-confidence value")
        return Decision("fail", reason, "slm mode: escalation is off")
    if reason not in policy.escalate_on:
        return Decision("fail", reason, "policy does not escalate this reason")
    return _escalate(reason, node, policy)


def _escalate(
    reason: Reason, node: EscalationInput, policy: Policy, always: bool = False
) -> Decision:
    budget = node.budget_left_usd
    if budget is not None and node.escalation_cost_usd > budget:
        return Decision(
            "fail",
            "budget_exhausted",
            f"escalation ({reason}) would cost ~${node.escalation_cost_usd:.6f}, "
            f"${max(budget, 0.0):.6f} left",
        )
    detail = "frontier mode" if always else f"{reason} after {node.repairs_used} repair(s)"
    return Decision("escalate", reason, detail)
