"""The cost ledger: prices, per-call rows, the frontier-only counterfactual, budgets."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import replace

import pytest

from brickwork.cost import (
    CPU_SELF_HOSTED,
    FRONTIER_REFERENCE,
    H100_SELF_HOSTED,
    LARGE_CPU_SELF_HOSTED,
    LORA_CPU_SELF_HOSTED,
    Budget,
    BudgetBook,
    BudgetExceeded,
    Ledger,
    PriceBook,
    RunCost,
    SelfHostedPrice,
    TokenPrice,
    estimate_cost,
)
from brickwork.errors import BrickworkError, ConfigError
from brickwork.serving.client import EndpointConfig
from brickwork.serving.types import Completion, Usage


def completion(
    endpoint: str,
    prompt: int,
    output: int,
    *,
    model: str = "slm",
    latency_s: float = 0.5,
    stand_in: bool = False,
) -> Completion:
    return Completion(
        text="x",
        model=model,
        served_model="served-" + model,
        endpoint=endpoint,
        usage=Usage(prompt_tokens=prompt, completion_tokens=output),
        latency_s=latency_s,
        stand_in=stand_in,
    )


BOOK = PriceBook(
    endpoints={
        "local-vllm": SelfHostedPrice(gpu_usd_per_hour=0.10, tokens_per_s_capacity=250),
        "frontier": TokenPrice(1.25, 10.0),
    },
    frontier_reference=TokenPrice(1.25, 10.0),
)


# ---- prices ---------------------------------------------------------------------------------


def test_token_price_per_million_tokens() -> None:
    # 1000 * $1.25/1M + 200 * $10/1M = $0.00125 + $0.002
    assert TokenPrice(1.25, 10.0).cost(1000, 200) == pytest.approx(0.00325)


def test_self_hosted_tokens_mode_spreads_hourly_price_over_capacity() -> None:
    # CPU: $0.05/h over 1470 tok/s * 3600 s = 5.292M tok/h -> $9.448e-9 per token; 420 tokens
    assert CPU_SELF_HOSTED.cost(400, 20, latency_s=99.0) == pytest.approx(3.968254e-6, rel=1e-6)
    # H100: $2.50/h over 5000 tok/s = 18M tok/h; 1000 tokens -> $1.38889e-4 (latency ignored)
    assert H100_SELF_HOSTED.cost(800, 200, latency_s=3.0) == pytest.approx(1.388889e-4, rel=1e-6)


def test_self_hosted_busy_time_mode_divides_by_concurrency() -> None:
    price = SelfHostedPrice(gpu_usd_per_hour=2.50, amortise="busy_time", concurrency=8.0)
    # 1.2 s of a $2.50/h machine shared by 8 requests in flight: 1.2 * 2.5 / 3600 / 8
    assert price.cost(10_000, 10_000, latency_s=1.2) == pytest.approx(1.0416667e-4, rel=1e-6)
    alone = SelfHostedPrice(gpu_usd_per_hour=0.36, amortise="busy_time")
    assert alone.cost(0, 0, latency_s=10.0) == pytest.approx(0.001)


def test_price_book_prices_by_endpoint_and_counterfactual_by_reference() -> None:
    small = completion("local-vllm", 400, 20)
    assert BOOK.cost(small) == pytest.approx(4.666667e-5, rel=1e-6)
    # the same tokens on the frontier: 400 * 1.25e-6 + 20 * 1e-5
    assert BOOK.frontier_cost(small) == pytest.approx(7.0e-4)
    busy = PriceBook(
        {"gpu": SelfHostedPrice(3.6, amortise="busy_time")}, frontier_reference=TokenPrice(1, 2)
    )
    assert busy.cost(completion("gpu", 5, 5, latency_s=2.0)) == pytest.approx(0.002)
    assert busy.frontier_cost(completion("gpu", 1_000_000, 500_000)) == pytest.approx(2.0)


def test_missing_endpoint_price_names_it_and_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"no price for endpoint 'h100-b'") as info:
        BOOK.cost(completion("h100-b", 1, 1))
    message = str(info.value)
    assert "[endpoints.h100-b]" in message
    assert "'frontier', 'local-vllm'" in message


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (
            lambda: TokenPrice(-1.0, 10.0),
            "input_usd_per_mtok must be a finite number >= 0, got -1.0",
        ),
        (lambda: TokenPrice(1.0, math.nan), "output_usd_per_mtok"),
        (lambda: SelfHostedPrice(-0.5, tokens_per_s_capacity=10), "gpu_usd_per_hour"),
        (lambda: SelfHostedPrice(1.0, tokens_per_s_capacity=0), "tokens_per_s_capacity must be"),
        (lambda: SelfHostedPrice(1.0), "amortise='tokens' needs tokens_per_s_capacity"),
        (lambda: SelfHostedPrice(1.0, "busy_time", concurrency=0), "concurrency must be"),
        (lambda: SelfHostedPrice(1.0, "hours", 5), "amortise must be 'tokens' or 'busy_time'"),  # type: ignore[arg-type]
    ],
)
def test_price_validation(make, needle) -> None:
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_default_book_prices_own_hardware_as_self_hosted_and_apis_at_reference() -> None:
    book = PriceBook.default()
    assert book.price("local-vllm") == CPU_SELF_HOSTED
    assert book.price("frontier") == FRONTIER_REFERENCE == TokenPrice(1.25, 10.0)
    # A local model playing the frontier role is priced as what it is: our own hardware.
    assert book.price("frontier-stand-in") == CPU_SELF_HOSTED
    assert book.price("large-vllm") == LARGE_CPU_SELF_HOSTED
    assert book.top_tier is None and book.top_tier_price == FRONTIER_REFERENCE
    assert SelfHostedPrice(0.05, "tokens", 1470) == CPU_SELF_HOSTED
    # A specialist served as a runtime LoRA on the embedded instance is priced at that path's
    # measured speed (2.4x slower), not at the base model's.
    lora = PriceBook.default("local-vllm:smart_home-specialist", "merged:smart_home-specialist")
    assert lora.price("local-vllm:smart_home-specialist") == LORA_CPU_SELF_HOSTED
    assert lora.price("merged:smart_home-specialist") == CPU_SELF_HOSTED
    assert SelfHostedPrice(0.05, "tokens", 610) == LORA_CPU_SELF_HOSTED
    assert SelfHostedPrice(2.50, "tokens", 5000) == H100_SELF_HOSTED
    configs = [
        EndpointConfig(name="h100-a", base_url="http://gpu:8000/v1", model="qwen"),
        EndpointConfig(name="api", base_url="https://api.x/v1", model="big", kind="openai"),
        EndpointConfig(name="sub", base_url="http://h:1/v1", model="m", stand_in=True),
    ]
    book = PriceBook.default(*configs, "edge")
    assert book.price("h100-a") == CPU_SELF_HOSTED
    assert book.price("api") == FRONTIER_REFERENCE
    assert book.price("sub") == CPU_SELF_HOSTED
    assert book.price("edge") == CPU_SELF_HOSTED
    with pytest.raises(ConfigError, match="'local-vllm'"):
        book.price("local-vllm")


# ---- prices files -----------------------------------------------------------------------------

PRICES_TOML = """
[frontier_reference]
input_usd_per_mtok = 3.0
output_usd_per_mtok = 15.0

