"""Budgets: spending limits per run and per tenant, reserved before a call and charged after.

```
budgets = BudgetBook({"acme": 50.0}, run_limit_usd=0.05)
run_budget = budgets.run_budget()
reservation = await budgets.reserve("acme", run_budget, estimate_cost(price, 900, 512))
reservation.commit(ledger.record(run_id, "extract", frontier_completion).cost_usd)
```

Tenant budgets are in-process by default: each process allows the whole limit. Across
processes (API replicas), `BudgetBook(..., shared="postgresql://...")` keeps the tenants' money
in PostgreSQL (`brickwork.cost.shared`): a reservation there is one transaction that holds
the amount only if the limit still covers it, whichever process asks. Run budgets stay
in-process (a run runs in one process).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Literal, Protocol, Self

from brickwork.errors import BrickworkError

__all__ = ["Budget", "BudgetBackend", "BudgetBook", "BudgetExceeded", "Reservation", "SharedBudget"]

#: Float slack when comparing dollar sums (a billionth of a dollar).
_EPSILON_USD = 1e-9


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

    def __init__(
        self,
        budgets: tuple[Budget, ...],
        amount_usd: float,
        *,
        holds: tuple[tuple[SharedBudget, str], ...] = (),
    ) -> None:
        self.budgets = budgets
        self.amount_usd = amount_usd
        #: Shared budgets holding the amount, each with its hold's id in the backend.
        self.holds = holds
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
        for shared, hold in self.holds:
            shared.settle(hold, self.amount_usd, actual_usd)

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
        shared: BudgetBackend | str | Literal[False] | None = None,
    ) -> None:
        """Create the book.

        Args:
            tenant_limits_usd: Limit of each named tenant.
            default_tenant_limit_usd: Limit of a tenant not named above (None: unlimited).
            run_limit_usd: Limit of each run (None: runs are unlimited).
            shared: Where tenants' money lives: None (in this process, unless an `App` with a
                PostgreSQL run store shares it there, see `share`), False (in this process,
                always), a `postgresql://` URL or a `BudgetBackend` (shared by every process
                using it: API replicas).
        """
        self.default_tenant_limit_usd = default_tenant_limit_usd
        self.run_limit_usd = run_limit_usd
        self._limits = dict(tenant_limits_usd or {})
        self._lock = threading.Lock()
        self.backend: BudgetBackend | None = None
        self.shared = shared
        self._tenants: dict[str, Budget] = {}
        if shared is not None and shared is not False:
            self.share(shared)
        else:
            self._tenants = {t: self._make(t, limit) for t, limit in self._limits.items()}

    @property
    def limited(self) -> bool:
        """True when some tenant has a limit (a book without one has nothing to share)."""
        return bool(self._limits) or self.default_tenant_limit_usd is not None

    def share(self, where: BudgetBackend | str) -> None:
        """Keep the tenants' money in `where` (a PostgreSQL URL or a backend) from now on.

        What this process spent so far is not carried over: share a book before its first
        run (an `App` with a PostgreSQL run store does it when it is made).
        """
        if isinstance(where, str):
            from brickwork.cost.shared import PostgresBudgets

            where = PostgresBudgets(where)
        with self._lock:
            self.backend, self.shared = where, where
            self._tenants = {t: self._make(t, limit) for t, limit in self._limits.items()}

    def _make(self, tenant: str, limit_usd: float) -> Budget:
        name = f"tenant {tenant!r} budget"
        if self.backend is None:
            return Budget(limit_usd, name=name)
        return SharedBudget(limit_usd, name=name, key=f"tenant:{tenant}", backend=self.backend)

    def tenant(self, tenant: str) -> Budget | None:
        """The budget of a tenant (created from the default limit on first use), or None."""
        with self._lock:
            budget = self._tenants.get(tenant)
            if budget is None and self.default_tenant_limit_usd is not None:
                budget = self._make(tenant, self.default_tenant_limit_usd)
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
        budgets = self._budgets(tenant, run_budget)
        shared = tuple(b for b in budgets if isinstance(b, SharedBudget))
        if not shared:
            return _reserve(budgets, amount_usd)
        # The in-process part first (no I/O), then the shared one; both or neither.
        reservation = _reserve(tuple(b for b in budgets if b not in shared), amount_usd)
        try:
            for budget in shared:
                hold = await budget.hold(amount_usd)
                reservation.holds = (*reservation.holds, (budget, hold))
        except BaseException:
            reservation.release()
            raise
        return reservation

    def charge(self, tenant: str, run_budget: Budget | None, amount_usd: float) -> None:
        """Charge an unreserved call to the tenant and the run."""
        for budget in self._budgets(tenant, run_budget):
            budget.charge(amount_usd)

    def left_usd(self, tenant: str, run_budget: Budget | None) -> float | None:
        """What the tighter of the two budgets has left (None when neither has a limit)."""
        budgets = self._budgets(tenant, run_budget)
        return min(b.left_usd for b in budgets) if budgets else None


class BudgetBackend(Protocol):
    """Where shared budgets keep their money (`brickwork.cost.shared.PostgresBudgets`).

    Every method may block on I/O: `hold` is called from a worker thread, `settle` and
    `charge` return at once and are written in the background (the held amount stays held
    until its settlement is written, so a late write never lets a budget overspend).
    """

    def hold(
        self, key: str, limit_usd: float, amount_usd: float
    ) -> tuple[str | None, float, float]:
        """Hold `amount_usd` on budget `key` if its limit covers it, atomically.

        Returns:
            The hold's id (None when refused), then the budget's spent and held dollars.
        """
        ...

    def settle(self, key: str, hold: str, actual_usd: float) -> None:
        """Drop a hold and charge `actual_usd` in its place (in one transaction)."""
        ...

    def charge(self, key: str, amount_usd: float) -> None:
        """Charge an unreserved amount."""
        ...

    def state(self, key: str) -> tuple[float, float]:
        """(spent, held) dollars of budget `key` now (0, 0 for one never used)."""
        ...


class SharedBudget(Budget):
    """A tenant budget whose money lives in a `BudgetBackend`, shared across processes.

    `reserve` (through `BudgetBook.reserve`) asks the backend, which holds the amount only if
    `limit - spent - held` covers it, in one transaction: replicas reserving on one tenant
    together never overspend it. `spent_usd`, `reserved_usd` and `left_usd` are what this
    process last saw (the escalation decision reads `left_usd` without I/O; the reservation
    is what counts); `refresh` reads them from the backend.
    """

    def __init__(
        self, limit_usd: float, *, name: str = "budget", key: str, backend: BudgetBackend
    ) -> None:
        """Create the view of budget `key` in `backend`, with its configured limit."""
        super().__init__(limit_usd, name=name)
        self.key = key
        self.backend = backend

    async def reserve(self, amount_usd: float) -> Reservation:
        """Hold `amount_usd` on the shared budget.

        Raises:
            BudgetExceeded: Less than `amount_usd` is left, across every process.
        """
        hold = await self.hold(amount_usd)
        return Reservation((), amount_usd, holds=((self, hold),))

    async def hold(self, amount_usd: float) -> str:
        """Hold `amount_usd` in the backend; its id. Raises BudgetExceeded when refused."""
        _check_amount(amount_usd)
        hold, spent, held = await asyncio.to_thread(
            self.backend.hold, self.key, self.limit_usd, amount_usd
        )
        with self._lock:
            self.spent_usd, self.reserved_usd = spent, held
        if hold is None:
            raise BudgetExceeded(self, amount_usd)
        return hold

    def settle(self, hold: str, amount_usd: float, actual_usd: float) -> None:
        """Replace a hold of `amount_usd` by what was spent (written in the background)."""
        with self._lock:
            self.reserved_usd = max(self.reserved_usd - amount_usd, 0.0)
            self.spent_usd += actual_usd
        self.backend.settle(self.key, hold, actual_usd)

    def charge(self, amount_usd: float) -> None:
        """Record spending that had no reservation (written in the background)."""
        _check_amount(amount_usd)
        with self._lock:
            self.spent_usd += amount_usd
        if amount_usd > 0:
            self.backend.charge(self.key, amount_usd)

    def refresh(self) -> None:
        """Read spent and held dollars from the backend (blocking I/O)."""
        spent, held = self.backend.state(self.key)
        with self._lock:
            self.spent_usd, self.reserved_usd = spent, held
