"""Tenant budgets hold across replicas: the money is in the real PostgreSQL, not in a process.

Two Apps with their own books and connections (as two API replicas have) and a second process
run 50 escalating runs against one tenant limit; none overspends it, and the runs refused say
so (`over_budget`, and 402 `budget_exhausted` through the HTTP front). Every test uses a table
of its own. Override the database with BRICKWORK_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from benchmarks.instant_server import InstantServer
from brickwork.app import App
from brickwork.cost import (
    CPU_SELF_HOSTED,
    FRONTIER_REFERENCE,
    BudgetBook,
    BudgetExceeded,
    PriceBook,
    SharedBudget,
)
from brickwork.cost.prices import estimate_cost
from brickwork.cost.shared import PostgresBudgets
from brickwork.deploy import FrontSpec, build_front
from brickwork.run_context import ESCALATION_OUTPUT_TOKENS, ESCALATION_PROMPT_TOKENS
from brickwork.store import RunStore
from brickwork.testing import FunctionModel, ModelStep

pytestmark = pytest.mark.postgres

PG_URL = os.environ.get("BRICKWORK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parents[2]
GRAPH = str(ROOT / "tests" / "fixtures" / "two_step_graph.py")

#: The fake's frontier priced as an API, so that an escalation costs real money.
API_PRICES = PriceBook(
    endpoints={"fake-slm": CPU_SELF_HOSTED, "fake-frontier": FRONTIER_REFERENCE},
    top_tier=FRONTIER_REFERENCE,
)
#: What one escalation reserves, and (the fake's frontier answers with that many tokens) costs.
ONE = estimate_cost(FRONTIER_REFERENCE, ESCALATION_PROMPT_TOKENS, ESCALATION_OUTPUT_TOKENS)


@pytest.fixture
def table():
    name = f"test_budgets_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}_holds, {name}")


def _model() -> FunctionModel:
    """The small model's answer is always invalid, so every hybrid run escalates once."""

    def answer(body: dict[str, Any]) -> ModelStep:
        if body["model"] == "fake-frontier":
            return ModelStep(
                '{"n": 8}',
                prompt_tokens=ESCALATION_PROMPT_TOKENS,
                completion_tokens=ESCALATION_OUTPUT_TOKENS,
            )
        return ModelStep('{"n": -1}')

    return FunctionModel(answer)


def _book(table: str, limit: float) -> BudgetBook:
    return BudgetBook({"acme": limit}, shared=PostgresBudgets(PG_URL, table=table))


async def test_two_replicas_never_overspend_one_tenant_limit(table: str) -> None:
    limit = ONE * 10.5  # room for 10 escalations (the small calls cost a little too)
    books = [_book(table, limit), _book(table, limit)]
    async with _model().pool() as pool:
        apps = [
            App.from_graph(GRAPH, pool=pool, budgets=book, prices=API_PRICES, store=None)
            for book in books
        ]
        runs = [apps[i % 2].ainvoke(f"r{i}", tenant="acme") for i in range(50)]
        results = await asyncio.gather(*runs)
        for app in apps:
            await app.aclose()
    for book in books:
        assert book.backend is not None and book.backend.flush()  # type: ignore[attr-defined]
    escalated = [r for r in results if r.status == "ok"]  # each paid for its escalation
    refused = [r for r in results if r.status == "over_budget"]
    assert len(escalated) + len(refused) == 50
    assert 1 <= len(escalated) <= 10
    assert {r.status for r in refused} == {"over_budget"}
    assert all("budget_exhausted" in (r.error or "") for r in refused), refused[0].error
    spent, held = books[0].backend.state("tenant:acme")  # type: ignore[union-attr]
    assert held == 0.0
    assert spent <= limit
    assert spent == pytest.approx(sum(r.cost.cost_usd for r in results))
    print(f"\n50 runs on 2 Apps: {len(escalated)} escalated, {len(refused)} refused, "
          f"${spent:.6f} spent of ${limit:.6f}")  # fmt: skip
    for book in books:
        book.backend.close()  # type: ignore[union-attr]


async def test_a_reservation_is_refused_across_processes_with_a_clear_error(table: str) -> None:
    # Another process holds most of the money; this one cannot reserve past what is left.
    child = textwrap.dedent(
        f"""
        import asyncio
        from brickwork.cost import BudgetBook
        from brickwork.cost.shared import PostgresBudgets

        async def main():
            book = BudgetBook({{"acme": 1.0}}, shared=PostgresBudgets({PG_URL!r}, table={table!r}))
            reservation = await book.reserve("acme", None, 0.75)
            print(reservation.holds[0][1], flush=True)

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    book = _book(table, 1.0)
    with pytest.raises(BudgetExceeded, match=r"tenant 'acme' budget cannot cover \$0\.500000"):
        await book.reserve("acme", None, 0.5)
    tenant = book.tenant("acme")
    assert isinstance(tenant, SharedBudget)
    assert tenant.reserved_usd == pytest.approx(0.75) and tenant.left_usd == pytest.approx(0.25)
    reservation = await book.reserve("acme", None, 0.25)
    reservation.commit(0.2)
    assert book.backend is not None
    book.backend.flush()  # type: ignore[attr-defined]
    assert book.backend.state("tenant:acme") == pytest.approx((0.2, 0.75))
    book.backend.close()  # type: ignore[attr-defined]


async def test_an_app_on_a_postgresql_store_shares_its_tenant_limits(table: str) -> None:
    store = RunStore(PG_URL)
    try:
        shared = App.from_graph(GRAPH, store=store, budgets=BudgetBook({"acme": 1.0}))
        assert isinstance(shared.budgets.tenant("acme"), SharedBudget)
        local = App.from_graph(GRAPH, store=store, budgets=BudgetBook({"acme": 1.0}, shared=False))
        assert not isinstance(local.budgets.tenant("acme"), SharedBudget)
        unlimited = App.from_graph(GRAPH, store=store)
        assert unlimited.budgets.backend is None  # nothing to share, no connection made
    finally:
        store.close()


def test_replicas_refuse_over_budget_runs_with_402_not_a_bare_500(table: str) -> None:
    async def main(url: str) -> list[httpx.Response]:
        spec = FrontSpec(
            graphs=(GRAPH,),
            store=PG_URL,
            url=url,
            tenant_budgets_usd={"acme": 0.0},
            budget_table=table,
        )
        fronts = [build_front(spec), build_front(spec)]  # two replicas
        replies = []
        for front in fronts:
            async with front.router.lifespan_context(front):
                transport = httpx.ASGITransport(app=front)
                async with httpx.AsyncClient(transport=transport, base_url="http://front") as c:
                    body = {
                        "model": "two_step",
                        "messages": [{"role": "user", "content": "seven"}],
                        "mode": "frontier",
                        "tenant": "acme",
                    }
                    replies += await asyncio.gather(
                        *(c.post("/v1/chat/completions", json=body) for _ in range(4))
                    )
        return replies

    with InstantServer() as server:
        replies = asyncio.run(main(server.base_url))
    assert [r.status_code for r in replies] == [402] * 8, replies[0].text
    error = replies[0].json()["error"]
    assert error["code"] == "budget_exhausted"
    assert "budget" in error["message"]
