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
