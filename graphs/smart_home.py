"""smart_home: route a request, then call the right device tool on the simulated hub.

    plan_check --(several actions)--> supervisor (plan) --> execute_plan (one step a visit)
         |
         v
      intent --(device_command | status_question)--> toolcall --> END
         |
         +--(out_of_scope)--> END

Multi-turn: the run's `messages` carry the conversation; earlier assistant turns hold earlier
calls. Every node escalates to the supervisor when its checks fail. Plan steps that do not come
from the user's own words are dropped; unlocking a door (a sensitive tool) that the request
does not plainly ask for stops at `confirm` until the user answers.
"""

from __future__ import annotations

import json
import re
from typing import Any

from brickwork.agents.embeddings import EmbeddingKNN
from brickwork.agents.intent import IntentAgent
from brickwork.agents.supervisor import Planner
from brickwork.agents.toolcall import ToolCallAgent
from brickwork.graphs.builder import (
    END,
    SUPERVISOR,
    GraphState,
    LazyAgent,
    Specialist,
    build_graph,
    plan_answer,
    plan_gate,
    plan_runner,
    to_jsonable,
    write_tool_call,
)
from brickwork.run_context import RunContext
from brickwork.skills.examples import smart_home_intent_skill, smart_home_skill
from brickwork.tools.smart_home import SmartHomeHub

NAME = "smart_home"
DESCRIPTION = "Smart-home assistant: intent routing, then tool calls on a simulated device hub."

_ACTION = re.compile(
    r"\b(turn|switch|set|dim|lock|unlock|open|close|start|stop|put|make|tell|what|is|are|"
    r"activate|raise|lower)\b",
    re.I,
)
_SPLIT = re.compile(r",\s*(?:and\s+|then\s+)?|\s+and\s+then\s+|\s+then\s+|\s+and\s+", re.I)


def split_clauses(text: str) -> list[str]:
    """The request's clauses that each hold an action."""
    return [c.strip() for c in _SPLIT.split(text) if c.strip() and _ACTION.search(c)]


def needs_plan(text: str) -> bool:
    """True when the request holds two or more separate actions."""
    return len(split_clauses(text)) >= 2


# -- routing ----------------------------------------------------------------------------------


def read_request(state: GraphState) -> Any:
    """The conversation when there is one, else the text."""
    return state.get("messages") or state.get("text", "")


def after_intent(output: Any) -> str:
    """Device commands and status questions go to the tool caller; the rest ends."""
    return END if output["label"] == "out_of_scope" else "toolcall"


def answer(state: GraphState) -> str:
    """A short text answer for the user."""
    outputs = state.get("outputs", {})
    if state.get("plan"):
        return plan_answer(outputs.get("execute_plan", []))
    if "toolcall" in outputs:
        return _describe(outputs["toolcall"])
    intent = outputs.get("intent", {})
    if intent.get("label") == "out_of_scope":
        return "Sorry, I can only help with the lights, climate, locks and scenes of your home."
    return ""


def _describe(output: dict[str, Any]) -> str:
    call = output.get("call") or {}
    params = ", ".join(f"{k}={v!r}" for k, v in (call.get("parameters") or {}).items())
    result = output.get("result")
    shown = json.dumps(result) if result is not None else ""
    done = f" -> {shown}" if shown and len(shown) <= 120 else (" -> done" if shown else "")
    return f"{call.get('name', '?')}({params}){done}"


# -- build ------------------------------------------------------------------------------------

PLANNER = Planner("The specialists control lights, the thermostat, door locks and scenes.")


def build(*, checkpointer: Any = None, hub: SmartHomeHub | None = None, knn: bool = True) -> Any:
    """Compile the graph.

    Args:
        checkpointer: LangGraph checkpointer for durable state.
        hub: The device hub its tool calls act on (default: a new one).
        knn: Let the intent examples vote first (an embedding kNN, loaded on the first run);
            False: the small model alone classifies.
    """
    intent_skill = smart_home_intent_skill()
    toolcall = ToolCallAgent(smart_home_skill(hub or SmartHomeHub()), grounded=True)
    intent = LazyAgent(
        lambda: IntentAgent(
            intent_skill, knn=EmbeddingKNN.from_examples(intent_skill.examples) if knn else None
        )
    )

    async def planner(text: str, ctx: RunContext) -> list[str]:
        result = await PLANNER.run(text, pool=ctx.pool)
        ctx.account(SUPERVISOR, result.completions, escalated=True, for_node="plan_check")
        if result.value:
            return list(result.value)
        # The frontier model gave no valid plan: split the request's clauses instead, and say so.
        ctx.flags.append("plan_check:plan_fallback_split")
        return split_clauses(text)

    gate, gate_targets = plan_gate(
        "plan_check", needs_plan, next="intent", after_plan="execute_plan"
    )
    return build_graph(
        [
            Specialist(
                "intent",
                intent,
                read_request,
                next=after_intent,
                destinations=("toolcall", END),
                write=lambda r: to_jsonable(r.value),
            ),
            Specialist("toolcall", toolcall, read_request, next=END, write=write_tool_call),
        ],
        entry="plan_check",
        plain_nodes={
            "plan_check": (gate, gate_targets),
            "execute_plan": plan_runner("execute_plan", toolcall, owner="toolcall"),
        },
        planner=planner,
        after_plan="execute_plan",
        checkpointer=checkpointer,
    )


graph = build()