[endpoints.h100-a]
gpu_usd_per_hour = 2.5
amortise = "busy_time"
concurrency = 16

[endpoints.local-vllm]
gpu_usd_per_hour = 0.1
tokens_per_s_capacity = 250

[endpoints.frontier]
input_usd_per_mtok = 3
output_usd_per_mtok = 15
"""


def test_load_toml(tmp_path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(PRICES_TOML)
    book = PriceBook.load(path)
    assert book.frontier_reference == TokenPrice(3.0, 15.0)
    assert book.price("h100-a") == SelfHostedPrice(2.5, "busy_time", None, 16.0)
    assert book.price("local-vllm") == SelfHostedPrice(0.1, "tokens", 250.0)
    assert book.price("frontier") == TokenPrice(3.0, 15.0)
    # 2 s on a $2.50/h GPU with 16 in flight
    assert book.cost(completion("h100-a", 1, 1, latency_s=2.0)) == pytest.approx(8.680556e-5)


def test_load_json_defaults_the_reference(tmp_path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps({"endpoints": {"api": {"input_usd_per_mtok": 0.1, "output_usd_per_mtok": 0.4}}})
    )
    book = PriceBook.load(path)
    assert book.frontier_reference == FRONTIER_REFERENCE
    assert book.cost(completion("api", 1_000_000, 1_000_000)) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            '[endpoints.a]\ninput_usd_per_mtok = 1\noutput_usd_per_mtok = 1\ncurrency = "EUR"\n',
            "unknown keys ['currency']",
        ),
        (
            '[endpoints.a]\ninput_usd_per_mtok = "1"\noutput_usd_per_mtok = 1\n',
            "input_usd_per_mtok must be a number, got '1'",
        ),
        ("[endpoints.a]\ninput_usd_per_mtok = 1\n", "incomplete price"),
        (
            "[endpoints.a]\ngpu_usd_per_hour = 1\ntokens_per_s_capacity = 0\n",
            "endpoints.a'.*tokens_per_s_capacity must be",
        ),
        (
            "[frontier_reference]\ngpu_usd_per_hour = 1\namortise = 'busy_time'\n",
            "frontier_reference must be a token price",
        ),
        ("[endpoint.a]\n", "unknown keys ['endpoint']"),
        ("[endpoints\n", "is not valid"),
    ],
)
def test_load_rejects_bad_files(tmp_path, text, needle) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        PriceBook.load(path)


def test_load_missing_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read prices file"):
        PriceBook.load(tmp_path / "nope.toml")


# ---- ledger ---------------------------------------------------------------------------------


def _run_with_one_escalation(ledger: Ledger, run_id: str, tenant: str = "default") -> None:
    for node in ("intent", "extract", "sql"):
        ledger.record(run_id, node, completion("local-vllm", 400, 20), tenant=tenant, at=1.0)
    failed = ledger.record(run_id, "toolcall", completion("local-vllm", 500, 100), tenant=tenant)
    ledger.mark_escalated([failed])
    ledger.record(
        run_id,
        "toolcall",
        completion("frontier", 800, 150, model="frontier"),
        tenant=tenant,
        escalated=True,
    )


def test_run_cost_counterfactual_and_saving() -> None:
    ledger = Ledger(BOOK)
    _run_with_one_escalation(ledger, "r1")
    small = 420 * 0.10 / 900_000  # each plain small call
    failed = 600 * 0.10 / 900_000  # the small attempt that escalated: real spend
    frontier = 800 * 1.25e-6 + 150 * 10e-6  # = 0.0025
    on_frontier = 400 * 1.25e-6 + 20 * 10e-6  # a plain small call's tokens at frontier price
    cost = ledger.run_cost("r1")
    assert cost.calls == 5
    assert cost.small_calls == 4
    assert cost.frontier_calls == 1
    assert cost.cost_usd == pytest.approx(3 * small + failed + frontier)
    assert cost.cost_usd == pytest.approx(2.7066667e-3)
    # the escalated node counts once, through its frontier call; its failed attempt not at all
    assert cost.frontier_only_usd == pytest.approx(3 * on_frontier + frontier)
    assert cost.frontier_only_usd == pytest.approx(4.6e-3)
    assert cost.saving_usd == pytest.approx(1.8933333e-3)
    assert cost.saving_ratio == pytest.approx(1.8933333e-3 / 4.6e-3)
    rows = ledger.rows("r1")
    assert [r.node for r in rows] == ["intent", "extract", "sql", "toolcall", "toolcall"]
    assert [r.escalated for r in rows] == [False, False, False, True, True]
    assert [r.frontier for r in rows] == [False, False, False, False, True]
    assert rows[3].frontier_cost_usd == pytest.approx(1.625e-3)
    assert rows[0].at == 1.0
    assert rows[4].served_model == "served-frontier"
    assert ledger.run_cost("unknown") == RunCost()


def test_a_run_that_costs_more_than_frontier_only_shows_a_negative_saving() -> None:
    ledger = Ledger(BOOK)
    for _ in range(2):
        ledger.record("r", "x", completion("local-vllm", 9, 1), escalated=True)
    ledger.record("r", "x", completion("frontier", 10, 1, model="frontier"), escalated=True)
    cost = ledger.run_cost("r")
    assert cost.frontier_only_usd == pytest.approx(10 * 1.25e-6 + 1e-5)
    assert cost.saving_usd == pytest.approx(-2 * 10 * 0.10 / 900_000)
    assert cost.saving_ratio < 0


def test_stand_in_calls_count_as_frontier_and_are_flagged() -> None:
    ledger = Ledger(PriceBook.default())
    row = ledger.record(
        "r", "plan", completion("frontier-stand-in", 100, 10, model="slm", stand_in=True)
    )
    assert row.stand_in and row.frontier
    # Priced as what it is (a local model on our hardware), counted in the top-tier role.
    assert row.cost_usd == pytest.approx(estimate_cost(CPU_SELF_HOSTED, 100, 10))
    adapter = ledger.record("r", "intent", completion("local-vllm", 10, 1, model="slm:intent"))
    assert not adapter.frontier
    assert ledger.run_cost("r").frontier_calls == 1


def test_totals_per_tenant() -> None:
    ledger = Ledger(BOOK)
    _run_with_one_escalation(ledger, "a1", tenant="acme")
    _run_with_one_escalation(ledger, "a2", tenant="acme")
    ledger.record("g1", "intent", completion("local-vllm", 900, 0), tenant="globex")
    totals = ledger.tenants()
    assert set(totals) == {"acme", "globex"}
    assert totals["acme"].calls == 10
    assert totals["acme"].cost_usd == pytest.approx(2 * 2.7066667e-3)
    assert totals["acme"].frontier_only_usd == pytest.approx(2 * 4.6e-3)
    assert totals["globex"] == ledger.tenant_cost("globex")
    assert totals["globex"].cost_usd == pytest.approx(1e-4)
    assert totals["globex"].frontier_only_usd == pytest.approx(900 * 1.25e-6)
    assert len(ledger.rows()) == 11


def test_record_with_unpriced_endpoint_raises_and_records_nothing() -> None:
    ledger = Ledger(BOOK)
    with pytest.raises(ConfigError, match="'mystery'"):
        ledger.record("r", "n", completion("mystery", 1, 1))
    assert ledger.rows() == ()


def test_mark_escalated_rejects_foreign_rows() -> None:
    row = Ledger(BOOK).record("r", "n", completion("local-vllm", 1, 1))
    with pytest.raises(ValueError, match="not in this ledger"):
        Ledger(BOOK).mark_escalated([row])


# ---- budgets --------------------------------------------------------------------------------


def test_estimate_cost_is_the_worst_case() -> None:
    # 900 * $1.25/1M + 512 * $10/1M
    assert estimate_cost(TokenPrice(1.25, 10.0), 900, 512) == pytest.approx(0.006245)
    with pytest.raises(ValueError, match="max_output_tokens=-1"):
        estimate_cost(FRONTIER_REFERENCE, 1, -1)


async def test_commit_less_than_reserved_returns_the_rest() -> None:
    budget = Budget(2.0, name="run budget")
    reservation = await budget.reserve(1.5)
    assert budget.reserved_usd == pytest.approx(1.5)
    assert budget.left_usd == pytest.approx(0.5)
    reservation.commit(0.3)
    assert budget.reserved_usd == 0.0
    assert budget.spent_usd == pytest.approx(0.3)
    assert budget.left_usd == pytest.approx(1.7)
    with pytest.raises(RuntimeError, match="already committed"):
        reservation.commit(0.3)
    reservation.release()  # no-op once committed
    assert budget.spent_usd == pytest.approx(0.3)


async def test_release_and_context_manager_give_the_reserve_back() -> None:
    budget = Budget(1.0)
    (await budget.reserve(0.4)).release()
    assert budget.left_usd == pytest.approx(1.0)
    with pytest.raises(TimeoutError), await budget.reserve(0.9):
        raise TimeoutError
    assert budget.left_usd == pytest.approx(1.0)
    assert budget.spent_usd == 0.0


async def test_over_limit_reservation_raises_clearly_and_holds_nothing() -> None:
    budget = Budget(0.01, name="run budget")
    budget.charge(0.004)
    held = await budget.reserve(0.005)
    with pytest.raises(BudgetExceeded) as info:
        await budget.reserve(0.002)
    assert isinstance(info.value, BrickworkError)
    assert str(info.value) == (
        "run budget cannot cover $0.002000: $0.001000 left of $0.010000 "
        "($0.004000 spent, $0.005000 reserved); raise the limit or lower max_tokens"
    )
    assert info.value.amount_usd == 0.002
    assert budget.reserved_usd == pytest.approx(0.005)
    held.release()
    assert budget.left_usd == pytest.approx(0.006)


async def test_fifty_concurrent_reservations_never_overspend() -> None:
    budget = Budget(1.0)
    all_tried = asyncio.Event()
    tried = 0
    succeeded = 0

    async def one_run() -> None:
        nonlocal tried, succeeded
        try:
            reservation = await budget.reserve(0.1)
        except BudgetExceeded:
            reservation = None
        tried += 1
        if tried == 50:
            all_tried.set()
        await all_tried.wait()  # every run reserves before any commits
        if reservation is not None:
            assert budget.spent_usd + budget.reserved_usd <= budget.limit_usd + 1e-9
            reservation.commit(0.1)
            succeeded += 1

    await asyncio.gather(*(one_run() for _ in range(50)))
    assert succeeded == 10
    assert budget.spent_usd <= budget.limit_usd + 1e-9
    assert budget.spent_usd == pytest.approx(1.0)
    assert budget.reserved_usd == pytest.approx(0.0, abs=1e-12)


async def test_interleaved_reserve_commit_stays_within_limit() -> None:
    budget = Budget(0.5)
    spent_per_run = []

    async def one_run(i: int) -> None:
        for _ in range(i % 4):  # stagger: some runs commit before others reserve
            await asyncio.sleep(0)
        try:
            reservation = await budget.reserve(0.05)
        except BudgetExceeded:
            return
        await asyncio.sleep(0)
        actual = 0.01 * (i % 5)  # at most the reserve
        reservation.commit(actual)
        spent_per_run.append(actual)
        assert budget.spent_usd + budget.reserved_usd <= budget.limit_usd + 1e-9

    await asyncio.gather(*(one_run(i) for i in range(50)))
    assert budget.spent_usd <= budget.limit_usd + 1e-9
    assert budget.spent_usd == pytest.approx(sum(spent_per_run))
    assert budget.reserved_usd == pytest.approx(0.0, abs=1e-12)
    assert len(spent_per_run) > 10  # committed refunds let more than limit/reserve runs in


async def test_budget_book_reserves_on_both_or_neither() -> None:
    book = BudgetBook({"acme": 1.0}, run_limit_usd=0.05)
    run = book.run_budget()
    assert run is not None and run.limit_usd == 0.05
    with pytest.raises(BudgetExceeded, match="^run budget cannot cover"):
        await book.reserve("acme", run, 0.1)
    tenant = book.tenant("acme")
    assert tenant is not None and tenant.reserved_usd == 0.0
    tenant.charge(0.99)
    with pytest.raises(BudgetExceeded, match="^tenant 'acme' budget cannot cover"):
        await book.reserve("acme", run, 0.02)
    assert run.reserved_usd == 0.0
    reservation = await book.reserve("acme", run, 0.01)
    assert book.left_usd("acme", run) == pytest.approx(0.0, abs=1e-12)
    reservation.commit(0.004)
    assert run.spent_usd == pytest.approx(0.004)
    assert tenant.spent_usd == pytest.approx(0.994)
    assert book.left_usd("acme", run) == pytest.approx(0.006)


async def test_budget_book_defaults_and_unlimited() -> None:
    book = BudgetBook(default_tenant_limit_usd=0.2)
    assert book.run_budget() is None
    other = book.tenant("new")
    assert other is not None and other.limit_usd == 0.2 and book.tenant("new") is other
    unlimited = BudgetBook()
    assert unlimited.tenant("x") is None and unlimited.left_usd("x", None) is None
    (await unlimited.reserve("x", None, 1e9)).commit(1e9)


async def test_fifty_runs_share_one_tenant_budget() -> None:
    book = BudgetBook({"acme": 0.35}, run_limit_usd=0.1)

    async def one_run() -> bool:
        run = book.run_budget()
        try:
            reservation = await book.reserve("acme", run, 0.05)
        except BudgetExceeded:
            return False
        await asyncio.sleep(0)
        reservation.commit(0.05)
        return True

    results = await asyncio.gather(*(one_run() for _ in range(50)))
    tenant = book.tenant("acme")
    assert tenant is not None
    assert sum(results) == 7
    assert tenant.spent_usd <= tenant.limit_usd + 1e-9


# ---- a local ladder: slm -> large (top), and slm -> large -> frontier API ----------------------


def _ladder_book(top: str) -> PriceBook:
    return PriceBook.default("local-vllm", "large-vllm", "frontier", top_tier=top)


def test_local_ladder_prices_the_counterfactual_at_the_top_tier_and_the_api_apart() -> None:
    book = _ladder_book("large-vllm")
    assert book.top_tier_price == LARGE_CPU_SELF_HOSTED
    ledger = Ledger(book, frontier_models=["large", "frontier"])
    small = ledger.record("r", "intent", completion("local-vllm", 300, 20, model="slm"))
    assert small.frontier_cost_usd == pytest.approx(estimate_cost(LARGE_CPU_SELF_HOSTED, 300, 20))
    assert small.api_reference_usd == pytest.approx(FRONTIER_REFERENCE.cost(300, 20))
    # A node that failed on slm and was fixed on the local large model.
    failed = ledger.record("r", "act", completion("local-vllm", 400, 30, model="slm"))
    ledger.mark_escalated([failed])
    fixed = ledger.record(
        "r", "act", completion("large-vllm", 400, 30, model="large"), escalated=True
    )
    assert fixed.frontier and not fixed.superseded
    cost = ledger.run_cost("r")
    assert cost.cost_usd == pytest.approx(small.cost_usd + failed.cost_usd + fixed.cost_usd)
    # Every node on the top tier: intent's tokens at the large price, act once (its fix).
    assert cost.frontier_only_usd == pytest.approx(small.frontier_cost_usd + fixed.cost_usd)
    assert cost.api_reference_usd == pytest.approx(
        FRONTIER_REFERENCE.cost(300, 20) + FRONTIER_REFERENCE.cost(400, 30)
    )
    assert (cost.small_calls, cost.frontier_calls) == (2, 1)


def test_a_specialists_counterfactual_prices_the_prompt_the_top_tier_would_be_sent() -> None:
    # A tuned specialist is prompted without the skill's examples; the top tier gets them, so
    # "every node on the top tier" prices the longer prompt, and the spend only its own.
    ledger = Ledger(_ladder_book("large-vllm"), frontier_models=["large", "frontier"])
    short = completion("local-vllm", 300, 20, model="slm:specialist")
    row = ledger.record("r", "act", replace(short, top_tier_prompt_tokens=700))
    assert row.cost_usd == pytest.approx(CPU_SELF_HOSTED.cost(300, 20, 0.5))
    assert row.frontier_cost_usd == pytest.approx(estimate_cost(LARGE_CPU_SELF_HOSTED, 700, 20))
    assert row.api_reference_usd == pytest.approx(FRONTIER_REFERENCE.cost(700, 20))
    # Never fewer than the tokens really sent.
    odd = ledger.record("r", "act", replace(short, top_tier_prompt_tokens=10))
    assert odd.frontier_cost_usd == pytest.approx(estimate_cost(LARGE_CPU_SELF_HOSTED, 300, 20))


def test_a_middle_tier_fix_counts_once_and_a_superseded_one_not_at_all() -> None:
    ledger = Ledger(_ladder_book("frontier"), frontier_models=["frontier"])
    a_small = ledger.record("r", "a", completion("local-vllm", 100, 10, model="slm"))
    ledger.mark_escalated([a_small])
    a_large = ledger.record(
        "r", "a", completion("large-vllm", 100, 10, model="large"), escalated=True, superseded=False
    )
    b_small = ledger.record("r", "b", completion("local-vllm", 100, 10, model="slm"))
    ledger.mark_escalated([b_small])
    b_large = ledger.record(
        "r", "b", completion("large-vllm", 100, 10, model="large"), escalated=True, superseded=False
    )
    (b_large,) = ledger.mark_escalated([b_large])
    b_top = ledger.record(
        "r", "b", completion("frontier", 100, 10, model="frontier"), escalated=True
    )
    cost = ledger.run_cost("r")
    assert not a_large.frontier and b_large.superseded and b_top.frontier
    assert cost.frontier_only_usd == pytest.approx(a_large.frontier_cost_usd + b_top.cost_usd)
    assert cost.frontier_only_usd == pytest.approx(2 * FRONTIER_REFERENCE.cost(100, 10))


def test_prices_file_takes_a_self_hosted_top_tier() -> None:
    book = PriceBook.from_dict({"top_tier": {"gpu_usd_per_hour": 0.2, "tokens_per_s_capacity": 20}})
    assert book.top_tier_price == SelfHostedPrice(0.2, "tokens", 20)
    assert estimate_cost(book.top_tier_price, 50, 50) == pytest.approx(100 / (20 * 3600) * 0.2)
    busy = SelfHostedPrice(0.36, "busy_time")
    assert estimate_cost(busy, 5, 5) == pytest.approx(1.0 * 0.36 / 3600)


class _MemoryBackend:
    """A `BudgetBackend` in a dict, for the book's plumbing (the real one: PostgreSQL tests)."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        self.holds: dict[str, tuple[str, float]] = {}

    def _held(self, key: str) -> float:
        return sum(amount for k, amount in self.holds.values() if k == key)

    def hold(
        self, key: str, limit_usd: float, amount_usd: float
    ) -> tuple[str | None, float, float]:
        spent, held = self.spent.get(key, 0.0), self._held(key)
        if amount_usd > limit_usd - spent - held + 1e-9:
            return None, spent, held
        hold = f"h{len(self.holds)}"
        self.holds[hold] = (key, amount_usd)
        return hold, spent, held + amount_usd

    def settle(self, key: str, hold: str, actual_usd: float) -> None:
        self.spent[key] = self.spent.get(key, 0.0) + actual_usd
        del self.holds[hold]

    def charge(self, key: str, amount_usd: float) -> None:
        self.spent[key] = self.spent.get(key, 0.0) + amount_usd

    def state(self, key: str) -> tuple[float, float]:
        return self.spent.get(key, 0.0), self._held(key)


