"""Response cache: lookup latency, semantic thresholds, and a replayed traffic mix.

    .venv/bin/python -m benchmarks.caching [--lookups 3000] [--redis redis://127.0.0.1:6379/0]
        [--target 0.1] [--data tests/data/cache_semantic.jsonl]

1. Lookup latency, per lookup, what a node pays before its model call when a cache is
   configured: the key (sha256 of the canonical JSON of a smart_home-sized request: system
   prompt, few-shot turns, the tool-call schema) plus the backend read and the decode of a
   hit, and, apart, the backend read alone; half the lookups hit. Then the semantic lookup
   after an exact miss (read the key space's index, nearest neighbour, read the completion)
   with 32 and 256 cached texts in the space. The embedding of the new text is excluded: the
   graph's intent kNN computes it anyway (its time is printed apart). Redis runs under a key
   prefix of this run's own, deleted at the end; without a reachable Redis only the LRU is
   measured.
2. Semantic thresholds per node, calibrated on the hand-written paraphrase/negation/slot set
   for a false-hit rate at or under `--target` (95 % Wilson upper bound), with the measure
   in-sample, without the guard, and held out (`brickwork cache calibrate` prints the same).
3. A replayed traffic mix per node through the real `CachedPool` on the LRU: the set's requests
   and the single-turn questions of evals/ in a seeded shuffle, 30 % of them asked again
   exactly; the model answers each request with its labelled answer, so a semantic hit that
   serves another answer is counted wrong. Exact and semantic hit rates, wrong semantic hits,
   and the model calls and cost saved (tokens estimated at 4 characters each, priced at the
   frontier reference list price, $1.25 / $10 per million tokens).

Milliseconds and rates are measured in this run on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from brickwork.caching import (
    CachedPool,
    Entry,
    RedisCache,
    ResponseCache,
    Scope,
    calibrate,
    canonical_json,
    load_items,
    pairs_from_items,
    request_key,
    skill_version,
)
from brickwork.caching.commands import calibration_table
from brickwork.cost.prices import FRONTIER_REFERENCE
from brickwork.serving.types import ChatRequest, Completion, Usage
from brickwork.skills.examples import smart_home_skill
from brickwork.testing import FunctionModel, ModelStep
from brickwork.tools.smart_home import SmartHomeHub


def _request(i: int) -> ChatRequest:
    """A smart_home tool-call request of realistic size, the user turn varying with `i`."""
    skill = smart_home_skill(SmartHomeHub())
    messages: list[dict[str, Any]] = [{"role": "system", "content": skill.instructions}]
    for example in skill.few_shot(4):
        messages += [*example.messages(), {"role": "assistant", "content": str(example.output)}]
    messages.append({"role": "user", "content": f"Turn on the kitchen lights ({i})"})
    schema = skill.contract.registry.call_schema()  # type: ignore[union-attr]
    return ChatRequest(messages=messages, json_schema=schema, max_tokens=128)


def _percentiles(samples: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[94] * 1000, cuts[98] * 1000


async def _measure(cache: ResponseCache, lookups: int) -> dict[str, tuple[float, float, float]]:
    skill = smart_home_skill(SmartHomeHub())
    scope = Scope("smart_home", "toolcall", "default", skill.name, skill_version(skill), "own:slm")
    requests = [_request(i) for i in range(lookups)]
    answer = Completion(
        '{"name": "toggle_lights", "parameters": {"room": "kitchen", "state": "on"}}',
        "slm", "fake-slm", "fake-slm", Usage(420, 24), 0.8, finish_reason="stop",
    )  # fmt: skip
    for i, request in enumerate(requests):
        if i % 2 == 0:  # every other request is a repeat: half the lookups hit
            await cache.put(request_key(scope, "slm", ["fake-slm"], request), answer)
    full: list[float] = []
    read: list[float] = []
    keys = []
    for request in requests:
        started = time.perf_counter()
        key = request_key(scope, "slm", ["fake-slm"], request)
        await cache.get(key)
        full.append(time.perf_counter() - started)
        keys.append(key)
    for key in keys:
        started = time.perf_counter()
        await cache.backend.get(key)
        read.append(time.perf_counter() - started)
    return {"key + lookup": _percentiles(full), "backend read": _percentiles(read)}


async def _measure_semantic(
    cache: ResponseCache, lookups: int, sizes: tuple[int, ...] = (32, 256)
) -> dict[str, tuple[float, float, float]]:
    """Semantic lookups (index read, nearest neighbour, completion read) in spaces of `sizes`."""
    rng = np.random.default_rng(16)
    answer = Completion("{}", "slm", "fake-slm", "fake-slm", Usage(420, 24), 0.8)
    rows = {}
    for size in sizes:
        space = f"bench-{size}-{uuid.uuid4().hex[:8]}"
        vectors = rng.normal(size=(size, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        for i, vector in enumerate(vectors):
            key = f"{space}-{i}".ljust(64, "0")[:64]
            await cache.put(key, answer)
            await cache.index(space, Entry(key, f"cached request {i} of the space", vector))
        samples = []
        for i in range(min(lookups, 1000)):
            query = vectors[i % size] + rng.normal(scale=0.05, size=384).astype(np.float32)
            query /= np.linalg.norm(query)
            started = time.perf_counter()
            await cache.nearest(space, query)
            samples.append(time.perf_counter() - started)
        rows[f"semantic, {size} in space"] = _percentiles(samples)
    return rows


async def _run(lookups: int, url: str) -> list[tuple[str, str, tuple[float, float, float]]]:
    rows = []
    lru = ResponseCache.memory(max_entries=lookups + 1000)
    for what, cuts in (await _measure(lru, lookups)).items():
        rows.append(("memory (LRU)", what, cuts))
    for what, cuts in (await _measure_semantic(lru, lookups)).items():
        rows.append(("memory (LRU)", what, cuts))
    prefix = f"brickwork-bench:{uuid.uuid4().hex}:"
    redis = ResponseCache(RedisCache(url, prefix=prefix, timeout_s=2.0))
    try:
        await redis.backend.get("warm-up")
    except Exception as exc:
        print(f"Redis at {url} not reachable ({exc}); measured the LRU only")
        return rows
    try:
        for what, cuts in (await _measure(redis, lookups)).items():
            rows.append((f"redis ({url})", what, cuts))
        for what, cuts in (await _measure_semantic(redis, lookups)).items():
            rows.append((f"redis ({url})", what, cuts))
    finally:
        await redis.clear()
        await redis.aclose()
    return rows


def _embedding_ms(encode: Any, texts: list[str]) -> float:
    samples = []
    for text in texts:
        started = time.perf_counter()
        encode([text])
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def _eval_items() -> list[dict[str, Any]]:
    """Single-turn questions of evals/ with the answer a node gives them."""
    found = []
    for graph, node in (("smart_home", "toolcall"), ("support", "intent")):
        for line in (ROOT / "evals" / f"{graph}.jsonl").read_text().splitlines():
            row = json.loads(line)
            question, answer = row["question"], row["answer"]
            if question.startswith("["):
                continue  # a conversation: its last user turn is not the whole request
            with contextlib.suppress(ValueError):
                answer = json.loads(answer)
            if node == "toolcall" and not isinstance(answer, dict):
                continue  # out of scope (ends at intent) or several calls (the plan path)
            found.append({"graph": graph, "text": question, "answers": {node: answer}})
    return found


async def _replay(
    data: Path, thresholds: dict[str, float], encode: Any
) -> list[tuple[str, dict[str, float]]]:
    items = [
        {"graph": i.graph, "text": i.text, "answers": dict(i.answers)} for i in load_items(data)
    ]
    items += _eval_items()
    rows = []
    for node in sorted({f"{i['graph']}/{n}" for i in items for n in i["answers"]}):
        graph, name = node.split("/")
        gold = {
            i["text"]: i["answers"][name]
            for i in items
            if i["graph"] == graph and name in i["answers"]
        }
        texts = list(gold)
        rng = random.Random(16)
        rng.shuffle(texts)
        stream = list(texts)
        for _ in range(round(0.3 * len(texts))):  # exact repeats of earlier requests
            at = rng.randrange(1, len(stream))
            stream.insert(at, stream[rng.randrange(at)])
        labels = sorted({a for a in gold.values() if isinstance(a, str)})
        structured = not labels

        def answer(body: dict[str, Any], gold: dict[str, Any] = gold) -> ModelStep:
            value = gold[body["messages"][-1]["content"]]
            text = value if isinstance(value, str) else json.dumps(value)
            prompt = sum(len(str(m["content"])) for m in body["messages"]) // 4
            return ModelStep(text, prompt_tokens=prompt, completion_tokens=max(1, len(text) // 4))

        cache = ResponseCache(
            semantic={node: thresholds[node]} if node in thresholds else {}, encoder=encode
        )
        scope = Scope(graph, name, "default", name, "v1", "own:slm")
        system = SYSTEM_PROMPT_CHARS * "x"  # a realistic prompt length for the token estimate
        counts = dict.fromkeys(("lookups", "exact", "semantic", "wrong", "rejected"), 0.0)
        counts["saved_usd"] = 0.0
        model = FunctionModel(answer)
        async with model.pool() as pool:
            view = CachedPool(pool, cache, scope)
            for text in stream:
                options: dict[str, Any] = (
                    {"json_schema": {"type": "object"}} if structured else {"choices": labels}
                )
                messages = [
                    {"role": "system", "content": system},
                    {"role": "user", "content": text},
                ]
                completion = await view.complete("slm", messages, **options)
                counts["lookups"] += 1
                if completion.extra.get("cache") == "hit":
                    semantic = "cache_semantic" in completion.extra
                    counts["semantic" if semantic else "exact"] += 1
                    served = completion.text if labels else json.loads(completion.text)
                    if canonical_json(served) != canonical_json(gold[text]):
                        counts["wrong"] += 1
                    tokens = sum(len(str(m["content"])) for m in messages) // 4
                    counts["saved_usd"] += FRONTIER_REFERENCE.cost(
                        tokens, max(1, len(completion.text) // 4)
                    )
        counts["rejected"] = cache.stats()[node].rejected if node in cache.stats() else 0
        counts["threshold"] = thresholds.get(node, float("nan"))
        rows.append((node, counts))
    return rows


ROOT = Path(__file__).parents[1]
#: Characters of the smart_home tool-call prompt (instructions, few-shot turns): about 700 tokens.
SYSTEM_PROMPT_CHARS = 2800


def main(argv: list[str] | None = None) -> None:
    """Measure and print the latency table, the thresholds and the replayed traffic mix."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--lookups", type=int, default=3000, help="lookups per backend")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="the Redis URL")
    parser.add_argument("--target", type=float, default=0.1, help="false-hit rate target")
    parser.add_argument(
        "--data", default=str(ROOT / "tests" / "data" / "cache_semantic.jsonl"),
        help="labelled paraphrase/negation/slot requests",
    )  # fmt: skip
    args = parser.parse_args(argv)
    rows = asyncio.run(_run(args.lookups, args.redis))
    print(f"response-cache lookups ({args.lookups} per backend, half hits), milliseconds")
    print(f"{'backend':<38} {'what':<24} {'p50':>8} {'p95':>8} {'p99':>8}")
    for backend, what, (p50, p95, p99) in rows:
        print(f"{backend:<38} {what:<24} {p50:>8.3f} {p95:>8.3f} {p99:>8.3f}")

    from brickwork.agents.embeddings import minilm_encoder

    encode = minilm_encoder()
    items = load_items(args.data)
    print(
        f"(not in the lookup: MiniLM embedding of one request text, p50 "
        f"{_embedding_ms(encode, [i.text for i in items[:100]]):.1f} ms on this CPU; "
        "the graph's intent kNN computes it)"
    )
    pairs = pairs_from_items(items, encode)
    print()
    print(calibration_table(pairs, args.target))
    thresholds = {}
    for node, node_pairs in pairs.items():
        fitted = calibrate(node_pairs, args.target)
        if fitted.threshold is not None:
            thresholds[node] = fitted.threshold
    print()
    print("replayed traffic (the set + single-turn evals/ questions, 30 % exact repeats), LRU")
    print(
        f"{'node':<22} {'thresh':>6} {'lookups':>7} {'exact':>6} {'semantic':>8} "
        f"{'wrong':>5} {'guarded':>7} {'calls saved':>11} {'saved $/1k req':>14}"
    )
    for node, c in asyncio.run(_replay(Path(args.data), thresholds, encode)):
        n = c["lookups"]
        saved = c["exact"] + c["semantic"]
        print(
            f"{node:<22} {c['threshold']:>6.3f} {int(n):>7} {c['exact'] / n:>6.1%} "
            f"{c['semantic'] / n:>8.1%} {int(c['wrong']):>5} {int(c['rejected']):>7} "
            f"{saved / n:>11.1%} {c['saved_usd'] / n * 1000:>14.4f}"
        )


if __name__ == "__main__":
    main()
