"""The HTTP front as Ray Serve replicas on a real local Ray cluster, over the real PostgreSQL.

One cluster for the module: `brickwork deploy ray` (a subprocess, as a user runs it) starts a
Ray head on loopback and two replicas of the front against the instant model server
(`benchmarks/instant_server.py`: no model, so the replicas and the store are what is tested),
run as two supervised slm servers, each inside a Serve replica of its own;
`brickwork deploy down` stops it. The last test kills one front replica under load (Serve
replaces it), with clients that retry with their `Idempotency-Key`. Override the store with
BRICKWORK_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from benchmarks.failover import keyed_post
from benchmarks.instant_server import free_port
from brickwork.http.idempotency import run_id_for
from brickwork.store import RunStore

pytest.importorskip("ray.serve")
psutil = pytest.importorskip("psutil")

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PG_URL = os.environ.get("BRICKWORK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BRICKWORK = str(Path(sys.executable).with_name("brickwork"))
REPLICAS = 2
SLM_REPLICAS = 2
ROOT = Path(__file__).resolve().parents[2]
REQUEST = {
    "model": "smart_home",
    "messages": [{"role": "user", "content": "turn on the kitchen lights"}],
}


@dataclass
class Cluster:
    url: str
    ray_port: int
    slm_ports: tuple[int, ...]
    env: dict[str, str]
    deploy_output: str


def _free_ports(n: int) -> int:
    """A port p with p..p+n-1 all free on 127.0.0.1."""
    for _ in range(50):
        base = free_port()
        try:
            for port in range(base, base + n):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no run of free ports")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    state = tmp_path_factory.mktemp("ray-state")
    # The slm servers are started by Ray workers: they find `benchmarks` on the path.
    env = {**os.environ, "BRICKWORK_STATE_DIR": str(state), "PYTHONPATH": str(ROOT)}
    ray_port, http_port, slm_port = free_port(), free_port(), _free_ports(SLM_REPLICAS)
    instant = f"{sys.executable} -m benchmarks.instant_server --port {{port}}"
    command = [BRICKWORK, "deploy", "ray", "--api-replicas", str(REPLICAS), "--store", PG_URL]
    command += ["--slm-replicas", str(SLM_REPLICAS), "--slm-command", instant]
    command += ["--slm-name", "instant", "--slm-port", str(slm_port), "--slm-cpus", "0.25"]
    command += ["--ray-port", str(ray_port), "--http-port", str(http_port)]
    try:
        done = subprocess.run(
            command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
        ports = tuple(range(slm_port, slm_port + SLM_REPLICAS))
        yield Cluster(f"http://127.0.0.1:{http_port}", ray_port, ports, env, done.stderr)
    finally:
        record = json.loads((state / f"ray-{ray_port}.json").read_text())
        down = [BRICKWORK, "deploy", "down", "--ray-port", str(ray_port)]
        subprocess.run(down, env=env, capture_output=True, text=True, timeout=180)
        assert not (state / f"ray-{ray_port}.json").exists()
        _wait_gone(record, timeout_s=60)
        deadline = time.monotonic() + 30
        slm = range(slm_port, slm_port + SLM_REPLICAS)
        while any(_server_pid(p) for p in slm) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(_server_pid(p) for p in slm), "a model server outlived its replica"


def _ours(record: dict) -> dict[int, str]:
    """Processes of the cluster: the head's group and the actors started since."""
    found = {}
    for process in psutil.process_iter(["pid", "name", "create_time"]):
        try:
            if process.info["create_time"] >= record["started_at"] - 1 and (
                os.getpgid(process.pid) == record["pid"] or process.name().startswith("ray::")
            ):
                found[process.pid] = process.name()
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return found


