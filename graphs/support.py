"""support: banking support: route the message, extract transfer details, act with one tool call.

    intent --(transfer_not_arrived)--> extract --> act --> END
       |
       +--(any other intent)--> act --> END

`intent` is an embedding kNN over the skill's examples, with the small model consulted only
when the vote is unsure; `extract` pulls a `TransferRequest` out of the message; `act` calls one
of the simulated bank's tools. Each node escalates on its own when its checks fail.
Extracted values must appear in the customer's own words (`grounded=True`), and closing an
account (a sensitive tool) runs only when the message plainly asks for it, else after a yes.
"""

from __future__ import annotations

from typing import Any

from brickwork.agents.embeddings import EmbeddingKNN
from brickwork.agents.extract import ExtractAgent
from brickwork.agents.intent import IntentAgent
from brickwork.agents.toolcall import ToolCallAgent
from brickwork.graphs.builder import (
    END,
    GraphState,
    LazyAgent,
    Specialist,
    build_graph,
    write_tool_call,
)
from brickwork.skills.examples import (
    banking_intent_skill,
    banking_support_skill,
    banking_transfer_extraction_skill,
)
from brickwork.tools.bank import SimulatedBank

NAME = "support"
DESCRIPTION = "Banking support: intent routing, transfer extraction, one bank tool call."


def read_text(state: GraphState) -> str:
    """The customer's message."""
    return state.get("text", "")


def after_intent(output: Any) -> str:
    """Transfers that did not arrive need their details first."""
    return "extract" if output["label"] == "transfer_not_arrived" else "act"


def read_for_action(state: GraphState) -> str:
    """The message, plus the extracted transfer details when there are some."""
    details = state.get("outputs", {}).get("extract")
    text = state.get("text", "")
    if not details:
        return text
    fields = ", ".join(f"{k}={v}" for k, v in details.items() if v is not None)
    return f"{text}\n(Transfer details: {fields})"


def answer(state: GraphState) -> str:
    """What the bank did, in one line."""
    outputs = state.get("outputs", {})
    act = outputs.get("act") or {}
    call = act.get("call") or {}
    label = (outputs.get("intent") or {}).get("label", "?")
    params = ", ".join(f"{k}={v!r}" for k, v in (call.get("parameters") or {}).items())
    return f"[{label}] {call.get('name', '?')}({params}) -> {act.get('result')}"


def build(*, checkpointer: Any = None, bank: SimulatedBank | None = None, knn: bool = True) -> Any:
    """Compile the graph.

    Args:
        checkpointer: LangGraph checkpointer for durable state.
        bank: The bank its tool calls act on (default: a new one).
        knn: Let the intent examples vote first (an embedding kNN, loaded on the first run);
            False: the small model alone classifies.
    """
    intent_skill = banking_intent_skill()
    intent = LazyAgent(
        lambda: IntentAgent(
            intent_skill, knn=EmbeddingKNN.from_examples(intent_skill.examples) if knn else None
        )
    )
    extract = ExtractAgent(banking_transfer_extraction_skill(), grounded=True)
    act = ToolCallAgent(banking_support_skill(bank or SimulatedBank()), grounded=True)
    return build_graph(
        [
            Specialist(
                "intent", intent, read_text, next=after_intent, destinations=("extract", "act")
            ),
            Specialist("extract", extract, read_text, next="act"),
            Specialist("act", act, read_for_action, next=END, write=write_tool_call),
        ],
        checkpointer=checkpointer,
    )


graph = build()
