"""Cost: what each model call costs, what the frontier would have cost, and spending limits.

This package owns money: the price book (`prices`: token prices for APIs, amortised GPU time
for our own instances, `estimate_cost` before a call), the ledger (`ledger`: one priced row per
model call and the frontier-only counterfactual of every run) and budgets (`budget`: per-run
and per-tenant limits, reserved before an escalation and charged after). Bookkeeping without
I/O, except shared budgets (`shared`: tenant limits kept in PostgreSQL so that API replicas
hold them together; psycopg is imported only there): the run store persists what the ledger
records.
"""

from __future__ import annotations

from brickwork.cost.budget import (
    Budget,
    BudgetBackend,
    BudgetBook,
    BudgetExceeded,
    Reservation,
    SharedBudget,
)
from brickwork.cost.ledger import Ledger, LedgerRow, RunCost
from brickwork.cost.prices import (
    CPU_SELF_HOSTED,
    DEFAULT_FRONTIER_ENDPOINTS,
    DEFAULT_LARGE_ENDPOINTS,
    FRONTIER_REFERENCE,
    H100_SELF_HOSTED,
    LARGE_CPU_SELF_HOSTED,
    LORA_CPU_SELF_HOSTED,
    Amortise,
    LocalCapacity,
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
    "LORA_CPU_SELF_HOSTED",
    "Amortise",
    "Budget",
    "BudgetBackend",
    "BudgetBook",
    "BudgetExceeded",
    "Ledger",
    "LedgerRow",
    "LocalCapacity",
    "Price",
    "PriceBook",
    "Reservation",
    "RunCost",
    "SelfHostedPrice",
    "SharedBudget",
    "TokenPrice",
    "estimate_cost",
]
