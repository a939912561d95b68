"""Prometheus metrics of the HTTP front, fed by the events of the runs it serves.

One `ApiMetrics` per API (its own `CollectorRegistry`, never the process-global one, so two
servers in one process, or a test after another, do not mix their counts). Exposed as
`GET /metrics` in the Prometheus text format:

- `brickwork_runs_total{graph,status}`: finished runs (a run that could not run is "error");
- `brickwork_runs_in_flight{graph}`: runs being served now;
- `brickwork_node_latency_seconds{graph,node}`: a histogram of node latencies;
- `brickwork_escalations_total{graph,node,reason}`: escalations to the frontier model;
- `brickwork_cost_usd_total{graph}`: what the runs cost;
- `brickwork_frontier_only_cost_usd_total{graph}`: what they would have cost on the frontier
  model alone (the counterfactual of the ledger);
- `brickwork_model_calls_total{graph,endpoint,model}`: model calls, by endpoint;
- `brickwork_cache_lookups_total{graph,node,outcome}`: response-cache lookups, by outcome
  (`hit`, `semantic_hit`, `miss`, `rejected`: a semantic candidate the guard turned down,
  `error`: the cache could not answer);
- `brickwork_cache_saved_usd_total{graph,node}` and `brickwork_cache_saved_seconds_total`:
  what the hits saved (the cached calls' cost and latency when they ran);
- `brickwork_cache_lookup_seconds{graph}`: a histogram of lookup latencies.
"""

from __future__ import annotations

from brickwork.errors import MissingDependencyError
from brickwork.events import Event

try:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingDependencyError(
        exc.name or "prometheus_client", "api", "the /metrics route"
    ) from exc

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS_S", "LOOKUP_BUCKETS_S", "ApiMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
#: Node latency buckets (seconds): from a cached kNN answer to a slow frontier call.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
#: Response-cache lookup buckets (seconds): an in-process hit to a slow Redis.
LOOKUP_BUCKETS_S = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 0.25)


class ApiMetrics:
    """The counters of one API; `observe` each event of each run it serves."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.runs = Counter(
            "brickwork_runs", "Finished runs.", ["graph", "status"], registry=self.registry
        )
        self.in_flight = Gauge(
            "brickwork_runs_in_flight", "Runs being served.", ["graph"], registry=self.registry
        )
        self.node_latency = Histogram(
            "brickwork_node_latency_seconds",
            "Latency of graph nodes.",
            ["graph", "node"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.escalations = Counter(
            "brickwork_escalations",
            "Escalations to the frontier model.",
            ["graph", "node", "reason"],
            registry=self.registry,
        )
        self.cost = Counter(
            "brickwork_cost_usd", "Cost of the runs (USD).", ["graph"], registry=self.registry
        )
        self.frontier_only_cost = Counter(
            "brickwork_frontier_only_cost_usd",
            "What the runs would have cost on the frontier model alone (USD).",
            ["graph"],
            registry=self.registry,
        )
        self.model_calls = Counter(
            "brickwork_model_calls",
            "Model calls.",
            ["graph", "endpoint", "model"],
            registry=self.registry,
        )
        self.cache_lookups = Counter(
            "brickwork_cache_lookups",
            "Response-cache lookups by outcome (hit, semantic_hit, miss, rejected, error).",
            ["graph", "node", "outcome"],
            registry=self.registry,
        )
        self.cache_saved_usd = Counter(
            "brickwork_cache_saved_usd",
            "What response-cache hits saved (the cached calls' cost, USD).",
            ["graph", "node"],
            registry=self.registry,
        )
        self.cache_saved_seconds = Counter(
            "brickwork_cache_saved_seconds",
            "Model latency response-cache hits saved (the cached calls' latency).",
            ["graph", "node"],
            registry=self.registry,
        )
        self.cache_lookup_latency = Histogram(
            "brickwork_cache_lookup_seconds",
            "Latency of response-cache lookups (embedding excluded).",
            ["graph"],
            buckets=LOOKUP_BUCKETS_S,
            registry=self.registry,
        )

    def observe(self, graph: str, event: Event) -> None:
        """Count one event of a run of `graph`."""
        if event.kind == "node_finished":
            self.node_latency.labels(graph, event.node).observe(event.latency_s)
        elif event.kind == "escalation" and event.action == "escalate":
            self.escalations.labels(graph, event.node, event.reason or "none").inc()
        elif event.kind == "model_call":
            self.model_calls.labels(graph, event.endpoint, event.model).inc()
        elif event.kind == "cache_lookup":
            outcome = (
                ("semantic_hit" if event.semantic else "hit")
                if event.hit
                else "error"
                if event.error
                else "rejected"
                if event.rejected
                else "miss"
            )
            self.cache_lookups.labels(graph, event.node, outcome).inc()
            self.cache_lookup_latency.labels(graph).observe(event.lookup_s)
            if event.hit:
                self.cache_saved_usd.labels(graph, event.node).inc(max(event.saved_usd, 0.0))
                self.cache_saved_seconds.labels(graph, event.node).inc(
                    max(event.saved_latency_s, 0.0)
                )
        elif event.kind == "run_finished":
            self.runs.labels(graph, event.status).inc()
            self.cost.labels(graph).inc(max(event.cost_usd, 0.0))
            self.frontier_only_cost.labels(graph).inc(max(event.frontier_only_usd, 0.0))

    def run_failed(self, graph: str, status: str = "error") -> None:
        """A run that raised before it finished (no `RunFinished` event), or was `refused`."""
        self.runs.labels(graph, status).inc()

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)
