"""Small helpers on LangGraph's `StateGraph`: specialist nodes, the escalation edge, the supervisor.

A graph module declares its specialists (an agent, how to read its input from the state, where
to go next) and calls `build()`. Every specialist node runs its agent on the small model, asks
`brickwork.escalation.decide` what to do, and either moves on or jumps to the one `supervisor`
node with the failing node's name and reason. The supervisor re-runs exactly that node under the
same contract on the frontier model (or writes a plan), then returns to the node's successor.
Building does no I/O.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol, TypedDict, cast

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command

from brickwork.agents.base import AgentResult, Signal
from brickwork.escalation import Decision, EscalationInput, decide
from brickwork.events import Escalation, NodeFinished, NodeStarted
from brickwork.run_context import RunContext
from brickwork.serving.pool import ModelPool
from brickwork.skills.skill import Skill

__all__ = [
    "END",
    "SUPERVISOR",
    "GraphState",
    "LazyAgent",
    "Planner",
    "Specialist",
    "bound_model",
    "build_graph",
    "plan_gate",
    "run_step",
    "to_jsonable",
    "write_tool_call",
]

SUPERVISOR = "supervisor"


def _merge(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    return {**(left or {}), **(right or {})}


def _append(left: list[Any] | None, right: list[Any] | None) -> list[Any]:
    return [*(left or []), *(right or [])]


class GraphState(TypedDict, total=False):
    """The state every brickwork graph carries (JSON-able, so checkpoints can store it)."""

    text: str
    messages: list[dict[str, Any]]
    outputs: Annotated[dict[str, Any], _merge]
    escalation: dict[str, Any] | None
    escalations: Annotated[list[dict[str, Any]], _append]
    plan: list[str]
    answer: str
    status: str
    error: str


class _Agent(Protocol):
    async def run(self, input: Any, *, pool: ModelPool, model: str | None = None) -> Any: ...


#: Where a node goes next: a fixed node name (or END), or a function of its output.
Next = str | Callable[[Any], str]


@dataclass(frozen=True)
class Specialist:
    """A node that runs one agent on the small model, with escalation.

    Attributes:
        name: Node name (shown in traces and the drawn graph).
        agent: The agent (`run(input, pool=..., model=...) -> AgentResult`).
        read: Builds the agent's input from the graph state.
        next: Successor node name, or a function of the node's output that picks one.
        destinations: Every node `next` can return (for drawing and validation).
        write: Turns the agent's result into the JSON-able output stored in `outputs[name]`
            (default: its value).
    """

    name: str
    agent: _Agent
    read: Callable[[GraphState], Any]
    next: Next = END
    destinations: tuple[str, ...] = ()
    write: Callable[[Any], Any] = field(default=lambda result: to_jsonable(result.value))

    def successor(self, output: Any) -> str:
        """The node to go to after this one produced `output`."""
        return self.next(output) if callable(self.next) else self.next

    @property
    def targets(self) -> tuple[str, ...]:
        """Every node this one may jump to, the supervisor included."""
        fixed = () if callable(self.next) else (self.next,)
        return (*dict.fromkeys((*fixed, *self.destinations)), SUPERVISOR)


class LazyAgent:
    """Builds an agent on its first run (on a worker thread), so building a graph does no I/O.

    For agents whose construction loads something, e.g. an embedding model for intent kNN.
    """

    def __init__(self, factory: Callable[[], _Agent]) -> None:
        self._factory = factory
        self._agent: _Agent | None = None
        self._lock = asyncio.Lock()

    async def agent(self) -> _Agent:
        """The agent, built on first use."""
        async with self._lock:
            if self._agent is None:
                self._agent = await asyncio.to_thread(self._factory)
        return self._agent

    async def run(self, input: Any, *, pool: ModelPool, model: str | None = None) -> Any:
        """Run the agent (building it first if needed)."""
        return await (await self.agent()).run(input, pool=pool, model=model)


async def bound_model(agent: _Agent, pool: ModelPool) -> str | None:
    """The promoted adapter's logical name for the agent's skill, when `pool` serves it.

    None leaves the choice to the agent (its skill's own binding): for agents without a
    `skill`, skills bound explicitly or `pinned`, and adapters the pool does not serve.
    """
    inner = await agent.agent() if isinstance(agent, LazyAgent) else agent
    skill = getattr(inner, "skill", None)
    if not isinstance(skill, Skill):
        return None
    binding = skill.effective_binding(pool.logical_names)
    return binding.logical_name if binding != skill.binding else None


#: Writes a plan (a list of step requests) for a multi-step request, on the frontier model.
Planner = Callable[[str, RunContext], Awaitable[list[str]]]


def to_jsonable(value: Any) -> Any:
    """Dataclasses, Pydantic models and containers -> plain JSON-able data."""
    from dataclasses import asdict, is_dataclass

    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def write_tool_call(result: Any) -> dict[str, Any]:
    """A tool-calling node's output: the call, and what the tool returned (None on error)."""
    tool_result = result.extra.get("tool_result")
    return {
        "call": to_jsonable(result.value),
        "result": to_jsonable(tool_result.value) if tool_result and tool_result.ok else None,
    }


def _attempts(result: Any) -> tuple[dict[str, Any], ...]:
    return tuple(
        {
            "messages": [dict(m) for m in a.messages],
            "output": a.output,
            "errors": list(a.errors),
            "model": a.completion.model if a.completion else None,
        }
        for a in getattr(result, "attempts", ())
    )


def _specialist_node(
    spec: Specialist,
) -> Callable[[GraphState, Runtime[RunContext]], Awaitable[Command[Any]]]:
    async def node(state: GraphState, runtime: Runtime[RunContext]) -> Command[Any]:
        ctx = runtime.context
        started = time.perf_counter()
        ctx.emit(NodeStarted(ctx.run_id, spec.name))
        if ctx.mode == "frontier":
            decision = decide(
                EscalationInput(mode="frontier", **ctx.escalation_budget(spec.name)), ctx.policy
            )
            ctx.emit(
                Escalation(
                    ctx.run_id, spec.name, decision.action, decision.reason, decision.detail, ()
                )
            )
            return await _route_decision(spec, decision, None, started, ctx)
        model = await bound_model(spec.agent, ctx.pool)
        result = await spec.agent.run(spec.read(state), pool=ctx.pool, model=model)
        ctx.account(spec.name, result.completions, escalated=False)
        signals = tuple((s.kind, s.detail) for s in result.signals)
        decision = decide(
            EscalationInput(
                signals=tuple(kind for kind, _ in signals),
                has_value=result.value is not None,
                # Agents run their own repair turns; whatever signals remain are final.
                repairs_used=(
                    max(result.repairs, ctx.policy.max_repairs)
                    if signals or result.value is None
                    else result.repairs
                ),
                confidence=result.confidence,
                mode=ctx.mode,
                **ctx.escalation_budget(spec.name),
            ),
            ctx.policy,
        )
        ctx.emit(
            Escalation(
                ctx.run_id, spec.name, decision.action, decision.reason, decision.detail, signals
            )
        )
        return await _route_decision(spec, decision, result, started, ctx)

    node.__name__ = spec.name
    return node


async def _route_decision(
    spec: Specialist,
    decision: Decision,
    result: Any,
    started: float,
    ctx: RunContext,
) -> Command[Any]:
    latency = time.perf_counter() - started
    method = getattr(result, "method", "slm")
    attempts = _attempts(result)
    if decision.action == "escalate" and not await ctx.reserve_escalation(spec.name):
        # Another run took the money between the decision and the reservation.
        decision = Decision("fail", "budget_exhausted", "budget reserved by concurrent runs")
    if decision.action == "escalate":
        ctx.emit(
            NodeFinished(
                ctx.run_id,
                spec.name,
                False,
                latency,
                None,
                method,
                "slm",
                attempts,
                f"escalated: {decision.reason}",
            )
        )
        escalation = {"node": spec.name, "reason": decision.reason, "detail": decision.detail}
        return Command(goto=SUPERVISOR, update={"escalation": escalation})
    if decision.action == "accept" and result is not None and result.value is not None:
        output = spec.write(result)
        ctx.emit(
            NodeFinished(ctx.run_id, spec.name, True, latency, output, method, "slm", attempts)
        )
        if decision.reason is not None:
            ctx.flags.append(f"{spec.name}:{decision.reason}")
        return Command(goto=spec.successor(output), update={"outputs": {spec.name: output}})
    error = f"{spec.name} failed: {decision.reason} ({decision.detail})"
    ctx.emit(
        NodeFinished(ctx.run_id, spec.name, False, latency, None, method, "slm", attempts, error)
    )
    status = "over_budget" if decision.reason == "budget_exhausted" else "failed"
    ctx.flags.append(f"{spec.name}:{decision.reason}")
    return Command(goto=END, update={"status": status, "error": error})


def _supervisor_node(
    specialists: Mapping[str, Specialist], planner: Planner | None, after_plan: str | None
) -> Callable[[GraphState, Runtime[RunContext]], Awaitable[Command[Any]]]:
    async def supervisor(state: GraphState, runtime: Runtime[RunContext]) -> Command[Any]:
        ctx = runtime.context
        escalation = dict(state.get("escalation") or {})
        name = str(escalation.get("node"))
        started = time.perf_counter()
        ctx.emit(NodeStarted(ctx.run_id, SUPERVISOR))
        record = {**escalation, "ok": False}
        if escalation.get("reason") == "plan_needed" and planner is not None:
            steps = await planner(state.get("text", ""), ctx)
            ctx.commit_escalation(name)
            record["ok"] = bool(steps)
            ctx.emit(
                NodeFinished(
                    ctx.run_id,
                    SUPERVISOR,
                    bool(steps),
                    time.perf_counter() - started,
                    steps,
                    "plan",
                    "frontier",
                )
            )
            update: dict[str, Any] = {"plan": steps, "escalation": None, "escalations": [record]}
            return Command(goto=after_plan or END, update=update)
        spec = specialists[name]
        result = await spec.agent.run(spec.read(state), pool=ctx.pool, model="frontier")
        ctx.account(SUPERVISOR, result.completions, escalated=True, for_node=name)
        ctx.commit_escalation(name)
        latency = time.perf_counter() - started
        attempts = _attempts(result)
        if result.value is None:
            error = f"{name} failed on the frontier model too: " + "; ".join(
                f"{s.kind}: {s.detail}" for s in result.signals
            )
            ctx.emit(
                NodeFinished(
                    ctx.run_id,
                    SUPERVISOR,
                    False,
                    latency,
                    None,
                    "frontier",
                    "frontier",
                    attempts,
                    error,
                )
            )
            ctx.flags.append(f"{name}:escalation_failed")
            return Command(
                goto=END,
                update={
                    "status": "failed",
                    "error": error,
                    "escalation": None,
                    "escalations": [record],
                },
            )
        output = spec.write(result)
        record["ok"] = True
        ctx.emit(
            NodeFinished(
                ctx.run_id, SUPERVISOR, True, latency, output, "frontier", "frontier", attempts
            )
        )
        return Command(
            goto=spec.successor(output),
            update={"outputs": {name: output}, "escalation": None, "escalations": [record]},
        )

    return supervisor


async def run_step(name: str, agent: _Agent, input: Any, ctx: RunContext) -> tuple[Any, bool]:
    """Run one agent step outside the node structure (e.g. a plan step), with escalation.

    The step runs on the small model; when the policy says so (and the budget allows) it is
    re-run on the frontier model. Events and ledger rows are recorded under `name`.
    Returns (the final agent result, whether it was escalated).
    """
    ctx.emit(NodeStarted(ctx.run_id, name))
    started = time.perf_counter()
    result = None
    if ctx.mode != "frontier":
        model = await bound_model(agent, ctx.pool)
        result = await agent.run(input, pool=ctx.pool, model=model)
        ctx.account(name, result.completions, escalated=False)
    signals = tuple((s.kind, s.detail) for s in (result.signals if result else ()))
    decision = decide(
        EscalationInput(
            signals=tuple(kind for kind, _ in signals),
            has_value=result is not None and result.value is not None,
            repairs_used=ctx.policy.max_repairs,
            confidence=result.confidence if result else None,
            mode=ctx.mode,
            **ctx.escalation_budget(name),
        ),
        ctx.policy,
    )
    ctx.emit(
        Escalation(ctx.run_id, name, decision.action, decision.reason, decision.detail, signals)
    )
    escalated = decision.action == "escalate" and await ctx.reserve_escalation(name)
    if escalated:
        result = await agent.run(input, pool=ctx.pool, model="frontier")
        ctx.account(name, result.completions, escalated=True, for_node=name)
        ctx.commit_escalation(name)
    if result is None:  # frontier mode, and the budget cannot cover the frontier call
        result = AgentResult(None, (Signal("model_error", decision.detail),))
    ok = result.value is not None and (escalated or decision.action == "accept")
    ctx.emit(
        NodeFinished(
            ctx.run_id, name, ok, time.perf_counter() - started,
            to_jsonable(result.value), "frontier" if escalated else "slm",
            "frontier" if escalated else "slm", _attempts(result),
            None if ok else f"{name}: {decision.reason} ({decision.detail})",
        )
    )  # fmt: skip
    return result, escalated


def plan_gate(
    name: str, needs_plan: Callable[[str], bool], *, next: str, after_plan: str
) -> tuple[Callable[[GraphState, Runtime[RunContext]], Awaitable[Command[Any]]], tuple[str, ...]]:
    """A node that sends multi-step requests to the supervisor's planner, and others on.

    Returns the node function and its destinations, ready for `build_graph(plain_nodes=...)`.
    """

    async def gate(state: GraphState, runtime: Runtime[RunContext]) -> Command[Any]:
        ctx = runtime.context
        if not needs_plan(state.get("text", "")):
            return Command(goto=next)
        decision = decide(
            EscalationInput(plan_needed=True, mode=ctx.mode, **ctx.escalation_budget(name)),
            ctx.policy,
        )
        if ctx.mode == "frontier":
            decision = Decision("escalate", "plan_needed", "frontier mode plans too")
        ctx.emit(
            Escalation(ctx.run_id, name, decision.action, decision.reason, decision.detail, ())
        )
        if decision.action == "escalate" and await ctx.reserve_escalation(name):
            escalation = {"node": name, "reason": "plan_needed", "detail": decision.detail}
            return Command(goto=SUPERVISOR, update={"escalation": escalation})
        # No planning (slm mode, policy or budget): handle the request as one step.
        ctx.flags.append(f"{name}:{decision.reason}")
        return Command(goto=next)

    gate.__name__ = name
    return gate, (next, SUPERVISOR)


def build_graph(
    specialists: Sequence[Specialist],
    *,
    entry: str | None = None,
    plain_nodes: Mapping[str, tuple[Callable[..., Any], tuple[str, ...]]] | None = None,
    planner: Planner | None = None,
    after_plan: str | None = None,
    checkpointer: Any = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Wire specialists, optional plain nodes and the supervisor into a compiled graph.

    Args:
        specialists: The agent nodes.
        entry: First node (default: the first specialist).
        plain_nodes: Extra nodes without agents: name -> (function, destinations).
        planner: Writes a plan when a node escalates with reason `plan_needed`.
        after_plan: Node that executes a plan.
        checkpointer: LangGraph checkpointer for durable state (None: in memory only).
    """
    by_name = {s.name: s for s in specialists}
    graph: StateGraph[GraphState, RunContext, GraphState, GraphState] = StateGraph(
        GraphState, context_schema=RunContext
    )
    for spec in specialists:
        graph.add_node(spec.name, cast(Any, _specialist_node(spec)), destinations=spec.targets)
    for name, (fn, destinations) in (plain_nodes or {}).items():
        graph.add_node(name, cast(Any, fn), destinations=destinations)
    supervisor_targets = {t for s in specialists for t in s.targets if t != SUPERVISOR}
    supervisor_targets |= {after_plan or END, END}
    graph.add_node(
        SUPERVISOR,
        cast(Any, _supervisor_node(by_name, planner, after_plan)),
        destinations=tuple(sorted(supervisor_targets)),
    )
    graph.add_edge(START, entry or specialists[0].name)
    return graph.compile(checkpointer=checkpointer)
