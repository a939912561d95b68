"""Serving throughput of the shared local vLLM through the pool, at several concurrencies.

    .venv/bin/python -m benchmarks.serving [--url http://127.0.0.1:8321/v1] [--requests 32]

Without --url it reuses a running `brickwork serve`, or starts a private server (and reports
its start-up time). Prints requests/s and output tokens/s per concurrency, with and without a
JSON-schema constraint, and writes benchmarks/results/serving.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

from brickwork._demo import SmartHomeCommand
from brickwork.serving.local import LocalServing, pool_config_for
from brickwork.serving.models import EMBEDDED_MODEL
from brickwork.serving.pool import ModelPool

RESULTS = Path(__file__).parent / "results"


async def _measure(
    pool: ModelPool, model: str, concurrency: int, total: int, schema: bool
) -> dict[str, Any]:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    tokens = 0

    async def one(i: int) -> None:
        nonlocal tokens
        messages = [{"role": "user", "content": f"Set the room {i} lights to {i % 100} percent"}]
        options: dict[str, Any] = {"max_tokens": 40}
        if schema:
            options["json_schema"] = SmartHomeCommand.model_json_schema()
        async with gate:
            completion = await pool.complete(model, messages, **options)
        latencies.append(completion.latency_s)
        tokens += completion.usage.completion_tokens

    await one(-1)  # warm-up
    latencies.clear()
    tokens = 0
    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(total)))
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "model": model,
        "concurrency": concurrency,
        "json_schema": schema,
        "requests": total,
        "requests_per_s": total / wall,
        "output_tokens_per_s": tokens / wall,
        "p50_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))],
    }


async def run(url: str, served: str, requests: int, models: list[str]) -> list[dict[str, Any]]:
    rows = []
    async with ModelPool(pool_config_for(url, served)) as pool:
        for model in models:
            for schema in (True, False):
                for concurrency in (1, 16, 32):
                    total = max(8, requests if concurrency > 1 else requests // 4)
                    row = await _measure(pool, model, concurrency, total, schema)
                    rows.append(row)
                    print(
                        f"{model:>16} schema={schema!s:5} c={concurrency:>3}: "
                        f"{row['requests_per_s']:6.2f} req/s "
                        f"{row['output_tokens_per_s']:7.1f} tok/s "
                        f"p50 {row['p50_ms']:6.0f} ms p95 {row['p95_ms']:6.0f} ms",
                        flush=True,
                    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="base URL of a running vLLM (default: local)")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--adapter", action="append", default=[], help="also measure slm:NAME")
    args = parser.parse_args()
    models = ["slm", *(f"slm:{a}" for a in args.adapter)]
    startup = None
    if args.url:
        rows = asyncio.run(run(args.url, EMBEDDED_MODEL.served_name, args.requests, models))
    else:
        started = time.perf_counter()
        with LocalServing(large=False, merge_specialists=False) as local:
            if local.server is not None:
                startup = time.perf_counter() - started
                print(f"private server ready in {startup:.1f} s")
            rows = asyncio.run(run(local.base_url, local.served_name, args.requests, models))
    one = next(r for r in rows if r["concurrency"] == 1 and r["json_schema"])
    sixteen = next(r for r in rows if r["concurrency"] == 16 and r["json_schema"])
    print(
        f"ratio req/s at 16 vs 1 concurrent (JSON schema): "
        f"{sixteen['requests_per_s'] / one['requests_per_s']:.2f}x"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "serving.json").write_text(
        json.dumps({"startup_s": startup, "rows": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
