"""The OpenAI-compatible HTTP front: `POST /v1/chat/completions` where `model` names a graph.

This package owns what goes over HTTP: `server` (the FastAPI app, its routes, `serve_api` and
`ApiServer`), `models` (request and response bodies, streaming chunks, the error shape, auth)
and `metrics` (the Prometheus `/metrics` series fed by run events). It talks to graphs only
through the embedded `App`. Needs the `api` extra (fastapi, uvicorn, prometheus-client).
"""

from __future__ import annotations

from brickwork.http.server import ApiServer, create_api, serve_api

__all__ = ["ApiServer", "create_api", "serve_api"]
