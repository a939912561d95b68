"""`Idempotency-Key` on `POST /v1/chat/completions`: a retried request never starts a second run.

The tiny graph of `tests.unit.test_api` on fake models, over a SQLite store: the same key twice
is one run (the second answer is the stored one), a key naming an interrupted run resumes it, a
key is per tenant, a key reused for another request is 422, a key whose run is under way is a
409 a client retries, and malformed keys are 400.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from brickwork.app import App
from brickwork.http.idempotency import parse_key, run_id_for
from brickwork.http.server import create_api
from brickwork.store import RunStore, RunSummary
from brickwork.testing import FunctionModel
from tests.unit.test_api import KITCHEN_ANSWER, chat, model_answer, tiny_graph

ROUTE = "/v1/chat/completions"


@pytest.fixture
def model() -> FunctionModel:
    return FunctionModel(model_answer)


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "runs.sqlite")


@pytest.fixture
async def make_client(
    model: FunctionModel, store: RunStore, tmp_path: Path
) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    pool = model.pool()
    clients: list[httpx.AsyncClient] = []

    def make(**options: Any) -> httpx.AsyncClient:
        options.setdefault("timeout_s", 5)
        app = App(tiny_graph(), pool=pool, store=store, checkpoints=tmp_path / "state.sqlite")
        api = create_api({"tiny_home": app}, **options)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://api")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
    await pool.aclose()


@pytest.fixture
def client(make_client: Callable[..., httpx.AsyncClient]) -> httpx.AsyncClient:
    return make_client()


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def interrupted(store: RunStore, run_id: str, tenant: str) -> None:
    """What a replica killed mid-run leaves: the run's row, interrupted, and no checkpoint."""
    summary = RunSummary(
        run_id=run_id,
        graph="tiny_home",
        tenant=tenant,
        mode="hybrid",
        text="kitchen lights on",
        status="interrupted",
        answer="",
        error="interrupted: the process running it ended before the run did",
        cost_usd=0.0,
        frontier_only_usd=0.0,
        latency_s=0.0,
        escalations=0,
        flags=(),
        started_at=time.time() - 5,
        source="api",
    )
    store.save(summary, [])


def run_ids(store: RunStore) -> list[str]:
    return [s.run_id for s in store.runs(limit=100)]


async def test_the_same_key_twice_is_one_run_and_the_second_answer_is_the_stored_one(
    client: httpx.AsyncClient, model: FunctionModel, store: RunStore
) -> None:
    first = await client.post(ROUTE, json=chat(tenant="acme"), headers=keyed("k-1"))
    assert first.status_code == 200, first.text
    run_id = first.json()["brickwork"]["run_id"]
    assert run_id == run_id_for("acme", "k-1")
    assert "idempotent-replayed" not in first.headers

    again = await client.post(ROUTE, json=chat(tenant="acme"), headers=keyed("k-1"))
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    body, original = again.json(), first.json()
    assert body["choices"] == original["choices"]
    assert body["choices"][0]["message"]["content"] == KITCHEN_ANSWER
    assert body["usage"] == original["usage"]
    assert body["brickwork"] == original["brickwork"]
    assert len(model.requests) == 1  # the graph ran once
    assert run_ids(store) == [run_id]

    # The quoted form of the IETF draft names the same key.
    quoted = await client.post(ROUTE, json=chat(tenant="acme"), headers=keyed('"k-1"'))
    assert quoted.headers["idempotent-replayed"] == "true"
    assert quoted.json()["brickwork"]["run_id"] == run_id

    # Without a key every request is a run of its own.
    await client.post(ROUTE, json=chat(tenant="acme"))
    assert len(run_ids(store)) == 2 and len(model.requests) == 2


