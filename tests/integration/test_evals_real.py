"""`run_eval` on the real embedded model: three rows of the project's smart-home eval set."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from brickwork.evals import arun_eval
from brickwork.serving.pool import ModelPool

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

DATA = Path(__file__).resolve().parents[2] / "evals" / "smart_home.jsonl"


async def test_smart_home_eval_report_on_the_real_model(slm_pool: ModelPool) -> None:
    report = await arun_eval(
        "graphs.smart_home", DATA, mode="slm", limit=3, concurrency=3, pool=slm_pool,
        console=Console(),
    )  # fmt: skip
    mode = report.modes["slm"]
    assert mode.n == 3 and len(mode.rows) == 3 and 0 <= mode.correct <= 3
    assert mode.escalation_rate == 0  # slm mode never escalates
    assert mode.failed == sum(r.status != "ok" for r in mode.rows)
    assert mode.ci95[0] <= mode.accuracy <= mode.ci95[1]
    assert {n.node for n in mode.nodes} >= {"intent"}
    assert all(r.run_id and r.latency_s > 0 for r in mode.rows)
    assert mode.p50_latency_ms > 0 and mode.cost_per_1m_usd > 0
