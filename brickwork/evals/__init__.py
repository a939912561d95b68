"""Evaluation, the product's conscience: `brickwork eval` on a graph or a skill folder.

This package owns measuring whether small is enough: `data` reads eval rows and says what
"right" means per graph (exact label, tool-call equivalence, SQL execution match, fields);
`harness` runs rows through the graph in each mode (slm, hybrid, frontier) and scores each
node's events; `report` turns outcomes into accuracy with Wilson intervals, escalation
outcomes, cost per 1M requests and latency percentiles, as tables and JSON.
"""

from __future__ import annotations

from brickwork.evals.data import EvalRow, EvalTarget, Expectation, load_rows, load_target
from brickwork.evals.harness import (
    EvalReport,
    ModeReport,
    add_eval_arguments,
    arun_eval,
    eval_main,
    run_eval,
    score_events,
)
from brickwork.evals.report import wilson

__all__ = [
    "EvalReport",
    "EvalRow",
    "EvalTarget",
    "Expectation",
    "ModeReport",
    "add_eval_arguments",
    "arun_eval",
    "eval_main",
    "load_rows",
    "load_target",
    "run_eval",
    "score_events",
    "wilson",
]
