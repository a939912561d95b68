"""`brickwork cache stats|clear [--redis URL]` and `brickwork cache calibrate DATA`.

`stats` prints per-node hits, misses, hit rate and saved cost. With `--redis` it reads the
counters every replica sharing that Redis keeps; without, it sums the `cache_lookup` events of
the newest runs in the run store (any backend, including an App's in-process cache). `clear`
deletes every key under the Redis prefix; an in-process cache lives inside its App and ends
with it, so there is nothing on disk to clear. `calibrate` embeds a labelled request set
(`calibration.load_items`) with MiniLM and prints, per node, the lowest threshold whose
false-hit rate stays under the target, what it does on the set (in-sample and held out by
paraphrase group) and what the guard stops.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from brickwork.caching.backends import RedisCache
from brickwork.caching.cache import NodeCacheStats, ResponseCache
from brickwork.caching.calibration import (
    Bound,
    LabelledPair,
    NodeMeasure,
    calibrate,
    cross_validate,
    measure,
)
from brickwork.errors import ConfigError

__all__ = [
    "add_cache_arguments",
    "cache_main",
    "calibration_table",
    "format_stats",
    "stats_from_events",
]

DEFAULT_PREFIX = "brickwork:cache:"


def add_cache_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `brickwork cache` subcommands to a (sub)parser."""
    sub = parser.add_subparsers(dest="cache_command", required=True)
    stats = sub.add_parser("stats", help="per-node hits, misses, hit rate and saved cost")
    clear = sub.add_parser("clear", help="delete the cached answers in Redis")
    for command in (stats, clear):
        command.add_argument(
            "--redis", metavar="URL", help="a Redis cache, e.g. redis://127.0.0.1:6379/0"
        )
        command.add_argument(
            "--prefix",
            default=DEFAULT_PREFIX,
            help=f"the Redis key prefix (default {DEFAULT_PREFIX})",
        )
    stats.add_argument(
        "--store", help="run store: SQLite file or postgresql:// URL (default: cache)"
    )
    stats.add_argument(
        "--limit", type=int, default=1000, help="read the newest N runs of the store (default 1000)"
    )
    calibrate = sub.add_parser(
        "calibrate", help="per-node semantic thresholds for a target false-hit rate"
    )
    calibrate.add_argument(
        "data", help="labelled requests, JSON lines (graph, text, group, answers by node)"
    )
    calibrate.add_argument(
        "--target", type=float, default=0.05, help="highest false-hit rate (default 0.05)"
    )
    calibrate.add_argument(
        "--bound",
        choices=("wilson", "point"),
        default="wilson",
        help="judge the rate by its 95%% Wilson upper bound (default) or point estimate",
    )


def cache_main(args: argparse.Namespace) -> int:
    """Run `brickwork cache stats|clear|calibrate`."""
    if args.cache_command == "calibrate":
        from brickwork.agents.embeddings import minilm_encoder
        from brickwork.caching.calibration import load_items, pairs_from_items

        try:
            items = load_items(args.data)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read labelled requests {args.data!r}: {exc}") from exc
        pairs = pairs_from_items(items, minilm_encoder())
        print(calibration_table(pairs, args.target, args.bound))
        return 0
    if args.cache_command == "clear":
        if not args.redis:
            print(
                "nothing to clear: without --redis the cache is an App's in-process LRU, "
                "which ends with its process"
            )
            return 0
        removed = asyncio.run(_clear(args.redis, args.prefix))
        print(f"removed {removed} key(s) under {args.prefix!r} at {args.redis}")
        return 0
    if args.redis:
        stats = asyncio.run(_redis_stats(args.redis, args.prefix))
        where = f"Redis {args.redis} (prefix {args.prefix!r})"
    else:
        from brickwork.store import open_store

        store = open_store(args.store)
        try:
            events = (
                event
                for summary in store.runs(limit=args.limit)
                for event in (store.run(summary.run_id) or (None, []))[1]
            )
            stats = stats_from_events(events)
        finally:
            store.close()
        where = f"the newest {args.limit} runs of the run store"
    print(format_stats(stats, where))
    return 0