def _wait_gone(record: dict, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while (left := _ours(record)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"processes left after deploy down: {left}"


async def _ask(
    client: httpx.AsyncClient, url: str, n: int, concurrency: int
) -> list[httpx.Response]:
    gate = asyncio.Semaphore(concurrency)

    async def one() -> httpx.Response:
        async with gate:
            return await client.post(f"{url}/v1/chat/completions", json=REQUEST)

    return await asyncio.gather(*(one() for _ in range(n)))


def test_deploy_shows_progress_and_status_lists_the_replicas(cluster: Cluster) -> None:
    assert "serve: brickwork replicas" in cluster.deploy_output
    for index, port in enumerate(cluster.slm_ports):
        assert f"serve: starting model-slm-{index} on 127.0.0.1:{port}" in cluster.deploy_output
    assert f"{REPLICAS} RUNNING" in cluster.deploy_output
    status = subprocess.run(
        [BRICKWORK, "deploy", "status", "--ray-port", str(cluster.ray_port)],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0, status.stderr
    assert "started by brickwork" in status.stdout
    assert f"front: HEALTHY ({REPLICAS} RUNNING)" in status.stdout
    for index in range(SLM_REPLICAS):
        assert f"model-slm-{index}: HEALTHY (1 RUNNING)" in status.stdout


def _server_pid(port: int) -> int | None:
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return conn.pid
    return None


async def test_a_killed_model_server_fails_over_and_serve_replaces_it(cluster: Cluster) -> None:
    port = cluster.slm_ports[0]
    before = _server_pid(port)
    assert before is not None
    os.kill(before, signal.SIGKILL)
    async with httpx.AsyncClient(timeout=120) as client:
        # While it is down, the pool fails over to the other slm replica: no run fails.
        replies = await _ask(client, cluster.url, n=12, concurrency=4)
        assert [r.status_code for r in replies] == [200] * 12, replies[0].text
        deadline = time.monotonic() + 90
        while (after := _server_pid(port)) in (None, before) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        assert after not in (None, before), "Serve did not replace the dead model server"
        replies = await _ask(client, cluster.url, n=4, concurrency=4)
        assert [r.status_code for r in replies] == [200] * 4


async def test_runs_spread_over_replicas_and_all_land_in_the_shared_store(
    cluster: Cluster,
) -> None:
    async with httpx.AsyncClient(timeout=120) as client:
        replies = await _ask(client, cluster.url, n=24, concurrency=8)
        assert [r.status_code for r in replies] == [200] * 24, replies[0].text
        served_by = {r.headers["x-brickwork-replica"] for r in replies}
        assert len(served_by) == REPLICAS
        run_ids = [r.json()["brickwork"]["run_id"] for r in replies]
        # Any replica reads any run: the store is shared, not the replica's memory.
        lookups = [await client.get(f"{cluster.url}/v1/runs/{run_id}") for run_id in run_ids]
    assert [r.status_code for r in lookups] == [200] * len(run_ids)
    # Both replicas made runs (above), so whichever replica Serve sends the lookups to (it may
    # send every sequential one to the same replica), some run is read by the other one.
    made_by = dict(zip(run_ids, (r.headers["x-brickwork-replica"] for r in replies), strict=True))
    read_by = [r.headers["x-brickwork-replica"] for r in lookups]
    assert any(made_by[run_id] != reader for run_id, reader in zip(run_ids, read_by, strict=True))
    store = RunStore(PG_URL)
    try:
        for run_id in run_ids:
            found = store.run(run_id)
            assert found is not None, run_id
            summary, events = found
            assert (summary.status, summary.source, summary.graph) == ("ok", "api", "smart_home")
            assert events
    finally:
        store.close()


def test_every_ray_listener_is_on_loopback_but_serve_replicas_internal_grpc(
    cluster: Cluster,
) -> None:
    record = json.loads(
        (Path(cluster.env["BRICKWORK_STATE_DIR"]) / f"ray-{cluster.ray_port}.json").read_text()
    )
    ours = _ours(record)
    connections = [c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    listeners = [(c.laddr.ip, c.laddr.port, ours[c.pid]) for c in connections if c.pid in ours]
    assert (("127.0.0.1", cluster.ray_port) in {(ip, port) for ip, port, _ in listeners}) or (
        ("::ffff:127.0.0.1", cluster.ray_port) in {(ip, port) for ip, port, _ in listeners}
    )
    loopback = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}
    elsewhere = [entry for entry in listeners if entry[0] not in loopback]
    # Ray 2.60 binds each Serve replica's inter-deployment gRPC server to [::]:0
    # (ray/serve/_private/replica.py, `_on_initialized`); nothing else may leave loopback.
    assert all(name.startswith("ray::ServeReplica") for _, _, name in elsewhere), elsewhere
    # One such server per replica process (a replica Serve is replacing may still hold its own).
    per_process = Counter(
        c.pid for c in connections if c.pid in ours and c.laddr.ip not in loopback
    )
    assert all(n == 1 for n in per_process.values()), per_process


async def test_a_killed_front_replica_costs_clients_that_retry_with_their_key_nothing(
    cluster: Cluster,
) -> None:
    # Last in the module: Serve replaces the killed replica, the other tests need not wait.
    store = RunStore(PG_URL)
    t0 = time.time()
    keys = [f"ray-{uuid.uuid4()}" for _ in range(60)]
    expected = {run_id_for("default", key): key for key in keys}
    url = f"{cluster.url}/v1/chat/completions"
    try:
        async with httpx.AsyncClient(timeout=120) as client:
            gate = asyncio.Semaphore(8)
            answered: list[httpx.Response] = []

            async def one(key: str) -> tuple[httpx.Response | None, list[int]]:
                async with gate:
                    reply, tried = await keyed_post(client, url, REQUEST, key)
                if reply is not None:
                    answered.append(reply)
                return reply, tried

            tasks = [asyncio.create_task(one(key)) for key in keys]
            while len(answered) < 8:  # under load: kill one replica as runs are in flight
                await asyncio.sleep(0.02)
            victim = answered[0].headers["x-brickwork-replica"].rsplit(":", 1)[1]
            os.kill(int(victim), signal.SIGKILL)
            outcomes = await asyncio.gather(*tasks)
            # Every client got an answer naming its own run: the retry of a request the killed
            # replica had found its run (resumed it, or answered its stored outcome).
            for (reply, tried), key in zip(outcomes, keys, strict=True):
                assert reply is not None, (key, tried)
                assert reply.json()["brickwork"]["run_id"] == run_id_for("default", key), tried
            # The store holds exactly one run per key (no retry started a second one), none
            # left running; any still interrupted resumes.
            started = {s.run_id: s for s in store.runs(since=t0, source="api", limit=1000)}
            assert set(started) == set(expected)
            interrupted = []
            for run_id, summary in started.items():
                deadline = time.monotonic() + 60
                while summary.status == "running" and time.monotonic() < deadline:
                    shown = (await client.get(f"{cluster.url}/v1/runs/{run_id}")).json()
                    summary = replace(summary, status=shown["status"])
                    await asyncio.sleep(0.2)
                assert summary.status in ("ok", "interrupted"), (run_id, summary.status)
                if summary.status == "interrupted":
                    interrupted.append(run_id)
            resumed = [
                await client.post(f"{cluster.url}/v1/runs/{run_id}/resume")
                for run_id in interrupted
            ]
    finally:
        store.close()
    codes = [reply.status_code for reply, _ in outcomes if reply is not None]
    retried = [tried for _, tried in outcomes if len(tried) > 1]
    print(
        f"\nkilled replica {victim} under load: {codes.count(200)} of {len(codes)} answered 200 "
        f"in the end, {len(retried)} after a retry (tries: {sorted(retried)}); {len(started)} "
        f"runs in the store for {len(keys)} keys; {len(interrupted)} left interrupted, resumed: "
        f"{[r.status_code for r in resumed]}"
    )
    assert set(codes) == {200}
    assert [r.status_code for r in resumed] == [200] * len(interrupted)
