"""Base model vs LoRA adapter vs the adapter merged into its own weights, on the local vLLM.

    .venv/bin/python -m benchmarks.lora --adapter smart_home-lora [--url URL] [--requests 32]

The adapter must be registered (`brickwork tune`) and served by the vLLM at `--url` (a
`brickwork serve` serves every registered adapter). The merged copy is built once into
`<cache>/merged/NAME` and served by a second vLLM started here. The same JSON-schema-constrained
smart-home requests go to `slm`, `slm:<adapter>` and the merged instance at concurrency 1 and
16, in A-B-C-C-B-A order (half the requests per leg), so a load that drifts during the run
does not favour one of them. Writes benchmarks/results/lora.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.serving import _measure
from brickwork.serving.client import EndpointConfig
from brickwork.serving.pool import ModelPool, PoolConfig

RESULTS = Path(__file__).parent / "results"


def _merged(adapter: str) -> Path:
    from brickwork.tune.adapters import adapter_path, merged_dir
    from brickwork.tune.train import merge_adapter

    out = merged_dir(adapter)
    if not (out / "config.json").is_file():
        print(f"merging {adapter} into {out} ...", flush=True)
        merge_adapter(adapter_path(adapter), out)
    return out


async def _legs(pool: ModelPool, names: list[str], requests: int) -> list[dict[str, Any]]:
    rows = []
    for concurrency in (1, 16):
        total = max(4, requests // 4 if concurrency == 1 else requests) // 2
        legs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for name in [*names, *reversed(names)]:
            legs[name].append(await _measure(pool, name, concurrency, total, True))
        for name, pair in legs.items():
            wall = sum(leg["requests"] / leg["requests_per_s"] for leg in pair)
            done = sum(leg["requests"] for leg in pair)
            row = {"model": name, "concurrency": concurrency, "requests": done,
                   "requests_per_s": done / wall,
                   "p50_ms": sum(leg["p50_ms"] for leg in pair) / len(pair)}  # fmt: skip
            rows.append(row)
            print(
                f"{name:>24} c={concurrency:>2}: {row['requests_per_s']:6.2f} req/s "
                f"p50 {row['p50_ms']:6.0f} ms",
                flush=True,
            )
    return rows


def main() -> None:
    """Measure and write benchmarks/results/lora.json."""
    from brickwork.serving.launcher import ServerSpec, VLLMServer
    from brickwork.serving.models import EMBEDDED_MODEL

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--adapter", required=True, help="a registered adapter's name")
    parser.add_argument("--url", default="http://127.0.0.1:8321/v1", help="vLLM serving it")
    parser.add_argument("--requests", type=int, default=32)
    args = parser.parse_args()
    merged = _merged(args.adapter)
    spec = ServerSpec(model=merged, served_name=f"{args.adapter}-merged")
    started = time.perf_counter()
    with VLLMServer(spec, ready_timeout_s=900) as server:
        print(f"merged instance ready in {time.perf_counter() - started:.0f} s", flush=True)

        def endpoint(name: str, url: str, model: str) -> EndpointConfig:
            return EndpointConfig(name=name, base_url=url, model=model, read_timeout_s=600)

        config = PoolConfig(
            models={
                "slm": [endpoint("shared", args.url, EMBEDDED_MODEL.served_name)],
                "merged": [endpoint("merged", server.base_url, spec.served_name)],
            }
        )
        names = ["slm", f"slm:{args.adapter}", "merged"]

        async def run() -> list[dict[str, Any]]:
            async with ModelPool(config) as pool:
                return await _legs(pool, names, args.requests)

        rows = asyncio.run(run())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lora.json").write_text(
        json.dumps({"adapter": args.adapter, "rows": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
