"""The README's Python example runs as written, against a `brickwork serve` it finds."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from brickwork.serving.launcher import VLLMServer
from brickwork.serving.registry import ServeLease, ServeRecord

pytestmark = pytest.mark.vllm

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_example_runs(
    vllm_server: VLLMServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    # Publish the session server as a running `brickwork serve`, so the example reuses it.
    monkeypatch.setenv("BRICKWORK_STATE_DIR", str(tmp_path))
    lease = ServeLease(vllm_server.port, root=tmp_path)
    lease.acquire()
    lease.publish(
        ServeRecord(
            pid=os.getpid(),
            host=vllm_server.spec.host,
            port=vllm_server.port,
            served_name=vllm_server.spec.served_name,
            adapters=(),
            model=str(vllm_server.spec.model),
            log=str(vllm_server.log_path),
            started_at=datetime.now(UTC).isoformat(),
        )
    )
    try:
        for block in blocks:
            exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})
    finally:
        lease.release()
    out = capsys.readouterr().out
    assert re.search(r"^(ok|failed|over_budget) ", out, flags=re.M), out  # the App example
    assert re.search(
        r"^(lights|locks) [0-9.e-]+ \{'room': '.*'\} [0-9.]+ Usage\(", out, flags=re.M
    ), out


def test_readme_run_command_works_as_written_at_80_columns(
    slm_base_url: str, tmp_path: Path
) -> None:
    """`brickwork run "Dim the office lights"` (the README's form): the default graph, said so;
    compact output within 80 columns; the stand-in note once."""
    import subprocess
    import sys

    command = re.search(r'brickwork run "([^"]+)"', README.read_text())
    assert command is not None and command.group(1) == "Dim the office lights"
    env = {**os.environ, "COLUMNS": "80", "BRICKWORK_LARGE": "off", "TERM": "dumb"}
    done = subprocess.run(
        [sys.executable, "-m", "brickwork.cli", "run", command.group(1),
         "--url", slm_base_url, "--store", str(tmp_path / "runs.sqlite")],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr  # 1: the run failed, said in plain words
    assert "graph: smart_home (the default" in done.stderr
    assert "loading the intent embedding model" in done.stderr
    lines = done.stdout.splitlines()
    assert lines and all(len(line) <= 80 for line in lines), done.stdout
    assert any(line.startswith("intent") for line in lines)  # one line per node
    assert done.stderr.count("no frontier API is configured") <= 1
