r"""The HTTP front as Ray Serve replicas, on a local Ray cluster bound to 127.0.0.1.

    brickwork deploy ray --api-replicas 2 --store postgresql://postgres@127.0.0.1:5432/test \\
        --url http://127.0.0.1:8321/v1
    brickwork deploy status
    brickwork deploy down

`deploy` joins the Ray cluster whose GCS answers on 127.0.0.1:`ray_port`, or starts one
(`ray start --head --block` in its own session, recorded in `<state>/ray-<port>.json`, so
`down` stops exactly that process group and nothing else), then runs the application
`brickwork` on Serve: `replicas` copies of the HTTP front (`brickwork.deploy.replica`), each
building its own Apps over the shared PostgreSQL store and checkpointer, behind Serve's proxy
on 127.0.0.1:`http_port`. Progress (replica states) is printed until every replica runs.

Loopback only: on Linux, Ray rewrites `--node-ip-address=127.0.0.1` to the machine's
routable address (`resolve_ip_for_localhost`) unless `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`,
which keeps the node (and the ports bound to its address) on 127.0.0.1; it is set for the
cluster and for this process before `ray` is imported. A cluster that spans machines needs
a routable address instead (docs/deploy.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from brickwork._settings import state_dir
from brickwork.deploy.replica import FrontSpec, build_front
from brickwork.deploy.tiers import TierProcesses, model_deployments
from brickwork.errors import ConfigError, MissingDependencyError, ServerStartError

__all__ = [
    "APP_NAME",
    "LOOPBACK",
    "RAY_ENV",
    "ClusterRecord",
    "connect",
    "deploy",
    "down",
    "replica_states",
    "start_cluster",
    "status",
    "stop_cluster",
]

LOOPBACK = "127.0.0.1"
#: The Serve application name of the HTTP front.
APP_NAME = "brickwork"
_DEPLOYMENT = "front"
#: Set for the cluster and this process: keep every Ray address on loopback, no telemetry.
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
_OBJECT_STORE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class ClusterRecord:
    """A Ray head this module started: its process group, ports and log."""

    pid: int
    ray_port: int
    log: str
    started_at: float

    @staticmethod
    def path(ray_port: int) -> Path:
        """Where the record of the head on `ray_port` lives."""
        return state_dir() / f"ray-{ray_port}.json"

    @classmethod
    def read(cls, ray_port: int) -> ClusterRecord | None:
        """The record, or None when this module did not start a head on that port."""
        try:
            return cls(**json.loads(cls.path(ray_port).read_text()))
        except (OSError, ValueError, TypeError):
            return None


def _say() -> Callable[[str], None]:
    return lambda line: print(line, file=sys.stderr, flush=True)


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=0.5):
        return True
    return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _environment() -> dict[str, str]:
    return {**os.environ, **RAY_ENV}


def start_cluster(
    ray_port: int, *, say: Callable[[str], None] | None = None, timeout_s: float = 120
) -> ClusterRecord | None:
    """Start a Ray head on 127.0.0.1:`ray_port` unless one answers there already.

    Returns:
        The record of the head started, or None when an existing cluster is joined.

    Raises:
        ServerStartError: The head did not listen within `timeout_s` (its log is named).
    """
    say = say or _say()
    if _listening(ray_port):
        say(f"ray: joining the cluster at {LOOPBACK}:{ray_port}")
        return None
    ray = Path(sys.executable).with_name("ray")
    if not ray.exists():
        raise MissingDependencyError("ray", "ray", "brickwork deploy ray")
    log = state_dir() / f"ray-{ray_port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [str(ray), "start", "--head", "--block", "--disable-usage-stats"]
    command += ["--node-ip-address", LOOPBACK, "--port", str(ray_port)]
    command += ["--include-dashboard", "false", "--object-store-memory", str(_OBJECT_STORE_BYTES)]
    command += ["--num-cpus", str(os.cpu_count() or 1)]
    # Fixed defaults (10001, 52365) would clash with a second cluster on the same machine.
    command += ["--ray-client-server-port", str(_free_port())]
    command += ["--dashboard-agent-listen-port", str(_free_port())]
    say(f"ray: starting a head on {LOOPBACK}:{ray_port} (log {log})")
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_environment(),
            start_new_session=True,
        )
    record = ClusterRecord(process.pid, ray_port, str(log), time.time())
    ClusterRecord.path(ray_port).write_text(json.dumps(asdict(record)))
    deadline = time.monotonic() + timeout_s
    while not _listening(ray_port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_cluster(ray_port)
            tail = log.read_text(errors="replace")[-2000:]
            raise ServerStartError(f"the Ray head did not start on port {ray_port}:\n{tail}")
        time.sleep(0.2)
    return record


def stop_cluster(ray_port: int, *, timeout_s: float = 10) -> bool:
    """Stop the head this module started on `ray_port` (its whole process group); True if one."""
    record = ClusterRecord.read(ray_port)
    if record is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            os.killpg(record.pid, 0)  # raises ProcessLookupError once the group is gone
            time.sleep(0.2)
        os.killpg(record.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(record.pid, os.WNOHANG)
    ClusterRecord.path(ray_port).unlink(missing_ok=True)
    return True


def connect(ray_port: int) -> Any:
    """Connect this process to the cluster on 127.0.0.1:`ray_port`; the `ray` module."""
    os.environ.update(RAY_ENV)  # read when ray is imported: before the import
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError("ray", "ray", "brickwork deploy ray") from exc
    if not ray.is_initialized():
        ray.init(
            address=f"{LOOPBACK}:{ray_port}",
            _node_ip_address=LOOPBACK,
            namespace="brickwork",
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    return ray


def _front_deployment() -> Any:
    """The Serve deployment class of the HTTP front (made here: `ray` imports lazily)."""
    from ray import serve

    @serve.deployment(
        name=_DEPLOYMENT,
        max_ongoing_requests=256,
        health_check_period_s=5,
        graceful_shutdown_timeout_s=10,
    )
    @serve.ingress()
    class Front:
        """One replica: builds the front's ASGI app in its own process and event loop."""

        def __init__(self, spec: FrontSpec) -> None:
            self.spec = spec

        def __serve_build_asgi_app__(self) -> Any:
            return build_front(self.spec)

    return Front


