"""`brickwork serve` in one process is found and used by `brickwork run` in another."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from brickwork.serving.launcher import free_port

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

BRICKWORK = [sys.executable, "-m", "brickwork.cli"]


def test_serve_is_reused_and_a_second_copy_is_refused(embedded_model: Path, tmp_path: Path) -> None:
    env = {**os.environ, "BRICKWORK_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "200"}
    port = free_port()
    checked_placement = False
    log = (tmp_path / "serve.log").open("w")
    serve = subprocess.Popen(
        [*BRICKWORK, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        record = tmp_path / "state" / f"serve-{port}.json"
        deadline = time.monotonic() + 600
        while not _ready(record):
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "brickwork serve was not ready in 600 s"
            if record.exists() and not _ready(record):
                starting = json.loads(record.read_text())
                if not checked_placement:
                    # A second serve started meanwhile sees the cores the first one holds.
                    _second_serve_places_elsewhere(env, starting["cores"])
                    checked_placement = True
            time.sleep(0.5)
        assert checked_placement, "the record was not published before the server was ready"

        second = subprocess.run(
            [*BRICKWORK, "serve", "--port", str(port)],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert second.returncode == 2
        assert f"already running on port {port}" in second.stderr
        assert f"pid {serve.pid}" in second.stderr

        run = subprocess.run(
            [*BRICKWORK, "run", "smart_home", "What's the weather tomorrow?",
             "--store", str(tmp_path / "runs.sqlite")],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert run.returncode in (0, 1), run.stderr
        assert f"brickwork serve (pid {serve.pid})" in run.stderr
        assert "answer: Sorry, I can only help" in run.stdout, run.stdout
    finally:
        serve.send_signal(signal.SIGINT)
        code = serve.wait(timeout=120)
        log.close()
    assert code == 0
    assert not record.exists()
    # The vLLM child is gone too: nothing accepts connections on its port (binding it may
    # still fail for a while: the connections it closed sit in TIME_WAIT).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def _ready(record: Path) -> bool:
    try:
        return bool(json.loads(record.read_text())["ready"])
    except (OSError, ValueError, KeyError):
        return False


def _second_serve_places_elsewhere(env: dict[str, str], held: dict[str, list[int]]) -> None:
    """Start another serve while the first is starting; it must take another core."""
    first_cores = {core for cores in held.values() for core in cores}
    # Started as a non-interactive shell starts a background job (CI, nohup): SIGINT ignored.
    # Ctrl-C while it starts must still stop it and its vLLM child.
    other = subprocess.Popen(
        [*BRICKWORK, "serve", "--port", str(free_port())],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    try:
        assert other.stdout is not None
        line = ""
        deadline = time.monotonic() + 120
        while "placement:" not in line and other.poll() is None:
            assert time.monotonic() < deadline, "the second serve printed no placement"
            line = other.stdout.readline()
        assert "placement:" in line, line
        placed = {int(c) for c in line.split("[", 1)[1].split("]", 1)[0].split(",")}
        assert not placed & first_cores, (line, held)
    finally:
        other.send_signal(signal.SIGINT)
        try:
            code = other.wait(timeout=60)
        except subprocess.TimeoutExpired:
            other.kill()  # its vLLM child dies with it (PDEATHSIG)
            raise AssertionError("Ctrl-C did not stop a starting serve within 60 s") from None
    assert code == 130, code
