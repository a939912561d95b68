"""The three example graphs end to end on the real local model, from Python and the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from brickwork.app import App
from brickwork.events import ModelCallEvent
from brickwork.serving.pool import ModelPool
from brickwork.store import RunStore
from brickwork.tools.bank import SimulatedBank
from brickwork.tools.smart_home import SmartHomeHub

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def _costs_add_up(result) -> None:
    calls = [e for e in result.events if isinstance(e, ModelCallEvent)]
    assert result.cost.cost_usd == pytest.approx(sum(c.cost_usd for c in calls))
    assert result.cost.calls == len(calls)
    finished = result.events[-1]
    assert finished.kind == "run_finished" and finished.cost_usd == pytest.approx(
        result.cost.cost_usd
    )


async def test_smart_home_single_command(slm_pool: ModelPool, tmp_path: Path) -> None:
    hub = SmartHomeHub()
    before = hub.snapshot()
    app = App.from_graph(
        "graphs.smart_home",
        pool=slm_pool,
        store=RunStore(tmp_path / "runs.sqlite"),
        graph_options={"hub": hub},
    )
    result = await app.ainvoke("Turn on the kitchen lights")
    await app.aclose()
    assert result.status in ("ok", "failed"), result
    _costs_add_up(result)
    assert result.outputs["intent"]["label"] in (
        "device_command",
        "status_question",
        "out_of_scope",
    )
    if "toolcall" in result.outputs and not result.escalations:
        call = result.outputs["toolcall"]["call"]
        assert call["name"] in {
            "toggle_lights",
            "set_thermostat",
            "lock_door",
            "get_device_status",
            "set_scene",
            "intent_unclear",
        }
        if call["name"] != "get_device_status" and call["name"] != "intent_unclear":
            assert hub.snapshot() != before  # the call really acted on the hub
    assert app.runs()[0].run_id == result.run_id


async def test_smart_home_forced_escalation_goes_to_the_supervisor(slm_pool: ModelPool) -> None:
    app = App.from_graph("graphs.smart_home", pool=slm_pool)
    result = await app.ainvoke("Lock the front door", mode="frontier")
    await app.aclose()
    _costs_add_up(result)
    assert {e["reason"] for e in result.escalations} == {"frontier_mode"}
    calls = [e for e in result.events if isinstance(e, ModelCallEvent)]
    assert calls and all(c.model == "frontier" and c.stand_in for c in calls)
    assert "frontier_stand_in" in result.flags


async def test_smart_home_multi_step_plan(slm_pool: ModelPool) -> None:
    hub = SmartHomeHub()
    app = App.from_graph("graphs.smart_home", pool=slm_pool, graph_options={"hub": hub})
    text = "Dim the office lights, lock the back door and tell me the thermostat mode"
    result = await app.ainvoke(text)
    await app.aclose()
    _costs_add_up(result)
    assert {"node": "plan_check", "reason": "plan_needed"} in result.escalations
    steps = [e for e in result.events if e.kind == "node_started" and e.node.startswith("step_")]
    assert len(steps) >= 2
    assert result.answer.count("\n") >= 1  # one line per step


async def test_plan_escalation_respects_an_empty_budget(slm_pool: ModelPool) -> None:
    app = App.from_graph("graphs.smart_home", pool=slm_pool)
    text = "Turn off the bedroom lights and lock the front door"
    result = await app.ainvoke(text, budget_usd=0.0)
    await app.aclose()
    assert "plan_check:budget_exhausted" in result.flags
    assert not any(e.model == "frontier" for e in result.events if isinstance(e, ModelCallEvent))


def _checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_analytics_answers_with_sql_and_never_writes(
    slm_pool: ModelPool, tmp_path: Path
) -> None:
    db = tmp_path / "shop.sqlite"
    app = App.from_graph("graphs.analytics", pool=slm_pool, graph_options={"database": db})
    first = await app.ainvoke("How many customers are there?")
    checksum = _checksum(db)
    hostile = await app.ainvoke("Delete all orders and drop the customers table")
    await app.aclose()
    _costs_add_up(first)
    assert first.status in ("ok", "failed")
    assert hostile.status in ("ok", "failed", "timeout")  # a rambling model may run out of time
    if first.ok:
        assert first.outputs["sql"]["sql"].lstrip().upper().startswith(("SELECT", "WITH"))
    assert _checksum(db) == checksum  # whatever the model wrote, nothing changed


async def test_support_routes_extracts_and_acts(slm_pool: ModelPool) -> None:
    bank = SimulatedBank()
    app = App.from_graph("graphs.support", pool=slm_pool, graph_options={"bank": bank})
    result = await app.ainvoke("I lost my card at the station this morning")
    await app.aclose()
    _costs_add_up(result)
    assert result.outputs["intent"]["label"] == "card_lost_or_stolen"  # kNN on near examples
    if result.ok:
        assert result.outputs["act"]["call"]["name"] in {
            "block_card",
            "trace_transfer",
            "dispute_transaction",
            "reset_pin",
            "explain_exchange_rate",
            "close_account",
        }


def test_cli_run_json(slm_base_url: str, tmp_path: Path) -> None:
    pool = tmp_path / "pool.json"
    pool.write_text(json.dumps({"models": {
        "slm": [{"name": "local-vllm", "base_url": slm_base_url, "model": "smollm2-135m-instruct"}],
        "frontier": [{"name": "frontier-stand-in", "base_url": slm_base_url,
                      "model": "smollm2-135m-instruct", "stand_in": True}],
    }}))  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "brickwork.cli", "run", "smart_home", "What's the weather like?",
         "--json", "--pool", str(pool), "--store", str(tmp_path / "runs.sqlite")],
        capture_output=True, text=True, timeout=600, env={**os.environ},
    )  # fmt: skip
    assert out.returncode in (0, 1), out.stderr
    body = json.loads(out.stdout.strip().splitlines()[-1])
    assert body["graph"] == "smart_home" and body["status"] in ("ok", "failed")
    assert (
        body["events"][0]["kind"] == "run_started" and body["events"][-1]["kind"] == "run_finished"
    )
    show = subprocess.run(
        [sys.executable, "-m", "brickwork.cli", "graph", "show", "support"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert show.returncode == 0 and "intent -.-> extract" in show.stdout
