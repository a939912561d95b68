"""The adapter registry, skill bindings with rollback, and how bindings reach agents and servers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx2
import pytest

from brickwork.errors import ConfigError
from brickwork.graphs.builder import LazyAgent, bound_model
from brickwork.serving.launcher import ServerSpec
from brickwork.serving.local import pool_config_for, registered_lora_modules
from brickwork.serving.pool import ModelPool
from brickwork.serving.registry import ServeRecord
from brickwork.skills.examples import banking_intent_skill
from brickwork.skills.skill import ModelBinding
from brickwork.tune import adapters


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache (registry and bindings file) for each test."""
    monkeypatch.setenv("BRICKWORK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("BRICKWORK_BINDINGS", raising=False)
    return tmp_path / "cache"


def make_adapter(
    name: str, *, rank: int = 8, skill: str = "banking_intent", base: str | None = "base-model"
) -> Path:
    folder = adapters.adapter_path(name)
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank}))
    if base is not None:
        manifest = {"name": name, "skill": skill, "base_model": base, "metrics": {"val_loss": 1.5}}
        (folder / adapters.MANIFEST_FILE).write_text(json.dumps(manifest))
    return folder


def test_registry_lists_adapters_with_their_manifest() -> None:
    make_adapter("b-one", rank=32)
    make_adapter("a-two", skill="smart_home")
    (adapters.adapters_dir() / "not-an-adapter").mkdir()

    listed = adapters.list_adapters()

    assert [a.name for a in listed] == ["a-two", "b-one"]
    assert listed[1].rank == 32 and listed[1].skill == "banking_intent"
    assert listed[1].metrics == {"val_loss": 1.5}
    assert [a.name for a in adapters.list_adapters(skill="smart_home")] == ["a-two"]


def test_unknown_adapter_error_names_the_registered_ones() -> None:
    make_adapter("known")
    with pytest.raises(ConfigError, match=r"unknown adapter 'nope' \(registered: known\)"):
        adapters.get_adapter("nope")


@pytest.mark.parametrize("name", ["", "slm:x", "a/b", "-lead", "x" * 65, "with space"])
def test_bad_adapter_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="adapter name"):
        adapters.check_adapter_name(name)


def test_save_metrics_merges_into_the_manifest() -> None:
    make_adapter("m")
    info = adapters.save_metrics("m", {"val_adapter_accuracy": 0.9})
    assert info.metrics == {"val_loss": 1.5, "val_adapter_accuracy": 0.9}
    on_disk = json.loads((info.path / adapters.MANIFEST_FILE).read_text())
    assert on_disk["skill"] == "banking_intent" and on_disk["metrics"]["val_loss"] == 1.5


def test_bind_keeps_history_and_rollback_restores_in_order() -> None:
    make_adapter("v1")
    make_adapter("v2")
    assert adapters.binding_for("banking_intent") is None

    adapters.bind("banking_intent", "v1", note="first")
    adapters.bind("banking_intent", "v2", note="second")
    assert adapters.binding_for("banking_intent") == "v2"
    assert [c.adapter for c in adapters.load_bindings()["banking_intent"].history] == [None, "v1"]

    assert adapters.rollback("banking_intent").adapter == "v1"
    assert adapters.binding_for("banking_intent") == "v1"
    assert adapters.rollback("banking_intent").adapter is None
    with pytest.raises(ConfigError, match="no earlier binding"):
        adapters.rollback("banking_intent")


def test_bind_refuses_an_unregistered_adapter() -> None:
    with pytest.raises(ConfigError, match="unknown adapter 'ghost'"):
        adapters.bind("banking_intent", "ghost")
    assert adapters.load_bindings() == {}