def replica_states(app_name: str = APP_NAME) -> dict[str, int]:
    """An application's replicas by state (`RUNNING`, `STARTING`, ...); empty when absent."""
    from ray import serve

    app = serve.status().applications.get(app_name)
    if app is None:
        return {}
    counts: dict[str, int] = {}
    for deployment in app.deployments.values():
        for state, count in deployment.replica_states.items():
            key = str(getattr(state, "value", state))
            counts[key] = counts.get(key, 0) + count
    return counts


def deploy(
    spec: FrontSpec,
    *,
    replicas: int = 2,
    replica_cpus: float = 0.5,
    ray_port: int = 6379,
    http_port: int = 8000,
    tiers: tuple[TierProcesses, ...] = (),
    say: Callable[[str], None] | None = None,
) -> int:
    """Run the front as `replicas` Serve replicas on the local cluster (started if needed).

    `tiers` are started first, each replica of each a supervised server process in a Serve
    replica of its own (`brickwork.deploy.tiers`); `spec`'s pool should name them
    (`tier_pool_config`).
    """
    say = say or _say()
    if replicas < 1:
        raise ConfigError(f"--api-replicas {replicas!r} must be at least 1")
    start_cluster(ray_port, say=say)
    connect(ray_port)
    from ray import serve

    serve.start(
        proxy_location="HeadOnly",
        http_options={"host": LOOPBACK, "port": http_port},
    )
    for tier in tiers:
        for name, port, bound in model_deployments(tier):
            say(f"serve: starting {name} on {LOOPBACK}:{port}")
            _run_with_progress(bound, name, None, say)
    app = (
        _front_deployment()
        .options(num_replicas=replicas, ray_actor_options={"num_cpus": replica_cpus})
        .bind(spec)
    )
    say(f"serve: deploying {replicas} replica(s) of the HTTP front ({', '.join(spec.graphs)})")
    _run_with_progress(app, APP_NAME, "/", say)
    url = f"http://{LOOPBACK}:{http_port}"
    say(f"ready: {url}/v1 ({replicas} replica(s) behind Serve's proxy; store {spec.store})")
    return 0


def _run_with_progress(
    app: Any, name: str, route_prefix: str | None, say: Callable[[str], None]
) -> None:
    """`serve.run` one application, printing its replicas' states until it runs."""
    from ray import serve

    errors: list[BaseException] = []

    def run() -> None:
        try:
            serve.run(app, name=name, route_prefix=route_prefix)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run, name="serve-run", daemon=True)
    worker.start()
    for line in _progress(worker, name):
        say(line)
    if errors:
        raise ServerStartError(f"the application {name!r} did not deploy on Ray Serve: {errors[0]}")


def _progress(worker: threading.Thread, name: str) -> Iterator[str]:
    last: dict[str, int] = {}
    while worker.is_alive():
        worker.join(timeout=1.0)
        with contextlib.suppress(Exception):  # status can lag the deploy call
            states = replica_states(name)
            if states and states != last:
                last = states
                yield f"serve: {name} replicas " + ", ".join(
                    f"{n} {s}" for s, n in sorted(states.items())
                )


def status(*, ray_port: int = 6379) -> int:
    """Print the cluster and the front's replicas; 1 when no cluster answers."""
    if not _listening(ray_port):
        print(f"no Ray cluster answers on {LOOPBACK}:{ray_port}")
        return 1
    ray = connect(ray_port)
    from ray import serve

    record = ClusterRecord.read(ray_port)
    owner = f"started by brickwork (pid {record.pid})" if record else "not started by brickwork"
    resources = ray.cluster_resources()
    print(f"ray: {LOOPBACK}:{ray_port}, {owner}, CPUs {resources.get('CPU', 0):g}")
    overview = serve.status()
    if APP_NAME not in overview.applications:
        print("serve: the HTTP front is not deployed")
    for app_name, app in sorted(overview.applications.items()):
        print(f"serve: application {app_name} {app.status.value}")
        for name, deployment in app.deployments.items():
            states = ", ".join(
                f"{count} {getattr(state, 'value', state)}"
                for state, count in deployment.replica_states.items()
            )
            print(f"  {name}: {deployment.status.value} ({states or 'no replicas'})")
    return 0


def down(*, ray_port: int = 6379) -> int:
    """Stop the head this module started on `ray_port`, or else remove only the front.

    A head started here goes with everything on it (Serve keeps its state in the head). On a
    cluster someone else runs, only the `brickwork` application is deleted.
    """
    say = _say()
    if ClusterRecord.read(ray_port) is None and _listening(ray_port):
        connect(ray_port)
        from ray import serve

        ours = [n for n in serve.status().applications if n == APP_NAME or n.startswith("model-")]
        for name in ours:
            serve.delete(name)
        say(f"serve: deleted {', '.join(ours) or 'nothing (no brickwork application)'}")
    if stop_cluster(ray_port):
        say(f"ray: stopped the head on {LOOPBACK}:{ray_port}")
    else:
        say(f"ray: no head started by brickwork on port {ray_port}; nothing else was stopped")
    return 0