async def _redis_stats(url: str, prefix: str) -> dict[str, NodeCacheStats]:
    cache = ResponseCache(RedisCache(url, prefix=prefix, timeout_s=2.0))
    try:
        return await cache.shared_stats()
    except Exception as exc:
        raise ConfigError(f"cannot read cache statistics from Redis at {url!r}: {exc}") from exc
    finally:
        await cache.aclose()


async def _clear(url: str, prefix: str) -> int:
    cache = ResponseCache(RedisCache(url, prefix=prefix, timeout_s=2.0))
    try:
        return await cache.clear()
    except Exception as exc:
        raise ConfigError(f"cannot clear the cache in Redis at {url!r}: {exc}") from exc
    finally:
        await cache.aclose()


def stats_from_events(events: Iterable[Mapping[str, Any]]) -> dict[str, NodeCacheStats]:
    """Per-node statistics from stored `cache_lookup` events."""
    totals: dict[str, list[float]] = {}
    for event in events:
        if event.get("kind") != "cache_lookup":
            continue
        row = totals.setdefault(str(event.get("node")), [0, 0, 0, 0.0, 0.0, 0, 0])
        hit = bool(event.get("hit"))
        row[0 if hit else 1] += 1
        row[2] += 1 if event.get("error") else 0
        row[3] += float(event.get("saved_usd") or 0.0)
        row[4] += float(event.get("saved_latency_s") or 0.0)
        row[5] += 1 if hit and event.get("semantic") else 0
        row[6] += 1 if event.get("rejected") else 0
    return {
        node: NodeCacheStats(
            node, int(r[0]), int(r[1]), int(r[2]), r[3], r[4], int(r[5]), int(r[6])
        )
        for node, r in sorted(totals.items())
    }


def calibration_table(
    pairs: Mapping[str, Sequence[LabelledPair]], target: float, bound: Bound = "wilson"
) -> str:
    """Per node: the calibrated threshold and what it does, with and without the guard.

    In-sample: calibrated and measured on every pair. Held out: calibrated on one half of the
    paraphrase groups, measured on the other, both ways, summed. Rates are of ordered pairs
    (either request may be the cached one).
    """
    lines = [
        f"semantic thresholds for a false-hit rate <= {target:.0%} "
        f"({'95% Wilson upper bound' if bound == 'wilson' else 'point estimate'})",
    ]
    for node, node_pairs in sorted(pairs.items()):
        fitted = calibrate(node_pairs, target, bound=bound)
        held_out, _ = cross_validate(node_pairs, target, bound=bound)
        lines.append(f"{node}: {len(node_pairs)} pairs")
        if fitted.threshold is None or fitted.measure is None:
            lines.append("  no threshold meets the target: keep this node on exact hits")
        else:
            lines.append(f"  threshold {fitted.threshold:.3f}")
            lines.append("  in-sample       " + _measure_line(fitted.measure))
            bare = measure(node_pairs, fitted.threshold, guard=False)
            lines.append("  without guard   " + _measure_line(bare))
        lines.append("  held out        " + _measure_line(held_out))
    return "\n".join(lines)


def _measure_line(m: NodeMeasure) -> str:
    low, high = m.interval
    rate = "n/a" if m.hits == 0 else f"{m.false_hit_rate:.1%} [{low:.1%}, {high:.1%}]"
    kinds = ", ".join(
        f"{kind} {hits}/{n}" for kind, (n, hits) in m.by_kind.items() if kind != "paraphrase"
    )
    return (
        f"paraphrase hits {m.positive_hits}/{m.positives} "
        f"({m.hit_rate:.1%}); false hits {m.false_hits}/{m.hits} = {rate}; {kinds}"
    )


def format_stats(stats: Mapping[str, NodeCacheStats], where: str) -> str:
    """A plain table: node, hits, misses, hit rate, errors, saved cost and time."""
    if not stats:
        return f"no cache lookups in {where}"
    lines = [
        f"cache lookups in {where}",
        f"{'node':<32} {'hits':>7} {'semantic':>8} {'misses':>7} {'hit rate':>8} "
        f"{'errors':>6} {'saved $':>12} {'saved s':>9}",
    ]
    for s in stats.values():
        lines.append(
            f"{s.node:<32} {s.hits:>7} {s.semantic_hits:>8} {s.misses:>7} {s.hit_rate:>8.1%} "
            f"{s.errors:>6} {s.saved_usd:>12.6f} {s.saved_s:>9.2f}"
        )
    return "\n".join(lines)
