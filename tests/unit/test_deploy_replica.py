"""One replica of the HTTP front, as a Ray Serve replica or a pod builds it."""

from __future__ import annotations

import os
import socket

import pytest
from fastapi.testclient import TestClient

from brickwork.deploy import FrontSpec, Tier, Topology, build_front
from brickwork.errors import ConfigError


def test_a_spec_needs_graphs_and_exactly_one_model_source() -> None:
    with pytest.raises(ConfigError, match="at least one graph"):
        FrontSpec(graphs=(), store=None, url="http://127.0.0.1:1/v1")
    with pytest.raises(ConfigError, match="exactly one"):
        FrontSpec(graphs=("smart_home",), store=None)
    with pytest.raises(ConfigError, match="exactly one"):
        FrontSpec(graphs=("smart_home",), store=None, pool={"models": {}}, url="http://x/v1")
    shared = FrontSpec(graphs=("smart_home",), store="postgresql://u@h/db", url="http://x/v1")
    assert shared.shared_store
    assert not FrontSpec(
        graphs=("smart_home",), store="runs.sqlite", url="http://x/v1"
    ).shared_store


def test_the_front_serves_every_graph_and_names_the_replica_that_answered(tmp_path) -> None:
    topology = Topology(tiers=(Tier("slm", "HuggingFaceTB/SmolLM2-135M-Instruct", gpus=0),))
    pool = topology.pool_config({"slm": "http://127.0.0.1:9/v1"})  # never called here
    spec = FrontSpec(
        graphs=("smart_home", "support"), store=str(tmp_path / "runs.sqlite"), pool=pool
    )
    with TestClient(build_front(spec)) as client:
        health = client.get("/health")
        models = client.get("/v1/models")
    assert health.status_code == 200
    assert health.json()["graphs"] == ["smart_home", "support"]
    assert health.headers["x-brickwork-replica"] == f"{socket.gethostname()}:{os.getpid()}"
    assert {m["id"] for m in models.json()["data"]} == {"smart_home", "support"}
    assert models.headers["x-brickwork-replica"] == health.headers["x-brickwork-replica"]
