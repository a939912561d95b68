"""Semantic cache thresholds on the real MiniLM encoder and the hand-written paraphrase,
negation and slot-change set (tests/data/cache_semantic.jsonl): at each node's calibrated
threshold no negation or slot change hits with the guard, and the guard is what stops them."""

from __future__ import annotations

from pathlib import Path

import pytest

from brickwork.caching import calibrate, load_items, measure, pairs_from_items

DATA = Path(__file__).parents[1] / "data" / "cache_semantic.jsonl"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pairs() -> dict:
    from brickwork.agents.embeddings import minilm_encoder

    return pairs_from_items(load_items(DATA), minilm_encoder())


def test_the_set_covers_both_graphs_and_their_negations(pairs: dict) -> None:
    assert {"smart_home/intent", "smart_home/toolcall", "support/intent", "support/act"} <= set(
        pairs
    )
    kinds = {p.kind for p in pairs["smart_home/toolcall"]}
    assert {"paraphrase", "negation", "slot", "other"} <= kinds


@pytest.mark.parametrize("node", ["smart_home/toolcall", "support/act"])
def test_no_negation_or_slot_change_hits_at_the_calibrated_threshold(
    pairs: dict, node: str
) -> None:
    fitted = calibrate(pairs[node], 0.10)
    assert fitted.threshold is not None and fitted.measure is not None
    guarded = fitted.measure
    assert guarded.by_kind.get("negation", (0, 0))[1] == 0
    assert guarded.by_kind["slot"][1] == 0
    assert guarded.positive_hits > 0
    bare = measure(pairs[node], fitted.threshold, guard=False)
    changed = bare.by_kind.get("negation", (0, 0))[1] + bare.by_kind["slot"][1]
    assert changed > 0  # the embedding alone would have served them: the guard stopped them


def test_brickwork_cache_calibrate_prints_every_node(capsys: pytest.CaptureFixture[str]) -> None:
    from brickwork.cli import main

    assert main(["cache", "calibrate", str(DATA), "--target", "0.1"]) == 0
    out = capsys.readouterr().out
    for node in ("smart_home/toolcall", "support/act", "held out", "without guard"):
        assert node in out
