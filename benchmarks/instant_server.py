"""A minimal OpenAI-compatible server on 127.0.0.1 that answers at once, to isolate framework cost.

    .venv/bin/python -m benchmarks.instant_server --port 8799

`POST /v1/chat/completions` answers without any model: a constrained choice gets
`device_command` when offered (else the first choice), a JSON schema with a property `n` gets
`{"n": 7}`, any other schema the kitchen-lights tool call, and free text gets "ok". Logprobs
are 0.0 (confidence 1) when asked for. `GET /health` and `GET /v1/models` answer too.
Plain asyncio streams, HTTP/1.1 keep-alive, one process: nothing here should be the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from typing import Any, Self

__all__ = ["InstantServer", "answer"]

CALL = {"name": "toggle_lights", "parameters": {"room": "kitchen", "state": "on"}}


def answer(body: dict[str, Any]) -> dict[str, Any]:
    """The chat completion for one request body."""
    choices = (body.get("structured_outputs") or {}).get("choice")
    schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema")
    if choices:
        text = "device_command" if "device_command" in choices else str(choices[0])
    elif isinstance(schema, dict):
        text = json.dumps({"n": 7}) if "n" in schema.get("properties", {}) else json.dumps(CALL)
    else:
        text = "ok"
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": "stop",
    }
    if body.get("logprobs"):
        choice["logprobs"] = {
            "content": [{"token": text, "logprob": 0.0, "bytes": None, "top_logprobs": []}]
        }
    return {
        "id": "instant",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "instant"),
        "choices": [choice],
        "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60},
    }


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
            length = int(headers.get("content-length", "0") or 0)
            raw = await reader.readexactly(length) if length else b""
            if method == "POST" and path.endswith("/chat/completions"):
                payload = json.dumps(answer(json.loads(raw))).encode()
            elif path.endswith("/models"):
                payload = json.dumps({"data": [{"id": "instant", "object": "model"}]}).encode()
            else:
                payload = b"{}"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def serve(port: int) -> None:
    """Serve until killed."""
    server = await asyncio.start_server(_handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class InstantServer:
    """The server in a subprocess: `with InstantServer() as server: server.base_url`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The command line that serves on `self.port` (subclasses serve other models)."""
        return [sys.executable, "-m", "benchmarks.instant_server", "--port", str(self.port)]

    def __enter__(self) -> Self:
        self._process = subprocess.Popen(self.command())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return self
            time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"{type(self).__name__} did not listen on port {self.port}")

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


def main() -> None:
    """Run the server in the foreground."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, default=8799)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
