"""The project's own example skills, one per agent kind, with example data in `skills/data/`.

- `smart_home_skill()`: tool calling over a `SmartHomeHub`.
- `banking_intent_skill()`: six banking support intents.
- `banking_transfer_extraction_skill()`: a `TransferRequest` extracted from a chat message.
- `analytics_skill()`: SQLite questions over a shop database (customers, products, orders,
  order_items), which the graph supplies.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from brickwork.skills.loaders import load_examples
from brickwork.skills.skill import (
    Example,
    JSONContract,
    LabelSet,
    Skill,
    SQLContract,
    ToolContract,
)
from brickwork.tools.bank import SimulatedBank
from brickwork.tools.smart_home import SmartHomeHub

__all__ = [
    "BANKING_INTENTS",
    "SMART_HOME_INTENTS",
    "TransferRequest",
    "analytics_skill",
    "banking_intent_skill",
    "banking_support_skill",
    "banking_transfer_extraction_skill",
    "smart_home_intent_skill",
    "smart_home_skill",
]

SMART_HOME_INTENTS: dict[str, str] = {
    "device_command": "Change a device: lights, thermostat, door locks or a scene.",
    "status_question": "Ask about the current state of a device, without changing it.",
    "out_of_scope": "Anything that is not about the home's lights, climate, locks or scenes.",
}

BANKING_INTENTS: dict[str, str] = {
    "card_lost_or_stolen": (
        "The customer's card is lost, stolen or missing, and they want it blocked or replaced."
    ),
    "transfer_not_arrived": (
        "A transfer the customer sent has not reached the recipient, or is stuck as pending."
    ),
    "unrecognised_transaction": (
        "A card payment, direct debit or withdrawal on the account that the customer says "
        "they did not make."
    ),
    "change_pin": "The customer wants to change, reset or unblock the PIN of their card.",
    "exchange_rate_query": (
        "Questions about the exchange rate or conversion applied to a payment in a foreign "
        "currency."
    ),
    "account_closure": "The customer wants to close one of their accounts or leave the bank.",
}


class TransferRequest(BaseModel):
    """A money transfer asked for in a customer message."""

    model_config = ConfigDict(extra="forbid")

    amount: float = Field(gt=0, description="Amount to send, in `currency` units.")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR, USD, GBP.")
    recipient: str = Field(min_length=1, description="Person or company receiving the money.")
    reference: str | None = Field(
        default=None, description="Payment reference or purpose, if the customer gave one."
    )


def smart_home_skill(hub: SmartHomeHub | None = None) -> Skill:
    """Control a simulated house by calling one of its tools per user turn.

    Args:
        hub: The house to act on; a new `SmartHomeHub` by default.

    Returns:
        The skill, whose contract is the hub's benchmark tool set.
    """
    hub = hub or SmartHomeHub()
    return Skill(
        name="smart_home",
        instructions=(
            "You control the devices of a house. Answer every user turn with exactly one call "
            "of the available tools. Fill in only the arguments the user stated or that "
            "follow from earlier turns ('it', 'them', 'the same'); leave the others out. "
            "If the request needs a device the house lacks, is off-topic or is too vague, "
            "call intent_unclear with the reason."
        ),
        contract=ToolContract(hub.registry()),
        examples=_examples("smart_home.jsonl"),
    )


def banking_intent_skill() -> Skill:
    """Route a banking support message to one of six intents."""
    return Skill(
        name="banking_intent",
        instructions=(
            "Read the customer's message to the bank and answer with the one intent label "
            "that fits it best."
        ),
        contract=LabelSet(BANKING_INTENTS),
        examples=_examples("banking_intents.jsonl"),
    )


def banking_transfer_extraction_skill() -> Skill:
    """Extract the amount, currency, recipient and reference of a requested transfer."""
    return Skill(
        name="banking_transfer_extraction",
        instructions=(
            "Extract the money transfer the customer asks for. Write amounts as plain numbers "
            "and currencies as ISO 4217 codes ('euros' is EUR, '$' is USD, '£' is GBP). "
            "Set reference to null when the customer gives no reference or purpose."
        ),
        contract=JSONContract(TransferRequest),
        examples=_examples("banking_transfers.jsonl"),
    )


def analytics_skill(database: Any = None) -> Skill:
    """Answer questions about a shop with one SQLite query.

    Args:
        database: The shop database handle; the graph fills it in when None.

    Returns:
        The skill.
    """
    return Skill(
        name="analytics",
        instructions=(
            "Answer the question with one read-only SQLite query over the shop database "
            "(customers, products, orders, order_items). Use only its tables and columns, "
            "join through the id columns, and return only the SQL."
        ),
        contract=SQLContract(database=database, dialect="sqlite"),
        examples=_examples("analytics.jsonl"),
    )


def _examples(file: str) -> list[Example]:
    with resources.as_file(resources.files("brickwork.skills").joinpath("data", file)) as path:
        return load_examples(path)


def smart_home_intent_skill() -> Skill:
    """Routes smart-home requests: a device command, a status question, or out of scope."""
    return Skill(
        name="smart_home_intent",
        instructions=(
            "Classify the user's request to a smart-home assistant. Answer with the label only."
        ),
        contract=LabelSet(SMART_HOME_INTENTS),
        examples=_examples("smart_home_intents.jsonl"),
    )


def banking_support_skill(bank: SimulatedBank | None = None) -> Skill:
    """Act on a banking support request with one call of the bank's tools.

    Args:
        bank: The bank to act on; a new `SimulatedBank` by default.
    """
    bank = bank or SimulatedBank()
    return Skill(
        name="banking_support",
        instructions=(
            "You are a bank's support assistant. Answer the customer's message with exactly "
            "one call of the available tools, using only details the customer gave."
        ),
        contract=ToolContract(bank.registry()),
        examples=_examples("banking_support_calls.jsonl"),
    )