def test_bindings_file_can_be_moved_or_switched_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_adapter("v1")
    elsewhere = tmp_path / "elsewhere" / "bindings.json"
    monkeypatch.setenv("BRICKWORK_BINDINGS", str(elsewhere))
    adapters.bind("banking_intent", "v1")
    assert json.loads(elsewhere.read_text())["skills"]["banking_intent"]["adapter"] == "v1"

    monkeypatch.setenv("BRICKWORK_BINDINGS", "off")
    assert adapters.binding_for("banking_intent") is None
    with pytest.raises(ConfigError, match="switched off"):
        adapters.bind("banking_intent", "v1")


def test_a_broken_bindings_file_is_a_clear_error(cache: Path) -> None:
    cache.mkdir(parents=True)
    (cache / "bindings.json").write_text("{not json")
    with pytest.raises(ConfigError, match="bindings file .* cannot be read"):
        adapters.binding_for("banking_intent")


# -- skills and agents ----------------------------------------------------------------------------


def test_effective_binding_follows_the_promoted_adapter_when_served() -> None:
    make_adapter("v1")
    skill = banking_intent_skill()
    assert skill.effective_binding() == ModelBinding()

    adapters.bind("banking_intent", "v1")
    assert skill.effective_binding().logical_name == "slm:v1"
    assert skill.effective_binding(["slm", "slm:v1"]).logical_name == "slm:v1"
    # A pool that does not serve the adapter keeps the skill on its own binding.
    assert skill.effective_binding(["slm", "frontier"]).logical_name == "slm"
    # Explicit adapters and pinned bindings ignore promotions.
    assert skill.with_binding("slm", "other").effective_binding().logical_name == "slm:other"
    pinned = skill.with_binding(ModelBinding(pinned=True))
    assert pinned.effective_binding(["slm", "slm:v1"]).logical_name == "slm"


class _AgentWithSkill:
    def __init__(self) -> None:
        self.skill = banking_intent_skill()

    async def run(self, input: Any, *, pool: ModelPool, model: str | None = None) -> Any:
        raise AssertionError("not called")


def _pool(adapter_names: tuple[str, ...]) -> ModelPool:
    config = pool_config_for("http://vllm.fake/v1", "base", adapters=adapter_names)

    def factory(_: Any) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(lambda r: httpx2.Response(500)))

    return ModelPool(config, http_client_factory=factory)


async def test_graph_nodes_run_the_promoted_adapter_only_when_the_pool_serves_it() -> None:
    make_adapter("v1")
    adapters.bind("banking_intent", "v1")
    served, unserved = _pool(("v1",)), _pool(())
    try:
        assert await bound_model(_AgentWithSkill(), served) == "slm:v1"
        assert await bound_model(LazyAgent(_AgentWithSkill), served) == "slm:v1"
        assert await bound_model(_AgentWithSkill(), unserved) is None
        adapters.rollback("banking_intent")
        assert await bound_model(_AgentWithSkill(), served) is None
    finally:
        await served.aclose()
        await unserved.aclose()


# -- serving --------------------------------------------------------------------------------------


def test_pool_maps_each_adapter_and_merged_instance() -> None:
    config = pool_config_for(
        "http://127.0.0.1:8321/v1",
        "smol",
        adapters=("intent", "tools"),
        merged={"tools": "http://127.0.0.1:8322/v1"},
    )
    assert sorted(config.models) == ["frontier", "slm", "slm:intent", "slm:tools"]
    intent = config.models["slm:intent"][0]
    assert (intent.base_url, intent.model) == ("http://127.0.0.1:8321/v1", "intent")
    merged = config.models["slm:tools"][0]
    assert (merged.base_url, merged.model) == ("http://127.0.0.1:8322/v1", "tools")