async def test_a_stored_failure_is_answered_again_with_its_status_not_run_again(
    client: httpx.AsyncClient, model: FunctionModel
) -> None:
    first = await client.post(ROUTE, json=chat("gibberish"), headers=keyed("k-fail"))
    assert first.status_code == 422
    calls = len(model.requests)
    again = await client.post(ROUTE, json=chat("gibberish"), headers=keyed("k-fail"))
    assert again.status_code == 422
    assert again.json() == first.json()
    assert again.headers["x-should-retry"] == "false"
    assert again.headers["idempotent-replayed"] == "true"
    assert len(model.requests) == calls


async def test_a_key_naming_an_interrupted_run_resumes_it(
    client: httpx.AsyncClient, model: FunctionModel, store: RunStore
) -> None:
    run_id = run_id_for("acme", "k-killed")
    interrupted(store, run_id, "acme")
    response = await client.post(ROUTE, json=chat(tenant="acme"), headers=keyed("k-killed"))
    assert response.status_code == 200, response.text
    assert "idempotent-replayed" not in response.headers
    body = response.json()
    assert body["brickwork"]["run_id"] == run_id
    assert body["choices"][0]["message"]["content"] == KITCHEN_ANSWER
    summary, _ = store.run(run_id)  # type: ignore[misc]
    assert summary.status == "ok"
    assert run_ids(store) == [run_id] and len(model.requests) == 1

    replay = await client.post(ROUTE, json=chat(tenant="acme"), headers=keyed("k-killed"))
    assert replay.headers["idempotent-replayed"] == "true"
    assert len(model.requests) == 1


async def test_the_openai_client_retrying_a_500_with_its_key_gets_its_run(
    make_client: Callable[..., httpx.AsyncClient], model: FunctionModel, store: RunStore
) -> None:
    """The SDK retries a bare 500 (no x-should-retry) with the same headers: its key."""
    http = make_client()
    run_id = run_id_for("default", "sdk-key")
    interrupted(store, run_id, "default")
    sent: list[str | None] = []

    class FirstAttemptDies(httpx.AsyncBaseTransport):
        """The first attempt gets the proxy's bare 500; later ones reach the front."""

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            sent.append(request.headers.get("idempotency-key"))
            if len(sent) == 1:
                return httpx.Response(500, text="Internal Server Error")
            return await http._transport.handle_async_request(request)

    client = openai.AsyncOpenAI(
        base_url="http://api/v1",
        api_key="-",
        http_client=httpx.AsyncClient(transport=FirstAttemptDies()),
    )
    reply = await client.chat.completions.create(
        model="tiny_home",
        messages=[{"role": "user", "content": "kitchen lights on"}],
        extra_headers={"Idempotency-Key": "sdk-key"},
    )
    await client.close()
    assert sent == ["sdk-key", "sdk-key"]
    assert reply.model_extra is not None and reply.model_extra["brickwork"]["run_id"] == run_id
    assert reply.choices[0].message.content == KITCHEN_ANSWER
    assert run_ids(store) == [run_id] and len(model.requests) == 1


async def test_a_key_is_per_tenant(
    client: httpx.AsyncClient, model: FunctionModel, store: RunStore
) -> None:
    acme = await client.post(ROUTE, json=chat(tenant="acme"), headers=keyed("shared"))
    globex = await client.post(ROUTE, json=chat(tenant="globex"), headers=keyed("shared"))
    assert acme.status_code == globex.status_code == 200
    assert "idempotent-replayed" not in globex.headers  # globex's own run, not acme's
    acme_run, globex_run = (r.json()["brickwork"]["run_id"] for r in (acme, globex))
    assert acme_run != globex_run
    assert len(model.requests) == 2
    tenants = {s.run_id: s.tenant for s in store.runs()}
    assert tenants == {acme_run: "acme", globex_run: "globex"}
    again = await client.post(ROUTE, json=chat(tenant="globex"), headers=keyed("shared"))
    assert again.json()["brickwork"]["run_id"] == globex_run


