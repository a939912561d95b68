"""A simulated bank for the support example: cards, transfers, disputes, accounts.

Its tools open cases and change card state in memory, and refuse what a bank would refuse
(blocking a card twice, closing an account the customer does not have, a non-positive amount).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from brickwork.tools.registry import Tool, ToolRegistry

__all__ = ["SENSITIVE_TOOLS", "BankError", "SimulatedBank"]

AccountType = Literal["current", "savings", "credit_card"]

SENSITIVE_TOOLS: dict[str, tuple[str, ...]] = {"close_account": ("close", "shut", "cancel")}
"""Tools that run only when plainly asked for (name -> the verbs that ask): closing an account."""


class BankError(Exception):
    """The bank refuses the request; the message says why."""


@dataclass
class SimulatedBank:
    """One customer's bank, in memory."""

    card_blocked: bool = False
    accounts: set[str] = field(default_factory=lambda: {"current", "savings"})
    cases: list[dict[str, Any]] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1001), repr=False)
    _lock: Any = field(default_factory=threading.Lock, repr=False)

    def registry(self) -> ToolRegistry:
        """The bank's tools, bound to this bank."""
        functions: list[Callable[..., dict[str, Any]]] = [
            self.block_card,
            self.trace_transfer,
            self.dispute_transaction,
            self.reset_pin,
            self.explain_exchange_rate,
            self.close_account,
        ]
        return ToolRegistry(
            Tool.from_function(
                function,
                sensitive=function.__name__ in SENSITIVE_TOOLS,
                verbs=SENSITIVE_TOOLS.get(function.__name__, ()),
            )
            for function in functions
        )

    def _case(self, kind: str, **details: Any) -> dict[str, Any]:
        with self._lock:
            case = {"case_id": next(self._ids), "kind": kind, **details}
            self.cases.append(case)
        return case

    def block_card(self, reason: Literal["lost", "stolen", "damaged"]) -> dict[str, Any]:
        """Block the customer's card and order a replacement.

        Args:
            reason: Why the card must be blocked.
        """
        with self._lock:
            if self.card_blocked:
                raise BankError("the card is already blocked; a replacement is on its way")
            self.card_blocked = True
        return self._case("card_blocked", reason=reason)

    def trace_transfer(self, amount: float, currency: str, recipient: str) -> dict[str, Any]:
        """Open a trace on a transfer that has not arrived.

        Args:
            amount: Amount of the transfer.
            currency: ISO 4217 currency code, e.g. EUR.
            recipient: Who should have received it.
        """
        if amount <= 0:
            raise BankError(f"amount must be positive, got {amount!r}")
        if len(currency) != 3 or not currency.isalpha():
            raise BankError(f"currency must be a 3-letter ISO code, got {currency!r}")
        return self._case(
            "transfer_trace", amount=amount, currency=currency.upper(), recipient=recipient
        )

    def dispute_transaction(self, merchant: str, amount: float | None = None) -> dict[str, Any]:
        """Dispute a card payment or debit the customer does not recognise.

        Args:
            merchant: The name shown on the statement.
            amount: The amount, if the customer gave it.
        """
        return self._case("dispute", merchant=merchant, amount=amount)

    def reset_pin(self) -> dict[str, Any]:
        """Send the customer a PIN reset link."""
        return self._case("pin_reset")

    def explain_exchange_rate(self, currency: str) -> dict[str, Any]:
        """Explain the exchange rate applied to payments in a currency.

        Args:
            currency: ISO 4217 code of the foreign currency.
        """
        return {"currency": currency.upper(), "markup_percent": 0.5, "source": "daily ECB rate"}

    def close_account(self, account: AccountType) -> dict[str, Any]:
        """Close one of the customer's accounts.

        Args:
            account: Which account to close.
        """
        with self._lock:
            if account not in self.accounts:
                raise BankError(f"the customer has no {account} account")
            self.accounts.discard(account)
        return self._case("account_closed", account=account)
