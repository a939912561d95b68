"""Cost: what each model call costs, what the frontier would have cost, and spending limits.

This package owns money: the price book (`prices`: token prices for APIs, amortised GPU time
for our own instances, `estimate_cost` before a call), the ledger (`ledger`: one priced row per
model call and the frontier-only counterfactual of every run) and budgets (`budget`: per-run
and per-tenant limits, reserved before an escalation and charged after). Pure bookkeeping, no
I/O: the run store persists what the ledger records.
"""

from __future__ import annotations

from brickwork.cost.budget import Budget, BudgetBook, BudgetExceeded, Reservation
from brickwork.cost.ledger import Ledger, LedgerRow, RunCost
from brickwork.cost.prices import (
    CPU_SELF_HOSTED,
    DEFAULT_FRONTIER_ENDPOINTS,
    DEFAULT_LARGE_ENDPOINTS,
    FRONTIER_REFERENCE,
    H100_SELF_HOSTED,
    LARGE_CPU_SELF_HOSTED,
    Amortise,
    Price,
    PriceBook,
    SelfHostedPrice,
    TokenPrice,
    estimate_cost,
)

__all__ = [
    "CPU_SELF_HOSTED",
    "DEFAULT_FRONTIER_ENDPOINTS",
    "DEFAULT_LARGE_ENDPOINTS",
    "FRONTIER_REFERENCE",
    "H100_SELF_HOSTED",
    "LARGE_CPU_SELF_HOSTED",
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
