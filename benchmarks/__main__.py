"""`python -m benchmarks` (what `make bench` runs): every benchmark, then the targets, checked.

Runs, one after the other, each writing its JSON under benchmarks/results/:
overhead against the instant server (raw client, bare LangGraph and brickwork side by side at
concurrency 1 and 32), overhead against the real local vLLM (1, 8, 32), scale with 1,000
concurrent runs (one-node graph and smart_home), the serving benchmark, admission control at
twice the sustainable rate, placement (two vLLM instances on their own cores, each against its
solo throughput) and restart (kill -9 under 32-way load, time to the first good answer). Then
prints the issue's targets next to what was measured, and writes them to
benchmarks/results/summary.json and summary.txt.
`benchmarks.large_model` (the local top tier in float32/bfloat16 on one and two cores; many
minutes, about 8 GB of memory) runs only by hand.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import admission, overhead, placement, restart, scale, serving

RESULTS = Path(__file__).parent / "results"

RUNS: list[tuple[Callable[[], None], list[str]]] = [
    (overhead.main, ["overhead"]),
    (
        overhead.main,
        ["overhead", "--server", "vllm", "--concurrency", "1,8,32", "--requests", "96"],
    ),
    (scale.main, ["scale", "--graph", "one_node"]),
    (scale.main, ["scale", "--graph", "smart_home"]),
    (serving.main, ["serving"]),
    (admission.main, ["admission"]),
    (placement.main, ["placement"]),
    (restart.main, ["restart"]),
]


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def targets() -> list[dict[str, Any]]:
    """Each target of the benchmarks issue with the value measured in this run."""
    rows: list[dict[str, Any]] = []

    def add(target: str, measured: float | None, limit: float, at_most: bool, unit: str) -> None:
        met = None if measured is None else (measured <= limit if at_most else measured >= limit)
        rows.append({"target": target, "limit": limit, "at_most": at_most, "unit": unit,
                     "measured": measured, "met": met})  # fmt: skip

    instant = _load("overhead.json")
    for verdict in (instant or {}).get("verdicts", []):
        if verdict["leg"] == "brickwork":  # the App's defaults: durable checkpoints and store
            client = "openai SDK" if verdict.get("baselines") == "openai_sdk" else "httpx2"
            add(f"App {verdict['target']} ({client} baselines)", verdict["measured"],
                verdict["limit"], verdict["at_most"], verdict["unit"])  # fmt: skip
    vllm = _load("overhead_vllm.json")
    at32 = (vllm or {}).get("levels", {}).get("32", {}).get("added", {}).get("brickwork")
    ratio = ((at32 or {}).get("same_client") or {}).get("throughput_ratio")
    add("throughput brickwork/raw (local vLLM, c=32)", ratio, 0.97, False, "x")  # fmt: skip
    for graph in ("one_node", "smart_home"):
        report = _load(f"scale_{graph}.json")
        add(f"1,000 concurrent runs ({graph}): errors",
            report and report["errors"], 0, True, "runs")  # fmt: skip
        add(f"1,000 concurrent runs ({graph}): peak RSS",
            report and report["peak_rss_mb"], 1024, True, "MB")  # fmt: skip
    gate = _load("admission.json")
    add("admission at 2x sustainable: refusal p99",
        gate and gate["refusal_p99_ms"], 100.0, True, "ms")  # fmt: skip
    add("admission at 2x sustainable: admitted p99 / idle p99",
        gate and gate["admitted_p99_ratio"], 2.0, True, "x")  # fmt: skip
    placed = _load("placement.json")
    add("two vLLM instances together / solo (the worse)",
        placed and min(placed["ratios"].values()), 0.8, False, "x")  # fmt: skip
    restarted = _load("restart.json")
    add("kill -9 under 32-way load: first answer after",
        restarted and restarted["first_answer_s"], 60.0, True, "s")  # fmt: skip
    return rows


def summary_text(rows: list[dict[str, Any]]) -> str:
    """One line per target: measured, limit, met or not."""
    lines = []
    for row in rows:
        sign = "<=" if row["at_most"] else ">="
        measured = "not measured" if row["measured"] is None else f"{row['measured']:.3g}"
        verdict = {True: "MET", False: "NOT MET", None: "-"}[row["met"]]
        lines.append(
            f"{row['target']:<48} {measured:>12} {row['unit']:<4} "
            f"(target {sign} {row['limit']:g})  {verdict}"
        )
    return "\n".join(lines)


def main() -> None:
    """Run every benchmark, then check the targets."""
    for bench, argv in RUNS:
        print(f"\n=== python -m benchmarks.{' '.join(argv)}", flush=True)
        sys.argv = argv
        bench()
    rows = targets()
    text = summary_text(rows)
    print("\n=== targets\n" + text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps(rows, indent=2))
    (RESULTS / "summary.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
