"""Launcher: the rendered command line and every preflight refusal (no server needed)."""

from __future__ import annotations

import dataclasses
import socket
import sys
from pathlib import Path

import pytest

from brickwork.errors import MissingDependencyError, ModelFolderError, PortInUseError
from brickwork.serving.launcher import (
    PlacementError,
    RestartPolicy,
    ServerSpec,
    VLLMServer,
    free_port,
    parse_cores,
    plan_placement,
)


def _model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


def test_command_line(tmp_path: Path) -> None:
    spec = ServerSpec(
        model=tmp_path,
        served_name="slm",
        lora_modules={"intent": tmp_path / "a", "extract": tmp_path / "b"},
        extra_args=("--seed", "1"),
        python="py",
    )
    assert spec.command(9000) == [
        "py", "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(tmp_path), "--served-model-name", "slm",
        "--host", "127.0.0.1", "--port", "9000", "--dtype", "float32",
        "--max-model-len", "4096", "--enforce-eager",
        "--enable-lora", "--max-lora-rank", "16", "--max-loras", "4",
        "--lora-modules", f"extract={tmp_path / 'b'}", f"intent={tmp_path / 'a'}",
        "--distributed-executor-backend", "uni",
        "--seed", "1",
    ]  # fmt: skip
    assert spec.model_names == ("slm", "extract", "intent")
    three = dataclasses.replace(spec, worker_in_engine=False)
    assert "--distributed-executor-backend" not in three.command(9000)
    gpu = dataclasses.replace(spec, device="gpu")
    assert "--distributed-executor-backend" not in gpu.command(9000)


def test_environment_is_offline_and_sized(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    env = ServerSpec(model=tmp_path, served_name="s", extra_env={"X": "1"}).environment()
    assert env["HF_HUB_OFFLINE"] == "1" and env["VLLM_CPU_KVCACHE_SPACE"] == "2" and env["X"] == "1"


def test_restart_backoff_doubles_and_caps() -> None:
    policy = RestartPolicy(backoff_s=1, max_backoff_s=5)
    assert [policy.delay(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


def test_missing_model_folder(tmp_path: Path) -> None:
    server = VLLMServer(ServerSpec(model=tmp_path / "nope", served_name="s"), progress=False)
    with pytest.raises(ModelFolderError, match="missing or has no config.json"):
        server.start()
    assert server.pid is None


def test_missing_adapter_folder(tmp_path: Path) -> None:
    spec = ServerSpec(model=_model(tmp_path), served_name="s", lora_modules={"x": tmp_path})
    with pytest.raises(ModelFolderError, match="adapter 'x'.*adapter_config.json"):
        VLLMServer(spec, progress=False).start()


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        spec = ServerSpec(model=_model(tmp_path), served_name="s", port=port)
        server = VLLMServer(spec, progress=False)
        with pytest.raises(PortInUseError, match=f"port {port} on 127.0.0.1 is already in use"):
            server.start()
        assert server.pid is None


def test_vllm_not_installed_names_the_extra(tmp_path: Path) -> None:
    # The base interpreter of this venv does not see the venv's packages, so it has no vLLM.
    base_python = str(Path(sys.base_prefix) / "bin" / "python3")
    spec = ServerSpec(model=_model(tmp_path), served_name="s", python=base_python)
    with pytest.raises(MissingDependencyError, match=r"pip install 'brickwork\[cpu\]'"):
        VLLMServer(spec, progress=False).start()


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_parse_cores() -> None:
    assert parse_cores("0") == (0,)
    assert parse_cores("3,0-1") == (0, 1, 3)
    with pytest.raises(ValueError, match="'a' is not like"):
        parse_cores("a")
    with pytest.raises(ValueError, match="'3-1'"):
        parse_cores("3-1")


def test_placement_gives_each_instance_its_own_cores() -> None:
    plan = plan_placement({"slm": 1, "large": 1}, available=(0, 1))
    assert plan == {"slm": (0,), "large": (1,)}
    plan = plan_placement({"large": 2, "slm": [3]}, available=(0, 1, 2, 3), taken={"x": [0]})
    assert plan == {"large": (1, 2), "slm": (3,)}


def test_placement_refuses_oversubscription() -> None:
    with pytest.raises(PlacementError, match="core 0 would serve both 'a' and 'b'"):
        plan_placement({"a": [0], "b": [0, 1]}, available=(0, 1))
    with pytest.raises(PlacementError, match="'b' wants 2 core.*1 of 2 are free"):
        plan_placement({"a": [0], "b": 2}, available=(0, 1))
    with pytest.raises(PlacementError, match=r"wants cores \[7\].*only \[0, 1\]"):
        plan_placement({"a": [7]}, available=(0, 1))
    with pytest.raises(PlacementError, match="core 1 would serve both 'running'"):
        plan_placement({"a": [1]}, available=(0, 1), taken={"running": [1]})


def test_cores_bind_the_worker_or_the_gpus(tmp_path: Path) -> None:
    cpu = ServerSpec(model=tmp_path, served_name="s", cores=(1,)).environment()
    assert cpu["VLLM_CPU_OMP_THREADS_BIND"] == "1" and cpu["OMP_NUM_THREADS"] == "1"
    gpu = ServerSpec(model=tmp_path, served_name="s", cores=(0, 1), device="gpu").environment()
    assert gpu["CUDA_VISIBLE_DEVICES"] == "0,1" and "VLLM_CPU_OMP_THREADS_BIND" not in gpu
    assert ServerSpec(model=tmp_path, served_name="s", cores=(0, 1)).placement == "cores [0, 1]"


def test_each_instance_has_its_own_log_file(tmp_path: Path) -> None:
    one = VLLMServer(ServerSpec(model=tmp_path, served_name="m", port=9001), log_dir=tmp_path)
    two = VLLMServer(ServerSpec(model=tmp_path, served_name="m", port=9002), log_dir=tmp_path)
    assert one.log_path != two.log_path and one.log_path.name == "vllm-m-9001.log"


def test_a_missing_core_is_refused_before_start(tmp_path: Path) -> None:
    spec = ServerSpec(model=_model(tmp_path), served_name="s", cores=(4096,))
    with pytest.raises(PlacementError, match=r"wants cores \[4096\]"):
        VLLMServer(spec, progress=False).start()


def test_only_a_declared_partner_may_share_a_live_instances_cores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from brickwork.serving import launcher

    model = _model(tmp_path)
    running = VLLMServer(ServerSpec(model=model, served_name="base", cores=(0,)), progress=False)
    monkeypatch.setattr(launcher, "_LIVE_SERVERS", {running})
    stranger = VLLMServer(ServerSpec(model=model, served_name="other", cores=(0,)))
    with pytest.raises(PlacementError, match="core 0 would serve both 'base"):
        stranger._preflight()
    partner = ServerSpec(model=model, served_name="spec", cores=(0,), shares_cores_with=("base",))
    VLLMServer(partner)._preflight()  # the same tier, declared: allowed
    running.spec = dataclasses.replace(running.spec, shares_cores_with=("other",))
    VLLMServer(stranger.spec)._preflight()  # declared by the running one: allowed too
