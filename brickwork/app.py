"""`App`: the embedded API. Load a graph, run requests on it, stream events, read past runs.

    app = App.from_graph("graphs.smart_home")
    result = app.invoke("turn on the kitchen lights")
    print(result.answer, result.cost)

Many concurrent runs share one pool. Each run gets a `RunContext` (pool, ledger, budgets, policy,
mode, event sink) and a LangGraph thread id (= run id) in the checkpointer, so an interrupted run
can be resumed with `aresume(run_id)`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from brickwork._instances import Instance, Serve, instances_of, registered_serves
from brickwork._settings import cache_dir, gc_freeze_setting
from brickwork.admission import Admission, AdmissionLimits, default_limits
from brickwork.cost import BudgetBook, Ledger, RunCost
from brickwork.cost.prices import LocalCapacity, PriceBook
from brickwork.errors import ConfigError
from brickwork.escalation import Mode, Policy
from brickwork.events import Event, RunFinished, RunStarted, RunStatus
from brickwork.graphs import GraphModule, load_graph
from brickwork.http.redact import redact
from brickwork.run_context import RunContext
from brickwork.serving.pool import ModelPool
from brickwork.store import EscalationRecord, RunStore, RunSummary
from brickwork.store.base import RUNNING
from brickwork.store.triage import Acknowledgements, FlywheelExport, acknowledgements_path
from brickwork.store.triage import export_escalations as _export_escalations
from brickwork.telemetry import RunTracer, resolve_tracer

if TYPE_CHECKING:
    from langgraph.types import Durability
    from opentelemetry.trace import Tracer, TracerProvider

    from brickwork.caching import ResponseCache
    from brickwork.routing import Routing

__all__ = ["MAX_TEXT_CHARS", "App", "FlywheelExport", "Instance", "RunResult", "Serve"]

T = TypeVar("T")

#: Longest request accepted (characters); longer input is refused before any model call.
MAX_TEXT_CHARS = 20_000


@dataclass(frozen=True)
class RunResult:
    """What one run produced."""

    run_id: str
    graph: str
    status: RunStatus
    answer: str
    outputs: dict[str, Any]
    escalations: list[dict[str, Any]]
    cost: RunCost
    latency_s: float
    flags: tuple[str, ...]
    events: tuple[Event, ...] = field(repr=False)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the run finished with an answer."""
        return self.status == "ok"


