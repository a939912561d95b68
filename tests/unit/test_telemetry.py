"""OpenTelemetry spans from real runs of the two-step graph on the package's fake models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from brickwork.app import App
from brickwork.errors import ConfigError
from brickwork.events import ModelCallEvent, NodeFinished, RunStarted
from brickwork.telemetry import ENV_VAR, resolve_tracer, tracing_requested
from brickwork.testing import FunctionModel, ModelStep

GRAPH = str(Path(__file__).resolve().parents[1] / "fixtures" / "two_step_graph.py")


def _answer(body: dict[str, Any]) -> ModelStep:
    """The small model gets it wrong when the request says "bad"; the frontier one never."""
    if body["model"] == "fake-frontier":
        return ModelStep('{"n": 8}', prompt_tokens=30, completion_tokens=4)
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    return ModelStep('{"n": -1}' if "bad" in user else '{"n": 7}', prompt_tokens=20)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def test_an_escalated_run_makes_a_run_node_call_tree(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async with FunctionModel(_answer).pool() as pool:
        app = App.from_graph(GRAPH, pool=pool, telemetry=provider, checkpoints=None)
        result = await app.ainvoke("bad number", tenant="acme")
        await app.aclose()
    assert result.ok and result.answer == "n=8"
    spans = exporter.get_finished_spans()
    [run] = by_name(spans, "brickwork.run")
    nodes = by_name(spans, "brickwork.node")
    calls = by_name(spans, "brickwork.model_call")
    assert len(spans) == 1 + len(nodes) + len(calls)

    assert run.parent is None
    assert run.attributes is not None
    assert run.attributes["brickwork.graph"] == "two_step"
    assert run.attributes["brickwork.tenant"] == "acme"
    assert run.attributes["brickwork.mode"] == "hybrid"
    assert run.attributes["brickwork.status"] == "ok"
    assert run.attributes["brickwork.cost_usd"] == pytest.approx(result.cost.cost_usd)
    assert run.attributes["brickwork.run_id"] == result.run_id
    assert run.status.status_code == StatusCode.UNSET

    assert run.context is not None
    trace_id, run_id = run.context.trace_id, run.context.span_id
    assert {n.attributes["brickwork.node"] for n in nodes if n.attributes} == {
        "number",
        "supervisor",
    }
    for node in nodes:
        assert node.parent is not None and node.parent.span_id == run_id
        assert node.context is not None and node.context.trace_id == trace_id
    number = next(n for n in nodes if n.attributes and n.attributes["brickwork.node"] == "number")
    supervisor = next(n for n in nodes if n is not number)
    assert number.attributes is not None and supervisor.attributes is not None
    assert number.attributes["brickwork.ok"] is False
    assert number.attributes["brickwork.escalation.reason"] == "validation_failed"
    assert number.status.status_code == StatusCode.UNSET  # escalated, not an error
    assert [e.name for e in number.events] == ["brickwork.escalation"]
    assert supervisor.attributes["brickwork.ok"] is True
    assert supervisor.attributes["brickwork.model"] == "frontier"

    # Every model call hangs under the node that made it, with its tokens and cost.
    events = [e for e in result.events if isinstance(e, ModelCallEvent)]
    assert len(calls) == len(events) == 3  # two small tries (one repair), one frontier call
    assert number.context is not None and supervisor.context is not None
    parents = {c.parent.span_id for c in calls if c.parent}
    assert parents == {number.context.span_id, supervisor.context.span_id}
    frontier = [c for c in calls if c.attributes and c.attributes["brickwork.model"] == "frontier"]
    [call] = frontier
    assert call.attributes is not None and call.parent is not None
    assert call.parent.span_id == supervisor.context.span_id
    assert call.attributes["gen_ai.usage.input_tokens"] == 30
    assert call.attributes["gen_ai.usage.output_tokens"] == 4
    assert call.attributes["brickwork.endpoint"] == "fake-frontier"
    assert call.attributes["brickwork.cost_usd"] == pytest.approx(events[-1].cost_usd)

    # Spans carry the events' own times: children inside their parents, in order.
    assert run.start_time is not None and run.end_time is not None
    started = next(e for e in result.events if isinstance(e, RunStarted))
    assert run.start_time == int(started.at * 1e9)
    for span in (*nodes, *calls):
        assert span.start_time is not None and span.end_time is not None
        assert run.start_time <= span.start_time <= span.end_time <= run.end_time
    finished = next(e for e in result.events if isinstance(e, NodeFinished))
    assert number.end_time == int(finished.at * 1e9)


async def test_a_failed_run_is_an_error_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async with FunctionModel(_answer).pool() as pool:
        app = App.from_graph(GRAPH, pool=pool, telemetry=provider, checkpoints=None)
        result = await app.ainvoke("bad again", mode="slm")
        await app.aclose()
    assert result.status == "failed"
    spans = exporter.get_finished_spans()
    [run] = by_name(spans, "brickwork.run")
    [node] = by_name(spans, "brickwork.node")
    assert run.status.status_code == StatusCode.ERROR
    assert node.status.status_code == StatusCode.ERROR
    assert node.status.description is not None and "validation_failed" in node.status.description


async def test_off_by_default_and_off_when_asked(
    monkeypatch: pytest.MonkeyPatch, exporter: InMemorySpanExporter
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert tracing_requested() is False and resolve_tracer(None) is None
    assert resolve_tracer(False) is None
    monkeypatch.setenv(ENV_VAR, "1")
    assert tracing_requested() is True
    assert resolve_tracer(False) is None  # the explicit argument wins
    monkeypatch.setenv(ENV_VAR, "maybe")
    with pytest.raises(ConfigError, match="BRICKWORK_OTEL must be"):
        App.from_graph(GRAPH, checkpoints=None)


def test_importing_brickwork_does_not_import_opentelemetry() -> None:
    code = (
        "import sys, brickwork, brickwork.app, brickwork.telemetry; "
        "print(any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_env_turns_tracing_on_with_the_global_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import "
        "InMemorySpanExporter\n"
        "exporter = InMemorySpanExporter()\n"
        "provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(exporter))\n"
        "trace.set_tracer_provider(provider)\n"
        "from brickwork.app import App\n"
        "from brickwork.testing import FunctionModel\n"
        "model = FunctionModel(lambda body: '{\"n\": 7}')\n"
        f"app = App.from_graph({GRAPH!r}, pool=model.pool(), checkpoints=None)\n"
        "assert app.invoke('seven').ok\n"
        "app.close()\n"
        "print(sorted({s.name for s in exporter.get_finished_spans()}))\n"
    )
    monkeypatch.setenv(ENV_VAR, "yes")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['brickwork.model_call', 'brickwork.node', 'brickwork.run']"


def test_env_alone_prints_spans_to_the_console(monkeypatch: pytest.MonkeyPatch) -> None:
    code = (
        "from brickwork.app import App\n"
        "from brickwork.testing import FunctionModel\n"
        "model = FunctionModel(lambda body: '{\"n\": 7}')\n"
        f"app = App.from_graph({GRAPH!r}, pool=model.pool(), checkpoints=None)\n"
        "assert app.invoke('seven').ok\n"
        "app.close()\n"
    )
    monkeypatch.setenv(ENV_VAR, "1")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for name in ("brickwork.run", "brickwork.node", "brickwork.model_call"):
        assert f'"name": "{name}"' in out.stdout, name
