"""Scale: 1,000 concurrent `App` runs against the instant server; runs/s and peak memory.

    .venv/bin/python -m benchmarks.scale [--runs 1000] [--graph one_node|smart_home]

All runs are started at once on one App and one pool (its endpoint allows 256 requests in
flight); the instant server (`benchmarks.instant_server`) answers at once, in a subprocess, so
the numbers are the framework's. Peak RSS is this process's high-water mark (`ru_maxrss`),
imports and, for smart_home, the MiniLM encoder included. Writes benchmarks/results/scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.instant_server import InstantServer
from benchmarks.overhead import TEXT, instant_pool, one_node_graph
from brickwork.app import App

RESULTS = Path(__file__).parent / "results"
GIB = 1024**3


def _rss_now() -> int:
    """Current resident set size in bytes (Linux /proc)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with InstantServer() as server:
        async with instant_pool(server.base_url) as pool:
            if args.graph == "smart_home":
                app = App.from_graph("graphs.smart_home", pool=pool)
            else:
                app = App(one_node_graph(), pool=pool)
            await app.ainvoke(TEXT, mode="slm")  # warm up: build the graph, load encoders
            before = _rss_now()
            started = time.perf_counter()
            results = await asyncio.gather(
                *(app.ainvoke(TEXT, mode="slm") for _ in range(args.runs)), return_exceptions=True
            )
            wall = time.perf_counter() - started
            await app.aclose()
    statuses = Counter(
        r.status if not isinstance(r, BaseException) else "exception" for r in results
    )
    reasons = Counter(
        repr(r)[:160] if isinstance(r, BaseException) else (r.error or "")[:160]
        for r in results
        if isinstance(r, BaseException) or not r.ok
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "graph": args.graph,
        "runs": args.runs,
        "wall_s": wall,
        "runs_per_s": args.runs / wall,
        "statuses": dict(statuses),
        "errors": args.runs - statuses.get("ok", 0),
        "top_errors": reasons.most_common(3),
        "rss_before_mb": before / 2**20,
        "peak_rss_mb": peak / 2**20,
        "under_1_gib": peak < GIB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--graph", choices=("one_node", "smart_home"), default="one_node")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(
        f"{report['runs']} concurrent runs of {report['graph']}: {report['runs_per_s']:.0f} runs/s "
        f"({report['wall_s']:.1f} s), errors {report['errors']} {report['statuses']}, "
        f"RSS {report['rss_before_mb']:.0f} MB before, peak {report['peak_rss_mb']:.0f} MB "
        f"({'under' if report['under_1_gib'] else 'OVER'} 1 GiB)"
    )
    for reason, count in report["top_errors"]:
        print(f"  {count} x {reason}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"scale_{args.graph}.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
