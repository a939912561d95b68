"""Adapters on the real local vLLM: a short training run served at runtime, promotion, errors.

The registry and bindings live in a private cache (the embedded model folder is linked in, so
nothing is rebuilt). The session `vllm_server` allows runtime LoRA loading.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from brickwork.cli import main
from brickwork.serving.launcher import VLLMServer, served_models
from brickwork.serving.local import pool_config_for
from brickwork.serving.pool import ModelPool
from brickwork.serving.registry import ServeLease, ServeRecord
from brickwork.skills.examples import smart_home_skill
from brickwork.tune import adapters
from brickwork.tune.data import build_dataset
from brickwork.tune.train import AdapterManifest, TrainConfig, base_identity, train_adapter

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory, embedded_model: Path) -> Iterator[Path]:
    """A private cache holding the real embedded model (linked) and an empty registry."""
    root = _cache_root(tmp_path_factory.mktemp("cache"), embedded_model)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BRICKWORK_CACHE_DIR", str(root))
        patch.delenv("BRICKWORK_BINDINGS", raising=False)
        patch.delenv("BRICKWORK_STATE_DIR", raising=False)
        yield root


def _cache_root(root: Path, embedded_model: Path) -> Path:
    """`root` made a cache folder holding the real embedded model (linked), nothing else."""
    (root / "models").mkdir(parents=True)
    (root / "models" / embedded_model.name).symlink_to(embedded_model)
    return root


def _manifest(name: str, folder: Path, base: tuple[str, str]) -> None:
    """Write a manifest naming `base` = (name, sha256) as the adapter's base model."""
    AdapterManifest(
        name=name,
        skill="smart_home",
        base_model=base[0],
        base_model_sha256=base[1],
        data_sha256="0" * 64,
        config=TrainConfig(),
        counts={},
        metrics={},
        train_seconds=0.0,
        created_at=time.time(),
    ).save(folder)


@pytest.fixture(scope="module")
def registered_identity(cache: Path, identity_adapter: Path, embedded_model: Path) -> str:
    """The session's zero-effect adapter, registered with a manifest for the embedded base."""
    return _register_identity(identity_adapter, embedded_model)


def _register_identity(identity_adapter: Path, embedded_model: Path) -> str:
    """Register the identity adapter (linked) in the current cache; returns its name."""
    folder = adapters.adapter_path("identity")
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.symlink_to(identity_adapter, target_is_directory=True)
    _manifest("identity", folder, base_identity(embedded_model))
    return "identity"


@pytest.fixture
def serve_record(cache: Path, vllm_server: VLLMServer) -> Iterator[ServeRecord]:
    """The session server published as a running `brickwork serve`, so commands reuse it."""
    lease = ServeLease(vllm_server.port)
    lease.acquire()
    served = vllm_server.spec.served_name
    record = ServeRecord(
        pid=os.getpid(),
        host=vllm_server.spec.host,
        port=vllm_server.port,
        served_name=served,
        adapters=tuple(sorted(served_models(vllm_server.base_url) - {served})),
        model=str(vllm_server.spec.model),
        log=str(vllm_server.log_path),
        started_at=datetime.now(UTC).isoformat(),
    )
    lease.publish(record)
    yield record
    lease.release()


@pytest.fixture(scope="module")
def short_adapter(cache: Path, embedded_model: Path) -> str:
    """A real adapter from a two-step training run on the smart_home skill, registered."""
    skill = smart_home_skill()
    name = "smart_home-short"
    config = TrainConfig(epochs=1, rank=8, alpha=16, max_steps=2)
    train_adapter(skill, build_dataset(skill, seed=0), adapters.adapter_path(name), name=name,
                  base_model_dir=embedded_model, config=config, progress=False)  # fmt: skip
    return name


async def test_a_short_training_run_is_served_under_its_own_name(
    short_adapter: str, vllm_server: VLLMServer
) -> None:
    name = short_adapter
    folder = adapters.adapter_path(name)
    assert adapters.get_adapter(name).skill == "smart_home"

    # Loaded into the running server, no restart.
    pid = vllm_server.pid
    assert vllm_server.load_adapter(name, folder)
    assert vllm_server.pid == pid
    assert name in served_models(vllm_server.base_url)
    assert name in vllm_server.spec.lora_modules  # a restart would serve it again

    config_ = pool_config_for(
        vllm_server.base_url, vllm_server.spec.served_name, adapters=vllm_server.spec.lora_modules
    )
    async with ModelPool(config_) as pool:
        completion = await pool.complete(
            f"slm:{name}", [{"role": "user", "content": "Turn on the kitchen lights."}],
            max_tokens=8,
        )  # fmt: skip
    assert completion.served_model == name
    assert completion.text


