"""Small helpers on LangGraph's `StateGraph`: specialist nodes, the escalation edge, the supervisor.

A graph module declares its specialists (an agent, how to read its input from the state, where
to go next) and calls `build()`. Every specialist node runs its agent on the small model, asks
`brickwork.escalation.decide` what to do, and either moves on or jumps to the one `supervisor`
node with the failing node's name and reason. The supervisor re-runs exactly that node under the
same contract on the frontier model (or writes a plan), then returns to the node's successor.
Building does no I/O.

Outcomes are honest: a node is ok only with a validated value and, for a tool call, a call that
ran without error; a tool error that survives the frontier retry fails the node and the run
(status "failed", with an `answer` that says in plain words what was not done). A plan run
(`plan_runner`) is ok only when every step the user asked for is; steps that do not come from
the user's own words (`agents.injection.step_problem`) are dropped, never run.

A call of a `sensitive` tool that the request does not plainly ask for is not run: the node
goes to the `confirm` node, which stops the run with a LangGraph `interrupt` (the run's status
is "needs_confirmation", its answer the question). Resuming the run with the user's answer
(`App.aresume(run_id, confirm=True)`, or `Command(resume="yes")`) runs the call, or records
that the user declined; either way the run then goes on from where it stopped.

Routing (hybrid mode, only when the run's resources hold a `brickwork.routing.Routing`): before
a specialist's first call, a trained router may start it above the small tier (a
`RouteDecision` event records why); a failure there climbs the tiers above that one.

Caching (only when the run's resources hold a `brickwork.caching.ResponseCache`): each agent
gets a view of the pool scoped to its node, skill and tenant that answers exact repeats from
the cache (`CacheLookup` events); the agent still validates, and tool calls still run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, TypedDict, cast

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, interrupt

from brickwork.agents.base import AgentResult, Signal
from brickwork.agents.injection import step_problem
from brickwork.escalation import Decision, EscalationInput, decide
from brickwork.events import Escalation, NodeFinished, NodeStarted
from brickwork.run_context import RunContext
from brickwork.serving.pool import ModelPool
from brickwork.skills.skill import Skill

if TYPE_CHECKING:
    from brickwork.routing import Routing

__all__ = [
    "CONFIRM",
    "END",
    "SUPERVISOR",
    "GraphState",
    "LazyAgent",
    "Planner",
    "Specialist",
    "at_the_top",
    "bound_model",
    "build_graph",
    "default_durability",
    "plan_answer",
    "plan_gate",
    "plan_runner",
    "problems",
    "run_step",
    "skill_of",
    "specialists_of",
    "to_jsonable",
    "write_tool_call",
]

SUPERVISOR = "supervisor"
CONFIRM = "confirm"
#: Answers to a confirmation that mean yes (anything else is no).
_YES = frozenset({"y", "yes", "ok", "okay", "confirm", "confirmed", "sure", "go ahead", "do it"})


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
    pending: dict[str, Any] | None


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
    def confirms(self) -> bool:
        """Whether the agent can ask for a confirmation (it runs tool calls)."""
        return callable(getattr(self.agent, "execute_call", None))

    @property
    def targets(self) -> tuple[str, ...]:
        """Every node this one may jump to, the supervisor (and `confirm`) included."""
        fixed = () if callable(self.next) else (self.next,)
        extra = (CONFIRM,) if self.confirms else ()
        return (*dict.fromkeys((*fixed, *self.destinations)), SUPERVISOR, *extra)


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


def problems(result: Any) -> list[Signal]:
    """The signals that make a result untrustworthy: all but `low_confidence`.

    A low-confidence value is still a validated value; a tool error, a timeout or an invalid
    output is not, whichever model produced it.
    """
    return [s for s in getattr(result, "signals", ()) if s.kind != "low_confidence"]


def at_the_top(decision: Decision, result: Any, tier: str) -> Decision:
    """What an escalation decision becomes for a node routed straight to the top tier.

    There is nothing left to climb to. The cascade keeps a top-tier value whose only flaw is
    low confidence (the supervisor accepts it, see `problems`), so a routed node does the
    same; anything else fails plainly, saying where it started.
    """
    where = f"started on the top tier ({tier}), nothing above it"
    if getattr(result, "value", None) is not None and not problems(result):
        return Decision("accept", decision.reason, f"{decision.detail}; {where}: value kept")
    return Decision("fail", decision.reason, f"{decision.detail}; {where}")


def _plain(detail: str) -> str:
    """A tool or validator message in user words: no exception type names."""
    _, sep, rest = detail.partition(" raised ")
    if sep:
        detail = rest.partition(": ")[2] or rest
    return detail.strip().rstrip(".")


def _not_done(node: str, signals: Sequence[Signal], fallback: str = "") -> str:
    kinds = {s.kind for s in signals}
    tool = next((s for s in signals if s.kind in ("tool_error", "tool_timeout")), None)
    if tool is not None:
        why = _plain(tool.detail)
    elif kinds & {"model_error", "model_timeout"}:
        why = "the model could not be reached; please try again later"
    elif fallback:
        why = fallback
    else:
        why = "I could not work out a valid answer from your request"
    return f"Not done: {why}."


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
        tier = "slm"
        routing: Routing | None = ctx.resources.get("routing") if ctx.mode == "hybrid" else None
        if routing is not None and routing.applies_to(spec.name):
            # Route before generating: a trained router may start the node above the small
            # tier; the cascade above that tier stays behind it.
            route = await routing.decide(
                run_id=ctx.run_id,
                graph=ctx.graph,
                node=spec.name,
                skill=await skill_of(spec.agent),
                input=spec.read(state),
                state=state,
                ladder=ctx.pool.tiers or ("slm",),
            )
            ctx.emit(route)
            if route.reason == "routed":
                tier = model = route.tier
        pool = await _node_pool(ctx, spec.name, spec.agent)
        result = await spec.agent.run(spec.read(state), pool=pool, model=model)
        ctx.account(spec.name, result.completions, escalated=False, skipped=result.skipped)
        if _needs_confirmation(result):
            return _ask(spec.name, spec.name, result, started, ctx, tier, then="node")
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
        if decision.action == "escalate" and not escalation_tiers(ctx.pool, above=tier):
            decision = at_the_top(decision, result, tier)
        ctx.emit(
            Escalation(
                ctx.run_id, spec.name, decision.action, decision.reason, decision.detail, signals
            )
        )
        return await _route_decision(spec, decision, result, started, ctx, tier)

    node.__name__ = spec.name
    vars(node)["specialist"] = spec  # found again by `specialists_of`
    return node


def specialists_of(graph: Any) -> dict[str, Specialist]:
    """The specialist nodes of a graph compiled by `build_graph`, by name (for tooling)."""
    found: dict[str, Specialist] = {}
    for name, node in getattr(getattr(graph, "builder", None), "nodes", {}).items():
        runnable = getattr(node, "runnable", None)
        function = getattr(runnable, "afunc", None) or getattr(runnable, "func", None)
        spec = getattr(function, "specialist", None)
        if isinstance(spec, Specialist):
            found[name] = spec
    return found


def default_durability(graph: Any) -> Literal["exit", "async"]:
    """When a run of a compiled graph is checkpointed, unless the App says otherwise.

    "exit" (once, when the run stops: finished, interrupted for a confirmation, failed or
    timed out) for a graph with one node besides the `supervisor` and `confirm` ones; "async"
    (after every step too, LangGraph's default) for the others, and for graphs whose nodes
    cannot be read. In a one-node graph the only step a crash could leave behind is its input,
    and the node would run again from it anyway; in a longer graph per-step checkpoints keep
    the finished steps (and their tool calls) from running again on resume.
    """
    nodes = set(getattr(getattr(graph, "builder", None), "nodes", None) or ())
    work = nodes - {SUPERVISOR, CONFIRM}
    return "exit" if len(work) == 1 else "async"


async def _route_decision(
    spec: Specialist,
    decision: Decision,
    result: Any,
    started: float,
    ctx: RunContext,
    tier: str = "slm",
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
                tier,
                attempts,
                f"escalated: {decision.reason}",
            )
        )
        escalation = {"node": spec.name, "reason": decision.reason, "detail": decision.detail}
        if tier != "slm":  # routed: the climb starts above the tier the node ran on
            escalation["tier"] = tier
        return Command(goto=SUPERVISOR, update={"escalation": escalation})
    if decision.action == "accept" and result is not None and result.value is not None:
        output = spec.write(result)
        ctx.emit(NodeFinished(ctx.run_id, spec.name, True, latency, output, method, tier, attempts))
        if decision.reason is not None:
            ctx.flags.append(f"{spec.name}:{decision.reason}")
        return Command(goto=spec.successor(output), update={"outputs": {spec.name: output}})
    error = f"{spec.name} failed: {decision.reason} ({decision.detail})"
    ctx.emit(
        NodeFinished(ctx.run_id, spec.name, False, latency, None, method, tier, attempts, error)
    )
    status = "over_budget" if decision.reason == "budget_exhausted" else "failed"
    ctx.flags.append(f"{spec.name}:{decision.reason}")
    signals = list(getattr(result, "signals", ()))
    budget = "the budget for this request is used up" if status == "over_budget" else ""
    answer = _not_done(spec.name, signals, budget)
    return Command(goto=END, update={"status": status, "error": error, "answer": answer})


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
                    ctx.pool.tier_of("frontier") or "frontier",  # the tier that plays it
                )
            )
            update: dict[str, Any] = {"plan": steps, "escalation": None, "escalations": [record]}
            return Command(goto=after_plan or END, update=update)
        spec = specialists[name]
        result, tier = await climb(
            spec.agent, spec.read(state), ctx, SUPERVISOR, name, start=escalation.get("tier")
        )
        ctx.commit_escalation(name)
        latency = time.perf_counter() - started
        attempts = _attempts(result)
        if _needs_confirmation(result):
            record["ok"] = True
            command = _ask(SUPERVISOR, name, result, started, ctx, tier, then="node")
            assert isinstance(command.update, dict)
            command.update |= {"escalation": None, "escalations": [record]}
            return command
        failed = problems(result)
        if result.value is None or failed:
            # A value with a tool error (the frontier repeated a call the tool refused) is a
            # failure too: the run must not report "ok" for an action that did not happen.
            error = f"{name} failed on the {tier} model too: " + "; ".join(
                f"{s.kind}: {s.detail}" for s in (failed or result.signals)
            )
            ctx.emit(
                NodeFinished(
                    ctx.run_id, SUPERVISOR, False, latency, None, "frontier", tier, attempts, error
                )
            )
            ctx.flags.append(f"{name}:escalation_failed")
            return Command(
                goto=END,
                update={
                    "status": "failed",
                    "error": error,
                    "answer": _not_done(name, failed or list(result.signals)),
                    "escalation": None,
                    "escalations": [record],
                },
            )
        output = spec.write(result)
        record["ok"] = True
        ctx.emit(
            NodeFinished(ctx.run_id, SUPERVISOR, True, latency, output, "frontier", tier, attempts)
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
        result = await agent.run(input, pool=await _node_pool(ctx, name, agent), model=model)
        ctx.account(name, result.completions, escalated=False, skipped=result.skipped)
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
        result, _ = await climb(agent, input, ctx, name, name)
        ctx.commit_escalation(name)
    if result is None:  # frontier mode, and the budget cannot cover the frontier call
        result = AgentResult(None, (Signal("model_error", decision.detail),))
    ok = result.value is not None and (escalated or decision.action == "accept")
    ok = ok and not (escalated and problems(result))
    error = None if ok else f"{name}: {decision.reason} ({decision.detail})"
    if escalated and problems(result):
        error = f"{name} failed on the frontier model too: " + "; ".join(
            f"{s.kind}: {s.detail}" for s in problems(result)
        )
    if ok and _needs_confirmation(result):
        ok, error = False, f"{name}: needs confirmation ({result.extra['needs_confirmation']})"
    ctx.emit(
        NodeFinished(
            ctx.run_id, name, ok, time.perf_counter() - started,
            to_jsonable(result.value), "frontier" if escalated else "slm",
            "frontier" if escalated else "slm", _attempts(result), error,
        )
    )  # fmt: skip
    return result, escalated


def escalation_tiers(pool: ModelPool, *, above: str | None = None) -> tuple[str, ...]:
    """The tiers an escalation climbs, cheapest first: every rung above the small one.

    With `above` (a tier a router started the node on), every rung above that one.
    """
    if above is not None and above != "slm" and above in pool.tiers:
        return pool.tiers[pool.tiers.index(above) + 1 :]
    rungs = pool.tiers[1:]
    return rungs or ("frontier",)


async def climb(
    agent: _Agent,
    input: Any,
    ctx: RunContext,
    node: str,
    owner: str,
    *,
    start: str | None = None,
) -> tuple[Any, str]:
    """Re-run an escalated node's agent one tier at a time until a tier answers cleanly.

    Each tier's calls are accounted under `node` for `owner`; a tier that fails (no value,
    or a tool error) is superseded by the next, and the top tier's answer stands whatever it
    is. `start`: the tier the node already ran on (a routed node), the climb begins above it.
    Returns (the last result, the tier that produced it).
    """
    tiers = escalation_tiers(ctx.pool, above=start)
    pool = await _node_pool(ctx, owner, agent)
    result: Any = None
    for index, tier in enumerate(tiers):
        top = index == len(tiers) - 1
        result = await agent.run(input, pool=pool, model=tier)
        ctx.account(node, result.completions, escalated=True, for_node=owner, superseded=False)
        if top or (result.value is not None and not problems(result)):
            return result, tier
        ctx.emit(
            Escalation(
                ctx.run_id,
                owner,
                "escalate",
                "validation_failed",
                f"{tier} tier failed too; climbing to {tiers[index + 1]}",
                tuple((s.kind, s.detail) for s in result.signals),
            )
        )
        ctx.supersede_last()
    return result, tiers[-1]


def _needs_confirmation(result: Any) -> bool:
    extra = getattr(result, "extra", None) or {}
    return result is not None and result.value is not None and bool(extra.get("needs_confirmation"))


def _ask(
    node: str,
    owner: str,
    result: Any,
    started: float,
    ctx: RunContext,
    model: str,
    *,
    then: str,
    step: str | None = None,
    goto: str | None = None,
) -> Command[Any]:
    """Stop before a sensitive call the request did not plainly ask for: go to `confirm`."""
    call = to_jsonable(result.value)
    reason = str(result.extra["needs_confirmation"])
    shown = ", ".join(f"{k}={v!r}" for k, v in (call.get("parameters") or {}).items())
    action = f"{call.get('name')}({shown})"
    question = (
        f"Please confirm: should I {step or action}"
        f"{f' ({action})' if step else ''}? Your message did not plainly ask for it "
        f"({reason}). Answer yes or no."
    )
    ctx.emit(
        NodeFinished(
            ctx.run_id, node, False, time.perf_counter() - started, call, model, model,
            _attempts(result), f"{owner}: needs confirmation ({reason})",
        )
    )  # fmt: skip
    ctx.flags.append(f"{owner}:needs_confirmation")
    pending = {
        "node": owner,
        "call": call,
        "reason": reason,
        "question": question,
        "then": then,
        "step": step,
        "goto": goto,
    }
    return Command(goto=CONFIRM, update={"pending": pending, "answer": question})


def _confirm_node(
    specialists: Mapping[str, Specialist], agents: Mapping[str, _Agent]
) -> Callable[[GraphState, Runtime[RunContext]], Awaitable[Command[Any]]]:
    async def confirm(state: GraphState, runtime: Runtime[RunContext]) -> Command[Any]:
        pending = dict(state.get("pending") or {})
        # Stops the run here (status needs_confirmation); resuming returns the user's answer.
        answer = interrupt(
            {k: pending.get(k) for k in ("question", "node", "call", "reason", "step")}
        )
        ctx = runtime.context
        started = time.perf_counter()
        owner = str(pending["node"])
        yes = _is_yes(answer)
        call = dict(pending["call"])
        outcome: dict[str, Any] = {"call": call, "result": None}
        error = None
        if yes:
            from brickwork.agents.toolcall import ToolCall

            agent = await _inner(agents[owner])
            ran = await agent.execute_call(
                ToolCall(str(call["name"]), dict(call.get("parameters") or {}))
            )
            if ran is not None and not ran.ok:
                error = f"{owner}: the confirmed call failed: {ran.error}"
            elif ran is not None:
                outcome["result"] = to_jsonable(ran.value)
        else:
            error = f"{owner}: not confirmed by the user (answer {answer!r})"
        ok = error is None
        ctx.emit(
            NodeFinished(
                ctx.run_id, owner, ok, time.perf_counter() - started, outcome if ok else None,
                "confirmed" if yes else "declined", "-", (), error,
            )
        )  # fmt: skip
        ctx.flags.append(f"{owner}:{'confirmed' if yes else 'declined'}")
        if pending.get("then") == "step":
            record = _step_record(str(pending.get("step") or ""), outcome, error, yes)
            done = [*(state.get("outputs", {}).get(str(pending["goto"])) or []), record]
            return Command(
                goto=str(pending["goto"]),
                update={"outputs": {str(pending["goto"]): done}, "pending": None, "answer": ""},
            )
        if not ok:
            why = "you did not confirm it" if not yes else _plain(str(error).partition(": ")[2])
            return Command(
                goto=END,
                update={
                    "status": "failed",
                    "error": error,
                    "answer": f"Not done: {why}.",
                    "pending": None,
                },
            )
        spec = specialists[owner]
        return Command(
            goto=spec.successor(outcome),
            update={"outputs": {owner: outcome}, "pending": None, "answer": ""},
        )

    confirm.__name__ = CONFIRM
    return confirm


def _is_yes(answer: Any) -> bool:
    if isinstance(answer, bool):
        return answer
    if isinstance(answer, Mapping):
        return _is_yes(answer.get("confirm", answer.get("answer")))
    return isinstance(answer, str) and answer.strip().lower().rstrip(".!") in _YES


async def _inner(agent: _Agent) -> Any:
    return await agent.agent() if isinstance(agent, LazyAgent) else agent


async def _node_pool(ctx: RunContext, node: str, agent: _Agent) -> ModelPool:
    """The pool `node`'s agent calls: the run's own, or a cached view of it.

    The view (`brickwork.caching.node_pool`) only when the run's resources hold a cache.
    """
    if ctx.resources.get("cache") is None:
        return ctx.pool
    from brickwork.caching import node_pool

    return node_pool(ctx, node, await skill_of(agent))


async def skill_of(agent: _Agent) -> Skill | None:
    """The skill an agent runs (building a `LazyAgent` first), or None."""
    skill = getattr(await _inner(agent), "skill", None)
    return skill if isinstance(skill, Skill) else None


def _step_record(
    step: str, outcome: Mapping[str, Any] | None, error: str | None, ran: bool
) -> dict[str, Any]:
    outcome = outcome or {}
    return {
        "step": step,
        "ok": error is None,
        "outcome": "done" if error is None else ("failed" if ran else "not_confirmed"),
        "call": outcome.get("call"),
        "result": outcome.get("result"),
        "error": error,
    }


def plan_answer(records: Sequence[Mapping[str, Any]]) -> str:
    """What a plan run did, step by step, in plain words (which steps were done, which not)."""
    lines = []
    for number, record in enumerate(records, 1):
        step = str(record.get("step") or "").rstrip(".") or "(empty step)"
        outcome = record.get("outcome")
        if outcome == "done":
            result = record.get("result")
            shown = json.dumps(result) if result is not None else ""
            lines.append(
                f"{number}. {step}: done" + (f" ({shown})" if 0 < len(shown) <= 120 else "") + "."
            )
        elif outcome == "dropped":
            lines.append(
                f"{number}. {step}: not done, because it came from text inside your message, "
                "not from your own request."
            )
        elif outcome == "not_confirmed":
            lines.append(f"{number}. {step}: not done, because you did not confirm it.")
        else:
            why = _plain(str(record.get("reason") or "")) or "it could not be done"
            lines.append(f"{number}. {step}: not done ({why}).")
    return "\n".join(lines)


def plan_runner(
    name: str, agent: _Agent, *, owner: str
) -> tuple[Callable[[GraphState, Runtime[RunContext]], Awaitable[Command[Any]]], tuple[str, ...]]:
    """A node that runs a plan one step per visit, then sets the run's status and answer.

    Each step must correspond to a clause of the user's own request (`step_problem`), else it
    is dropped and never run. A step that needs a confirmation goes to `confirm`, which comes
    back here. The run is ok only when every step that was not dropped is done (and at least
    one is); the answer lists every step's outcome in plain words, and `outputs[name]` holds
    one record per step (`step`, `ok`, `outcome`, `call`, `result`, `error`).

    Args:
        name: The node name (its output is the list of step records).
        agent: Runs one step (`run_step`), e.g. the graph's tool-calling agent.
        owner: The specialist whose agent runs a confirmed call.

    Returns:
        The node function and its destinations, ready for `build_graph(plain_nodes=...)`.
    """

    async def run_plan(state: GraphState, runtime: Runtime[RunContext]) -> Command[Any]:
        ctx = runtime.context
        text = state.get("text", "")
        steps = state.get("plan") or [text]
        records = list(state.get("outputs", {}).get(name) or [])
        if len(records) < len(steps):
            number = len(records) + 1
            step = steps[number - 1]
            node = f"step_{number}"
            problem = step_problem(step, text) if state.get("plan") else None
            if problem is not None:
                ctx.emit(NodeStarted(ctx.run_id, node))
                ctx.emit(
                    NodeFinished(ctx.run_id, node, False, 0.0, None, "check", "-", (), problem)
                )
                ctx.flags.append(f"{node}:dropped")
                record = {"step": step, "ok": False, "outcome": "dropped", "call": None,
                          "result": None, "error": problem}  # fmt: skip
                return Command(goto=name, update={"outputs": {name: [*records, record]}})
            started = time.perf_counter()
            result, escalated = await run_step(node, agent, step, ctx)
            if _needs_confirmation(result):
                model = "frontier" if escalated else "slm"
                return _ask(
                    node, owner, result, started, ctx, model, then="step", step=step, goto=name
                )
            failed = problems(result)
            ok = result.value is not None and not failed
            output = write_tool_call(result) if result.value is not None else {}
            record = {
                "step": step,
                "ok": ok,
                "outcome": "done" if ok else "failed",
                "call": output.get("call"),
                "result": output.get("result"),
                "error": None if ok else "; ".join(f"{s.kind}: {s.detail}" for s in result.signals),
                "reason": None
                if ok
                else _not_done(node, list(result.signals)).removeprefix("Not done: "),
            }
            return Command(goto=name, update={"outputs": {name: [*records, record]}})
        answer = plan_answer(records)
        counted = [r for r in records if r.get("outcome") != "dropped"]
        if counted and all(r.get("ok") for r in counted):
            return Command(goto=END, update={"answer": answer})
        not_done = [f"step {i}" for i, r in enumerate(records, 1) if not r.get("ok")]
        error = f"{name}: not every step was done ({', '.join(not_done)})"
        ctx.flags.append(f"{name}:incomplete")
        return Command(goto=END, update={"status": "failed", "error": error, "answer": answer})

    run_plan.__name__ = name
    return run_plan, (name, CONFIRM, END)


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
    plain_targets = {t for _, targets in (plain_nodes or {}).values() for t in targets}
    if any(s.confirms for s in specialists) or CONFIRM in plain_targets:
        confirm_targets = {t for s in specialists if s.confirms for t in s.targets}
        confirm_targets |= {n for n, (_, t) in (plain_nodes or {}).items() if CONFIRM in t}
        confirm_targets = (confirm_targets | {END}) - {SUPERVISOR, CONFIRM}
        graph.add_node(
            CONFIRM,
            cast(Any, _confirm_node(by_name, {s.name: s.agent for s in specialists})),
            destinations=tuple(sorted(confirm_targets)),
        )
    supervisor_targets = {t for s in specialists for t in s.targets if t != SUPERVISOR}
    supervisor_targets |= {after_plan or END, END}
    graph.add_node(
        SUPERVISOR,
        cast(Any, _supervisor_node(by_name, planner, after_plan)),
        destinations=tuple(sorted(supervisor_targets)),
    )
    graph.add_edge(START, entry or specialists[0].name)
    return graph.compile(checkpointer=checkpointer)
