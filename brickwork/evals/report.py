"""Eval outcomes and their summary: accuracy with a Wilson interval, escalations, cost, latency.

Arithmetic, over the N rows of one mode (a failed row, whatever the reason, stays in N):

    accuracy            = correct / N, with the 95 % Wilson score interval
    escalation rate     = rows with at least one escalation / N          (per node: / runs)
    cost per 1M         = mean run cost_usd * 1,000,000                  (RunCost of each run)
    frontier-only per 1M= mean run frontier_only_usd * 1,000,000
    escalation outcomes = fixed (small attempt wrong, final right), unnecessary (small attempt
                          already right), unfixed (both wrong), unscored (no small attempt to
                          score, e.g. frontier mode or a kNN decision, or no gold for the node)
    calls per tier      = model calls (cache hits excluded) summed over the rows, by the tier
                          of the ladder that served them
    tokens per tier     = [prompt, completion] tokens of those calls, summed the same way
    routed to           = route decisions (routed mode) by the tier the node started on; the
                          share of each is over all decisions, whatever their reason
    top-tier p95        = p95 latency of the rows that made at least one top-tier call
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from rich.table import Table

__all__ = [
    "DEFAULT_PRICES",
    "EscalationOutcome",
    "EvalReport",
    "ModeReport",
    "NodeOutcome",
    "NodeReport",
    "RowOutcome",
    "calls_text",
    "compare_table",
    "mode_table",
    "percentile",
    "routed_text",
    "summarise",
    "to_jsonable",
    "wilson",
]

EscalationOutcome = Literal["fixed", "unnecessary", "unfixed", "unscored"]
PER_MILLION = 1_000_000


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (`(nan, nan)` when n is 0)."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class NodeOutcome:
    """What one node did in one run."""

    ran: bool = False
    correct: bool | None = None  # None: no gold for this node in this row
    escalated: bool = False
    escalation: EscalationOutcome | None = None
    latency_s: float = 0.0
    cost_usd: float = 0.0
    output: Any = None  # the node's final output (after any escalation)


@dataclass
class RowOutcome:
    """One row's run: status, correctness, and per-node details."""

    index: int
    question: str
    gold: Any
    status: str
    correct: bool
    latency_s: float
    cost_usd: float
    frontier_only_usd: float
    answer: str = ""
    error: str | None = None
    run_id: str | None = None
    nodes: dict[str, NodeOutcome] = field(default_factory=dict)
    #: Model calls by tier (cache hits excluded).
    calls: dict[str, int] = field(default_factory=dict)
    #: Prompt and completion tokens of those calls, by tier.
    tokens: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: Route decisions of the run: (node, tier it started on, reason).
    routes: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """The run did not finish with an answer (model error, timeout, failed node...)."""
        return self.status != "ok"


@dataclass(frozen=True)
class NodeReport:
    """One node's numbers over a mode's rows."""

    node: str
    runs: int
    scored: int
    correct: int
    accuracy: float
    ci95: tuple[float, float]
    escalations: int
    escalation_rate: float
    escalation_outcomes: dict[str, int]
    cost_per_1m_usd: float
    p50_latency_ms: float
    p95_latency_ms: float


@dataclass(frozen=True)
class ModeReport:
    """One mode's numbers, overall and per node, with every row's outcome."""

    mode: str
    n: int
    correct: int
    accuracy: float
    ci95: tuple[float, float]
    failed: int
    failed_by_status: dict[str, int]
    escalated_rows: int
    escalation_rate: float
    escalation_outcomes: dict[str, int]
    cost_per_1m_usd: float
    frontier_only_per_1m_usd: float
    p50_latency_ms: float
    p95_latency_ms: float
    duration_s: float
    nodes: list[NodeReport]
    rows: list[RowOutcome]
    #: The knob of a routed mode (None for the others).
    margin: float | None = None
    #: Model calls by tier over all rows, cheapest tier first.
    calls_by_tier: dict[str, int] = field(default_factory=dict)
    #: Prompt and completion tokens of those calls by tier, in the same order.
    tokens_by_tier: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: Route decisions made, by the tier the node started on and by reason.
    route_decisions: int = 0
    routed_to: dict[str, int] = field(default_factory=dict)
    route_reasons: dict[str, int] = field(default_factory=dict)
    #: The top tier of the ladder, the rows that called it and their p95 latency.
    top_tier: str | None = None
    top_tier_rows: int = 0
    top_tier_p95_latency_ms: float = math.nan

    def routed_share(self, tier: str) -> float:
        """Share of route decisions that started a node on `tier` (nan without decisions)."""
        if not self.route_decisions:
            return math.nan
        return self.routed_to.get(tier, 0) / self.route_decisions


