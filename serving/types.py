"""Plain data that crosses the serving boundary: requests in, completions out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ChatRequest",
    "Completion",
    "Message",
    "TokenLogprob",
    "Usage",
]

#: An OpenAI-style chat message (`role`, `content`, ...).
Message = Mapping[str, Any]


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion request, independent of the endpoint that will serve it.

    Attributes:
        messages: The conversation.
        max_tokens: Upper bound on generated tokens.
        temperature: 0 for greedy decoding (the default: specialists want determinism).
        json_schema: Constrain the output to JSON valid against this schema.
        schema_name: Name sent with the schema (some APIs require one).
        choices: Constrain the output to exactly one of these strings.
        logprobs: Return the chosen tokens' log-probabilities.
        top_logprobs: How many alternatives to return per token (needs `logprobs`).
        stop: Stop sequences.
        seed: Sampling seed, where the endpoint honours it.
    """

    messages: Sequence[Message]
    max_tokens: int = 256
    temperature: float = 0.0
    json_schema: Mapping[str, Any] | None = None
    schema_name: str = "output"
    choices: Sequence[str] | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    stop: Sequence[str] | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.json_schema is not None and self.choices is not None:
            raise ValueError("give json_schema or choices, not both")
        if self.choices is not None and not self.choices:
            raise ValueError("choices must not be empty")
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs=True")


@dataclass(frozen=True)
class Usage:
    """Token counts of one call."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token, its log-probability and the top alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Completion:
    """What one model call produced, and what it cost in tokens and time.

    Attributes:
        text: The generated text.
        model: The logical model name asked for (e.g. "slm:intent").
        served_model: The model name sent to the endpoint (base or adapter name).
        endpoint: Name of the endpoint that answered.
        usage: Token counts.
        latency_s: Wall time of the successful attempt.
        attempts: Attempts made, across retries and failover (1 when the first try worked).
        finish_reason: Why generation stopped ("stop", "length", ...).
        logprobs: Per-token log-probabilities when asked for.
        endpoint_kind: "vllm" for servers we can tune, "openai" for any other API.
        stand_in: True when a local model played the frontier role (no frontier configured).
        extra: Anything else the endpoint returned that a caller may want.
        top_tier_prompt_tokens: The prompt tokens the top tier would have been sent for the
            same step, when that prompt is longer than this one (a tuned specialist is
            prompted without the examples the top tier is shown: `agents.base.shots_for`);
            None: the same prompt. Only the counterfactual "every node on the top tier" reads it.
    """

    text: str
    model: str
    served_model: str
    endpoint: str
    usage: Usage
    latency_s: float
    attempts: int = 1
    finish_reason: str | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None
    endpoint_kind: Literal["vllm", "openai"] = "vllm"
    stand_in: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
    top_tier_prompt_tokens: int | None = None
