"""Templated synthetic examples and shipped adapters: labels right by construction, bindings."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from brickwork.skills.examples import smart_home_skill
from brickwork.tools.smart_home import BENCHMARK_TOOLS
from brickwork.tune import adapters
from brickwork.tune.data import build_dataset
from brickwork.tune.synthetic import smart_home_examples, write_examples


def test_examples_are_distinct_deterministic_and_cover_every_tool(tmp_path: Path) -> None:
    first = smart_home_examples(200, seed=3)
    assert first == smart_home_examples(200, seed=3) != smart_home_examples(200, seed=4)
    assert len({e["question"] for e in first}) == 200
    tools = Counter(json.loads(e["answer"])["name"] for e in first)
    assert set(tools) == set(BENCHMARK_TOOLS)
    # Every label passes the skill's own contract (the hub's tool schemas).
    data = build_dataset(
        smart_home_skill(), files=[write_examples(first, tmp_path / "s.jsonl")], seed=0
    )
    assert data.counts["invalid_dropped"] == 0
    assert data.counts["file:s.jsonl"] + data.counts["duplicates_dropped"] == 200


def test_slot_values_are_said_in_the_request() -> None:
    # Grounding: every room, door and temperature in a call is in its request's words.
    for example in smart_home_examples(300, seed=1):
        text = example["question"].lower()
        for key, value in json.loads(example["answer"])["parameters"].items():
            if key in ("room", "door", "temperature"):
                assert str(value).replace("_", " ") in text, example


def _fake_adapter(folder: Path, skill: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 8}))
    (folder / adapters.MANIFEST_FILE).write_text(json.dumps({"skill": skill}))
    return folder


def test_a_shipped_specialist_is_the_default_binding_until_overridden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = tmp_path / "shipped"
    _fake_adapter(shipped / "smart_home-specialist", "smart_home")
    found = adapters.shipped_adapters(shipped)
    monkeypatch.setattr(adapters, "shipped_adapters", lambda folder=None: found)
    bindings = tmp_path / "bindings.json"
    monkeypatch.setenv("BRICKWORK_BINDINGS", str(bindings))
    assert adapters.binding_for("smart_home") == "smart_home-specialist"
    assert adapters.binding_for("support") is None
    bindings.write_text(json.dumps({"skills": {"smart_home": {"adapter": None}}}))
    assert adapters.binding_for("smart_home") is None  # an explicit base-model binding wins
    monkeypatch.setenv("BRICKWORK_BINDINGS", "off")
    bindings.unlink()
    assert adapters.binding_for("smart_home") is None


def test_shipped_adapters_reads_folders_and_skips_broken_ones(tmp_path: Path) -> None:
    _fake_adapter(tmp_path / "a-specialist", "a")
    broken = tmp_path / "b-specialist"
    broken.mkdir()
    (broken / "adapter_config.json").write_text("{not json")
    found = adapters.shipped_adapters(tmp_path)
    assert [(a.name, a.skill, a.rank) for a in found] == [("a-specialist", "a", 8)]
    assert adapters.shipped_adapters(tmp_path / "missing") == []


def test_rolling_back_a_promotion_restores_the_shipped_specialist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = tmp_path / "shipped"
    _fake_adapter(shipped / "smart_home-specialist", "smart_home")
    found = adapters.shipped_adapters(shipped)
    monkeypatch.setattr(adapters, "shipped_adapters", lambda folder=None: found)
    monkeypatch.setenv("BRICKWORK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BRICKWORK_BINDINGS", str(tmp_path / "bindings.json"))
    _fake_adapter(adapters.adapter_path("better"), "smart_home")
    adapters.bind("smart_home", "better")
    assert adapters.binding_for("smart_home") == "better"
    adapters.rollback("smart_home")
    assert adapters.binding_for("smart_home") == "smart_home-specialist"