def test_promotion_refuses_an_adapter_no_better_than_base_and_rollback_restores(
    cache: Path,
    registered_identity: str,
    serve_record: ServeRecord,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The binding before (the shipped specialist, when one ships: it is not served here).
    before = adapters.binding_for("smart_home")
    # The identity adapter answers exactly like the base: with a 5-point margin, refused.
    argv = ["tune", "smart_home", "--adapter", registered_identity, "--promote", "--limit", "4"]
    assert main(argv) == 1
    out = capsys.readouterr().out.replace("\n", " ")
    assert "slm:identity" in out and "95 % CI" in out
    assert "not promoted" in out and "+0.0 points" in out
    assert adapters.binding_for("smart_home") == before
    metrics: dict[str, Any] = dict(adapters.get_adapter("identity").metrics)
    assert metrics["val_base_accuracy"] == metrics["val_adapter_accuracy"]
    assert metrics["val_promotable"] == 0.0

    # With no margin an equal adapter may be promoted; rollback restores what was before.
    assert main([*argv[:-3], "--promote", "--margin", "0", "--limit", "4"]) == 0
    assert adapters.binding_for("smart_home") == "identity"
    assert main(["skill", "rollback", "smart_home"]) == 0
    assert adapters.binding_for("smart_home") == before


def test_an_adapter_of_another_base_is_a_clear_error(
    cache: Path, identity_adapter: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = adapters.adapter_path("alien")
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.mkdir()
    (folder / "adapter_config.json").write_bytes(
        (identity_adapter / "adapter_config.json").read_bytes()
    )
    _manifest("alien", folder, ("smollm2", "f" * 64))

    assert main(["tune", "smart_home", "--adapter", "alien"]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "adapter 'alien' was trained on base model 'smollm2'" in err


def test_a_trained_adapter_is_merged_into_a_plain_model_for_its_own_instance(
    short_adapter: str, embedded_model: Path
) -> None:
    """What `serve --merged NAME` starts, for an adapter trained here (the instance itself is
    started and served from in the shipped specialist's test below: the same `merged_spec`)."""
    from brickwork.serving.launcher import ServerSpec
    from brickwork.serving.local import merged_spec

    base = ServerSpec(model=embedded_model, served_name="smollm2-135m-instruct", cores=(0,))
    spec = merged_spec(short_adapter, base, port=8999)
    folder = adapters.merged_dir(short_adapter)
    assert spec.model == folder and (folder / "config.json").is_file()
    assert spec.served_name == short_adapter and spec.port == 8999
    assert not spec.lora_enabled  # a plain model: no LoRA cost per request
    assert spec.cores == base.cores and spec.shares_cores_with == (base.served_name,)
    built = (folder / "config.json").stat().st_mtime_ns
    assert merged_spec(short_adapter, base).model == folder  # merged once, then reused
    assert (folder / "config.json").stat().st_mtime_ns == built


def test_brickwork_serve_loads_a_newly_registered_adapter_without_a_restart(
    cache: Path, identity_adapter: Path, embedded_model: Path, tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys

    from brickwork.serving.launcher import free_port
    from brickwork.serving.local import LocalServing
    from brickwork.serving.registry import running_servers

    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    serve = subprocess.Popen(
        [sys.executable, "-m", "brickwork.cli", "serve", "--port", str(port), "--enable-lora"],
        env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:

        def record() -> ServeRecord | None:
            return next((r for r in running_servers() if r.port == port), None)

        deadline = time.monotonic() + 900
        while record() is None:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "brickwork serve was not ready in 900 s"
            time.sleep(0.5)
        served = served_models(f"http://127.0.0.1:{port}/v1")
        assert "smollm2-135m-instruct" in served and "fresh" not in served

        # A copy, not a link: the identity folder may carry another test's manifest.
        folder = adapters.adapter_path("fresh")
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(
            identity_adapter, folder, ignore=shutil.ignore_patterns(adapters.MANIFEST_FILE)
        )
        deadline = time.monotonic() + 120
        while "fresh" not in (record() or ServeRecord(0, "", 0, "", (), "", "", "")).adapters:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the new adapter was not loaded in 120 s"
            time.sleep(0.5)

        with LocalServing(large=False) as local:
            assert local.record is not None and local.record.pid == serve.pid
            assert "slm:fresh" in local.pool_config().models
        starts = Path(local.record.log).read_text().count(f"starting on port {port},")
        assert starts == 1  # loaded into the running server: no restart
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(timeout=120)
        log.close()


def test_a_private_small_tier_serves_the_shipped_specialist_merged_then_a_new_adapter(
    identity_adapter: Path,
    embedded_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With nothing registered: the base without LoRA, the specialist merged beside it; an
    adapter registered later restarts the private base with LoRA to serve it."""
    import httpx

    from brickwork.cost import CPU_SELF_HOSTED, PriceBook
    from brickwork.serving.local import LocalServing

    # An empty registry (this module's cache has adapters).
    monkeypatch.setenv("BRICKWORK_CACHE_DIR", str(_cache_root(tmp_path / "cache", embedded_model)))

    name = "smart_home-specialist"
    with LocalServing(reuse=False, progress=False, large=False) as local:
        assert local.server is not None and set(local.merged_servers) == {name}
        merged = local.merged_servers[name]
        assert merged.spec.cores == local.server.spec.cores  # the same tier shares its core
        assert name not in local.server.spec.lora_modules  # not also a LoRA on the base
        assert not local.server.spec.lora_enabled and not merged.spec.lora_enabled
        assert (adapters.merged_dir(name) / "config.json").is_file()
        endpoint = local.pool_config().models[f"slm:{name}"][0]
        assert endpoint.base_url == merged.base_url and endpoint.model == name
        assert PriceBook.default(endpoint).price(endpoint.name) == CPU_SELF_HOSTED
        assert f"{name} merged" in local.origin
        response = httpx.post(
            f"{merged.base_url}/chat/completions",
            json={
                "model": name,
                "messages": [{"role": "user", "content": "Lock the front door"}],
                "max_tokens": 8,
                "temperature": 0,
            },
            timeout=300,
        )
        assert response.status_code == 200, response.text
        assert response.json()["model"] == name

        # An adapter registered now: the private base, started without LoRA, is restarted.
        path = adapters.get_adapter(_register_identity(identity_adapter, embedded_model)).path
        assert local.ensure_adapter("identity", path) == "restarted"
        assert "identity" in served_models(local.base_url)
        assert "slm:identity" in local.pool_config().models
        assert local.ensure_adapter("identity", path) == "served"
    assert local.merged_servers == {} and merged.status == "stopped"
