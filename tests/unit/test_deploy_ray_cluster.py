"""The Ray head's bookkeeping: join what answers, stop only the process group we started."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from brickwork.deploy.ray import ClusterRecord, start_cluster, stop_cluster

psutil = pytest.importorskip("psutil")


@pytest.fixture(autouse=True)
def _state(tmp_path, monkeypatch):
    monkeypatch.setenv("BRICKWORK_STATE_DIR", str(tmp_path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours still answers kill(0): reap it to tell.
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:  # not our child, and it exists
        return True


def test_a_port_that_answers_is_joined_and_nothing_is_started_or_recorded() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        lines: list[str] = []
        assert start_cluster(port, say=lines.append) is None
    assert lines == [f"ray: joining the cluster at 127.0.0.1:{port}"]
    assert ClusterRecord.read(port) is None
    assert stop_cluster(port) is False  # not ours: nothing is stopped


def test_stop_ends_the_whole_process_group_it_recorded_and_only_that() -> None:
    sleep = "import time; time.sleep(60)"
    code = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {sleep!r}]); {sleep}"
    head = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        deadline = time.monotonic() + 10
        children: list[int] = []
        while not children and time.monotonic() < deadline:
            children = [child.pid for child in psutil.Process(head.pid).children()]
            time.sleep(0.05)
        assert children, "the head's child did not start"
        record = ClusterRecord(head.pid, 6391, "log", time.time())
        ClusterRecord.path(6391).write_text(json.dumps(record.__dict__))
        assert ClusterRecord.read(6391) == record
        assert stop_cluster(6391, timeout_s=5) is True
        head.wait(timeout=5)
        assert not any(_alive(pid) for pid in children)
        assert bystander.poll() is None  # another process of ours is left alone
        assert ClusterRecord.read(6391) is None
    finally:
        for process in (head, bystander):
            if process.poll() is None:
                process.kill()
                process.wait()