DEFAULT_PRICES = "the default capacities (brickwork.cost constants, not measured on this machine)"


@dataclass(frozen=True)
class EvalReport:
    """An eval of one target on one data file, in one or more modes."""

    target: str
    data: str
    concurrency: int
    modes: dict[str, ModeReport]
    #: What `frontier_only_per_1m_usd` is called: "top-tier only" when the top of the
    #: ladder is a local model, "frontier-only" when it is a frontier API.
    counterfactual: str = "top-tier only"
    #: Which capacities priced the local tiers (`LocalCapacity.describe`, or the defaults).
    prices: str = DEFAULT_PRICES


def summarise(
    mode: str,
    rows: Sequence[RowOutcome],
    duration_s: float,
    *,
    ladder: Sequence[str] = (),
    margin: float | None = None,
) -> ModeReport:
    """Fold row outcomes into a mode report (see the module docstring for the arithmetic).

    `ladder` (the pool's tiers, cheapest first) orders the calls per tier and names the top
    tier; `margin` is a routed mode's knob.
    """
    n = len(rows)
    correct = sum(r.correct for r in rows)
    escalated = [r for r in rows if any(o.escalated for o in r.nodes.values())]
    outcomes = Counter(
        o.escalation for r in rows for o in r.nodes.values() if o.escalation is not None
    )
    latencies = [r.latency_s * 1000 for r in rows]
    names = list(dict.fromkeys(name for r in rows for name in r.nodes))
    calls: Counter[str] = Counter()
    prompt: Counter[str] = Counter()
    completion: Counter[str] = Counter()
    for r in rows:
        calls.update(r.calls)
        prompt.update({tier: p for tier, (p, _) in r.tokens.items()})
        completion.update({tier: c for tier, (_, c) in r.tokens.items()})
    order = {tier: i for i, tier in enumerate(ladder)}
    routes = [route for r in rows for route in r.routes]
    top = ladder[-1] if ladder else None
    on_top = [r.latency_s * 1000 for r in rows if top is not None and r.calls.get(top)]
    return ModeReport(
        mode=mode,
        n=n,
        correct=correct,
        accuracy=correct / n if n else math.nan,
        ci95=wilson(correct, n),
        failed=sum(r.failed for r in rows),
        failed_by_status=dict(Counter(r.status for r in rows if r.failed)),
        escalated_rows=len(escalated),
        escalation_rate=len(escalated) / n if n else math.nan,
        escalation_outcomes=_outcome_counts(outcomes),
        cost_per_1m_usd=_mean([r.cost_usd for r in rows]) * PER_MILLION,
        frontier_only_per_1m_usd=_mean([r.frontier_only_usd for r in rows]) * PER_MILLION,
        p50_latency_ms=percentile(latencies, 50),
        p95_latency_ms=percentile(latencies, 95),
        duration_s=duration_s,
        nodes=[_node_report(name, rows) for name in names],
        rows=sorted(rows, key=lambda r: r.index),
        margin=margin,
        calls_by_tier=dict(sorted(calls.items(), key=lambda kv: (order.get(kv[0], 99), kv[0]))),
        tokens_by_tier={
            tier: (prompt[tier], completion[tier])
            for tier in sorted(prompt | completion, key=lambda t: (order.get(t, 99), t))
        },
        route_decisions=len(routes),
        routed_to=dict(Counter(tier for _, tier, _ in routes)),
        route_reasons=dict(Counter(reason for _, _, reason in routes)),
        top_tier=top,
        top_tier_rows=len(on_top),
        top_tier_p95_latency_ms=percentile(on_top, 95),
    )


