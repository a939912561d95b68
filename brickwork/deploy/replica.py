"""One replica of the HTTP front: the ASGI app every replica runs, on Ray Serve or in a pod.

A replica is `brickwork.http.server.create_api` over one `App` per graph, built from a
`FrontSpec` inside the replica's own process (an App belongs to the event loop that first
runs it): the pool from a pool config (or a model server's URL), the run store and the
LangGraph checkpointer both in the shared PostgreSQL, and the response cache in Redis when
one is given. Replicas share nothing else, so any replica can answer any request, and a run
is found in the store whichever replica ran it.

`brickwork deploy replica` serves one with uvicorn (what a Kubernetes pod runs); a Ray Serve
replica builds the same app (`brickwork.deploy.ray`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brickwork.errors import ConfigError

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["REPLICA_HEADER", "FrontSpec", "ReplicaHeader", "build_front", "serve_replica"]

#: The response header naming the replica that answered (`host:pid`).
REPLICA_HEADER = b"x-brickwork-replica"


@dataclass(frozen=True)
class FrontSpec:
    """How to build one replica of the HTTP front (picklable: it travels to Ray workers).

    Attributes:
        graphs: Graphs to serve (the `model` names clients send).
        store: The shared run store, a `postgresql://` URL (a SQLite path works for one
            replica only).
        pool: A pool config: a file (.toml/.json) or its contents as a mapping.
        url: Instead of `pool`, one OpenAI-compatible model server (its model is `slm`).
        redis: A Redis URL for the shared response cache, or None for no cache.
        checkpoints: Where graph state is checkpointed (default: the store when it is
            PostgreSQL, so another replica can resume a run; else memory only).
        api_key_env: Environment variable holding the API key to require, or None.
        timeout_s: Each run's time limit.
        tenant_budgets_usd: Each named tenant's spending limit. With a PostgreSQL store the
            money is kept there (`brickwork.cost.shared`), so the limit holds across every
            replica, not per replica.
        default_tenant_budget_usd: The limit of a tenant not named above (None: unlimited).
        budget_table: The shared budgets' table in the store's database.
        options: More keyword arguments for each `App`.
    """

    graphs: tuple[str, ...]
    store: str | None
    pool: str | Mapping[str, Any] | None = None
    url: str | None = None
    redis: str | None = None
    checkpoints: str | None = None
    api_key_env: str | None = None
    timeout_s: float = 300.0
    tenant_budgets_usd: Mapping[str, float] = field(default_factory=dict, hash=False)
    default_tenant_budget_usd: float | None = None
    budget_table: str = "brickwork_budgets"
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "graphs", tuple(self.graphs))
        if not self.graphs:
            raise ConfigError("a replica serves at least one graph, e.g. graphs=('smart_home',)")
        if (self.pool is None) == (self.url is None):
            raise ConfigError("give a replica a pool config or a model server URL (exactly one)")

    @property
    def shared_store(self) -> bool:
        """True when the store is PostgreSQL (shared by every replica)."""
        return bool(self.store and self.store.startswith(("postgresql://", "postgres://")))


def build_front(spec: FrontSpec) -> FastAPI:
    """The replica's ASGI app; its apps, pool and store close when the app shuts down."""
    import os

    from brickwork.app import App
    from brickwork.http.server import create_api
    from brickwork.serving.local import pool_config_for_url
    from brickwork.serving.pool import ModelPool, PoolConfig
    from brickwork.store import RunStore

    if spec.url is not None:
        config = pool_config_for_url(spec.url)
    elif isinstance(spec.pool, Mapping):
        config = PoolConfig.parse(dict(spec.pool))
    else:
        assert spec.pool is not None
        config = PoolConfig.load(Path(spec.pool))
    pool = ModelPool(config)
    store = RunStore(spec.store)
    cache = None
    if spec.redis:
        from brickwork.caching import RedisCache, ResponseCache

        cache = ResponseCache(RedisCache(spec.redis))
    checkpoints = spec.checkpoints or (spec.store if spec.shared_store else None)
    budgets = None  # one book for every graph of the replica; in PostgreSQL when shared
    if spec.tenant_budgets_usd or spec.default_tenant_budget_usd is not None:
        from brickwork.cost import BudgetBook
        from brickwork.cost.shared import PostgresBudgets

        budgets = BudgetBook(
            dict(spec.tenant_budgets_usd),
            default_tenant_limit_usd=spec.default_tenant_budget_usd,
            shared=PostgresBudgets(spec.store, table=spec.budget_table)
            if spec.shared_store and spec.store
            else False,
        )
    apps = {}
    for ref in spec.graphs:
        app = App.from_graph(
            ref,
            pool=pool,
            store=store,
            source="api",
            cache=cache,
            checkpoints=checkpoints,
            **({"budgets": budgets} if budgets is not None else {}),
            **dict(spec.options),
        )
        apps[app.graph.name] = app
    api_key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
    if spec.api_key_env and not api_key:
        raise ConfigError(f"api_key_env names ${spec.api_key_env}, which is not set")
    lock = None
    if spec.shared_store:
        assert spec.store is not None
        from brickwork.deploy.locks import run_lock

        lock = run_lock(spec.store)  # requests with an Idempotency-Key, across replicas
    api = create_api(
        apps,
        store=store,
        api_key=api_key,
        timeout_s=spec.timeout_s,
        close_apps=True,
        run_lock=lock,
    )
    if spec.shared_store:
        assert spec.store is not None
        from brickwork.deploy.locks import RunLock

        api.add_middleware(RunLock, url=spec.store)  # one replica at a time per run
    api.add_middleware(ReplicaHeader)
    return api


class ReplicaHeader:
    """ASGI middleware: every HTTP response says which replica answered (`x-brickwork-replica`).

    The value is `host:pid`, enough to tell replicas (and pods) apart in a trace or a test.
    """

    def __init__(self, app: Any) -> None:
        import os
        import socket

        self.app = app
        self.value = f"{socket.gethostname()}:{os.getpid()}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Pass the request on; add the header to the response's start message."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def tagged(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (REPLICA_HEADER, self.value)]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, tagged)


def serve_replica(spec: FrontSpec, *, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve one replica with uvicorn in the foreground (what a Kubernetes pod runs)."""
    import uvicorn

    uvicorn.run(build_front(spec), host=host, port=port, log_level="info")
