"""Admission control at twice the sustainable rate: excess refused at once, admitted runs stay fast.

    .venv/bin/python -m benchmarks.admission [--capacity 4] [--service-ms 100] [--seconds 10]

The model server is the instant server's answer (`benchmarks.instant_server.answer`) served by
a subprocess that holds each request for `--service-ms` with at most `--capacity` requests in
service at once: a model of fixed capacity whose sustainable rate is capacity / service time.
(With a zero service time the only capacity left is this process's CPU, and then no limit on
runs in flight keeps their latency at its idle value: every admitted run shares the one loop.)
The pool's endpoint declares `max_concurrency = capacity`, and the App uses the default limits
sized from it (`brickwork.admission.default_limits`): runs in flight = capacity, queue = half
of it, wait limit 10 s.

Two phases of open-loop arrivals (requests start on schedule whether or not earlier ones have
finished) of the one-node graph of `benchmarks.overhead` through `App.ainvoke`:

- idle: 0.25x the sustainable rate; its p99 latency is the reference;
- overload: 2x the sustainable rate.

Printed: the refusal latency (p50, p99, max; target p99 < 100 ms), the admitted runs' p99 and
its ratio to the idle p99 (target <= 2), and how many were admitted, refused, failed. Writes
benchmarks/results/admission.json. Not a timed test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.instant_server import InstantServer, answer
from benchmarks.overhead import TEXT, one_node_graph
from brickwork.admission import default_limits
from brickwork.app import App
from brickwork.errors import AdmissionRefused
from brickwork.evals.report import percentile
from brickwork.serving.client import EndpointConfig
from brickwork.serving.pool import ModelPool, PoolConfig

RESULTS = Path(__file__).parent / "results"


# -- the model server: instant answers, fixed capacity and service time ----------------------


async def _serve(port: int, capacity: int, service_s: float) -> None:
    slots = asyncio.Semaphore(capacity)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {
                    k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
                }
                length = int(headers.get("content-length", "0") or 0)
                raw = await reader.readexactly(length) if length else b""
                if method == "POST" and path.endswith("/chat/completions"):
                    async with slots:
                        await asyncio.sleep(service_s)
                    payload = json.dumps(answer(json.loads(raw))).encode()
                else:
                    payload = json.dumps({"data": [{"id": "instant", "object": "model"}]}).encode()
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

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


class CapacityServer(InstantServer):
    """The server in a subprocess: `with CapacityServer(4, 0.1) as server: server.base_url`."""

    def __init__(self, capacity: int, service_s: float) -> None:
        super().__init__()
        self.capacity, self.service_s = capacity, service_s

    def command(self) -> list[str]:
        """`python -m benchmarks.admission --serve PORT` with this capacity and service time."""
        return [
            sys.executable, "-m", "benchmarks.admission", "--serve", str(self.port),
            "--capacity", str(self.capacity), "--service-ms", str(self.service_s * 1000),
        ]  # fmt: skip


def capacity_pool(base_url: str, capacity: int) -> ModelPool:
    def endpoint(name: str, stand_in: bool) -> EndpointConfig:
        return EndpointConfig(
            name=name, base_url=base_url, model="instant", kind="vllm", stand_in=stand_in,
            max_concurrency=capacity, read_timeout_s=600, connect_timeout_s=60,
        )  # fmt: skip

    return ModelPool(
        PoolConfig(models={"slm": [endpoint("model", False)], "frontier": [endpoint("f", True)]})
    )


# -- the load ---------------------------------------------------------------------------------


async def _phase(app: App, rate: float, seconds: float) -> dict[str, Any]:
    admitted: list[float] = []
    refused: list[float] = []
    failed = 0

    async def one() -> None:
        nonlocal failed
        started = time.perf_counter()
        try:
            result = await app.ainvoke(TEXT, mode="slm")
        except AdmissionRefused:
            refused.append(time.perf_counter() - started)
            return
        admitted.append(time.perf_counter() - started)
        if not result.ok:
            failed += 1

    total = int(rate * seconds)
    tasks = []
    begin = time.perf_counter()
    for i in range(total):
        delay = begin + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)

    def ms(values: list[float], q: float) -> float | None:
        return round(percentile(values, q) * 1000, 2) if values else None

    return {
        "rate_per_s": rate,
        "requests": total,
        "admitted": len(admitted),
        "refused": len(refused),
        "failed": failed,
        "admitted_p50_ms": ms(admitted, 0.5),
        "admitted_p99_ms": ms(admitted, 0.99),
        "refusal_p50_ms": ms(refused, 0.5),
        "refusal_p99_ms": ms(refused, 0.99),
        "refusal_max_ms": round(max(refused) * 1000, 2) if refused else None,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    service_s = args.service_ms / 1000
    sustainable = args.capacity / service_s
    with CapacityServer(args.capacity, service_s) as server:
        pool = capacity_pool(server.base_url, args.capacity)
        limits = default_limits(pool)
        app = App(one_node_graph(), pool=pool, checkpoints=None, admission=limits)
        try:
            for _ in range(8):  # warm up: connections, graph, first-run costs
                await app.ainvoke(TEXT, mode="slm")
            idle = await _phase(app, sustainable * 0.25, args.seconds)
            overload = await _phase(app, sustainable * 2, args.seconds)
        finally:
            await app.aclose()
            await pool.aclose()
    ratio = (
        overload["admitted_p99_ms"] / idle["admitted_p99_ms"]
        if overload["admitted_p99_ms"] and idle["admitted_p99_ms"]
        else None
    )
    return {
        "capacity": args.capacity,
        "service_ms": args.service_ms,
        "sustainable_per_s": sustainable,
        "limits": {
            "max_in_flight": limits.max_in_flight,
            "max_queue": limits.max_queue,
            "max_wait_s": limits.max_wait_s,
        },
        "idle": idle,
        "overload": overload,
        "admitted_p99_ratio": None if ratio is None else round(ratio, 2),
        "refusal_p99_ms": overload["refusal_p99_ms"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.admission")
    parser.add_argument("--capacity", type=int, default=4, help="model requests in service")
    parser.add_argument("--service-ms", type=float, default=100.0, help="time per request")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(sys.argv[1:])
    if args.serve is not None:
        asyncio.run(_serve(args.serve, args.capacity, args.service_ms / 1000))
        return
    report = asyncio.run(run(args))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "admission.json").write_text(json.dumps(report, indent=2))
    idle, over = report["idle"], report["overload"]
    print(
        f"sustainable {report['sustainable_per_s']:g}/s (capacity {report['capacity']}, "
        f"{report['service_ms']:g} ms), limits {report['limits']}\n"
        f"idle     {idle['rate_per_s']:g}/s: {idle['admitted']} admitted, {idle['refused']} "
        f"refused, p50 {idle['admitted_p50_ms']} ms, p99 {idle['admitted_p99_ms']} ms\n"
        f"overload {over['rate_per_s']:g}/s: {over['admitted']} admitted, {over['refused']} "
        f"refused, {over['failed']} failed, p50 {over['admitted_p50_ms']} ms, "
        f"p99 {over['admitted_p99_ms']} ms\n"
        f"refusal latency p50 {over['refusal_p50_ms']} ms, p99 {over['refusal_p99_ms']} ms, "
        f"max {over['refusal_max_ms']} ms (target p99 < 100 ms)\n"
        f"admitted p99 / idle p99 = {report['admitted_p99_ratio']} (target <= 2)"
    )


if __name__ == "__main__":
    main()