def test_server_command_enables_lora_and_runtime_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_ALLOW_RUNTIME_LORA_UPDATING", raising=False)
    plain = ServerSpec(model=Path("/m"), served_name="smol")
    assert "--enable-lora" not in plain.command(1)
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in plain.environment()

    empty = ServerSpec(
        model=Path("/m"), served_name="smol", enable_lora=True, runtime_lora=True, max_lora_rank=32
    )
    cmd = empty.command(1)
    assert cmd[cmd.index("--max-lora-rank") + 1] == "32"
    assert "--lora-modules" not in cmd
    assert empty.environment()["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"

    with_one = ServerSpec(model=Path("/m"), served_name="smol", lora_modules={"a": Path("/a")})
    assert with_one.lora_enabled and "a=/a" in with_one.command(1)


def test_registered_modules_are_those_of_the_base() -> None:
    model = Path("/models/smollm2-f32")
    make_adapter("mine", base="smollm2-f32")
    make_adapter("by-name", base="smol")
    make_adapter("other", base="gemma-270m")
    legacy = make_adapter("peft-only", base=None)
    config = {"r": 8, "base_model_name_or_path": str(model)}
    (legacy / "adapter_config.json").write_text(json.dumps(config))

    assert sorted(registered_lora_modules(model, "smol")) == ["by-name", "mine", "peft-only"]


def test_serve_record_carries_merged_instances_and_reads_old_records() -> None:
    record = ServeRecord(1, "127.0.0.1", 8321, "smol", ("a",), "/m", "/log", "now", {"b": "u"})
    assert ServeRecord.from_json(record.to_json()) == record
    old = json.loads(record.to_json())
    del old["merged"]
    assert ServeRecord.from_json(json.dumps(old)).merged == {}


def test_a_broken_adapter_folder_is_reported_but_does_not_stop_serving() -> None:
    make_adapter("good", base="smol")
    broken = make_adapter("broken", base="smol")
    (broken / adapters.MANIFEST_FILE).write_text("{oops")
    with pytest.raises(ConfigError, match="adapter manifest .*broken.* cannot be read"):
        adapters.list_adapters()
    assert sorted(registered_lora_modules(Path("/models/x"), "smol")) == ["good"]


def test_models_screen_notes_show_each_adapters_eval_and_binding() -> None:
    from brickwork.tui.screens.models import adapter_notes

    make_adapter("tuned", skill="smart_home")
    make_adapter("fresh")
    adapters.save_metrics(
        "tuned", {"val_adapter_accuracy": 0.724, "val_base_accuracy": 0.241, "val_adapter_n": 29}
    )
    adapters.bind("smart_home", "tuned", note="test")
    notes = adapter_notes()
    assert (
        notes["tuned"] == "skill smart_home · val 72.4% vs base 24.1% (n=29) · bound to smart_home"
    )
    assert (
        notes["fresh"] == "skill banking_intent · val loss 1.500 (no accuracy measured) · not bound"
    )


def test_a_merge_is_current_only_for_the_adapters_weights_it_was_made_from(
    tmp_path: Path,
) -> None:
    from brickwork.serving.models import MANIFEST_NAME, Manifest
    from brickwork.tune.train import merged_is_current

    adapter, merged = tmp_path / "adapter", tmp_path / "merged"
    adapter.mkdir()
    merged.mkdir()
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(b"first weights")
    assert not merged_is_current(adapter, merged)  # no manifest: redo it
    manifest = Manifest(
        name="base+a",
        source_package="brickwork-adapter:a",
        source_version="0",
        source_sha256=hashlib.sha256(b"first weights").hexdigest(),
        dtype="float32",
        files={},
        created_at="2026-12-03T00:00:00+00:00",
    )
    (merged / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    assert merged_is_current(adapter, merged)
    weights.write_bytes(b"retrained weights")
    assert not merged_is_current(adapter, merged)
    (merged / MANIFEST_NAME).write_text("{not json", encoding="utf-8")
    assert not merged_is_current(adapter, merged)


def test_models_screen_notes_name_the_shipped_specialists() -> None:
    from brickwork.tui.screens.models import adapter_notes

    notes = adapter_notes()
    shipped = adapters.shipped_adapters()
    assert shipped, "brickwork ships at least one specialist"
    for info in shipped:
        assert notes[info.name].startswith(f"shipped with brickwork · skill {info.skill}")
    assert notes["smart_home-specialist"].endswith("bound to smart_home")
