"""Intent and extraction agents on the real embedded model and the real MiniLM encoder.

The 135M model is weak: these tests assert what must hold whatever it answers (a label from
the set, logprob confidence in (0, 1], validated output or signals, a trace with prompts and
outputs), never that it is right on a given item.
"""

from __future__ import annotations

import math

import pytest

from brickwork.agents.embeddings import EmbeddingKNN
from brickwork.agents.extract import ExtractAgent
from brickwork.agents.intent import IntentAgent
from brickwork.serving.pool import ModelPool
from brickwork.skills.examples import (
    TransferRequest,
    banking_intent_skill,
    banking_transfer_extraction_skill,
)

pytestmark = pytest.mark.vllm

INTENTS = banking_intent_skill()


@pytest.fixture(scope="module")
def knn() -> EmbeddingKNN:
    """The real all-MiniLM-L6-v2 kNN over the banking intent examples."""
    return EmbeddingKNN.from_examples(INTENTS.examples)


def _near_duplicate(text: str) -> str:
    return text.lower().rstrip("?.! ") + ", please help"


@pytest.mark.parametrize("index", [0, 5, 10, 15])
async def test_knn_decides_near_duplicates_without_the_model(
    knn: EmbeddingKNN, slm_pool: ModelPool, index: int
) -> None:
    example = INTENTS.examples[index]
    assert isinstance(example.input, str)
    result = await IntentAgent(INTENTS, knn=knn).run(_near_duplicate(example.input), pool=slm_pool)
    assert result.method == "knn" and result.attempts == () and result.completions == []
    assert result.value is not None and result.value.label == example.output
    assert result.ok and result.value.confidence >= 0.8
    latency = result.extra["knn"]["latency_s"]
    print(f"kNN decided {example.output!r} in {latency * 1000:.1f} ms")
    assert latency < 2.0


@pytest.mark.parametrize("index", [1, 12])
async def test_small_model_returns_a_label_with_logprob_confidence(
    slm_pool: ModelPool, index: int
) -> None:
    example = INTENTS.examples[index]
    agent = IntentAgent(INTENTS)
    result = await agent.run(example.input, pool=slm_pool)
    assert result.value is not None and result.method == "slm"
    assert result.value.label in INTENTS.contract.labels
    assert 0.0 < result.value.confidence <= 1.0
    low = result.value.confidence < INTENTS.thresholds.min_confidence
    assert [s.kind for s in result.signals] == (["low_confidence"] if low else [])
    [attempt] = result.attempts
    assert list(attempt.messages) == agent.messages(example.input)
    assert attempt.output == result.value.label
    assert attempt.completion is not None and attempt.completion.logprobs
    assert math.exp(sum(t.logprob for t in attempt.completion.logprobs)) == pytest.approx(
        result.value.confidence
    )


async def test_unsure_knn_lets_the_model_choose_among_its_candidates(
    knn: EmbeddingKNN, slm_pool: ModelPool
) -> None:
    # No label has five examples, so with k=5 no vote is unanimous and a threshold of 1.0
    # always sends the choice to the model.
    agent = IntentAgent(INTENTS, knn=knn, knn_threshold=1.0)
    text = "My card was stolen and now there is a payment I did not make"
    result = await agent.run(text, pool=slm_pool)
    assert result.method == "knn+slm"
    candidates = [label for label, _ in result.extra["knn"]["ranking"]][:3]
    assert len(candidates) >= 2
    assert result.value is not None and result.value.label in candidates
    assert 0.0 < result.value.confidence <= 1.0
    system = result.attempts[0].messages[0]["content"]
    offered = [label for label in INTENTS.contract.labels if f"- {label}:" in system]
    assert sorted(offered) == sorted(candidates)


async def test_extraction_is_validated_or_signalled(slm_pool: ModelPool) -> None:
    skill = banking_transfer_extraction_skill()
    result = await ExtractAgent(skill).run("Send 40 dollars to Ana for lunch", pool=slm_pool)
    print("extraction:", result.value, result.signals, [a.output for a in result.attempts])
    if result.value is not None:
        assert isinstance(result.value, TransferRequest) and result.ok
        assert result.attempts[-1].errors == ()
    else:
        assert result.signals and {s.kind for s in result.signals} <= {"invalid_output"}
        assert result.signals[0].detail
    assert 1 <= len(result.attempts) <= skill.thresholds.max_repairs + 1
    first = result.attempts[0]
    assert first.messages[0]["role"] == "system" and '"currency"' in first.messages[0]["content"]
    assert first.messages[-1] == {"role": "user", "content": "Send 40 dollars to Ana for lunch"}
    for attempt in result.attempts:
        assert isinstance(attempt.output, str) and attempt.completion is not None
    if len(result.attempts) == 2:
        repair = result.attempts[1].messages
        assert repair[-2] == {"role": "assistant", "content": result.attempts[0].output}
        assert all(error in repair[-1]["content"] for error in result.attempts[0].errors)


async def test_cut_off_extraction_is_repaired_once_then_signalled(slm_pool: ModelPool) -> None:
    skill = banking_transfer_extraction_skill()
    result = await ExtractAgent(skill, max_tokens=6).run("Pay Tom £35.50", pool=slm_pool)
    assert result.value is None and len(result.attempts) == 2
    assert [a.completion.finish_reason for a in result.attempts if a.completion] == [
        "length",
        "length",
    ]
    [signal] = result.signals
    assert signal.kind == "invalid_output" and "cut off at the 6-token limit" in signal.detail
    assert "cut off at the 6-token limit" in result.attempts[1].messages[-1]["content"]