class App:
    """The embedded brickwork API over one graph."""

    def __init__(
        self,
        graph: GraphModule,
        *,
        graph_options: dict[str, Any] | None = None,
        pool: ModelPool | None = None,
        url: str | None = None,
        store: RunStore | Literal["default"] | None = "default",
        source: str = "app",
        prices: PriceBook | None = None,
        capacity: LocalCapacity | None = None,
        policy: Policy | None = None,
        budgets: BudgetBook | None = None,
        checkpoints: str | Path | None = "default",
        keep_checkpoints: bool = False,
        durability: Durability | None = None,
        telemetry: bool | TracerProvider | None = None,
        admission: AdmissionLimits | Literal[False] | None = None,
        cache: ResponseCache | None = None,
        routing: Routing | None = None,
        gc_freeze: bool = True,
    ) -> None:
        """Wrap a graph; nothing starts until the first run.

        Args:
            graph: The graph module.
            graph_options: Keyword arguments for the graph's `build` (e.g. a hub).
            pool: The model pool (default: the embedded model, started on the first run).
            url: Instead of a pool, any OpenAI-compatible server (base URL ending in /v1):
                its served model (read from /v1/models) is the `slm` tier. The App owns the
                pool it makes and closes it.
            store: Where runs and their events are saved: "default" (the run store in the
                cache that `brickwork run`, `api` and `tui` share, opened on the first run), a
                `RunStore`, or None (nowhere).
            source: Where this App's runs come from, recorded with each run (`cli`, `api`,
                `app`, `eval`, `playground`; see `brickwork.store.SOURCES`).
            prices: Prices for the ledger (default: from the pool's endpoints).
            capacity: The local tiers' capacities measured on this machine, for the default
                prices (`serving.capacity`); an App that starts its own local ladder reads
                the saved measurement itself.
            policy: The escalation policy (default: the graph's, else `Policy()`).
            budgets: Run and tenant budgets (default: no limits). With a PostgreSQL `store`,
                tenant limits are kept in that database (`BudgetBook.share`), so every App
                and replica on it holds them together, unless the book says `shared=False`.
            checkpoints: Durable graph state: "default" (a SQLite file in the cache), a
                PostgreSQL URL, a file path, or None (memory only: runs cannot be resumed).
            keep_checkpoints: Keep the checkpoints of runs that finished too. By default they
                are deleted when the graph ends (the run store keeps the trace), so only
                interrupted, timed-out or crashed runs keep the state `aresume` needs, and the
                database does not grow with every run (a growing one also slows its writes).
            durability: When a run's graph state is checkpointed (LangGraph's `durability`):
                "exit" once, when the run stops (finished, interrupted for a confirmation,
                failed, timed out or cancelled); "async" after every step as well, written
                while the next step runs; "sync" after every step, before the next. None (the
                default): "exit" for a graph with one node besides its supervisor, "async"
                for longer ones (`brickwork.graphs.builder.default_durability`). A process
                that dies mid-run leaves no checkpoint of an "exit" run.
            telemetry: OpenTelemetry spans per run, node and model call: None follows
                `$BRICKWORK_OTEL` (off when unset), True/False turn them on/off, or give a
                `TracerProvider` (see `brickwork.telemetry`).
            admission: Runs in flight, queue length and wait limit (`brickwork.admission`);
                past them a run raises `AdmissionRefused` at once. None: sized from the
                pool's capacity on the first run; False: no limit.
            cache: A response cache in front of every node's model call
                (`brickwork.caching.ResponseCache`, e.g. `ResponseCache.memory()`); None (the
                default): no caching, unless the graph's `resources()` sets one. The App does
                not close it.
            routing: Route before generating in hybrid mode: the graph's trained per-node
                routers decide which tier each specialist starts on
                (`brickwork.routing.Routing`, e.g. `Routing.for_graph("support", margin=0.1)`);
                None (the default): the plain cascade, unless the graph's `resources()` sets
                one.
            gc_freeze: After this process's first run, collect and then freeze the heap
                built so far (imports, graph, pool) so that the garbage collector stops
                walking it in every full collection, as vLLM's and Ray Serve's servers do
                after start-up; once per process (`freeze_startup_heap`). False, or
                `BRICKWORK_GC_FREEZE=0`, leaves the collector alone.
        """
        self.graph = graph
        self.graph_options = dict(graph_options or {})
        self.cache = cache
        self.routing = routing
        self.gc_freeze = gc_freeze
        if pool is not None and url is not None:
            raise ConfigError("give pool= or url=, not both")
        self._pool = pool
        self.url = url
        self._own_pool = False
        self._local: Any = None
        self._default_store = store == "default"
        self.store: RunStore | None = None if isinstance(store, str) else store
        self.source = source
        self.policy = policy or graph.policy or Policy()
        self.budgets = budgets or BudgetBook()
        shared_url = getattr(self.store, "url", None)  # a PostgreSQL store's
        if self.budgets.shared is None and self.budgets.limited and shared_url:
            self.budgets.share(shared_url)  # replicas on one PostgreSQL share tenant limits
        self._prices = prices
        self._capacity = capacity
        self.ledger: Ledger | None = None
        # Durable graph state: a SQLite file in the cache by default, a PostgreSQL URL, a file
        # path, or None for memory only (then runs cannot be resumed).
        self.checkpoints = (
            cache_dir() / "checkpoints.sqlite" if checkpoints == "default" else checkpoints
        )
        self.keep_checkpoints = keep_checkpoints
        self.durability = durability
        #: What runs pass to LangGraph (None without a checkpointer; set on the first run).
        self._durability: Durability | None = None
        self._compiled: Any = None
        self._saver_cm: Any = None
        self._start_lock = asyncio.Lock()
        self._loop_thread: _LoopThread | None = None
        self._tracer: Tracer | None = resolve_tracer(telemetry)
        self._restart_lock = threading.Lock()
        # Restarts of the launched server before its last operator restart (`start()` counts
        # from zero again), so `instances()` shows them all.
        self._earlier_restarts = 0
        self._admission_limits = admission
        #: The admission gate (made on the first run; None when admission=False).
        self.admission: Admission | None = None

    @classmethod
    def from_graph(cls, ref: str, **options: Any) -> App:
        """Load a graph by module name (`graphs.smart_home`) or file path, and wrap it."""
        return cls(load_graph(ref), **options)

    # -- lifecycle ----------------------------------------------------------------------------

    async def astart(self, progress: Callable[[str], None] | None = None) -> None:
        """Start now what the first run would start, saying so through `progress`.

        That is the pool, the run store, the graph and the models its agents load (the intent
        kNN's embedding model); without this call the first run pays for them in its latency.
        """
        await self._ensure_started(progress)

    def start(self, progress: Callable[[str], None] | None = None) -> None:
        """Synchronous `astart`."""
        self._sync(self.astart(progress))

    def _resources(self) -> dict[str, Any]:
        """One run's resources: the graph's, with the App's response cache and routing."""
        resources = self.graph.resources()
        if self.cache is not None:
            resources["cache"] = self.cache
        if self.routing is not None:
            resources["routing"] = self.routing
        return resources

    async def _ensure_started(self, progress: Callable[[str], None] | None = None) -> None:
        if self._compiled is None:  # every run asks; only the first ones take the lock
            await self._start(progress)

    async def _start(self, progress: Callable[[str], None] | None) -> None:
        async with self._start_lock:
            if self._compiled is not None:
                return
            if self._pool is None and self.url is not None:
                from brickwork.serving.local import pool_config_for_url

                config = await asyncio.to_thread(pool_config_for_url, self.url)
                self._pool, self._own_pool = ModelPool(config), True
            if self._pool is None:
                from brickwork.serving.local import LocalServing

                self._local = await asyncio.to_thread(LocalServing(progress=False).start)
                self._pool = self._local.pool()
                if self._capacity is None:
                    from brickwork.serving.capacity import load_capacity

                    self._capacity = load_capacity()
            if self._default_store and self.store is None:
                self.store = await asyncio.to_thread(RunStore)
            if self.graph_options.get("knn", True) is not False:
                await _warm_models(self.graph, progress)
            pool = self._pool
            top = pool.top_tier
            top_names = [n for n in pool.logical_names if pool.tier_of(n) == top] or [top]
            prices = self._prices or PriceBook.default(
                *(e.config for e in pool.endpoints()),
                top_tier=pool.tier_endpoints(top)[0] if top in pool.logical_names else None,
                capacity=self._capacity,
            )
            self.ledger = Ledger(prices, frontier_models=top_names)
            checkpointer = None
            if self.checkpoints is not None:
                checkpointer = await self._open_checkpointer(str(self.checkpoints))
            self._compiled = self.graph.build(checkpointer=checkpointer, **self.graph_options)
            if checkpointer is not None:
                from brickwork.graphs.builder import default_durability

                self._durability = self.durability or default_durability(self._compiled)
            if self.store is not None and self.store.records_starts:
                await _recover(self.store)  # runs left "running" by replicas that died

    async def _open_checkpointer(self, where: str) -> Any:
        if where.startswith(("postgres://", "postgresql://")):
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

            self._saver_cm = AsyncPostgresSaver.from_conn_string(where)
            saver = await self._saver_cm.__aenter__()
            await saver.setup()
            return saver
        from brickwork._checkpoints import InlineSqliteSaver

        saver = InlineSqliteSaver.open(where)
        self._saver_cm = contextlib.closing(saver)
        return saver

    @property
    def origin(self) -> str:
        """Where the small model runs, for humans."""
        if self._local is not None:
            return str(self._local.origin)
        return "the given pool: " + ", ".join(e.config.base_url for e in self.pool.endpoints())

    @property
    def pool(self) -> ModelPool:
        """The pool (after the first run, or when one was passed in)."""
        if self._pool is None:
            raise ConfigError("the pool starts with the first run; pass pool= to use one now")
        return self._pool

    async def aclose(self) -> None:
        """Close the checkpointer, the pool and any private vLLM this app started."""
        if isinstance(self._saver_cm, contextlib.closing):
            self._saver_cm.__exit__(None, None, None)
        elif self._saver_cm is not None:
            await self._saver_cm.__aexit__(None, None, None)
        self._saver_cm = None
        if self._local is not None:
            if self._pool is not None:
                await self._pool.aclose()
            await asyncio.to_thread(self._local.stop)
            self._local = None
        elif self._own_pool and self._pool is not None:
            await self._pool.aclose()
            self._pool, self._own_pool = None, False
        if self._default_store and self.store is not None:
            await asyncio.to_thread(self.store.close)
            self.store = None
        self._compiled = None

    def close(self) -> None:
        """Synchronous `aclose`, and stop the background loop used by `invoke`."""
        if self._loop_thread is not None:
            self._loop_thread.run(self.aclose())
            self._loop_thread.stop()
            self._loop_thread = None
        else:
            asyncio.run(self.aclose())

    # -- running ------------------------------------------------------------------------------

    async def astream(self, text: str, **options: Any) -> AsyncIterator[Event]:
        """Run one request and yield its events as they happen; the last is `RunFinished`.

        The run first takes a slot from the App's admission gate (see `admission`); the
        options are `_astream`'s (mode, tenant, budget_usd, timeout_s, run_id, resume,
        messages).

        Raises:
            AdmissionRefused: the App is at its limit of runs in flight and waiting.
        """
        _check_text(text)
        await self._ensure_started()
        if self.admission is None and self._admission_limits is not False:
            limits = self._admission_limits or default_limits(self._pool)
            self.admission = Admission(limits)
        if self.admission is None:
            async for event in self._astream(text, **options):
                yield event
            return
        async with self.admission.slot():
            async for event in self._astream(text, **options):
                yield event

    async def _astream(
        self,
        text: str,
        *,
        mode: Mode = "hybrid",
        tenant: str = "default",
        budget_usd: float | None = None,
        timeout_s: float = 300.0,
        run_id: str | None = None,
        resume: bool = False,
        confirm: bool | str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        stream: bool = True,
    ) -> AsyncIterator[Event]:
        """Run one request and yield its events as they happen; the last is `RunFinished`.

        Args:
            text: The request (the last user turn).
            mode: slm (never escalate), hybrid (escalate on need) or frontier (always).
            tenant: Whose budget and totals the run counts against.
            budget_usd: This run's budget (default: the BudgetBook's per-run limit).
            timeout_s: The run is stopped after this long (status "timeout").
            run_id: Use this id (default: a new one).
            resume: Continue `run_id` from its last checkpoint instead of starting afresh.
            confirm: With `resume`, the user's answer to the run's confirmation question
                (True/"yes" runs the call it asked about, anything else declines it).
            messages: The whole conversation, for multi-turn graphs (ends with `text`).
            stream: False (what `ainvoke` uses): run the graph in the caller's task and yield
                every event once the run is saved, with no queue or task per event.
        """
        _check_text(text)
        if mode not in ("slm", "hybrid", "frontier"):
            raise ConfigError(f"mode must be slm, hybrid or frontier, got {mode!r}")
        await self._ensure_started()
        assert self.ledger is not None and self._pool is not None
        minted = not run_id
        run_id = run_id or uuid.uuid4().hex[:16]
        # Streamed events go through a queue that the run's task fills and this generator
        # drains; None, put when the task is done, ends the stream.
        queue: asyncio.Queue[Event | None] | None = asyncio.Queue() if stream else None
        events: list[Event] = []

        trace = RunTracer(self._tracer, self.graph.name) if self._tracer is not None else None

        def fan_out(event: Event) -> None:
            events.append(event)
            if queue is not None:
                queue.put_nowait(event)
            if trace is not None:
                trace(event)

        emit: Callable[[Event], None] = (
            events.append if queue is None and trace is None else fan_out
        )

        from brickwork.cost import Budget

        ctx = RunContext(
            run_id=run_id,
            graph=self.graph.name,
            pool=self._pool,
            ledger=self.ledger,
            policy=self.policy,
            mode=mode,
            tenant=tenant,
            emit=emit,
            budgets=self.budgets,
            run_budget=Budget(budget_usd, name="run budget")
            if budget_usd is not None
            else self.budgets.run_budget(),
            resources=self._resources(),
        )
        started_at = time.time()
        started = time.perf_counter()
        emit(RunStarted(run_id, self.graph.name, text, mode, tenant))
        if self.store is not None and self.store.records_starts:  # in the store while it runs
            await asyncio.to_thread(self.store.start, self._running(ctx, text, started_at))
        initial: Any = None if resume else self.graph.initial_state(text, messages)
        if resume and confirm is not None:
            from langgraph.types import Command

            initial = Command(resume=confirm)
        if minted and not resume:  # a thread that cannot have checkpoints yet
            expect_new = getattr(self._compiled.checkpointer, "expect_new", None)
            if expect_new is not None:
                expect_new(run_id, once=self._durability == "exit")
        if queue is None:
            state, status, error = await self._execute(ctx, initial, timeout_s)
        else:
            pending = queue
            task = asyncio.create_task(self._execute(ctx, initial, timeout_s))
            task.add_done_callback(lambda _: pending.put_nowait(None))
            while (event := await pending.get()) is not None:
                yield event
            state, status, error = task.result()
            queue = None  # the run's events are out; what follows is yielded below
        cost = self.ledger.run_cost(run_id)
        # A run that did not finish ok says what was (not) done, or asks its question. What
        # went wrong reaches the user without internal addresses, paths or exception names
        # (the error and the node events keep them); a question shows the call as it is.
        answer = self.graph.answer(state) if status == "ok" else str(state.get("answer") or "")
        if status not in ("ok", "needs_confirmation"):
            answer = redact(answer)
        finished = RunFinished(
            run_id,
            status,
            answer,
            cost.cost_usd,
            cost.frontier_only_usd,
            time.perf_counter() - started,
            tuple(ctx.flags),
            error if status != "ok" else None,
        )
        emit(finished)
        await self._save(ctx, text, state, finished, error, started_at, events, resume=resume)
        if self.gc_freeze and not _heap_frozen:
            asyncio.get_running_loop().call_soon(freeze_startup_heap)
        if not stream:
            for event in events[:-1]:
                yield event
        yield finished

    async def _execute(
        self, ctx: RunContext, initial: dict[str, Any] | None, timeout_s: float
    ) -> tuple[dict[str, Any], RunStatus, str | None]:
        config = {"configurable": {"thread_id": ctx.run_id}}
        # The inline SQLite saver commits in groups (see `brickwork._checkpoints`): a run that
        # keeps its checkpoints (to be resumed) has them committed before it ends; a finished
        # run's are deleted, and the deletion commits with the next group.
        try:
            async with asyncio.timeout(timeout_s):
                state = await self._compiled.ainvoke(
                    initial, config, context=ctx, durability=self._durability
                )
        except TimeoutError:
            self._commit_checkpoints()
            return {}, "timeout", f"run exceeded its {timeout_s:.0f} s timeout"
        except asyncio.CancelledError:  # e.g. its client went away: the store says so
            if self.store is not None and self.store.records_starts:
                _in_background(self.store.interrupt, ctx.run_id, _CANCELLED)
            raise
        except Exception as exc:  # the run ends with a clear error, the app lives on
            self._commit_checkpoints()
            return {}, "error", f"{type(exc).__name__}: {exc}"
        waiting = state.get("__interrupt__")
        if waiting:  # a node stopped to ask the user; its checkpoint is what resumes it
            self._commit_checkpoints()
            question = getattr(waiting[0], "value", {}) or {}
            detail = question.get("question") if isinstance(question, dict) else question
            return dict(state), "needs_confirmation", f"waiting for confirmation: {detail}"
        status: RunStatus = state.get("status") or "ok"
        if self.keep_checkpoints:
            self._commit_checkpoints()
        else:
            await self._forget(ctx.run_id)
        return dict(state), status, state.get("error")

    def _commit_checkpoints(self) -> None:
        """Commit the checkpointer's pending writes now (a saver that groups its commits)."""
        commit = getattr(self._compiled.checkpointer, "commit", None)
        if callable(commit):
            commit()

    async def _forget(self, run_id: str) -> None:
        """Delete a finished run's checkpoints (nothing is left to resume)."""
        saver = getattr(self._compiled, "checkpointer", None)
        if saver is None or saver is False:
            return
        try:
            await saver.adelete_thread(run_id)
        except Exception:  # the run's answer matters more than tidying its state
            import logging

            logging.getLogger(__name__).warning(
                "could not delete the checkpoints of run %s", run_id, exc_info=True
            )

    def _running(self, ctx: RunContext, text: str, started_at: float) -> RunSummary:
        """The store row of a run that has just started (status "running")."""
        return RunSummary(
            ctx.run_id, self.graph.name, ctx.tenant, ctx.mode, text, RUNNING, "", None, 0.0,
            0.0, 0.0, 0, (), started_at, self.source,
        )  # fmt: skip

    async def _save(
        self,
        ctx: RunContext,
        text: str,
        state: dict[str, Any],
        finished: RunFinished,
        error: str | None,
        started_at: float,
        events: list[Event],
        *,
        resume: bool = False,
    ) -> None:
        if self.store is None:
            return
        bodies = [e.to_dict() for e in events]
        escalations = len(state.get("escalations", []))
        if resume:
            # A resumed run keeps its request, its start and the trace up to the interrupt;
            # what ran after it is appended.
            earlier = await asyncio.to_thread(self.store.run, ctx.run_id)
            if earlier is not None:
                before, before_events = earlier
                text, started_at = before.text, before.started_at
                bodies = [*before_events, *bodies]
                escalations = max(escalations, before.escalations)
        summary = RunSummary(
            ctx.run_id, self.graph.name, ctx.tenant, ctx.mode, text, finished.status,
            finished.answer, error, finished.cost_usd, finished.frontier_only_usd,
            finished.latency_s, escalations, finished.flags, started_at,
            self.source,
        )  # fmt: skip
        try:
            await self.store.asave(summary, bodies)
        except Exception:  # a store outage never fails a run
            import logging

            logging.getLogger(__name__).exception("could not save run %s", ctx.run_id)

    async def ainvoke(self, text: str, **options: Any) -> RunResult:
        """Run one request to the end; see `astream` for the options."""
        events = [event async for event in self.astream(text, stream=False, **options)]
        return self._result(events)

    async def aresume(
        self, run_id: str, *, confirm: bool | str | None = None, **options: Any
    ) -> RunResult:
        """Continue a run that was interrupted, from its last checkpoint.

        A run interrupted before its first checkpoint is run again from its stored request.

        Args:
            run_id: The run to continue.
            confirm: For a run whose status is "needs_confirmation": the user's answer
                (True or "yes" runs the call it asked about; False or "no" declines it).
            **options: As for `astream`.
        """
        if self.checkpoints is None:
            raise ConfigError(
                "resuming needs durable state; this App was made with checkpoints=None"
            )
        # Without a question pending, a resume would start the graph afresh: refuse it.
        if confirm is not None and await self.apending(run_id) is None:
            raise ConfigError(
                f"run {run_id!r} is not waiting for a confirmation (unknown, finished, or "
                "already answered); nothing was run"
            )
        if confirm is None and (stored := await self._unstarted(run_id)) is not None:
            # Interrupted before its first checkpoint: nothing it did was kept, run it afresh.
            return await self.ainvoke(stored.text, run_id=run_id, **options)
        events = [
            e
            async for e in self.astream(
                "(resumed)", run_id=run_id, resume=True, confirm=confirm, stream=False, **options
            )
        ]
        return self._result(events)

    async def _unstarted(self, run_id: str) -> RunSummary | None:
        """The stored run `run_id` when its checkpointer has nothing of it, else None."""
        await self._ensure_started()
        snapshot = await self._compiled.aget_state({"configurable": {"thread_id": run_id}})
        if snapshot.values or snapshot.next or self.store is None:
            return None
        stored = await asyncio.to_thread(self.store.run, run_id)
        return stored[0] if stored is not None else None

    async def apending(self, run_id: str) -> dict[str, Any] | None:
        """The question run `run_id` is waiting on, from its checkpoint; None when none is.

        Returns:
            The interrupt value of a run whose status is "needs_confirmation" (`question`,
            `node`, `call`, `reason`, `step`), or None for an unknown, finished or running run.
        """
        if self.checkpoints is None:
            return None
        await self._ensure_started()
        snapshot = await self._compiled.aget_state({"configurable": {"thread_id": run_id}})
        for waiting in snapshot.interrupts:
            value = waiting.value
            return dict(value) if isinstance(value, Mapping) else {"question": str(value)}
        return None

    def invoke(self, text: str, **options: Any) -> RunResult:
        """Synchronous `ainvoke` (runs on the app's own background event loop)."""
        return self._sync(self.ainvoke(text, **options))

    def _sync(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop_thread is None:
            self._loop_thread = _LoopThread()
        return self._loop_thread.run(coro)

    def _result(self, events: list[Event]) -> RunResult:
        finished = events[-1]
        assert isinstance(finished, RunFinished) and self.ledger is not None
        outputs: dict[str, Any] = {}
        escalations: list[dict[str, Any]] = []
        error = None
        for event in events:
            if event.kind == "node_finished" and event.ok:
                outputs[event.node] = event.output
            if event.kind == "node_finished" and event.error and not event.ok:
                error = event.error
            if event.kind == "escalation" and event.action == "escalate":
                escalations.append({"node": event.node, "reason": event.reason})
        return RunResult(
            run_id=finished.run_id,
            graph=self.graph.name,
            status=finished.status,
            answer=finished.answer,
            outputs=outputs,
            escalations=escalations,
            cost=self.ledger.run_cost(finished.run_id),
            latency_s=finished.latency_s,
            flags=finished.flags,
            events=tuple(events),
            error=None if finished.status == "ok" else (finished.error or error),
        )

    # -- model instances ----------------------------------------------------------------------

    async def instances(self) -> list[Instance]:
        """A snapshot of every endpoint of the pool, with what its server says about itself.

        Health, served adapters, running requests, queue depth and KV-cache use come from the
        vLLM servers (`/health`, `/v1/models`, `/metrics`, read with a short timeout); restarts
        and whether `restart_instance` can restart it, from the server this App launched.

        Raises:
            ConfigError: the pool has not started yet (see `pool`).
        """
        pool = self.pool
        states = await pool.server_metrics()
        server = self.launched_server
        origins: dict[str, str] = {}
        if self._local is not None:
            origins[str(self._local.base_url)] = str(self._local.origin)
        return instances_of(
            pool,
            states,
            server=server,
            earlier_restarts=self._earlier_restarts,
            origins=origins,
        )

    async def restart_instance(self, name: str, *, timeout_s: float | None = None) -> None:
        """Restart the vLLM server behind endpoint `name`, if this App launched it.

        The server is stopped (its whole process group) and started again on the same port;
        this returns when it answers again. Requests meanwhile fail over or fail clearly.

        Args:
            name: The endpoint's name (as in `instances()`).
            timeout_s: How long to wait for it to be ready (default: the server's own).

        Raises:
            ConfigError: no such endpoint, or its server was not launched by this App (a
                running `brickwork serve`, or a server outside brickwork): restart it where it
                runs. Also when a restart of it is already under way.
            ServerStartError: the server did not come back.
        """
        pool = self.pool
        client = next((c for c in pool.endpoints() if c.config.name == name), None)
        if client is None:
            known = ", ".join(c.config.name for c in pool.endpoints())
            raise ConfigError(f"no endpoint named {name!r} in the pool; known: {known}")
        server = self.launched_server
        if server is None or getattr(server, "base_url", None) != client.config.base_url:
            where = (
                str(self._local.origin)
                if self._local is not None and self._local.base_url == client.config.base_url
                else f"a server this process did not start ({client.config.base_url})"
            )
            raise ConfigError(
                f"endpoint {name!r} is served by {where}; brickwork restarts only servers this "
                "App launched. Restart it where it runs"
            )
        if not self._restart_lock.acquire(blocking=False):
            raise ConfigError(f"a restart of {name!r} is already under way; wait for it")
        try:
            self._earlier_restarts += int(server.restarts) + 1
            await asyncio.to_thread(_restart, server, timeout_s)
        finally:
            self._restart_lock.release()

    @property
    def launched_server(self) -> Any:
        """The `VLLMServer` this App launched for its pool (None: it launched none)."""
        return getattr(self._local, "server", None) if self._local is not None else None

    def runs(self, *, limit: int = 100) -> list[RunSummary]:
        """Past runs from the store, newest first."""
        if self.store is None:
            raise ConfigError("this App has no run store; create it with store=RunStore()")
        return self.store.runs(limit=limit, graph=self.graph.name)

    def serves(self) -> list[Serve]:
        """Every registered `brickwork serve` on this machine, with health and restarts.

        Listed whether or not this App's pool uses it; the restarts and their reasons come
        from each serve's log.
        """
        return registered_serves()

    # -- the escalation queue -----------------------------------------------------------------

    def _queue_store(self) -> RunStore:
        if self.store is None:
            raise ConfigError("this App has no run store; create it with store=RunStore()")
        return self.store

    async def aretry(self, run_id: str, **options: Any) -> RunResult:
        """Run a stored run's request again, as a new run, in its mode and for its tenant.

        Options override those (see `astream`). A multi-turn run is retried on its last turn.

        Raises:
            ConfigError: no store, no such run, or the run belongs to another graph.
        """
        store = self._queue_store()
        stored = await asyncio.to_thread(store.run, run_id)
        if stored is None:
            raise ConfigError(f"no run {run_id!r} in the run store {store.where}")
        summary = stored[0]
        if summary.graph != self.graph.name:
            raise ConfigError(
                f"run {run_id!r} ran on graph {summary.graph!r}, not {self.graph.name!r}; "
                "retry it with that graph's App"
            )
        options = {"mode": summary.mode, "tenant": summary.tenant, **options}
        return await self.ainvoke(summary.text, **options)

    def acknowledged(self) -> set[str]:
        """Keys (`brickwork.store.triage.escalation_key`) of the acknowledged escalations."""
        return Acknowledgements(acknowledgements_path(self._queue_store())).keys()

    def acknowledge(self, records: Sequence[EscalationRecord]) -> int:
        """Acknowledge escalations (kept beside the run store); returns how many were new."""
        return Acknowledgements(acknowledgements_path(self._queue_store())).add(records)

    def send_to_flywheel(
        self, records: Sequence[EscalationRecord], *, folder: Path | None = None
    ) -> FlywheelExport:
        """Append the escalations the top tier fixed to `brickwork tune` data files.

        One `question`/`answer` JSONL per graph node, in `<cache>/tune-data/` (or `folder`):
        train on it with `brickwork tune SKILL --data FILE`. See `brickwork.store.triage`.
        """
        return _export_escalations(self._queue_store(), records, folder=folder)


async def _warm_models(graph: GraphModule, progress: Callable[[str], None] | None) -> None:
    """Load the embedding model a graph's intent kNN needs, once per process, visibly."""
    from brickwork.agents import embeddings

    uses_knn = any(value is embeddings.EmbeddingKNN for value in vars(graph.module).values())
    if not uses_knn or embeddings.encoder_ready():
        return
    say = progress or (lambda line: None)
    say("loading the intent embedding model (MiniLM, once per process)...")
    took = await asyncio.to_thread(embeddings.warm_encoder)
    say(f"embedding model ready in {took:.1f} s")


#: The error of a run cancelled while it ran (its client went away, its server stopped).
_CANCELLED = (
    "interrupted: the run was cancelled before it finished (its client went away or its "
    "server stopped); resume it from its last checkpoint with App.aresume or POST "
    "/v1/runs/<id>/resume"
)


def _in_background(function: Callable[..., object], *args: Any) -> None:
    """Call a blocking function on a worker thread without waiting for it."""
    threading.Thread(target=function, args=args, daemon=True).start()


async def _recover(store: RunStore) -> None:
    """Mark interrupted the runs whose process died while they ran (never fails a start)."""
    try:
        await asyncio.to_thread(store.recover)
    except Exception:  # the store may be down; its runs are recovered by the next start
        import logging

        logging.getLogger(__name__).warning("could not check %s for orphaned runs", store.where)


def _restart(server: Any, timeout_s: float | None) -> None:
    """Stop a VLLMServer and start it again on the same port (blocking)."""
    from brickwork.errors import ServerStartError

    previous = server.ready_timeout_s
    if timeout_s is not None:
        server.ready_timeout_s = timeout_s
    try:
        server.stop()
        server.start()
    finally:
        server.ready_timeout_s = previous
    if server.status != "ready":
        raise ServerStartError(f"the restarted server is {server.status!r}, not ready")


def _check_text(text: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("the request text is empty; send what the user asked")
    if len(text) > MAX_TEXT_CHARS:
        raise ConfigError(
            f"the request is {len(text)} characters; the limit is {MAX_TEXT_CHARS}. "
            "Shorten it or raise brickwork.app.MAX_TEXT_CHARS"
        )


class _LoopThread:
    """A private event loop on a daemon thread, so sync callers share one loop (and pool)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        with contextlib.suppress(RuntimeError):
            self.loop.close()


Runner = Callable[..., Any]


# -- the start-up heap ----------------------------------------------------------------------
#
# A brickwork process spends its first seconds importing LangGraph, pydantic, httpx and the
# graph's modules, and building its graph, pool and validators: about 130,000 objects that live
# as long as the process. CPython's collector walks all of them in every full collection, and
# with runs in flight full collections come often (every few hundred runs at 32 in flight,
# because each run's objects outlive the young collections): in `benchmarks/overhead.py` that
# was about 0.4 ms of CPU a run, more than the durable checkpointer and the run store together.
#
# `gc.freeze()` moves every object alive at that moment to a permanent generation that the
# collector no longer walks; objects made later are collected as before. vLLM's API server
# (`freeze_gc_heap`, after start-up and warm-up) and Ray Serve (its proxy and every replica,
# after initialisation) do the same. brickwork does it once per process, after the first run of
# the first App (by then the lazily imported modules are loaded too), right after a full
# collection so that nothing already garbage is frozen, and unfreezes at exit. The cost: objects
# alive then that later become garbage in a reference cycle are not freed before the process
# exits (start-up objects rarely do), and one collection of about 0.05-0.1 s on the event loop.
# `App(gc_freeze=False)` or `BRICKWORK_GC_FREEZE=0` turns it off.

#: True once `freeze_startup_heap` has decided, in this process (whether it froze or not).
_heap_frozen = False


def freeze_startup_heap() -> bool:
    """Collect, then freeze every object alive; once per process. True when it froze now."""
    global _heap_frozen
    if _heap_frozen:
        return False
    _heap_frozen = True  # decided, either way
    if not gc_freeze_setting():
        return False
    gc.collect()
    gc.freeze()
    # At exit the frozen objects go back to the collector, so that the interpreter's last
    # collections free them as they would have (extensions such as nanobind's report what is
    # still alive at shutdown as leaks).
    atexit.register(gc.unfreeze)
    return True
