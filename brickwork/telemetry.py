"""OpenTelemetry spans for runs, nodes and model calls, built from the run's events.

Off by default and free when off: nothing here imports OpenTelemetry until a run is traced.
Turn it on per App (`App(..., telemetry=True)` or a `TracerProvider` of your own) or for every
App with `BRICKWORK_OTEL=1`. With tracing on and no provider given, brickwork uses the global
provider when the host program set one (`opentelemetry.trace.set_tracer_provider`); otherwise it
makes an SDK provider that exports over OTLP/HTTP when `opentelemetry-exporter-otlp-proto-http`
is installed and `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set, and to the
console otherwise. Install with the `otel` extra.

The span tree of one run (times are the events' own, so spans are exact even though they are
made from events):

    brickwork.run            graph, run id, tenant, mode, status, cost, frontier-only cost
      brickwork.node         node, method, model, ok, escalation action/reason (an event)
        brickwork.model_call endpoint, logical model, served model (adapter), tokens, cost
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from brickwork.errors import ConfigError, MissingDependencyError
from brickwork.events import (
    Escalation,
    Event,
    ModelCallEvent,
    NodeFinished,
    NodeStarted,
    RunFinished,
    RunStarted,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["ENV_VAR", "RunTracer", "resolve_tracer", "tracing_requested"]

#: Environment variable that turns tracing on for every App (`1`, `true`, `yes`, `on`).
ENV_VAR = "BRICKWORK_OTEL"
#: The instrumentation scope name of brickwork's spans.
SCOPE = "brickwork"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def tracing_requested() -> bool:
    """True when `BRICKWORK_OTEL` asks for tracing (read when called, never at import).

    Raises:
        ConfigError: the variable holds something that is neither true nor false.
    """
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"${ENV_VAR} must be 1/true/yes/on or 0/false/no/off, got {value!r}")


def resolve_tracer(option: bool | TracerProvider | None) -> Tracer | None:
    """The tracer an App uses, or None when tracing is off.

    Args:
        option: The App's `telemetry` argument: None (follow `BRICKWORK_OTEL`), False (off),
            True (on: the global provider, else a default SDK provider), or a provider.

    Raises:
        MissingDependencyError: tracing is on but `opentelemetry-api` is not installed.
    """
    if option is None:
        option = tracing_requested()
    if option is False:
        return None
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise MissingDependencyError(
            exc.name or "opentelemetry-api", "otel", "OpenTelemetry tracing"
        ) from exc
    if option is True:
        provider: Any = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider):  # nobody configured one
            provider = _default_provider()
    else:
        provider = option
    tracer: Tracer = provider.get_tracer(SCOPE)
    return tracer


_DEFAULT_PROVIDER: Any = None


def _default_provider() -> TracerProvider:
    """One SDK provider per process: OTLP/HTTP when installed and configured, else console."""
    global _DEFAULT_PROVIDER
    if _DEFAULT_PROVIDER is not None:
        return _DEFAULT_PROVIDER  # type: ignore[no-any-return]
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SpanExporter,
        )
    except ImportError as exc:
        raise MissingDependencyError(
            exc.name or "opentelemetry-sdk", "otel", "exporting OpenTelemetry spans"
        ) from exc
    exporter: SpanExporter = ConsoleSpanExporter()
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter,
            )
        except ImportError:
            pass  # the endpoint is set but the exporter is not installed: keep the console
        else:
            exporter = OTLPSpanExporter()
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", SCOPE)})
    provider = SdkTracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _DEFAULT_PROVIDER = provider
    return provider


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class RunTracer:
    """Turns one run's events into spans as they arrive (call it with each event).

    Nodes are matched by name, so a node that runs twice in one run (a loop) gets two spans,
    one after the other. A model call whose node has no open span hangs under the run span.
    """

    def __init__(self, tracer: Tracer, graph: str) -> None:
        self._tracer = tracer
        self._graph = graph
        self._run: Span | None = None
        self._nodes: dict[str, Span] = {}

    def __call__(self, event: Event) -> None:
        """Record one event (unknown kinds are ignored)."""
        handlers: dict[str, Callable[[Any], None]] = {
            "run_started": self._run_started,
            "node_started": self._node_started,
            "model_call": self._model_call,
            "escalation": self._escalation,
            "node_finished": self._node_finished,
            "run_finished": self._run_finished,
        }
        handler = handlers.get(event.kind)
        if handler is not None:
            handler(event)

    def _context(self, parent: Span | None) -> Any:
        from opentelemetry import trace

        return trace.set_span_in_context(parent) if parent is not None else None

    def _run_started(self, event: RunStarted) -> None:
        self._run = self._tracer.start_span(
            "brickwork.run",
            start_time=_ns(event.at),
            attributes={
                "brickwork.graph": self._graph,
                "brickwork.run_id": event.run_id,
                "brickwork.tenant": event.tenant,
                "brickwork.mode": event.mode,
            },
        )

    def _node_started(self, event: NodeStarted) -> None:
        self._nodes[event.node] = self._tracer.start_span(
            "brickwork.node",
            context=self._context(self._run),
            start_time=_ns(event.at),
            attributes={"brickwork.node": event.node, "brickwork.run_id": event.run_id},
        )

    def _model_call(self, event: ModelCallEvent) -> None:
        parent = self._nodes.get(event.node, self._run)
        span = self._tracer.start_span(
            "brickwork.model_call",
            context=self._context(parent),
            start_time=_ns(event.at - event.latency_s),
            attributes={
                "brickwork.node": event.node,
                "brickwork.endpoint": event.endpoint,
                "brickwork.model": event.model,
                "brickwork.served_model": event.served_model,
                "gen_ai.request.model": event.served_model,
                "gen_ai.usage.input_tokens": event.prompt_tokens,
                "gen_ai.usage.output_tokens": event.completion_tokens,
                "brickwork.latency_s": event.latency_s,
                "brickwork.cost_usd": event.cost_usd,
                "brickwork.frontier_cost_usd": event.frontier_cost_usd,
                "brickwork.stand_in": event.stand_in,
                "brickwork.escalated": event.escalated,
            },
        )
        span.end(end_time=_ns(event.at))

    def _escalation(self, event: Escalation) -> None:
        attributes = {
            "brickwork.node": event.node,
            "brickwork.escalation.action": event.action,
            "brickwork.escalation.reason": event.reason or "",
            "brickwork.escalation.detail": event.detail,
        }
        target = self._nodes.get(event.node, self._run)
        if target is None:
            return
        target.add_event("brickwork.escalation", attributes, timestamp=_ns(event.at))
        if target is not self._run:
            target.set_attribute("brickwork.escalation.action", event.action)
            target.set_attribute("brickwork.escalation.reason", event.reason or "")

    def _node_finished(self, event: NodeFinished) -> None:
        span = self._nodes.pop(event.node, None)
        if span is None:  # finished without a start event: make the span from its latency
            span = self._tracer.start_span(
                "brickwork.node",
                context=self._context(self._run),
                start_time=_ns(event.at - event.latency_s),
                attributes={"brickwork.node": event.node, "brickwork.run_id": event.run_id},
            )
        span.set_attribute("brickwork.method", event.method)
        span.set_attribute("brickwork.model", event.model)
        span.set_attribute("brickwork.ok", event.ok)
        if event.error:
            span.set_attribute("brickwork.error", event.error)
        if not event.ok and not (event.error or "").startswith("escalated"):
            _set_error(span, event.error or "node failed")
        span.end(end_time=_ns(event.at))

    def _run_finished(self, event: RunFinished) -> None:
        for span in self._nodes.values():  # nodes cut short by a timeout or an exception
            _set_error(span, "the run ended before the node finished")
            span.end(end_time=_ns(event.at))
        self._nodes.clear()
        if self._run is None:
            return
        self._run.set_attribute("brickwork.status", event.status)
        self._run.set_attribute("brickwork.cost_usd", event.cost_usd)
        self._run.set_attribute("brickwork.frontier_only_usd", event.frontier_only_usd)
        self._run.set_attribute("brickwork.latency_s", event.latency_s)
        if event.flags:
            self._run.set_attribute("brickwork.flags", list(event.flags))
        if event.status != "ok":
            _set_error(self._run, event.error or event.status)
        self._run.end(end_time=_ns(event.at))
        self._run = None


def _set_error(span: Span, message: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, message))
