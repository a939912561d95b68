"""Recovery of a killed vLLM instance under load: kill -9, time to the first good answer.

    .venv/bin/python -m benchmarks.restart [--clients 32] [--cores 1] [--kill leader|engine]

Starts a private server of the embedded model (on `--cores`), runs `--clients` concurrent
clients that send schema-constrained requests through a `ModelPool` in a loop (as an App's
runs would, with the pool's own retries and circuit breaker; a client whose request failed
waits 0.5 s before the next), lets the load settle, then sends SIGKILL to the API server (the
process group leader) or to the engine core process. Prints the timeline: when the launcher
saw the death, when the new process was spawned and ready, and the time from the kill to the
first successful answer, with the load average beside it. Writes
benchmarks/results/restart.json. Target: back and serving within 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from brickwork.errors import BrickworkError
from brickwork.serving.launcher import (
    RestartPolicy,
    ServerSpec,
    VLLMServer,
    group_members,
    parse_cores,
)
from brickwork.serving.local import pool_config_for
from brickwork.serving.models import ensure_embedded_model
from brickwork.serving.pool import ModelPool

RESULTS = Path(__file__).parent / "results"
SCHEMA = {
    "type": "object",
    "properties": {"device": {"type": "string"}, "state": {"enum": ["on", "off"]}},
    "required": ["device", "state"],
}


def _engine_pid(leader: int) -> int | None:
    """The engine core: a process of the leader's group other than the leader itself."""
    others = [pid for pid in group_members(leader) if pid != leader]
    for pid in others:
        with contextlib.suppress(OSError):
            if "EngineCore" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                return pid
    return others[0] if others else None


async def _run(
    server: VLLMServer, clients: int, settle_s: float, kill: str, limit_s: float
) -> dict[str, Any]:
    stop = asyncio.Event()
    killed_at: float | None = None
    first_ok: float | None = None
    counts = {"ok": 0, "failed": 0}
    events: list[tuple[float, str]] = []
    server.on_event = lambda line: events.append((time.monotonic(), line))

    async with ModelPool(pool_config_for(server.base_url, server.spec.served_name)) as pool:

        async def client(i: int) -> None:
            nonlocal first_ok
            messages = [{"role": "user", "content": f"Turn the lamp {i} on"}]
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    await pool.complete("slm", messages, json_schema=SCHEMA, max_tokens=24)
                except BrickworkError:
                    counts["failed"] += 1
                    await asyncio.sleep(0.5)
                    continue
                counts["ok"] += 1
                if killed_at is not None and sent > killed_at and first_ok is None:
                    first_ok = time.monotonic()
                    stop.set()

        tasks = [asyncio.create_task(client(i)) for i in range(clients)]
        await asyncio.sleep(settle_s)
        leader = server.pid
        assert leader is not None
        victim = leader if kill == "leader" else (_engine_pid(leader) or leader)
        before = dict(counts)
        load = os.getloadavg()[0]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=limit_s)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "clients": clients,
        "killed": kill,
        "load_at_kill": load,
        "load_after": os.getloadavg()[0],
        "ok_before_kill": before["ok"],
        "first_answer_s": None if first_ok is None else first_ok - killed_at,
        "ready_after_start_s": server.ready_after_s,
        "events": [(round(t - killed_at, 1), line) for t, line in events],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--cores", default="1", help="cores of the instance ('1', '0,1')")
    parser.add_argument("--kill", choices=("leader", "engine"), default="leader")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds of load before")
    parser.add_argument("--limit", type=float, default=600.0, help="give up after (s)")
    args = parser.parse_args()
    spec = ServerSpec(
        model=ensure_embedded_model(quiet=True),
        served_name="restart-victim",
        cores=parse_cores(args.cores),
    )
    with VLLMServer(spec, progress=False, ready_timeout_s=900, restart=RestartPolicy()) as server:
        row = asyncio.run(_run(server, args.clients, args.settle, args.kill, args.limit))
    for at, line in row["events"]:
        print(f"  +{at:6.1f} s  {line}")
    first = row["first_answer_s"]
    print(
        f"kill -9 ({row['killed']}) under {row['clients']}-way load: first successful answer "
        f"{'never (limit)' if first is None else f'{first:.1f} s'} after the kill "
        f"(target 60 s; load average {row['load_at_kill']:.1f} at the kill, "
        f"{row['load_after']:.1f} after)",
        flush=True,
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "restart.json").write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
