"""One replica of the HTTP front, as a Ray Serve replica or a pod builds it."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from brickwork.deploy import (
    FrontSpec,
    Tier,
    TierProcesses,
    Topology,
    build_front,
    tier_pool_config,
    vllm_command,
)
from brickwork.errors import ConfigError
from brickwork.serving.launcher import ServerSpec
from brickwork.serving.pool import PoolConfig


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


@pytest.mark.parametrize("as_file", [False, True], ids=["mapping", "pool.json"])
def test_the_front_serves_every_graph_and_names_the_replica_that_answered(
    tmp_path, as_file
) -> None:
    topology = Topology(tiers=(Tier("slm", "HuggingFaceTB/SmolLM2-135M-Instruct", gpus=0),))
    pool = topology.pool_config({"slm": "http://127.0.0.1:9/v1"})  # never called here
    if as_file:  # what a pod reads from its ConfigMap
        (tmp_path / "pool.json").write_text(json.dumps(pool))
        pool = str(tmp_path / "pool.json")
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


def test_tier_processes_need_a_port_placeholder_and_fill_the_pool() -> None:
    with pytest.raises(ConfigError, match=r"\{port\}"):
        TierProcesses("slm", "m", ("server", "--port", "8000"))
    tier = TierProcesses("slm", "m", ("server", "--port", "{port}"), replicas=3, base_port=9100)
    config = PoolConfig.parse(tier_pool_config((tier,)))
    urls = [e.base_url for e in config.models["slm"]]
    assert urls == [f"http://127.0.0.1:{p}/v1" for p in (9100, 9101, 9102)]
    assert config.tiers == ("slm", "frontier")
    assert config.models["frontier"] == config.models["slm"]
    assert all(e.stand_in for e in config.models["frontier"])


def test_the_vllm_tier_command_is_the_launchers_with_a_port_placeholder() -> None:
    argv, env = vllm_command("/models/smollm2", "smollm2-135m-instruct")
    assert argv[argv.index("--port") + 1] == "{port}"
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert "--enforce-eager" in argv
    launcher = ServerSpec(model=Path("/models/smollm2"), served_name="smollm2-135m-instruct")
    assert {**os.environ, **env} == launcher.environment()


def test_tenant_budgets_from_the_command_line() -> None:
    import argparse

    from brickwork.deploy.commands import _spec, add_deploy_arguments

    parser = argparse.ArgumentParser()
    add_deploy_arguments(parser)
    args = parser.parse_args(
        ["replica", "--url", "http://x/v1", "--store", "postgresql://u@h/db",
         "--tenant-budget", "acme=50", "--tenant-budget", "*=2.5"]
    )  # fmt: skip
    spec = _spec(args)
    assert dict(spec.tenant_budgets_usd) == {"acme": 50.0}
    assert spec.default_tenant_budget_usd == 2.5
    for bad in ("acme", "acme=-1", "=3", "acme=lots"):
        args = parser.parse_args(["replica", "--url", "http://x/v1", "--tenant-budget", bad])
        with pytest.raises(ConfigError, match="TENANT=USD"):
            _spec(args)