async def test_a_key_reused_for_another_request_is_422_and_runs_nothing(
    client: httpx.AsyncClient, model: FunctionModel
) -> None:
    await client.post(ROUTE, json=chat(), headers=keyed("k-2"))
    for other in (chat("bedroom lights on"), chat(mode="frontier")):
        response = await client.post(ROUTE, json=other, headers=keyed("k-2"))
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "idempotency_key_reused"
        assert error["param"] == "Idempotency-Key"
        assert "Send a new key for a new request" in error["message"]
        assert response.headers["x-should-retry"] == "false"
    assert len(model.requests) == 1


async def test_a_key_whose_run_is_under_way_is_409_to_retry_later(
    make_client: Callable[..., httpx.AsyncClient], model: FunctionModel, store: RunStore
) -> None:
    client = make_client(timeout_s=0.5)
    first = asyncio.create_task(client.post(ROUTE, json=chat("slow"), headers=keyed("k-3")))
    await asyncio.sleep(0.1)
    busy = await client.post(ROUTE, json=chat("slow"), headers=keyed("k-3"))
    assert busy.status_code == 409, busy.text
    error = busy.json()["error"]
    assert error["code"] == "run_in_progress" and error["param"] == "Idempotency-Key"
    assert busy.json()["brickwork"]["run_id"] == run_id_for("default", "k-3")
    assert busy.headers["retry-after"] == "1"
    assert busy.headers["x-should-retry"] == "true"  # the openai client retries it
    assert (await first).status_code == 504
    later = await client.post(ROUTE, json=chat("slow"), headers=keyed("k-3"))
    assert later.status_code == 504 and later.headers["idempotent-replayed"] == "true"
    assert len(store.runs()) == 1


async def test_a_keyed_stream_is_one_run_and_replays_as_a_stream(
    client: httpx.AsyncClient, model: FunctionModel
) -> None:
    def contents(response: httpx.Response) -> list[Any]:
        lines = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        assert lines[-1] == "[DONE]"
        return [json.loads(line)["choices"][0]["delta"].get("content") for line in lines[:-1]]

    first = await client.post(ROUTE, json=chat(stream=True), headers=keyed("k-s"))
    again = await client.post(ROUTE, json=chat(stream=True), headers=keyed("k-s"))
    assert first.status_code == again.status_code == 200
    assert contents(first) == contents(again) == ["", KITCHEN_ANSWER, None]
    assert again.headers["idempotent-replayed"] == "true"
    assert len(model.requests) == 1


@pytest.mark.parametrize(
    ("headers", "phrase"),
    [
        ([("Idempotency-Key", "")], "is empty"),
        ([("Idempotency-Key", '""')], "is empty"),
        ([("Idempotency-Key", "two words")], "visible ASCII"),
        ([("Idempotency-Key", "x" * 256)], "the limit is 255"),
        ([("Idempotency-Key", "clé".encode().decode("latin-1"))], "visible ASCII"),
        ([("Idempotency-Key", "a"), ("Idempotency-Key", "b")], "2 Idempotency-Key headers"),
    ],
)
async def test_malformed_keys_are_400_and_run_nothing(
    client: httpx.AsyncClient, model: FunctionModel, headers: list[tuple[str, str]], phrase: str
) -> None:
    raw = [(k.encode(), v.encode("latin-1")) for k, v in headers]
    response = await client.post(ROUTE, json=chat(), headers=raw)  # type: ignore[arg-type]
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_idempotency_key"
    assert error["param"] == "Idempotency-Key"
    assert phrase in error["message"], error["message"]
    assert not model.requests


def test_keys_are_parsed_bare_or_quoted() -> None:
    uuid = "8e03978e-40d5-43e8-bc93-6894a57f9324"
    assert parse_key([]) is None
    assert parse_key([uuid]) == parse_key([f'"{uuid}"']) == uuid
    assert parse_key(["x" * 255]) == "x" * 255
    assert run_id_for("acme", uuid) != run_id_for("globex", uuid)
    assert len(run_id_for("acme", uuid)) == 16
