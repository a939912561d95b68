"""Runtime LoRA loading against a vLLM-shaped HTTP server (a local stand-in on 127.0.0.1)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from brickwork.errors import ServerStartError
from brickwork.serving.launcher import load_lora_adapter


class _Handler(BaseHTTPRequestHandler):
    reply: tuple[int, str] = (200, "")

    def do_GET(self) -> None:  # /v1/models: nothing served yet
        self._send(200, json.dumps({"data": [{"id": "base"}]}))

    def do_POST(self) -> None:
        self._send(*type(self).reply)

    def _send(self, status: int, body: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def test_an_adapter_loaded_meanwhile_by_someone_else_counts_as_served(
    server: str, tmp_path: Path
) -> None:
    # `brickwork serve` syncs registered adapters every few seconds; `brickwork tune` may ask
    # for the same adapter in between.
    message = "The lora adapter 'a' has already been loaded. If you want to load the adapter"
    _Handler.reply = (400, json.dumps({"error": {"message": message}}))
    assert load_lora_adapter(server, "a", tmp_path) is True


def test_other_refusals_are_errors_or_no_runtime_loading(server: str, tmp_path: Path) -> None:
    _Handler.reply = (400, json.dumps({"error": {"message": "LoRA is not enabled"}}))
    assert load_lora_adapter(server, "a", tmp_path) is False
    _Handler.reply = (500, "boom")
    with pytest.raises(ServerStartError, match="refused adapter 'a'"):
        load_lora_adapter(server, "a", tmp_path)