def _node_report(name: str, rows: Sequence[RowOutcome]) -> NodeReport:
    outs = [r.nodes[name] for r in rows if name in r.nodes]
    ran = [o for o in outs if o.ran]
    scored = [o for o in outs if o.correct is not None]
    correct = sum(bool(o.correct) for o in scored)
    escalated = sum(o.escalated for o in ran)
    latencies = [o.latency_s * 1000 for o in ran]
    return NodeReport(
        node=name,
        runs=len(ran),
        scored=len(scored),
        correct=correct,
        accuracy=correct / len(scored) if scored else math.nan,
        ci95=wilson(correct, len(scored)),
        escalations=escalated,
        escalation_rate=escalated / len(ran) if ran else math.nan,
        escalation_outcomes=_outcome_counts(Counter(o.escalation for o in outs if o.escalation)),
        # Spread over every row of the mode: what this node adds to the cost of a request.
        cost_per_1m_usd=sum(o.cost_usd for o in outs) / len(rows) * PER_MILLION if rows else 0.0,
        p50_latency_ms=percentile(latencies, 50),
        p95_latency_ms=percentile(latencies, 95),
    )


def _outcome_counts(counts: Counter[Any]) -> dict[str, int]:
    return {k: counts.get(k, 0) for k in ("fixed", "unnecessary", "unfixed", "unscored")}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def to_jsonable(report: EvalReport) -> dict[str, Any]:
    """The report as JSON-able data (nan becomes None)."""
    from dataclasses import asdict

    cleaned: dict[str, Any] = _clean(asdict(report))
    return cleaned


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


# -- tables -------------------------------------------------------------------------------------


def _acc(accuracy: float, ci95: tuple[float, float], n: int) -> str:
    if n == 0 or math.isnan(accuracy):
        return "-"
    return f"{accuracy:.1%} [{ci95[0]:.0%}-{ci95[1]:.0%}] n={n}"


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}"


def _esc(outcomes: dict[str, int]) -> str:
    return "{fixed}/{unnecessary}/{unfixed}/{unscored}".format(**outcomes)


def calls_text(report: ModeReport) -> str:
    """Model calls per tier, e.g. `slm 80 large 12 frontier 3` ("-" for none)."""
    return " ".join(f"{tier} {n}" for tier, n in report.calls_by_tier.items()) or "-"


def routed_text(report: ModeReport) -> str:
    """Where route decisions started nodes, as shares: `slm 70% large 20% frontier 10%`."""
    if not report.route_decisions:
        return "-"
    order = list(report.calls_by_tier) + sorted(report.routed_to)
    tiers = [t for t in dict.fromkeys(order) if t in report.routed_to]
    return " ".join(f"{t} {report.routed_share(t):.0%}" for t in tiers)


def mode_table(report: ModeReport, title: str, counterfactual: str = "top-tier only") -> Table:
    """Per node and overall numbers of one mode (the counterfactual in the caption)."""
    from rich.table import Table

    caption = (
        f"escalations: fixed/unnecessary/unfixed/unscored; {counterfactual}: "
        f"${report.frontier_only_per_1m_usd:,.2f} per 1M requests; calls: {calls_text(report)}"
    )
    if report.route_decisions:
        caption += (
            f"; margin {report.margin}: {report.route_decisions} route decisions, started on "
            f"{routed_text(report)}"
        )
    table = Table(title=title, caption=caption)
    for name in ("node", "accuracy (95% CI)", "runs", "esc rate", "escalations", "$ per 1M"):
        table.add_column(name, justify="left" if name in ("node", "accuracy (95% CI)") else "right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p95 ms", justify="right")
    for node in report.nodes:
        table.add_row(
            node.node,
            _acc(node.accuracy, node.ci95, node.scored),
            str(node.runs),
            *_esc_cells(report.mode, node.escalation_rate, node.escalation_outcomes),
            f"{node.cost_per_1m_usd:,.2f}",
            _ms(node.p50_latency_ms),
            _ms(node.p95_latency_ms),
        )
    failed = f" ({report.failed} failed)" if report.failed else ""
    table.add_row(
        "[b]overall[/b]",
        _acc(report.accuracy, report.ci95, report.n) + failed,
        str(report.n),
        *_esc_cells(report.mode, report.escalation_rate, report.escalation_outcomes),
        f"{report.cost_per_1m_usd:,.2f}",
        _ms(report.p50_latency_ms),
        _ms(report.p95_latency_ms),
        end_section=True,
    )
    return table


