"""Capacity of each running local tier at saturation: the figure the price book divides by.

    .venv/bin/python -m benchmarks.tier_capacity [--slm URL --slm-model NAME]
        [--large URL --large-model NAME] [--in-flight 1,4,8,16,32] [--requests 32]

A self-hosted tier is priced as its hardware's cost spread over the tokens it can serve
(`SelfHostedPrice.tokens_per_s_capacity`), so the price ratio of two tiers is the ratio of
their capacities. Capacity is a plateau, not one point: this sweeps the number of requests in
flight and keeps the best tokens/s (prompt + completion, as the price book counts them) for
each tier. The requests are the schema-constrained smart_home tool calls the example graph
sends, over the skill's own example phrasings (varied prompts: vLLM's prefix cache still
shares the system prompt, as it does in production). Tiers are measured one after the other
on servers that are already running (`brickwork serve` and `brickwork serve --large --port
8322`), each on its own core; prints one line per (tier, in flight), the plateau, the
$ per 1M tokens at the price book's $/hour, and the load average. Shared machines are noisy:
the ratio is the useful part.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx

from brickwork._demo import tool_call_bodies
from brickwork.cost.prices import CPU_SELF_HOSTED, LARGE_CPU_SELF_HOSTED

RESULTS = Path(__file__).parent / "results"


def _bodies(model: str) -> list[dict[str, Any]]:
    return [{**body, "model": model} for body in tool_call_bodies()]


async def _sweep(url: str, model: str, levels: list[int], requests: int) -> list[dict[str, Any]]:
    bodies = _bodies(model)
    rows: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(1800.0)) as http:

        async def one(body: dict[str, Any]) -> int:
            response = await http.post("/chat/completions", json=body)
            response.raise_for_status()
            usage = response.json()["usage"]
            return int(usage["prompt_tokens"]) + int(usage["completion_tokens"])

        await asyncio.gather(*(one(body) for body in bodies[:2]))  # warm-up
        for in_flight in levels:
            total = max(requests, in_flight)
            queue = itertools.islice(itertools.cycle(bodies), total)
            semaphore = asyncio.Semaphore(in_flight)

            async def bounded(body: dict[str, Any], gate: asyncio.Semaphore = semaphore) -> int:
                async with gate:
                    return await one(body)

            started = time.perf_counter()
            tokens = await asyncio.gather(*(bounded(body) for body in queue))
            wall = time.perf_counter() - started
            row = {
                "in_flight": in_flight,
                "requests": total,
                "tokens_per_s": sum(tokens) / wall,
                "requests_per_s": total / wall,
                "load": os.getloadavg()[0],
            }
            rows.append(row)
            print(
                f"  in flight {in_flight:>3}: {row['tokens_per_s']:8,.0f} tokens/s "
                f"{row['requests_per_s']:6.2f} requests/s  (load {row['load']:.1f})",
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slm", default="http://127.0.0.1:8321/v1")
    parser.add_argument("--slm-model", default="smart_home-specialist")
    parser.add_argument("--large", default="http://127.0.0.1:8322/v1")
    parser.add_argument("--large-model", default="qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--in-flight", default="1,4,8,16,32")
    parser.add_argument("--requests", type=int, default=32, help="requests per level")
    args = parser.parse_args()
    levels = [int(level) for level in args.in_flight.split(",")]
    prices = {"slm": CPU_SELF_HOSTED, "large": LARGE_CPU_SELF_HOSTED}
    report: dict[str, Any] = {}
    for tier, url, model in (
        ("slm", args.slm, args.slm_model),
        ("large", args.large, args.large_model),
    ):
        print(f"{tier}: {model} at {url}", flush=True)
        rows = asyncio.run(_sweep(url, model, levels, args.requests))
        best = max(rows, key=lambda row: row["tokens_per_s"])
        usd_per_mtok = prices[tier].gpu_usd_per_hour / (best["tokens_per_s"] * 3600) * 1e6
        report[tier] = {"model": model, "rows": rows, "plateau": best, "usd_per_mtok": usd_per_mtok}
        print(
            f"  plateau: {best['tokens_per_s']:,.0f} tokens/s at {best['in_flight']} in flight; "
            f"${prices[tier].gpu_usd_per_hour}/h -> ${usd_per_mtok:.4f} per 1M tokens "
            f"(price book today: {prices[tier].tokens_per_s_capacity:,.0f} tokens/s)",
            flush=True,
        )
    ratio = report["large"]["usd_per_mtok"] / report["slm"]["usd_per_mtok"]
    print(f"a large-tier token costs {ratio:.1f}x a small-tier token at the plateaus")
    report["ratio"] = ratio
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tier_capacity.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
