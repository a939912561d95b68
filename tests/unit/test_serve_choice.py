"""Which registered `brickwork serve` a command uses: a healthy one, never a dead or restarting
one, and it says which and why; `--url` / `App(url=...)` read the served model from /v1/models."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from brickwork.errors import ServingError
from brickwork.serving.local import LocalServing, pool_config_for_url
from brickwork.serving.models import EMBEDDED_MODEL
from brickwork.serving.registry import ServeLease, ServeRecord


class _Models(BaseHTTPRequestHandler):
    """Answers GET /v1/models like vLLM: the base model and one adapter of it."""

    def do_GET(self) -> None:
        served = EMBEDDED_MODEL.served_name
        body = json.dumps(
            {"data": [{"id": served, "parent": None}, {"id": "intent", "parent": served}]}
        ).encode()
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def healthy_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _dead_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _register(root: Path, port: int, started: datetime) -> ServeLease:
    lease = ServeLease(port, root=root)
    lease.acquire()  # a live process holds the lock: only its port tells dead from alive
    lease.publish(
        ServeRecord(
            pid=os.getpid(), host="127.0.0.1", port=port,
            served_name=EMBEDDED_MODEL.served_name, adapters=(), model="m", log="l",
            started_at=started.isoformat(),
        )
    )  # fmt: skip
    return lease


def test_a_dead_registered_serve_is_skipped_for_a_healthy_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, healthy_port: int
) -> None:
    monkeypatch.setenv("BRICKWORK_STATE_DIR", str(tmp_path))
    now = datetime.now(UTC)
    dead = _dead_port()
    leases = [
        _register(tmp_path, healthy_port, now - timedelta(minutes=5)),
        _register(tmp_path, dead, now),  # the newest, as in the issue: it used to be chosen
    ]
    try:
        local = LocalServing(large=False).start()
        assert local.record is not None and local.record.port == healthy_port
        assert local.server is None  # nothing was launched
        assert [(r.port, why) for r, why in local.skipped] == [
            (dead, "not answering (dead or restarting)")
        ]
        said = local.choice
        assert f":{healthy_port}/v1: healthy" in said
        assert f"skipped brickwork serve (pid {os.getpid()}) at http://127.0.0.1:{dead}/v1" in said
    finally:
        for lease in leases:
            lease.release()


def test_a_url_pool_reads_the_served_model_and_its_adapters(healthy_port: int) -> None:
    config = pool_config_for_url(f"http://127.0.0.1:{healthy_port}/v1/")
    assert config.models["slm"][0].model == EMBEDDED_MODEL.served_name
    assert config.models["slm:intent"][0].model == "intent"


def test_a_url_where_nothing_answers_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{_dead_port()}/v1"
    with pytest.raises(
        ServingError, match=r"no OpenAI-compatible server answers at .*brickwork serve"
    ):
        pool_config_for_url(url)


async def test_app_from_graph_takes_a_url(healthy_port: int) -> None:
    from brickwork.app import App

    app = App.from_graph(
        str(Path(__file__).resolve().parents[1] / "fixtures" / "two_step_graph.py"),
        url=f"http://127.0.0.1:{healthy_port}/v1",
        store=None,
        checkpoints=None,
    )
    await app.astart()
    try:
        assert app.pool.tier_endpoints("slm")[0].base_url.endswith(f":{healthy_port}/v1")
    finally:
        await app.aclose()
