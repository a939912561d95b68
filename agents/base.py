"""What every specialist agent returns: a typed value, or escalation signals, plus its trace.

Agents own prompts, decoding constraints, validation and one repair turn for one kind of task.
They never decide to escalate: they report `Signal`s, and the escalation policy decides.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Literal, TypeVar

from brickwork.errors import ModelTimeoutError, ServingError
from brickwork.serving.pool import ModelPool
from brickwork.serving.types import Completion, Message

__all__ = [
    "AgentResult",
    "Attempt",
    "Caller",
    "Signal",
    "SignalKind",
    "SkippedCall",
    "Validator",
    "call_with",
    "estimate_prompt_tokens",
    "estimate_tokens",
    "examples_chars",
    "on_bottom_tier",
    "repair_loop",
    "shots_for",
    "top_tier_priced",
    "with_top_tier_prompt",
]

T = TypeVar("T")

#: Why an agent could not deliver a trusted value on the small model.
SignalKind = Literal[
    "invalid_output",  # output not parseable / not valid against the contract
    "ungrounded_value",  # a value the user never said (grounding check)
    "low_confidence",  # a value, but below the skill's confidence threshold
    "unknown_tool",  # the model named a tool the registry does not have
    "invalid_arguments",  # tool arguments failed the tool's schema
    "tool_error",  # the tool raised
    "tool_timeout",  # the tool did not return in time
    "unsafe_sql",  # SQL failed the read-only safety pipeline
    "sql_error",  # the database refused the query
    "sql_timeout",  # the query ran past its time limit
    "model_error",  # the model endpoint failed (after retries/failover)
    "model_timeout",  # the model endpoint gave no answer in time
]


@dataclass(frozen=True)
class Signal:
    """One reason to distrust an agent's output, with the validator's own words."""

    kind: SignalKind
    detail: str
    attempt: int = 0


@dataclass(frozen=True)
class Attempt:
    """One model call: what was sent, what came back, and what the validators said."""

    messages: tuple[Message, ...]
    output: str | None
    completion: Completion | None
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class SkippedCall:
    """A model call an agent did not make, as the top tier would have made it.

    With every node on the top tier the step would have been a call: the top tier is sent the
    whole prompt (every label, every example) and does not use the kNN. Its tokens are
    estimated (`estimate_prompt_tokens`), since no tokenizer ran.

    Attributes:
        method: What decided instead of a model ("knn").
        prompt_tokens: Estimated prompt tokens of the top tier's call.
        completion_tokens: Estimated completion tokens (the answer's length).
    """

    method: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class AgentResult(Generic[T]):
    """An agent's answer.

    Attributes:
        value: The validated, typed output, or None when the agent could not produce one.
        signals: Reasons to escalate (empty when the value is trusted).
        attempts: Every model call made, in order (the first try, then any repair).
        confidence: The agent's confidence in `value` when it has a measure of it.
        method: What decided ("slm", "knn", ...).
        extra: Kind-specific details (tool results, SQL rows, ...).
        skipped: The model call the agent spared (the kNN decided without one), as the top
            tier would have made it; the ledger prices it into the counterfactual only.
    """

    value: T | None
    signals: tuple[Signal, ...] = ()
    attempts: tuple[Attempt, ...] = ()
    confidence: float | None = None
    method: str = "slm"
    extra: dict[str, Any] = field(default_factory=dict)
    skipped: SkippedCall | None = None

    @property
    def ok(self) -> bool:
        """True when there is a value and nothing speaks against it."""
        return self.value is not None and not self.signals

    @property
    def repairs(self) -> int:
        """Repair turns used (attempts after the first)."""
        return max(0, len(self.attempts) - 1)

    @property
    def completions(self) -> list[Completion]:
        """Every completion, for the cost ledger."""
        return [a.completion for a in self.attempts if a.completion is not None]


#: Checks a model output: returns (value, []) or (None, [error, ...]) with signal kind.
Validator = Callable[[str], Awaitable[tuple[Any, list[str], SignalKind]]]
#: Makes one model call for the given messages.
Caller = Callable[[Sequence[Message]], Awaitable[Completion]]

_REPAIR = (
    "Your previous answer was rejected:\n{errors}\n"
    "Answer again with a corrected output that fixes every error above."
)


async def repair_loop(
    messages: Sequence[Message],
    call: Caller,
    validate: Validator,
    *,
    max_repairs: int,
) -> tuple[Any, list[Attempt], list[Signal]]:
    """Call, validate, and on failure repair up to `max_repairs` times with the errors shown.

    Returns the value (None if every attempt failed), the attempts, and the signals of the
    final failed attempt (empty on success). Model errors end the loop with a signal, never
    an exception: the caller gets a result it can escalate. Configuration errors (an unknown
    model name) still raise: they are bugs to fix, not steps to escalate.
    """
    convo = list(messages)
    attempts: list[Attempt] = []
    for number in range(max_repairs + 1):
        try:
            completion = await call(convo)
        except ModelTimeoutError as exc:
            attempts.append(Attempt(tuple(convo), None, None, (str(exc),)))
            return None, attempts, [Signal("model_timeout", str(exc), number)]
        except ServingError as exc:
            attempts.append(Attempt(tuple(convo), None, None, (str(exc),)))
            return None, attempts, [Signal("model_error", str(exc), number)]
        value, errors, kind = await validate(completion.text)
        attempts.append(Attempt(tuple(convo), completion.text, completion, tuple(errors)))
        if not errors:
            return value, attempts, []
        if number == max_repairs:
            return None, attempts, [Signal(kind, "; ".join(errors), number)]
        convo = [
            *convo,
            {"role": "assistant", "content": completion.text},
            {"role": "user", "content": _REPAIR.format(errors="\n".join(f"- {e}" for e in errors))},
        ]
    raise AssertionError("unreachable")  # pragma: no cover


def shots_for(model: str, few_shot: int) -> int:
    """Few-shot examples to show `model`: none for a LoRA adapter (`slm:<adapter>`).

    Adapters made by `brickwork tune` learned the task from zero-shot prompts (the examples are
    in their weights); showing them examples again would be a prompt they were not trained on.
    """
    return 0 if ":" in model else few_shot


def on_bottom_tier(pool: ModelPool, logical: str) -> bool:
    """Whether `logical` runs on the ladder's first rung (or the pool has no ladder).

    The examples' kNN votes only there: it is the cheap step below the small model, and a tier
    above (an escalation, or a node run on the top tier) chooses freely among every option.
    """
    ladder = pool.tiers
    if not ladder:
        return logical.partition(":")[0] != "frontier"
    return pool.tier_of(logical) == ladder[0]


def _chars(messages: Sequence[Message]) -> int:
    return sum(len(str(m.get("content") or "")) for m in messages)


#: Characters per token of the top tier's tokenizer on the skills' prompts, and the chat
#: template's tokens per message (role markers). Measured with the bundled large model's
#: (Qwen2.5) chat template and tokenizer on the banking and smart_home intent prompts: 349,
#: 359, 167 and 177 tokens, each estimated within 2 tokens (SmolLM2's tokenizer needs 10 %
#: more; taking the larger model's count keeps the counterfactual from being overstated).
CHARS_PER_TOKEN = 4.5
TOKENS_PER_MESSAGE = 5


def estimate_tokens(text: str) -> int:
    """Tokens of `text` without a tokenizer: its characters over `CHARS_PER_TOKEN` (at least 1)."""
    return max(1, round(len(text) / CHARS_PER_TOKEN))


def estimate_prompt_tokens(messages: Sequence[Message]) -> int:
    """Prompt tokens of a chat without a tokenizer.

    Its text's characters over `CHARS_PER_TOKEN`, plus `TOKENS_PER_MESSAGE` a message for the
    chat template.
    """
    return round(_chars(messages) / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages)


def examples_chars(shown: Sequence[Message], top: Sequence[Message]) -> int:
    """Characters the top tier's prompt `top` has beyond the prompt `shown` (its examples)."""
    return max(0, _chars(top) - _chars(shown))


def top_tier_priced(completion: Completion, sent: Sequence[Message], extra: int) -> Completion:
    """`completion` carrying the prompt tokens the top tier would have been sent.

    A tuned specialist is prompted without the skill's examples (`shots_for`), the top tier
    with them: pricing the specialist's own tokens at the top tier's rate would understate the
    counterfactual "every node on the top tier". `top_tier_prompt_tokens` is the call's prompt
    tokens plus the `extra` characters of examples at the call's own tokens per character of
    `sent`. The small model's tokenizer stands in for the top tier's: for "Set the thermostat
    to cool mode" the estimate was 672 prompt tokens, and the large tier's own count 654.
    """
    prompt, chars = completion.usage.prompt_tokens, _chars(sent)
    if extra <= 0 or prompt <= 0 or chars <= 0:
        return completion
    return replace(completion, top_tier_prompt_tokens=prompt + round(extra * prompt / chars))


def with_top_tier_prompt(call: Caller, shown: Sequence[Message], top: Sequence[Message]) -> Caller:
    """`call`, each completion `top_tier_priced`.

    The step is first prompted with `shown`, the top tier's prompt being `top`; repair turns
    carry the same extra examples.
    """
    extra = examples_chars(shown, top)
    if extra <= 0:
        return call

    async def counted(messages: Sequence[Message]) -> Completion:
        return top_tier_priced(await call(messages), messages, extra)

    return counted


def call_with(pool: ModelPool, model: str, **options: Any) -> Caller:
    """A `Caller` that sends messages to `model` on `pool` with fixed request options."""

    async def call(messages: Sequence[Message]) -> Completion:
        return await pool.complete(model, messages, **options)

    return call
