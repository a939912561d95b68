"""Resuming a run holds its advisory lock in the real PostgreSQL, whichever replica is asked."""

from __future__ import annotations

import os

import psycopg
import pytest
from fastapi.testclient import TestClient

from brickwork.deploy import FrontSpec, Tier, Topology, build_front
from brickwork.deploy.locks import TRY_LOCK, UNLOCK

pytestmark = pytest.mark.postgres

PG_URL = os.environ.get("BRICKWORK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def front():
    topology = Topology(tiers=(Tier("slm", "HuggingFaceTB/SmolLM2-135M-Instruct", gpus=0),))
    pool = topology.pool_config({"slm": "http://127.0.0.1:9/v1"})  # no model call is made
    spec = FrontSpec(graphs=("smart_home",), store=PG_URL, pool=pool)
    with TestClient(build_front(spec)) as client:
        yield client


def _try_lock(conn: psycopg.Connection, run_id: str) -> bool:
    row = conn.execute(TRY_LOCK, (run_id,)).fetchone()
    return bool(row and row[0])


def test_a_run_being_resumed_elsewhere_is_refused_and_the_lock_is_released(front) -> None:
    run_id = "deploy-lock-test-run"
    with psycopg.connect(PG_URL, autocommit=True) as other_replica:
        assert _try_lock(other_replica, run_id)  # another replica is answering this run
        busy = front.post(f"/v1/runs/{run_id}/confirm", json={"confirm": True})
        assert busy.status_code == 409
        error = busy.json()["error"]
        assert error["code"] == "not_waiting_for_confirmation"
        assert "another replica" in error["message"]
        assert busy.headers["x-should-retry"] == "false"
        assert "x-brickwork-replica" in busy.headers
        other_replica.execute(UNLOCK, (run_id,))

        # Free again: the request reaches the front (an unknown run is 404 there)...
        passed = front.post(f"/v1/runs/{run_id}/confirm", json={"confirm": True})
        assert passed.status_code == 404, passed.text
        # ...and the front gave the lock back when it answered.
        assert _try_lock(other_replica, run_id)
        other_replica.execute(UNLOCK, (run_id,))


def test_other_requests_take_no_lock(front) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as other_replica:
        assert _try_lock(other_replica, "any")
        assert front.get("/v1/runs/any").status_code == 404
        assert front.get("/health").status_code == 200
        other_replica.execute(UNLOCK, ("any",))


def test_a_run_being_resumed_elsewhere_is_refused_with_run_in_progress(front) -> None:
    run_id = "deploy-lock-test-resume"
    with psycopg.connect(PG_URL, autocommit=True) as other_replica:
        assert _try_lock(other_replica, run_id)  # another replica is resuming this run
        busy = front.post(f"/v1/runs/{run_id}/resume")
        assert busy.status_code == 409
        assert busy.json()["error"]["code"] == "run_in_progress"
        assert "being resumed on another replica" in busy.json()["error"]["message"]
        other_replica.execute(UNLOCK, (run_id,))
        assert front.post(f"/v1/runs/{run_id}/resume").status_code == 404  # unknown run
        assert _try_lock(other_replica, run_id)  # given back
        other_replica.execute(UNLOCK, (run_id,))
