"""The exact JSON each request puts on the wire, checked with a MockTransport."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx2
import pytest

from brickwork.errors import ModelCallError
from brickwork.serving.pool import ModelPool, PoolConfig

MESSAGES = [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]


def _pool(kind: str, content: str, logprobs: Any = None) -> tuple[ModelPool, list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(json.loads(request.content))
        assert request.url.path == "/v1/chat/completions"
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
        }
        if logprobs is not None:
            choice["logprobs"] = {"content": logprobs}
        return httpx2.Response(
            200,
            json={
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [choice],
                "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15},
            },
        )

    config = PoolConfig.parse(
        {
            "models": {
                "slm": [
                    {"name": "e", "base_url": "http://e.test/v1", "model": "base", "kind": kind}
                ]
            }
        }
    )
    pool = ModelPool(
        config,
        http_client_factory=lambda _: httpx2.AsyncClient(transport=httpx2.MockTransport(handler)),
    )
    return pool, sent


SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


async def test_json_schema_payload() -> None:
    pool, sent = _pool("vllm", '{"n": 3}')
    value, completion = await pool.complete_json("slm", MESSAGES, SCHEMA, max_tokens=20)
    assert value == {"n": 3}
    assert sent == [
        {
            "model": "base",
            "messages": MESSAGES,
            "max_tokens": 20,
            "temperature": 0.0,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": SCHEMA},
            },
        }
    ]
    assert completion.usage.prompt_tokens == 11 and completion.usage.completion_tokens == 4
    assert completion.endpoint == "e" and completion.latency_s >= 0
    await pool.aclose()


async def test_lora_name_and_logprobs_payload() -> None:
    tokens = [
        {
            "token": "lo",
            "logprob": -0.5,
            "bytes": None,
            "top_logprobs": [{"token": "lo", "logprob": -0.5, "bytes": None}],
        },
        {"token": "cks", "logprob": -0.1, "bytes": None, "top_logprobs": []},
    ]
    pool, sent = _pool("vllm", "locks", tokens)
    label, confidence, completion = await pool.choose("slm:intent", MESSAGES, ["lights", "locks"])
    assert sent[0]["model"] == "intent"
    assert sent[0]["logprobs"] is True
    assert sent[0]["structured_outputs"] == {"choice": ["lights", "locks"]}
    assert "response_format" not in sent[0]
    assert label == "locks"
    assert confidence == pytest.approx(math.exp(-0.6))
    assert completion.logprobs is not None and completion.logprobs[0].top == (("lo", -0.5),)
    await pool.aclose()


async def test_choices_on_a_generic_openai_endpoint_use_a_schema() -> None:
    pool, sent = _pool("openai", '{"choice": "lights"}')
    label, confidence, _ = await pool.choose("slm", MESSAGES, ["lights", "locks"])
    assert label == "lights" and math.isnan(confidence)  # no logprobs came back
    schema = sent[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["choice"]["enum"] == ["lights", "locks"]
    assert "structured_outputs" not in sent[0]
    await pool.aclose()


async def test_choice_outside_the_label_set_is_an_error() -> None:
    pool, _ = _pool("openai", '{"choice": "doors"}')
    with pytest.raises(ModelCallError, match="'doors'"):
        await pool.choose("slm", MESSAGES, ["lights", "locks"])
    await pool.aclose()


async def test_top_logprobs_stop_and_seed() -> None:
    pool, sent = _pool("vllm", "x")
    await pool.complete("slm", MESSAGES, logprobs=True, top_logprobs=3, stop=["\n"], seed=7)
    assert sent[0]["top_logprobs"] == 3 and sent[0]["stop"] == ["\n"] and sent[0]["seed"] == 7
    await pool.aclose()


async def test_non_json_output_is_a_clear_error() -> None:
    pool, _ = _pool("vllm", '{"n": ')
    with pytest.raises(ModelCallError, match="not JSON"):
        await pool.complete_json("slm", MESSAGES, SCHEMA)
    await pool.aclose()


def test_request_rejects_contradictory_options() -> None:
    from brickwork.serving.types import ChatRequest

    with pytest.raises(ValueError, match="not both"):
        ChatRequest(messages=MESSAGES, json_schema=SCHEMA, choices=["a"])
    with pytest.raises(ValueError, match="needs logprobs"):
        ChatRequest(messages=MESSAGES, top_logprobs=2)


async def test_non_object_schemas_are_wrapped_for_openai_endpoints() -> None:
    any_of = {"anyOf": [{"type": "object", "properties": {"name": {"const": "a"}}}]}
    pool, sent = _pool("openai", '{"value": {"name": "a"}}')
    value, completion = await pool.complete_json("slm", MESSAGES, any_of)
    assert value == {"name": "a"} and completion.text == '{"name": "a"}'
    wrapped = sent[0]["response_format"]["json_schema"]["schema"]
    assert wrapped["properties"]["value"] == any_of and wrapped["type"] == "object"
    await pool.aclose()
    # vLLM takes the schema as it is.
    pool, sent = _pool("vllm", '{"name": "a"}')
    await pool.complete_json("slm", MESSAGES, any_of)
    assert sent[0]["response_format"]["json_schema"]["schema"] == any_of
    await pool.aclose()
