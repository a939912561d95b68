"""The OpenAI-compatible HTTP front: `POST /v1/chat/completions` where `model` names a graph.

This package owns what goes over HTTP: `server` (the FastAPI app, its routes, `serve_api` and
`ApiServer`), `models` (request and response bodies, streaming chunks, the error shape, auth),
`outcomes` (run outcome -> HTTP status and error body), `redact` (user-facing text without
internal URLs, hosts, paths or exception names; no dependencies, usable by the App too) and
`metrics` (the Prometheus `/metrics` series fed by run events). It talks to graphs only
through the embedded `App`. Needs the `api` extra (fastapi, uvicorn, prometheus-client),
imported only when `ApiServer`, `create_api` or `serve_api` is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brickwork.http.server import ApiServer, create_api, serve_api

__all__ = ["ApiServer", "create_api", "serve_api"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from brickwork.http import server

        return getattr(server, name)
    raise AttributeError(f"module 'brickwork.http' has no attribute {name!r}")
