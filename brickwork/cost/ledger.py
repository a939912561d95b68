"""The cost ledger: what each model call cost, and what it would cost on the frontier.

Every call is priced twice: at its endpoint's price and at the frontier reference price, so a
run's saving over a frontier-only run is known. Budgets (`brickwork.cost.budget`) stop a run or
a tenant before it overspends.

```
ledger = Ledger(PriceBook.load("prices.toml"))
row = ledger.record(run_id, "extract", completion, tenant="acme")
ledger.run_cost(run_id)          # RunCost(cost_usd, frontier_only_usd, saving_usd, ...)
```

Pure bookkeeping: no I/O (the run store persists rows), no clock except `time.time()` for a row
whose time is not given. Prices live in `brickwork.cost.prices`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from brickwork.cost.prices import PriceBook, estimate_cost

if TYPE_CHECKING:
    from brickwork.serving.types import Completion

__all__ = ["MAX_RUNS", "Ledger", "LedgerRow", "RunCost"]

#: Most runs whose rows a `Ledger` keeps in memory by default.
MAX_RUNS = 2_000

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
        frontier_cost_usd: What the same tokens would cost on the top tier (the counterfactual
            "every node on the top tier"; `PriceBook.frontier_cost`).
        stand_in: A local model played the frontier role.
        escalated: The call belongs to an escalated node (its failed small attempts and the
            frontier call that replaced them).
        tenant: Who pays.
        at: Unix time of the call.
        frontier: The call ran on the top tier (its logical model is a top-tier name, or a
            local stand-in played the frontier role).
        api_reference_usd: What the same tokens would cost on a frontier API at its list price
            (`PriceBook.api_reference_cost`), the second, separately labelled counterfactual.
        superseded: A higher tier replaced this call's output (`mark_escalated`): it is spend,
            but not part of any counterfactual.
        cached: The response cache answered (`brickwork.caching`): no model ran, priced at $0
            by the run context; what it saved is on the run's `CacheLookup` event.
        skipped: Not a call: a step decided without a model (the intent kNN), priced $0, whose
            estimated tokens are what the top tier would have been sent (`record_skipped`).
            It counts in the counterfactuals, not in `calls`.
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
    api_reference_usd: float = 0.0
    superseded: bool = False
    cached: bool = False
    skipped: bool = False


@dataclass(frozen=True)
class RunCost:
    """Cost of a set of calls (one run, or one tenant's runs) against the top-tier-only world.

    Arithmetic, over the rows of the run:

        cost_usd          = sum of cost_usd of every row: small calls, repair turns, failed
                            attempts of escalated nodes and top-tier calls are all real spend
        frontier_only_usd = sum of frontier_cost_usd of lower-tier rows that no higher tier
                            superseded (skipped steps included: the top tier would have
                            made the call the kNN spared) + sum of cost_usd of top-tier rows
                            (the counterfactual "every node on the top tier", one definition
                            used by the CLI, eval, TUI and HTTP front)
        saving_usd        = frontier_only_usd - cost_usd   (negative: hybrid cost more)
        saving_ratio      = saving_usd / frontier_only_usd (0.0 when frontier_only_usd is 0)
        api_reference_usd = the same counterfactual at a frontier API's list price, labelled
                            apart (on a local ladder the top tier is our own hardware)

    An escalated node counts once in the counterfactual, through the call that replaced its
    failed attempts: with every node on the top tier there would have been nothing to fail.

    Attributes:
        cost_usd: What the calls actually cost.
        frontier_only_usd: What they would have cost with every node on the top tier.
        saving_usd: frontier_only_usd - cost_usd.
        saving_ratio: Share of the top-tier-only cost saved.
        calls: Number of calls (skipped steps are not calls).
        small_calls: Calls below the top tier.
        frontier_calls: Calls on the top tier.
        api_reference_usd: Every node on a frontier API at its list price.
    """

    cost_usd: float = 0.0
    frontier_only_usd: float = 0.0
    saving_usd: float = 0.0
    saving_ratio: float = 0.0
    calls: int = 0
    small_calls: int = 0
    frontier_calls: int = 0
    api_reference_usd: float = 0.0

    @classmethod
    def of(cls, rows: Iterable[LedgerRow]) -> RunCost:
        """Sum these rows (see the class docstring for the arithmetic)."""
        sums = _Sums()
        for row in rows:
            sums.add(row)
        return sums.total()


class Ledger:
    """Prices every model call and keeps the rows, per run and per tenant.

    Safe to share between asyncio tasks and threads: every method is short and holds a lock
    only while it touches the rows.
    """

    def __init__(
        self,
        prices: PriceBook,
        *,
        frontier_models: Collection[str] = ("frontier",),
        max_runs: int = MAX_RUNS,
    ) -> None:
        """Create an empty ledger.

        Args:
            prices: Price of each endpoint and the frontier reference.
            frontier_models: Logical model names (before any ":adapter") of the top tier; a
                call on one of these, or by a local stand-in, counts as a top-tier call.
            max_runs: Most runs whose rows are kept in memory. Past it, the oldest run's rows
                are dropped (its cost stays in `tenant_cost` and `tenants`; the run store
                keeps each run's cost): a long-running server's ledger does not grow forever.
        """
        if max_runs < 1:
            raise ValueError(f"max_runs must be >= 1, got {max_runs!r}")
        self.prices = prices
        self.frontier_models = frozenset(frontier_models)
        self.max_runs = max_runs
        self._runs: dict[str, list[LedgerRow]] = {}
        #: Per tenant, the sums of the runs whose rows were dropped (see `max_runs`).
        self._dropped: dict[str, _Sums] = {}
        #: The runs most recently dropped (a late `mark_escalated` of theirs is ignored).
        self._gone: dict[str, None] = {}
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
        superseded: bool | None = None,
    ) -> LedgerRow:
        """Price one call and add it to the ledger.

        `superseded` defaults to `escalated` for a call below the top tier (a small attempt
        of an escalated node); a call that answered for its node on a middle tier of the
        ladder passes False, and `mark_escalated` supersedes it if a higher tier takes over.

        Raises:
            ConfigError: The completion's endpoint has no price.
        """
        usage = completion.usage
        top = completion.stand_in or completion.model.split(":", 1)[0] in self.frontier_models
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
            api_reference_usd=self.prices.api_reference_cost(completion),
            stand_in=completion.stand_in,
            escalated=escalated,
            tenant=tenant,
            at=time.time() if at is None else at,
            frontier=top,
            superseded=(escalated and not top) if superseded is None else superseded,
            cached=completion.extra.get("cache") == "hit",
        )
        self._append(row)
        return row

    def record_skipped(
        self,
        run_id: str,
        node: str,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        tenant: str = "default",
        at: float | None = None,
    ) -> LedgerRow:
        """Add a step decided without a model call, priced as the top tier would have made it.

        The row costs $0 and is not a call; its `frontier_cost_usd` and `api_reference_usd`
        price the given (estimated) tokens at the top tier and at the frontier API list price,
        so "every node on the top tier" includes the call the top tier could not have spared.
        """
        row = LedgerRow(
            run_id=run_id,
            node=node,
            endpoint="",
            model="",
            served_model="",
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=0.0,
            cost_usd=0.0,
            frontier_cost_usd=estimate_cost(
                self.prices.top_tier_price, prompt_tokens, completion_tokens
            ),
            api_reference_usd=self.prices.frontier_reference.cost(prompt_tokens, completion_tokens),
            stand_in=False,
            escalated=False,
            tenant=tenant,
            at=time.time() if at is None else at,
            skipped=True,
        )
        self._append(row)
        return row

    def _append(self, row: LedgerRow) -> None:
        with self._lock:
            rows = self._runs.get(row.run_id)
            if rows is None:
                rows = self._runs[row.run_id] = []
                if len(self._runs) > self.max_runs:
                    self._drop_oldest()
            rows.append(row)

    def _drop_oldest(self) -> None:
        """Under the lock: forget the oldest run's rows, keeping its sums per tenant."""
        oldest = next(iter(self._runs))
        for row in self._runs.pop(oldest):
            self._dropped.setdefault(row.tenant, _Sums()).add(row)
        self._gone[oldest] = None
        if len(self._gone) > self.max_runs:
            del self._gone[next(iter(self._gone))]

    def mark_escalated(self, rows: Iterable[LedgerRow]) -> tuple[LedgerRow, ...]:
        """Flag rows recorded before their node escalated (the failed small attempts).

        Pass the rows `record` returned for the node; returns their escalated replacements.
        """
        marked: list[LedgerRow] = []
        with self._lock:
            for row in rows:
                if row.run_id in self._gone:  # its rows were dropped; its sums stand as recorded
                    continue
                run = self._runs.get(row.run_id, [])
                index = next((i for i, kept in enumerate(run) if kept is row), None)
                if index is None:
                    raise ValueError(f"row {row!r} is not in this ledger; pass rows from record()")
                run[index] = replace(row, escalated=True, superseded=True)
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
        """Totals over every run of one tenant (those whose rows were dropped included)."""
        return self.tenants().get(tenant, RunCost())

    def tenants(self) -> dict[str, RunCost]:
        """Totals per tenant, for every tenant with a row (dropped runs included)."""
        with self._lock:
            sums = {tenant: replace(kept) for tenant, kept in self._dropped.items()}
            for run in self._runs.values():
                for row in run:
                    sums.setdefault(row.tenant, _Sums()).add(row)
        return {tenant: total.total() for tenant, total in sums.items()}


@dataclass(slots=True)
class _Sums:
    """Running sums of rows, as `RunCost.of` adds them."""

    cost: float = 0.0
    frontier_only: float = 0.0
    api: float = 0.0
    small: int = 0
    frontier: int = 0

    def add(self, row: LedgerRow) -> None:
        self.cost += row.cost_usd
        if row.skipped:
            if not row.superseded:
                self.frontier_only += row.frontier_cost_usd
                self.api += row.api_reference_usd
        elif row.frontier:
            self.frontier += 1
            self.frontier_only += row.cost_usd
            self.api += row.api_reference_usd
        else:
            self.small += 1
            if not row.superseded:
                self.frontier_only += row.frontier_cost_usd
                self.api += row.api_reference_usd

    def total(self) -> RunCost:
        saving = self.frontier_only - self.cost
        ratio = saving / self.frontier_only if self.frontier_only > 0 else 0.0
        return RunCost(
            self.cost, self.frontier_only, saving, ratio, self.small + self.frontier,
            self.small, self.frontier, self.api,
        )  # fmt: skip