async def test_a_shared_book_reserves_on_the_backend_and_the_run_both_or_neither() -> None:
    from brickwork.cost import SharedBudget

    backend = _MemoryBackend()
    book = BudgetBook({"acme": 1.0}, run_limit_usd=0.5, shared=backend)
    other = BudgetBook({"acme": 1.0}, shared=backend)  # another replica's book
    tenant = book.tenant("acme")
    assert isinstance(tenant, SharedBudget) and tenant.key == "tenant:acme"
    held_elsewhere = await other.reserve("acme", None, 0.7)
    run = book.run_budget()
    with pytest.raises(BudgetExceeded, match="^tenant 'acme' budget cannot cover"):
        await book.reserve("acme", run, 0.4)
    assert run is not None and run.reserved_usd == 0.0  # the run's part was given back
    assert tenant.reserved_usd == pytest.approx(0.7)  # what the backend said
    reservation = await book.reserve("acme", run, 0.3)
    reservation.commit(0.1)
    held_elsewhere.release()
    assert backend.state("tenant:acme") == (pytest.approx(0.1), 0.0)
    assert run.spent_usd == pytest.approx(0.1) and run.reserved_usd == 0.0
    book.charge("acme", run, 0.05)
    assert backend.spent["tenant:acme"] == pytest.approx(0.15)
    tenant.refresh()
    assert tenant.left_usd == pytest.approx(0.85)
    unshared = BudgetBook({"acme": 1.0}, shared=False)
    unshared_tenant = unshared.tenant("acme")
    assert unshared_tenant is not None and not isinstance(unshared_tenant, SharedBudget)


