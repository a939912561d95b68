"""Kubernetes manifests rendered from a topology, validated offline against the real schemas."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import yaml

from brickwork.cli import main
from brickwork.deploy import Tier, Topology, h100_topology, render, validate, vllm_args
from brickwork.errors import ConfigError
from brickwork.serving.pool import ModelPool, PoolConfig
from brickwork.serving.profiles import BaseModelProfile, InstancePlan

pytest.importorskip("kubernetes_validate")


def _by(manifests, kind, name):
    return next(m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name)


def _container(deployment):
    return deployment["spec"]["template"]["spec"]["containers"][0]


def test_the_h100_plan_renders_objects_that_validate_strictly() -> None:
    manifests = render(h100_topology(adapters=("smart_home_intent",)))
    kinds = sorted((m["kind"], m["metadata"]["name"]) for m in manifests)
    assert kinds == [
        ("ConfigMap", "brickwork-config"),
        ("Deployment", "brickwork-api"),
        ("Deployment", "brickwork-large"),
        ("Deployment", "brickwork-slm"),
        ("Service", "brickwork-api"),
        ("Service", "brickwork-large"),
        ("Service", "brickwork-slm"),
    ]
    validate(manifests)  # raises on any schema error


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("spec", "replicas"), "two", "replicas"),
        (("spec", "template", "spec", "containers", 0, "imagePullPolcy"), "Always", ""),
        (
            ("spec", "template", "spec", "containers", 0, "ports", 0, "containerPort"),
            "http",
            "containerPort",
        ),
    ],
)
def test_validation_fails_on_a_broken_object(path, value, field) -> None:
    manifests = render(h100_topology())
    broken = copy.deepcopy(_by(manifests, "Deployment", "brickwork-api"))
    target = broken
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(ConfigError, match="brickwork-api") as info:
        validate([broken])
    assert field in str(info.value)


def test_api_replicas_probe_health_read_the_store_from_a_secret_and_are_scraped() -> None:
    secret_url = "postgresql://app:hunter2@db.internal:5432/runs"
    topology = replace(h100_topology(api_replicas=3), store_url=secret_url)
    manifests = render(topology)
    assert "hunter2" not in yaml.safe_dump_all(manifests)
    api = _by(manifests, "Deployment", "brickwork-api")
    assert api["spec"]["replicas"] == 3
    container = _container(api)
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    env = {e["name"]: e for e in container["env"]}
    assert env["BRICKWORK_STORE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "brickwork-store",
        "key": "url",
    }
    assert "$(BRICKWORK_STORE_URL)" in container["args"]
    assert container["args"][:2] == ["deploy", "replica"]
    annotations = api["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    service = _by(manifests, "Service", "brickwork-api")
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]


def test_model_tiers_take_their_vllm_arguments_from_the_launch_profiles() -> None:
    topology = h100_topology(slm_replicas=2, adapters=("a1", "a2"))
    manifests = render(topology)
    slm = _by(manifests, "Deployment", "brickwork-slm")
    assert slm["spec"]["replicas"] == 2
    container = _container(slm)
    expected = InstancePlan(
        model=BaseModelProfile("Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct", 1.5),
        port=8000,
        lora_modules={"a1": "/adapters/a1", "a2": "/adapters/a2"},
        max_model_len=8192,
        host="0.0.0.0",
    ).command()
    assert container["args"] == expected[3:]
    assert container["command"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    args = container["args"]
    assert args[args.index("--lora-modules") + 1 :][:2] == ["a1=/adapters/a1", "a2=/adapters/a2"]
    limits, requests = container["resources"]["limits"], container["resources"]["requests"]
    assert limits["nvidia.com/gpu"] == requests["nvidia.com/gpu"] == "1"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["adapters"] == {"name": "adapters", "mountPath": "/adapters", "readOnly": True}
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    # The large tier serves no adapter: no LoRA flags, no adapter volume.
    large = _container(_by(manifests, "Deployment", "brickwork-large"))
    assert "--enable-lora" not in large["args"]
    assert "adapters" not in {m["name"] for m in large["volumeMounts"]}


def test_a_tier_that_cannot_fit_its_gpus_is_refused_before_rendering() -> None:
    big = Tier("large", "meta-llama/Llama-3.1-70B-Instruct", params_b=70, gpus=1)
    with pytest.raises(ConfigError, match="does not fit"):
        vllm_args(big)
    split = replace(big, gpus=4, fp8=True)
    args = vllm_args(split)
    assert args[args.index("--tensor-parallel-size") + 1] == "4"
    assert "--quantization" in args


def test_a_cpu_tier_runs_the_launcher_command_on_requested_cores() -> None:
    topology = Topology(tiers=(Tier("slm", "/models/smollm2", dtype="float32", gpus=0, cores=4),))
    manifests = render(topology)
    validate(manifests)
    container = _container(_by(manifests, "Deployment", "brickwork-slm"))
    assert container["resources"]["requests"]["cpu"] == "4"
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert "--enforce-eager" in container["args"]
    assert container["args"][container["args"].index("--dtype") + 1] == "float32"


def test_the_pool_config_is_a_valid_pool_whose_ladder_follows_the_tiers() -> None:
    topology = h100_topology(adapters=("smart_home_intent",))
    config = PoolConfig.parse(topology.pool_config())
    pool = ModelPool(config)
    assert config.tiers == ("slm", "large", "frontier")
    assert pool.top_tier == "frontier"
    assert pool.next_tier("slm") == "large"
    assert config.models["frontier"][0].stand_in
    assert config.models["slm:smart_home_intent"][0].model == "smart_home_intent"
    assert config.models["slm"][0].base_url == "http://brickwork-slm:8000/v1"


def test_a_bad_topology_is_refused_with_the_offending_value() -> None:
    with pytest.raises(ConfigError, match="'Brickwork'"):
        Topology(name="Brickwork")
    with pytest.raises(ConfigError, match="sqlite"):
        Topology(store_url="sqlite:///runs.db")
    with pytest.raises(ConfigError, match="repeat"):
        Topology(tiers=(Tier("slm", "m"), Tier("slm", "n")))
    with pytest.raises(ConfigError, match="no model tier"):
        render(Topology())


def test_the_cli_renders_yaml_files_that_validate(tmp_path, capsys) -> None:
    out = tmp_path / "k8s"
    code = main(["deploy", "k8s", "--render", str(out), "--api-replicas", "4", "--adapter", "x"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "valid Kubernetes" in printed
    files = sorted(out.glob("*.yaml"))
    assert len(files) == 7
    loaded = [yaml.safe_load(path.read_text()) for path in files]
    validate(loaded)
    api = next(m for m in loaded if m["metadata"]["name"] == "brickwork-api" and "spec" in m)
    assert api["kind"] in {"Deployment", "Service"}
    deployment = next(
        m for m in loaded if m["kind"] == "Deployment" and "api" in m["metadata"]["name"]
    )
    assert deployment["spec"]["replicas"] == 4
