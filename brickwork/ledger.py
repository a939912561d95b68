"""The cost ledger: what each model call cost, what it would cost on the frontier, budgets.

Every call is priced twice: at its endpoint's price and at the frontier reference price, so a
run's saving over a frontier-only run is known. Budgets stop a run or a tenant before it
overspends.

```
ledger = Ledger(PriceBook.load("prices.toml"))
row = ledger.record(run_id, "extract", completion, tenant="acme")
ledger.run_cost(run_id)          # RunCost(cost_usd, frontier_only_usd, saving_usd, ...)

budgets = BudgetBook({"acme": 50.0}, run_limit_usd=0.05)
run_budget = budgets.run_budget()
reservation = await budgets.reserve("acme", run_budget, estimate_cost(price, 900, 512))
reservation.commit(ledger.record(run_id, "extract", frontier_completion).cost_usd)
```

Pure bookkeeping: no I/O (the run store persists rows), no clock except `time.time()` for a row
whose time is not given. Prices live in `brickwork._prices` and are re-exported here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Self

from brickwork._prices import (
    CPU_SELF_HOSTED,
    DEFAULT_FRONTIER_ENDPOINTS,
    FRONTIER_REFERENCE,
    H100_SELF_HOSTED,
    Amortise,
    Price,
    PriceBook,
    SelfHostedPrice,
    TokenPrice,
    estimate_cost,
)
from brickwork.errors import BrickworkError

if TYPE_CHECKING:
    from brickwork.serving.types import Completion

__all__ = [
    "CPU_SELF_HOSTED",
    "DEFAULT_FRONTIER_ENDPOINTS",
    "FRONTIER_REFERENCE",
    "H100_SELF_HOSTED",
    "Amortise",
    "Budget",
    "BudgetBook",
    "BudgetExceeded",
    "Ledger",
    "LedgerRow",
    "Price",
    "PriceBook",
    "Reservation",
    "RunCost",
    "SelfHostedPrice",
    "TokenPrice",
    "estimate_cost",
]

#: Float slack when comparing dollar sums (a billionth of a dollar).
_EPSILON_USD = 1e-9


@dataclass(frozen=True)
class LedgerRow:
    """One model call, priced.

    Attributes:
        run_id: The run the call belongs to.
        node: The graph node that made it.
        endpoint: The endpoint that answered (the key into the `PriceBook`).
        model: Logical model name ("slm:intent", "frontier").
        served_model: Model name sent to the endpoint.
        prompt_tokens: Prompt tokens.
        completion_tokens: Completion tokens.
        latency_s: Wall time of the call.
        cost_usd: What the call cost at its endpoint's price.
        frontier_cost_usd: What the same tokens would cost at the frontier reference price.
        stand_in: A local model played the frontier role.
        escalated: The call belongs to an escalated node (its failed small attempts and the
            frontier call that replaced them).
        tenant: Who pays.
        at: Unix time of the call.
        frontier: The call ran on the frontier role (logical model "frontier" or a stand-in).
    """

    run_id: str
    node: str
    endpoint: str
    model: str
    served_model: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    cost_usd: float
    frontier_cost_usd: float
    stand_in: bool
    escalated: bool
    tenant: str
    at: float
    frontier: bool = False


@dataclass(frozen=True)
class RunCost:
    """Cost of a set of calls (one run, or one tenant's runs) against the frontier-only world.

    Arithmetic, over the rows of the run:

        cost_usd          = sum of cost_usd of every row: small calls, repair turns, failed small
                            attempts of escalated nodes and frontier calls are all real spend
        frontier_only_usd = sum of frontier_cost_usd of small rows that were not escalated
                            + sum of cost_usd of frontier rows
        saving_usd        = frontier_only_usd - cost_usd   (negative: hybrid cost more)
        saving_ratio      = saving_usd / frontier_only_usd (0.0 when frontier_only_usd is 0)

    An escalated node counts once in the counterfactual, through its frontier call: with every
    node on the frontier there would have been no small attempt to fail first.

    Attributes:
        cost_usd: What the calls actually cost.
        frontier_only_usd: What they would have cost with every node on the frontier model.
        saving_usd: frontier_only_usd - cost_usd.
        saving_ratio: Share of the frontier-only cost saved.
        calls: Number of calls.
        small_calls: Calls on small models.
        frontier_calls: Calls on the frontier role.
    """

    cost_usd: float = 0.0
    frontier_only_usd: float = 0.0
    saving_usd: float = 0.0
    saving_ratio: float = 0.0
    calls: int = 0
    small_calls: int = 0
    frontier_calls: int = 0

    @classmethod
    def of(cls, rows: Iterable[LedgerRow]) -> RunCost:
        """Sum these rows (see the class docstring for the arithmetic)."""
        cost = frontier_only = 0.0
        small = frontier = 0
        for row in rows:
            cost += row.cost_usd
            if row.frontier:
                frontier += 1
                frontier_only += row.cost_usd
            else:
                small += 1
                if not row.escalated:
                    frontier_only += row.frontier_cost_usd
        saving = frontier_only - cost
        ratio = saving / frontier_only if frontier_only > 0 else 0.0
        return cls(cost, frontier_only, saving, ratio, small + frontier, small, frontier)


class Ledger:
    """Prices every model call and keeps the rows, per run and per tenant.

    Safe to share between asyncio tasks and threads: every method is short and holds a lock
    only while it touches the rows.
    """

    def __init__(
        self, prices: PriceBook, *, frontier_models: Collection[str] = ("frontier",)
    ) -> None:
        """Create an empty ledger.

        Args:
            prices: Price of each endpoint and the frontier reference.
            frontier_models: Logical model names (before any ":adapter") of the frontier role;
                a call on one of these, or by a stand-in, counts as a frontier call.
        """
        self.prices = prices
        self.frontier_models = frozenset(frontier_models)
        self._runs: dict[str, list[LedgerRow]] = {}
        self._lock = threading.Lock()

    def record(
        self,
        run_id: str,
        node: str,
        completion: Completion,
        *,
        tenant: str = "default",
        escalated: bool = False,
        at: float | None = None,
    ) -> LedgerRow:
        """Price one call and add it to the ledger.

        Raises:
            ConfigError: The completion's endpoint has no price.
        """
        usage = completion.usage
        row = LedgerRow(
            run_id=run_id,
            node=node,
            endpoint=completion.endpoint,
            model=completion.model,
            served_model=completion.served_model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            latency_s=completion.latency_s,
            cost_usd=self.prices.cost(completion),
            frontier_cost_usd=self.prices.frontier_cost(completion),
            stand_in=completion.stand_in,
            escalated=escalated,
            tenant=tenant,
            at=time.time() if at is None else at,
            frontier=completion.stand_in
            or completion.model.split(":", 1)[0] in self.frontier_models,
        )
        with self._lock:
            self._runs.setdefault(run_id, []).append(row)
        return row

    def mark_escalated(self, rows: Iterable[LedgerRow]) -> tuple[LedgerRow, ...]:
        """Flag rows recorded before their node escalated (the failed small attempts).

        Pass the rows `record` returned for the node; returns their escalated replacements.
        """
        marked: list[LedgerRow] = []
        with self._lock:
            for row in rows:
                run = self._runs.get(row.run_id, [])
                index = next((i for i, kept in enumerate(run) if kept is row), None)
                if index is None:
                    raise ValueError(f"row {row!r} is not in this ledger; pass rows from record()")
                run[index] = replace(row, escalated=True)
                marked.append(run[index])
        return tuple(marked)

    def rows(self, run_id: str | None = None) -> tuple[LedgerRow, ...]:
        """Rows of one run in recording order, or of every run when `run_id` is None."""
        with self._lock:
            if run_id is not None:
                return tuple(self._runs.get(run_id, ()))
            return tuple(row for run in self._runs.values() for row in run)

    def run_cost(self, run_id: str) -> RunCost:
        """Cost, frontier-only counterfactual and saving of one run (zeros if it has no rows)."""
        return RunCost.of(self.rows(run_id))

    def tenant_cost(self, tenant: str) -> RunCost:
        """Totals over every run of one tenant."""
        return RunCost.of(row for row in self.rows() if row.tenant == tenant)

    def tenants(self) -> dict[str, RunCost]:
        """Totals per tenant, for every tenant with a row."""
        by_tenant: dict[str, list[LedgerRow]] = {}
        for row in self.rows():
            by_tenant.setdefault(row.tenant, []).append(row)
        return {tenant: RunCost.of(rows) for tenant, rows in by_tenant.items()}


class BudgetExceeded(BrickworkError):
    """A reservation would take a budget past its limit."""

    def __init__(self, budget: Budget, amount_usd: float) -> None:
        self.budget_name = budget.name
        self.amount_usd = amount_usd
        self.left_usd = budget.left_usd
        self.limit_usd = budget.limit_usd
        super().__init__(
            f"{budget.name} cannot cover ${amount_usd:.6f}: ${max(self.left_usd, 0.0):.6f} left "
            f"of ${budget.limit_usd:.6f} (${budget.spent_usd:.6f} spent, "
            f"${budget.reserved_usd:.6f} reserved); raise the limit or lower max_tokens"
        )


class Budget:
    """A spending limit in US dollars, for one run or one tenant.

    Money is either spent (`charge`, `Reservation.commit`) or reserved ahead of a call whose
    cost is only bounded (`reserve`, typically `estimate_cost` of an escalation). A reservation
    succeeds only if `left_usd = limit - spent - reserved` covers it, atomically: many
    concurrent runs reserving on one budget never overspend it. Spending itself is never
    refused (the money is gone), so `left_usd` goes negative only when a call cost more than
    its reservation or was charged without one.

    The lock is a `threading.Lock` held for a few arithmetic operations and never across an
    `await`: that is atomic for asyncio tasks, safe across threads, and (unlike an
    `asyncio.Lock`) not tied to one event loop, as a tenant's budget outlives many.
    """

    def __init__(self, limit_usd: float, *, name: str = "budget") -> None:
        """Create a budget of `limit_usd` dollars, `name`d in error messages."""
        if not limit_usd >= 0:
            raise ValueError(f"limit_usd must be >= 0, got {limit_usd!r}")
        self.limit_usd = float(limit_usd)
        self.name = name
        self.spent_usd = 0.0
        self.reserved_usd = 0.0
        self._lock = threading.Lock()

    @property
    def left_usd(self) -> float:
        """Dollars neither spent nor reserved."""
        return self.limit_usd - self.spent_usd - self.reserved_usd

    async def reserve(self, amount_usd: float) -> Reservation:
        """Hold `amount_usd` for a call about to run.

        Raises:
            BudgetExceeded: Less than `amount_usd` is left.
        """
        return _reserve((self,), amount_usd)

    def charge(self, amount_usd: float) -> None:
        """Record spending that had no reservation (e.g. a small-model call)."""
        _check_amount(amount_usd)
        with self._lock:
            self.spent_usd += amount_usd

    def __repr__(self) -> str:
        return (
            f"Budget({self.name!r}, limit_usd={self.limit_usd!r}, spent_usd={self.spent_usd!r}, "
            f"reserved_usd={self.reserved_usd!r})"
        )


class Reservation:
    """Money held on one or more budgets until `commit` charges the real cost or `release`.

    Use as a context manager to release it if the call fails before `commit`.
    """

    def __init__(self, budgets: tuple[Budget, ...], amount_usd: float) -> None:
        self.budgets = budgets
        self.amount_usd = amount_usd
        self.state: Literal["held", "committed", "released"] = "held"

    def commit(self, actual_usd: float) -> None:
        """Release the reserve and charge `actual_usd` (which may differ from the estimate)."""
        _check_amount(actual_usd)
        if self.state != "held":
            raise RuntimeError(f"reservation already {self.state}; commit it once")
        self._settle(actual_usd)
        self.state = "committed"

    def release(self) -> None:
        """Give the reserve back without charging (a no-op once committed or released)."""
        if self.state == "held":
            self._settle(0.0)
            self.state = "released"

    def _settle(self, actual_usd: float) -> None:
        for budget in self.budgets:
            with budget._lock:
                budget.reserved_usd = max(budget.reserved_usd - self.amount_usd, 0.0)
                budget.spent_usd += actual_usd

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _check_amount(amount_usd: float) -> None:
    if not amount_usd >= 0:
        raise ValueError(f"amounts must be >= 0 dollars, got {amount_usd!r}")


def _reserve(budgets: tuple[Budget, ...], amount_usd: float) -> Reservation:
    """Reserve on every budget or on none (locks taken in one global order: no deadlock)."""
    _check_amount(amount_usd)
    ordered = sorted(set(budgets), key=id)
    for budget in ordered:
        budget._lock.acquire()
    try:
        for budget in budgets:
            if amount_usd > budget.left_usd + _EPSILON_USD:
                raise BudgetExceeded(budget, amount_usd)
        for budget in ordered:
            budget.reserved_usd += amount_usd
    finally:
        for budget in reversed(ordered):
            budget._lock.release()
    return Reservation(tuple(ordered), amount_usd)


class BudgetBook:
    """Per-tenant budgets and a factory of per-run budgets; reserves on both or neither."""

    def __init__(
        self,
        tenant_limits_usd: Mapping[str, float] | None = None,
        *,
        default_tenant_limit_usd: float | None = None,
        run_limit_usd: float | None = None,
    ) -> None:
        """Create the book.

        Args:
            tenant_limits_usd: Limit of each named tenant.
            default_tenant_limit_usd: Limit of a tenant not named above (None: unlimited).
            run_limit_usd: Limit of each run (None: runs are unlimited).
        """
        self.default_tenant_limit_usd = default_tenant_limit_usd
        self.run_limit_usd = run_limit_usd
        self._tenants = {
            tenant: Budget(limit, name=f"tenant {tenant!r} budget")
            for tenant, limit in (tenant_limits_usd or {}).items()
        }
        self._lock = threading.Lock()

    def tenant(self, tenant: str) -> Budget | None:
        """The budget of a tenant (created from the default limit on first use), or None."""
        with self._lock:
            budget = self._tenants.get(tenant)
            if budget is None and self.default_tenant_limit_usd is not None:
                budget = Budget(self.default_tenant_limit_usd, name=f"tenant {tenant!r} budget")
                self._tenants[tenant] = budget
            return budget

    def run_budget(self) -> Budget | None:
        """A fresh budget for one run, or None when runs are unlimited."""
        if self.run_limit_usd is None:
            return None
        return Budget(self.run_limit_usd, name="run budget")

    def _budgets(self, tenant: str, run_budget: Budget | None) -> tuple[Budget, ...]:
        return tuple(b for b in (self.tenant(tenant), run_budget) if b is not None)

    async def reserve(
        self, tenant: str, run_budget: Budget | None, amount_usd: float
    ) -> Reservation:
        """Reserve on the tenant's budget and the run's, atomically: both or neither.

        Raises:
            BudgetExceeded: One of the two cannot cover `amount_usd` (nothing is reserved).
        """
        return _reserve(self._budgets(tenant, run_budget), amount_usd)

    def charge(self, tenant: str, run_budget: Budget | None, amount_usd: float) -> None:
        """Charge an unreserved call to the tenant and the run."""
        for budget in self._budgets(tenant, run_budget):
            budget.charge(amount_usd)

    def left_usd(self, tenant: str, run_budget: Budget | None) -> float | None:
        """What the tighter of the two budgets has left (None when neither has a limit)."""
        budgets = self._budgets(tenant, run_budget)
        return min(b.left_usd for b in budgets) if budgets else None