def test_a_long_running_ledger_keeps_the_last_runs_rows_and_every_tenants_totals() -> None:
    ledger, unbounded = Ledger(BOOK, max_runs=3), Ledger(BOOK)
    for i in range(10):
        for book in (ledger, unbounded):
            _run_with_one_escalation(book, f"a{i}", tenant="acme")
            book.record(f"g{i}", "intent", completion("local-vllm", 900, 0), tenant="globex")
    assert [r.run_id for r in ledger.rows()][::5] == ["g8", "a9"]  # only the newest three runs
    assert {r.run_id for r in ledger.rows()} == {"g8", "a9", "g9"}
    assert ledger.rows("a0") == () and len(ledger.rows("g9")) == 1
    for tenant in ("acme", "globex"):
        kept, every = ledger.tenant_cost(tenant), unbounded.tenant_cost(tenant)
        assert kept.calls == every.calls
        assert kept.cost_usd == pytest.approx(every.cost_usd)
        assert kept.frontier_only_usd == pytest.approx(every.frontier_only_usd)
        assert kept.api_reference_usd == pytest.approx(every.api_reference_usd)
    assert ledger.tenant_cost("nobody") == RunCost()
    # A run whose rows went meanwhile can still mark its small attempts escalated.
    old = unbounded.rows("a8")
    assert ledger.mark_escalated(old) == ()
    with pytest.raises(ValueError, match="max_runs must be >= 1"):
        Ledger(BOOK, max_runs=0)


