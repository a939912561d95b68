"""The per-run context every graph node receives (LangGraph `Runtime.context`).

It carries the pool, the ledger and budgets, the escalation policy and mode, and the event sink;
nodes use it to account for model calls and to reserve budget before an escalation. A model
call answered from the response cache (`brickwork.caching`) is accounted at $0, flagged
`cached` on its `ModelCallEvent`. A step an agent decided without a model (the intent kNN) is
accounted as a `ModelSkipped` event: $0, not a call, but in the counterfactual "every node on the
top tier", which would have made that call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from brickwork.cost import Budget, BudgetBook, BudgetExceeded, Ledger, LedgerRow, Reservation
from brickwork.cost.prices import estimate_cost
from brickwork.escalation import Mode, Policy
from brickwork.events import Event, ModelCallEvent, ModelSkipped
from brickwork.serving.pool import ModelPool
from brickwork.serving.types import Completion, Usage

if TYPE_CHECKING:
    from brickwork.agents.base import SkippedCall

__all__ = ["ESCALATION_PROMPT_TOKENS", "RunContext"]

#: Worst-case size assumed for an escalation when reserving budget before it happens.
ESCALATION_PROMPT_TOKENS = 1500
ESCALATION_OUTPUT_TOKENS = 512


@dataclass
class RunContext:
    """Everything a node needs besides the graph state; one per run."""

    run_id: str
    graph: str
    pool: ModelPool
    ledger: Ledger
    policy: Policy
    mode: Mode
    tenant: str
    emit: Callable[[Event], None]
    budgets: BudgetBook
    run_budget: Budget | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    _reservations: dict[str, Reservation] = field(default_factory=dict)
    _small_rows: dict[str, list[LedgerRow]] = field(default_factory=dict)
    _last_rows: list[LedgerRow] = field(default_factory=list)

    def supersede_last(self) -> None:
        """Mark the rows of the last `account` call superseded: a higher tier takes over."""
        self.ledger.mark_escalated(self._last_rows)
        self._last_rows = []

    def account(
        self,
        node: str,
        completions: Iterable[Completion],
        *,
        escalated: bool,
        for_node: str | None = None,
        superseded: bool | None = None,
        skipped: SkippedCall | None = None,
    ) -> float:
        """Ledger rows and events for a node's model calls; charges the budgets. Returns cost.

        `superseded` is passed to `Ledger.record` (False for a middle tier's answer, which
        stays in the counterfactual unless a higher tier replaces it: `supersede_last`).
        `skipped` is the call the agent spared (`AgentResult.skipped`): a $0 ledger row that
        only the counterfactuals count, and a `ModelSkipped` event.
        """
        total = 0.0
        self._last_rows = []
        if skipped is not None:
            self._account_skipped(for_node or node, skipped)
        for completion in completions:
            # A response-cache hit ran no model: it is priced at $0 (no tokens, no busy time)
            # and flagged `cached` on its event; the tokens it saved are on its CacheLookup.
            cached = completion.extra.get("cache") == "hit"
            if cached:
                completion = replace(
                    completion, usage=Usage(), latency_s=0.0, top_tier_prompt_tokens=None
                )
            row = self.ledger.record(
                self.run_id,
                for_node or node,
                completion,
                tenant=self.tenant,
                escalated=escalated,
                superseded=superseded,
            )
            self._last_rows.append(row)
            total += row.cost_usd
            if not escalated:
                self._small_rows.setdefault(for_node or node, []).append(row)
            if row.stand_in and "frontier_stand_in" not in self.flags:
                # No frontier API is configured: a local model played the part. Say so.
                self.flags.append("frontier_stand_in")
            if not escalated:  # escalations were reserved; their cost is committed on return
                self.budgets.charge(self.tenant, self.run_budget, row.cost_usd)
            self.emit(
                ModelCallEvent(
                    self.run_id,
                    node,
                    row.endpoint,
                    row.model,
                    row.served_model,
                    row.prompt_tokens,
                    row.completion_tokens,
                    row.latency_s,
                    row.cost_usd,
                    row.frontier_cost_usd,
                    row.stand_in,
                    escalated,
                    cached,
                )
            )
            if escalated:
                self._escalation_spend[for_node or node] = (
                    self._escalation_spend.get(for_node or node, 0.0) + row.cost_usd
                )
        return total

    def _account_skipped(self, node: str, skipped: SkippedCall) -> None:
        row = self.ledger.record_skipped(
            self.run_id, node, skipped.prompt_tokens, skipped.completion_tokens, tenant=self.tenant
        )
        self._last_rows.append(row)
        # If the node escalates after all, the top tier's call replaces this one.
        self._small_rows.setdefault(node, []).append(row)
        self.emit(
            ModelSkipped(
                self.run_id,
                node,
                skipped.method,
                row.prompt_tokens,
                row.completion_tokens,
                row.frontier_cost_usd,
                row.api_reference_usd,
            )
        )

    @property
    def _escalation_spend(self) -> dict[str, float]:
        return self.resources.setdefault("_escalation_spend", {})  # type: ignore[no-any-return]

    def escalation_estimate(self) -> float:
        """Worst-case cost of one escalation on the top tier (the dearest rung)."""
        price = self.ledger.prices.top_tier_price
        return estimate_cost(price, ESCALATION_PROMPT_TOKENS, ESCALATION_OUTPUT_TOKENS)

    def escalation_budget(self, node: str) -> dict[str, Any]:
        """`EscalationInput` budget fields for a node about to be decided."""
        return {
            "budget_left_usd": self.budgets.left_usd(self.tenant, self.run_budget),
            "escalation_cost_usd": self.escalation_estimate(),
        }

    async def reserve_escalation(self, node: str) -> bool:
        """Reserve the worst-case escalation cost before escalating; False if it cannot."""
        try:
            reservation = await self.budgets.reserve(
                self.tenant, self.run_budget, self.escalation_estimate()
            )
        except BudgetExceeded:
            return False
        self._reservations[node] = reservation
        # The node's small-model attempts were the failed part of an escalation: the
        # frontier-only counterfactual counts the node once, through its frontier call.
        self.ledger.mark_escalated(self._small_rows.pop(node, []))
        return True

    def commit_escalation(self, node: str) -> None:
        """Settle a node's reservation with what its escalation actually cost."""
        reservation = self._reservations.pop(node, None)
        spent = self._escalation_spend.pop(node, 0.0)
        if reservation is not None:
            reservation.commit(spent)
        else:
            self.budgets.charge(self.tenant, self.run_budget, spent)
