"""IntentAgent and EmbeddingKNN: constrained choice on the wire, confidence, signals, kNN policy."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from brickwork.agents.base import SkippedCall, estimate_prompt_tokens, estimate_tokens
from brickwork.agents.embeddings import EmbeddingKNN
from brickwork.agents.intent import Intent, IntentAgent
from brickwork.app import App
from brickwork.errors import ConfigError, SkillError, UnknownModelError
from brickwork.events import ModelCallEvent, ModelSkipped
from brickwork.graphs import GraphModule
from brickwork.graphs.builder import Specialist, build_graph
from brickwork.skills.examples import banking_transfer_extraction_skill
from brickwork.skills.skill import Example, LabelSet, Skill, Thresholds
from brickwork.store import RunStore
from brickwork.testing import ModelStep, ScriptedModel

LABELS = {
    "card": "The card is lost or stolen.",
    "transfer": "A transfer has not arrived.",
    "pin": "The customer wants to change the PIN.",
}
EXAMPLES = [
    Example("my card is gone", "card"),
    Example("where is my transfer", "transfer"),
    Example("change pin please", "pin"),
    Example("lost card yesterday", "card"),
    Example("transfer still pending", "transfer"),
    Example("forgot my pin", "pin"),
]
SKILL = Skill(
    name="toy_intent",
    instructions="Pick the intent.",
    contract=LabelSet(LABELS),
    examples=EXAMPLES,
)
AXES = ("card", "transfer", "pin")


def keyword_encoder(texts: list[str]) -> np.ndarray:
    """One axis per keyword, plus a constant axis so no text embeds to zero."""
    encoded = []
    for text in texts:
        words = text.lower().split()
        encoded.append([float(words.count(axis)) for axis in AXES] + [0.01])
    return np.array(encoded)


def _knn(**kw: Any) -> EmbeddingKNN:
    return EmbeddingKNN.from_examples(EXAMPLES, encoder=keyword_encoder, **kw)


def _choice(text: str, *logprobs: float) -> ModelStep:
    return ModelStep(text=text, logprobs=[(f"t{i}", lp) for i, lp in enumerate(logprobs)])


def _system(*labels: str) -> dict[str, str]:
    listed = "\n".join(f"- {name}: {LABELS[name]}" for name in labels)
    content = (
        f"Pick the intent.\n\nLabels:\n{listed}\n\n"
        "Answer with exactly one label name from the list, and nothing else."
    )
    return {"role": "system", "content": content}


def _turns(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    turns = []
    for text, label in pairs:
        turns += [{"role": "user", "content": text}, {"role": "assistant", "content": label}]
    return turns


async def _run(model: ScriptedModel, agent: IntentAgent, text: str = "card", **kw: Any) -> Any:
    async with model.pool() as pool:
        result = await agent.run(text, pool=pool, **kw)
    model.assert_consumed()
    return result


async def test_wire_payload_is_a_constrained_choice_over_every_label() -> None:
    model = ScriptedModel([_choice("transfer", -0.01, -0.02)])
    result = await _run(model, IntentAgent(SKILL), "my money never came")
    messages = [
        _system("card", "transfer", "pin"),
        *_turns(
            ("my card is gone", "card"),
            ("where is my transfer", "transfer"),
            ("change pin please", "pin"),
        ),
        {"role": "user", "content": "my money never came"},
    ]
    assert model.requests == [
        {
            "model": "fake-slm",
            "messages": messages,
            "max_tokens": len("transfer") + 4,
            "temperature": 0.0,
            "logprobs": True,
            "structured_outputs": {"choice": ["card", "transfer", "pin"]},
        }
    ]
    assert result.value == Intent("transfer", pytest.approx(math.exp(-0.03)), "slm")
    assert result.ok and result.method == "slm"
    assert result.confidence == pytest.approx(math.exp(-0.03))
    [attempt] = result.attempts
    assert list(attempt.messages) == messages
    assert attempt.output == "transfer" and attempt.completion is not None


async def test_model_override_and_adapter_binding_pick_the_served_model() -> None:
    model = ScriptedModel([_choice("pin", -0.1), _choice("pin", -0.1)])
    async with model.pool() as pool:
        await IntentAgent(SKILL).run("pin", pool=pool, model="frontier")
        await IntentAgent(SKILL.with_binding("slm", "intents")).run("pin", pool=pool)
        with pytest.raises(UnknownModelError):
            await IntentAgent(SKILL).run("pin", pool=pool, model="nope")
    assert [r["model"] for r in model.requests] == ["fake-frontier", "intents"]


async def test_an_adapters_counterfactual_counts_the_examples_the_top_tier_is_shown() -> None:
    model = ScriptedModel([_choice("pin", -0.1), _choice("pin", -0.1)])
    async with model.pool() as pool:
        tuned = await IntentAgent(SKILL.with_binding("slm", "intents")).run("pin", pool=pool)
        plain = await IntentAgent(SKILL).run("pin", pool=pool)
    (attempt,) = tuned.attempts
    assert attempt.completion is not None and plain.attempts[0].completion is not None
    # The adapter saw no examples; the top tier would see them, so its prompt is longer.
    assert attempt.completion.top_tier_prompt_tokens is not None
    assert attempt.completion.top_tier_prompt_tokens > attempt.completion.usage.prompt_tokens
    assert plain.attempts[0].completion.top_tier_prompt_tokens is None


async def test_chat_history_input_is_sent_after_the_examples() -> None:
    history = [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "How can I help?"},
        {"role": "user", "content": "my pin is blocked"},
    ]
    model = ScriptedModel([_choice("pin", -0.1)])
    await _run(model, IntentAgent(SKILL, few_shot=0), history)
    assert model.requests[0]["messages"] == [_system("card", "transfer", "pin"), *history]


async def test_low_confidence_is_signalled_and_the_value_kept() -> None:
    model = ScriptedModel([_choice("card", -1.0, -0.5)])
    result = await _run(model, IntentAgent(SKILL))
    assert result.value == Intent("card", pytest.approx(math.exp(-1.5)), "slm")
    [signal] = result.signals
    assert signal.kind == "low_confidence"
    assert "0.223" in signal.detail and "0.60" in signal.detail
    assert not result.ok


async def test_the_skill_threshold_decides_what_is_low() -> None:
    lenient = Skill(
        name="lenient",
        instructions="Pick the intent.",
        contract=LabelSet(LABELS),
        thresholds=Thresholds(min_confidence=0.2),
    )
    model = ScriptedModel([_choice("card", -1.5)])
    assert (await _run(model, IntentAgent(lenient))).ok


async def test_missing_logprobs_mean_unknown_confidence() -> None:
    model = ScriptedModel(["pin"])
    result = await _run(model, IntentAgent(SKILL))
    assert result.value is not None and math.isnan(result.value.confidence)
    assert [s.kind for s in result.signals] == ["low_confidence"]


@pytest.mark.parametrize("status", [500, 400])
async def test_model_failure_is_a_model_error_signal_without_value(status: int) -> None:
    model = ScriptedModel([ModelStep(status=status, text="boom")])
    result = await _run(model, IntentAgent(SKILL))
    assert result.value is None
    [signal] = result.signals
    assert signal.kind == "model_error" and "boom" in signal.detail
    [attempt] = result.attempts
    assert attempt.output is None and attempt.errors == (signal.detail,)


async def test_confident_knn_decides_without_any_model_call() -> None:
    model = ScriptedModel([])  # any model call fails the test
    result = await _run(model, IntentAgent(SKILL, knn=_knn()), "card lost")
    assert model.requests == []
    assert result.ok and result.method == "knn" and result.attempts == ()
    assert result.value == Intent("card", pytest.approx(1.0), "knn")
    assert result.extra["knn"]["label"] == "card"
    assert result.extra["knn"]["latency_s"] >= 0
    # The call it spared, as the top tier would have made it: every label, every example.
    agent = IntentAgent(SKILL, knn=_knn())
    assert result.skipped == SkippedCall(
        "knn", estimate_prompt_tokens(agent.messages("card lost")), estimate_tokens("card") + 1
    )
    assert result.skipped.prompt_tokens > estimate_prompt_tokens(agent.messages("card lost", []))


async def test_unsure_knn_narrows_the_model_choice_to_its_candidates() -> None:
    model = ScriptedModel([_choice("transfer", -0.2)])
    agent = IntentAgent(SKILL, knn=_knn(k=4))
    result = await _run(model, agent, "card transfer")
    [body] = model.requests
    assert body["structured_outputs"] == {"choice": ["card", "transfer"]}
    assert body["messages"] == [
        _system("card", "transfer"),
        *_turns(
            ("my card is gone", "card"),
            ("where is my transfer", "transfer"),
            ("lost card yesterday", "card"),
        ),
        {"role": "user", "content": "card transfer"},
    ]
    assert result.value == Intent("transfer", pytest.approx(math.exp(-0.2)), "knn+slm")
    assert result.method == "knn+slm"
    assert result.skipped is None  # a model was called: nothing spared
    # The model disagrees with the (tied) nearest neighbours: flagged for the escalation policy.
    assert [s.kind for s in result.signals] == ["low_confidence"]
    assert "nearest neighbours say 'card'" in result.signals[0].detail
    assert result.extra["knn"]["share"] == pytest.approx(0.5)
    assert result.extra["knn"]["margin"] == pytest.approx(0.0)


async def test_the_knn_threshold_is_the_agents_policy() -> None:
    # k=4 over "card transfer" splits the vote 50/50: a threshold of 0.5 accepts that.
    model = ScriptedModel([])
    agent = IntentAgent(SKILL, knn=_knn(k=4), knn_threshold=0.5)
    result = await _run(model, agent, "card transfer")
    assert result.method == "knn" and result.value is not None
    assert result.value.label == "card"  # tie: the nearest neighbour's label (first example)
    assert [s.kind for s in result.signals] == ["low_confidence"]  # 0.5 < min_confidence 0.6


async def test_model_error_after_unsure_knn_keeps_the_vote_in_extra() -> None:
    model = ScriptedModel([ModelStep(status=503)])
    result = await _run(model, IntentAgent(SKILL, knn=_knn(k=4)), "card transfer")
    assert result.value is None and result.method == "knn+slm"
    assert [s.kind for s in result.signals] == ["model_error"]
    assert result.extra["knn"]["ranking"] == [["card", 0.5], ["transfer", 0.5]]


def test_agent_rejects_skills_and_knns_that_do_not_fit() -> None:
    with pytest.raises(SkillError, match="LabelSet"):
        IntentAgent(banking_transfer_extraction_skill())
    other = EmbeddingKNN.from_examples([Example("x", "elsewhere")], encoder=keyword_encoder)
    with pytest.raises(SkillError, match="elsewhere"):
        IntentAgent(SKILL, knn=other)
    with pytest.raises(SkillError, match="knn_threshold"):
        IntentAgent(SKILL, knn_threshold=0.0)
    with pytest.raises(SkillError, match="max_candidates"):
        IntentAgent(SKILL, max_candidates=1)


def test_knn_vote_weights_nearer_examples_more() -> None:
    knn = _knn(k=3)
    # "card card transfer": cosine 0.894 to card examples, 0.447 to transfer ones.
    vote = knn.classify("card card transfer")
    assert vote.label == "card"
    near, far = 2 / math.sqrt(5), 1 / math.sqrt(5)
    card, transfer = 2.0, math.exp((far - near) / 0.05)
    assert vote.share == pytest.approx(card / (card + transfer), rel=1e-3)
    assert vote.margin == pytest.approx((card - transfer) / (card + transfer), rel=1e-3)
    assert [i for i, _ in vote.neighbours] == [0, 3, 1]
    assert vote.candidates(1) == ("card",)
    assert knn.labels == ("card", "transfer", "pin")


def test_knn_leave_one_out_and_batches() -> None:
    knn = _knn(k=1)
    assert [v.label for v in knn.leave_one_out()] == [e.output for e in EXAMPLES]
    assert [v.label for v in knn.classify_many(["pin", "transfer"])] == ["pin", "transfer"]
    assert knn.classify_many([]) == []


def test_knn_rejects_bad_examples_and_encoders() -> None:
    with pytest.raises(SkillError, match="not a label string"):
        EmbeddingKNN.from_examples([Example("x", {"a": 1})], encoder=keyword_encoder)
    with pytest.raises(SkillError, match="at least one"):
        EmbeddingKNN.from_examples([], encoder=keyword_encoder)
    with pytest.raises(ConfigError, match="one row per text"):
        EmbeddingKNN.from_examples(EXAMPLES, encoder=lambda texts: np.zeros((1, 4)))
    with pytest.raises(ConfigError, match="k=0"):
        _knn(k=0)
    with pytest.raises(ConfigError, match="temperature"):
        _knn(temperature=0.0)


def test_knn_embeds_the_last_user_turn_of_a_chat_example() -> None:
    seen: list[list[str]] = []

    def encoder(texts: list[str]) -> np.ndarray:
        seen.append(texts)
        return keyword_encoder(texts)

    chat = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "pin"},
    ]
    EmbeddingKNN.from_examples([Example(chat, "pin"), Example("card", "card")], encoder=encoder)
    assert seen == [["pin", "card"]]


async def test_concurrent_aclassify_calls_share_encoder_calls() -> None:
    batches: list[int] = []

    def counting_encoder(texts: list[str]) -> np.ndarray:
        batches.append(len(texts))
        return keyword_encoder(texts)

    knn = EmbeddingKNN.from_examples(EXAMPLES, encoder=counting_encoder)
    batches.clear()  # the examples' own embedding
    texts = ["lost my card", "pin change", "transfer late"] * 30
    votes = await asyncio.gather(*(knn.aclassify(t) for t in texts))
    assert [v.label for v in votes] == [knn.classify(t).label for t in texts]
    assert sum(batches[: len(batches) - len(texts)]) == len(texts)  # the gathered calls
    assert len(batches) - len(texts) < len(texts) / 10  # batched, not one call per text


async def test_aclassify_gives_every_waiter_the_encoder_error() -> None:
    calls = 0

    def flaky(texts: list[str]) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls > 1:  # the first call embeds the examples
            raise RuntimeError("encoder down")
        return keyword_encoder(texts)

    knn = EmbeddingKNN.from_examples(EXAMPLES, encoder=flaky)
    results = await asyncio.gather(
        *(knn.aclassify(t) for t in ("card", "pin")), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    # A later query on the same loop starts a fresh batch (the drainer is not stuck).
    with pytest.raises(RuntimeError, match="encoder down"):
        await knn.aclassify("card")


async def test_the_knn_votes_on_the_bottom_tier_only_and_a_higher_tier_sees_every_label() -> None:
    # A clear vote ("card") would decide on the small tier; the large tier is asked instead,
    # over every label, as a node run on the top tier (or escalated to it) should be.
    model = ScriptedModel([_choice("pin", -0.1), _choice("card", -0.1)])
    agent, unsure_agent = IntentAgent(SKILL, knn=_knn()), IntentAgent(SKILL, knn=_knn(k=4))
    async with model.pool(tiers=("slm", "large")) as pool:
        small = await agent.run("card lost", pool=pool, model="slm")
        large = await agent.run("card lost", pool=pool, model="large")
        unsure = await unsure_agent.run("card transfer", pool=pool, model="large")
    model.assert_consumed()
    assert small.method == "knn" and small.attempts == ()
    assert large.method == "slm" and "knn" not in large.extra
    assert large.value is not None and large.value.label == "pin"
    # An unclear vote would narrow the small tier's choice to two labels; not the large tier's.
    assert unsure.method == "slm" and unsure.value is not None and unsure.value.label == "card"
    assert len(model.requests) == 2
    assert all(r["messages"][0] == _system("card", "transfer", "pin") for r in model.requests)


async def test_in_a_graph_the_spared_call_counts_in_the_counterfactual_run_and_node_sums(
    tmp_path: Path,
) -> None:
    # "Every node on the top tier" would have called a model where the kNN decided: the run's
    # counterfactual, and the store's per-node sums, include that call; the spend does not.
    module = ModuleType("brickwork_test_knn_intent")
    agent = IntentAgent(SKILL, knn=_knn())

    def build(*, checkpointer: Any = None) -> Any:
        node = Specialist("intent", agent, lambda s: s["text"])
        return build_graph([node], checkpointer=checkpointer)

    module.build = build  # type: ignore[attr-defined]
    store = RunStore(str(tmp_path / "runs.db"))
    model = ScriptedModel([])  # any model call fails the test
    async with model.pool() as pool:
        app = App(GraphModule("knn_intent", module), pool=pool, checkpoints=None, store=store)
        result = await app.ainvoke("card lost")
        await app.aclose()
    assert result.ok and model.requests == []
    [spared] = [e for e in result.events if isinstance(e, ModelSkipped)]
    assert not any(isinstance(e, ModelCallEvent) for e in result.events)
    assert (spared.node, spared.method) == ("intent", "knn")
    assert spared.prompt_tokens == estimate_prompt_tokens(agent.messages("card lost"))
    assert result.cost.cost_usd == 0 and result.cost.calls == 0
    assert result.cost.frontier_only_usd == pytest.approx(spared.frontier_cost_usd)
    assert spared.frontier_cost_usd > 0 and result.cost.api_reference_usd > 0
    [stats] = store.node_stats()
    assert stats.model_calls == 0 and stats.cost_usd == 0
    assert stats.frontier_only_usd == pytest.approx(result.cost.frontier_only_usd)
    assert store.totals().frontier_only_usd == pytest.approx(result.cost.frontier_only_usd)
    store.close()
