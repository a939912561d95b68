"""Test doubles for code that calls models, shipped with the package (one blessed fake).

Both doubles are real `ModelPool`s whose endpoints answer through an `httpx2.MockTransport`,
so the code under test runs the real pool, client, retry and wire-format logic; only the model
is scripted.

    model = ScriptedModel(['{"name": "toggle_lights", "parameters": {}}'])
    async with model.pool() as pool:
        ...
    model.assert_consumed()
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2

from brickwork.serving.client import EndpointConfig
from brickwork.serving.pool import ModelPool, PoolConfig
from brickwork.serving.resilience import RetryPolicy

__all__ = ["FunctionModel", "ModelStep", "ScriptedModel"]

LOGICAL_NAMES = ("slm", "frontier")


@dataclass(frozen=True)
class ModelStep:
    """One scripted answer: text (and optional logprobs), or an HTTP error status."""

    text: str = ""
    status: int = 200
    logprobs: Sequence[tuple[str, float]] | None = None
    prompt_tokens: int = 10
    completion_tokens: int = 5


def _response(step: ModelStep) -> httpx2.Response:
    if step.status != 200:
        return httpx2.Response(step.status, json={"error": {"message": step.text or "error"}})
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": step.text},
        "finish_reason": "stop",
    }
    if step.logprobs is not None:
        choice["logprobs"] = {
            "content": [
                {"token": t, "logprob": lp, "bytes": None, "top_logprobs": []}
                for t, lp in step.logprobs
            ]
        }
    return httpx2.Response(
        200,
        json={
            "id": "fake",
            "object": "chat.completion",
            "created": 0,
            "model": "fake",
            "choices": [choice],
            "usage": {
                "prompt_tokens": step.prompt_tokens,
                "completion_tokens": step.completion_tokens,
                "total_tokens": step.prompt_tokens + step.completion_tokens,
            },
        },
    )


@dataclass
class _FakeBase(ABC):
    requests: list[dict[str, Any]] = field(default_factory=list, init=False)

    @abstractmethod
    def answer(self, body: dict[str, Any]) -> ModelStep:
        """The answer to one request body."""

    def _handle(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        return _response(self.answer(body))

    def pool(self, *, kind: str = "vllm", tiers: Sequence[str] = LOGICAL_NAMES) -> ModelPool:
        """A pool whose tiers (`slm` and `frontier`, and `slm:<adapter>`) answer from this fake.

        Pass `tiers=("slm", "large", "frontier")` for a ladder; each tier's endpoint sends
        `fake-<tier>` as the model, so the fake can answer per tier.
        """
        endpoints = {
            name: [
                EndpointConfig(
                    name=f"fake-{name}",
                    base_url=f"http://{name}.fake/v1",
                    model=f"fake-{name}",
                    kind="vllm" if name != "frontier" else kind,  # type: ignore[arg-type]
                    stand_in=name == "frontier",
                )
            ]
            for name in tiers
        }
        config = PoolConfig(models=endpoints, retry=RetryPolicy(max_retries=0))
        return ModelPool(
            config,
            http_client_factory=lambda _: httpx2.AsyncClient(
                transport=httpx2.MockTransport(self._handle)
            ),
        )


@dataclass
class ScriptedModel(_FakeBase):
    """Answers requests in order from a script; fails on an unexpected or unconsumed step."""

    steps: list[str | ModelStep] = field(default_factory=list)

    def answer(self, body: dict[str, Any]) -> ModelStep:
        """The next scripted step."""
        if not self.steps:
            raise AssertionError(
                f"unexpected model call #{len(self.requests)} to {body.get('model')!r}: "
                f"{json.dumps(body['messages'])[:300]}"
            )
        step = self.steps.pop(0)
        return step if isinstance(step, ModelStep) else ModelStep(text=step)

    def assert_consumed(self) -> None:
        """Fail when scripted steps were never asked for."""
        assert not self.steps, f"{len(self.steps)} scripted step(s) never used: {self.steps!r}"


@dataclass
class FunctionModel(_FakeBase):
    """Answers each request with `function(request_body)`: a string or a `ModelStep`."""

    function: Callable[[dict[str, Any]], str | ModelStep] = lambda body: ""

    def answer(self, body: dict[str, Any]) -> ModelStep:
        """Whatever the function returns for this request."""
        result = self.function(body)
        return result if isinstance(result, ModelStep) else ModelStep(text=result)