def _esc_cells(mode: str, rate: float, outcomes: dict[str, int]) -> tuple[str, str]:
    """The escalation rate and outcomes cells; "-" in `frontier` mode.

    Top-tier-only mode sends every node to the top tier from the start. Its trace records
    that as an escalation of each node, but nothing was tried below and failed, so a rate of
    100 % and "unscored" outcomes would only mislead.
    """
    if mode == "frontier":
        return "-", "-"
    return ("-" if math.isnan(rate) else f"{rate:.0%}"), _esc(outcomes)


def compare_table(report: EvalReport) -> Table:
    """Every mode in one table, the mode on every row: overall, then each node.

    The counterfactual column is `RunCost.frontier_only_usd` per request, the same
    definition the CLI, the TUI and the HTTP front show; for the same rows it does not
    depend on the mode the rows ran in (only on the tokens the calls took).
    """
    from rich.table import Table

    modes = list(report.modes.values())
    table = Table(
        title=f"{report.target} on {report.data}: {', '.join(report.modes)}",
        caption="escalations f/u/x/?: fixed/unnecessary/unfixed/unscored; $ per 1M requests"
        + (
            "; routed to: share of route decisions by the tier a node started on; top-tier "
            "p95: rows that called the top tier"
            if any(mode.route_decisions for mode in modes)
            else ""
        ),
    )
    for name in ("mode", "node", "accuracy (95% CI)", "failed", "esc", "f/u/x/?", "$ /1M"):
        table.add_column(name, justify="left" if name in ("mode", "node") else "right")
    table.add_column(f"{report.counterfactual} $ /1M", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p95 ms", justify="right")
    table.add_column("calls per tier", justify="left")
    routed = any(mode.route_decisions for mode in modes)
    if routed:  # the routed comparison: where nodes started, and the top tier's p95
        table.add_column("routed to", justify="left")
        table.add_column("top-tier p95 ms", justify="right")
    for index, mode in enumerate(modes):
        extra = [calls_text(mode)]
        if routed:
            top = f"{_ms(mode.top_tier_p95_latency_ms)} n={mode.top_tier_rows}"
            extra += [routed_text(mode), top]
        table.add_row(
            f"[b]{mode.mode}[/b]",
            "[b]all[/b]",
            _acc(mode.accuracy, mode.ci95, mode.n),
            str(mode.failed),
            *_esc_cells(mode.mode, mode.escalation_rate, mode.escalation_outcomes),
            f"{mode.cost_per_1m_usd:,.2f}",
            f"{mode.frontier_only_per_1m_usd:,.2f}",
            _ms(mode.p50_latency_ms),
            _ms(mode.p95_latency_ms),
            *extra,
        )
        for node in mode.nodes:
            table.add_row(
                mode.mode,
                node.node,
                _acc(node.accuracy, node.ci95, node.scored),
                "",
                *_esc_cells(mode.mode, node.escalation_rate, node.escalation_outcomes),
                f"{node.cost_per_1m_usd:,.2f}",
                "",
                _ms(node.p50_latency_ms),
                _ms(node.p95_latency_ms),
                *([""] * len(extra)),
                end_section=index < len(modes) - 1 and node is mode.nodes[-1],
            )
    return table