def test_a_step_the_knn_decided_is_not_a_call_but_the_top_tier_would_have_made_one() -> None:
    ledger = Ledger(_ladder_book("large-vllm"), frontier_models=["large", "frontier"])
    spared = ledger.record_skipped("r", "intent", 600, 3)
    assert spared.skipped and spared.cost_usd == 0.0
    assert spared.frontier_cost_usd == pytest.approx(estimate_cost(LARGE_CPU_SELF_HOSTED, 600, 3))
    assert spared.api_reference_usd == pytest.approx(FRONTIER_REFERENCE.cost(600, 3))
    act = ledger.record("r", "act", completion("local-vllm", 300, 20, model="slm"))
    cost = ledger.run_cost("r")
    assert cost.cost_usd == pytest.approx(act.cost_usd)
    assert cost.frontier_only_usd == pytest.approx(spared.frontier_cost_usd + act.frontier_cost_usd)
    assert cost.api_reference_usd == pytest.approx(
        FRONTIER_REFERENCE.cost(600, 3) + FRONTIER_REFERENCE.cost(300, 20)
    )
    assert (cost.calls, cost.small_calls, cost.frontier_calls) == (1, 1, 0)
    # Escalated after all: the top tier's own call stands for the node, counted once.
    (gone,) = ledger.mark_escalated([spared])
    fixed = ledger.record("r", "intent", completion("large-vllm", 600, 3, model="large"),
                          escalated=True)  # fmt: skip
    again = ledger.run_cost("r")
    assert gone.superseded
    assert again.frontier_only_usd == pytest.approx(fixed.cost_usd + act.frontier_cost_usd)
    assert ledger.tenant_cost("default").frontier_only_usd == pytest.approx(again.frontier_only_usd)
