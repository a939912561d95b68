"""Launcher: the rendered command line and every preflight refusal (no server needed)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from brickwork.errors import MissingDependencyError, ModelFolderError, PortInUseError
from brickwork.serving.launcher import RestartPolicy, ServerSpec, VLLMServer, free_port


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
        "--seed", "1",
    ]  # fmt: skip
    assert spec.model_names == ("slm", "extract", "intent")


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
