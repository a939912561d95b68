"""What recording a run's start costs on the PostgreSQL store (`RunStore.records_starts`).

    .venv/bin/python -m benchmarks.start_rows [--runs 300]

One `App` on the two-step test graph with a fake model (no model time, no checkpointer), its
runs stored in the real PostgreSQL, run one at a time: the median and p95 of a run's latency
with start rows (the default for PostgreSQL: a row written as the run starts, and an advisory
lock held while it runs) and without (the store told not to record starts), interleaved in
blocks of 25 so that a load change on a shared machine hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

from benchmarks.deploy import PG_URL
from brickwork.app import App
from brickwork.store import RunStore
from brickwork.testing import FunctionModel

GRAPH = str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "two_step_graph.py")


async def measure(runs: int) -> dict[str, object]:
    store = RunStore(PG_URL)
    timings: dict[bool, list[float]] = {True: [], False: []}
    async with FunctionModel(lambda body: '{"n": 7}').pool() as pool:
        app = App.from_graph(GRAPH, pool=pool, store=store, checkpoints=None)
        await app.ainvoke("warm up")
        for block in range(2 * runs // 25):
            starts = block % 2 == 0
            store.records_starts = starts  # type: ignore[misc]
            for _ in range(25):
                began = time.perf_counter()
                await app.ainvoke("seven")
                timings[starts].append(time.perf_counter() - began)
        await app.aclose()
    store.close()

    def summary(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {
            "median_ms": round(statistics.median(ordered) * 1000, 2),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 2),
        }

    with_rows, without = summary(timings[True]), summary(timings[False])
    return {
        "runs_each": len(timings[True]),
        "with_start_rows": with_rows,
        "without": without,
        "added_median_ms": round(with_rows["median_ms"] - without["median_ms"], 2),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    print(json.dumps(asyncio.run(measure(parser.parse_args(argv).runs)), indent=2))


if __name__ == "__main__":
    main()
