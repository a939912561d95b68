"""The HTTP front on the real smart_home graph and the real local vLLM, through the openai client.

The model is tiny, so nothing here asserts which tool it picks; the assertions tie what the
API says (answer, status, usage, run id) to what the run store recorded for the same run.
The apps are built by `apps_factory` inside the server's own event loop: a pool's HTTP
connections belong to the loop that first uses them.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from brickwork.app import App
from brickwork.http.server import ApiServer
from brickwork.serving.local import pool_config_for
from brickwork.serving.models import EMBEDDED_MODEL
from brickwork.serving.pool import ModelPool
from brickwork.store import RunStore, RunSummary

pytestmark = pytest.mark.vllm

KEY = "integration-key"
STATUSES = {"ok", "failed", "over_budget"}
KITCHEN = [{"role": "user", "content": "Turn on the kitchen lights"}]


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "runs.sqlite")


@pytest.fixture
def server(slm_base_url: str, store: RunStore) -> Iterator[ApiServer]:
    def apps() -> Mapping[str, App]:
        pool = ModelPool(pool_config_for(slm_base_url, EMBEDDED_MODEL.served_name))
        return {"smart_home": App.from_graph("graphs.smart_home", pool=pool, store=store)}

    with ApiServer(apps_factory=apps, api_key=KEY, timeout_s=600) as running:
        yield running


@pytest.fixture
def client(server: ApiServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=900)


def stored(store: RunStore, run_id: str) -> tuple[Any, list[dict[str, Any]]]:
    found = store.run(run_id)
    assert found is not None, f"run {run_id} is not in the store"
    return found


def check_against_store(store: RunStore, extras: dict[str, Any], content: str) -> list[str]:
    """The API's view of a run matches the store's; returns the run's event kinds."""
    summary, events = stored(store, extras["run_id"])
    assert extras["status"] == summary.status and extras["status"] in STATUSES
    assert extras["cost_usd"] == pytest.approx(summary.cost_usd)
    assert extras["frontier_only_usd"] == pytest.approx(summary.frontier_only_usd)
    assert list(extras["flags"]) == list(summary.flags)
    assert len(extras["escalations"]) == summary.escalations
    if summary.status == "ok":
        assert content == summary.answer and content
    else:  # the error message names the run and says nothing internal
        assert extras["run_id"] in content
        assert "127.0.0.1" not in content and "Error:" not in content
    return [e["kind"] for e in events]


def create(client: openai.OpenAI, **options: Any) -> tuple[dict[str, Any], str, Any]:
    """A completion's brickwork extras and content, or a failed run's extras and error message.

    A run that did not do what was asked is an HTTP error the openai client raises (422, 402,
    409, 502/503/504); the tiny model fails some requests, so both outcomes are checked.
    """
    try:
        reply = client.chat.completions.create(**options)
    except openai.APIStatusError as exc:
        assert exc.status_code in (402, 409, 422, 502, 503, 504), exc.response.text
        body = exc.response.json()
        return body["brickwork"], body["error"]["message"], None
    return (reply.model_extra or {})["brickwork"], reply.choices[0].message.content or "", reply


def test_a_completion_reports_the_run_it_made(client: openai.OpenAI, store: RunStore) -> None:
    extras, content, reply = create(
        client,
        model="smart_home",
        messages=KITCHEN,
        extra_body={"mode": "hybrid", "tenant": "home-1"},
    )
    kinds = check_against_store(store, extras, content)
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    _, events = stored(store, extras["run_id"])
    calls = [e for e in events if e["kind"] == "model_call"]
    assert calls, "the tool-call node ran on the real model"
    assert stored(store, extras["run_id"])[0].tenant == "home-1"
    if reply is not None:
        assert reply.id == f"chatcmpl-{extras['run_id']}"
        assert reply.model == "smart_home"
        assert reply.choices[0].finish_reason == "stop"
        assert reply.usage is not None
        assert reply.usage.prompt_tokens == sum(c["prompt_tokens"] for c in calls) > 0
        assert reply.usage.completion_tokens == sum(c["completion_tokens"] for c in calls) > 0


def test_streaming_works_with_the_openai_client(client: openai.OpenAI, store: RunStore) -> None:
    stream = client.chat.completions.create(
        model="smart_home",
        messages=KITCHEN,
        stream=True,
        stream_options={"include_usage": True},
    )
    try:
        chunks = list(stream)
    except openai.APIError as exc:  # a failed run: an error event, then the end
        body = exc.body if isinstance(exc.body, dict) else {}
        assert body.get("code") in ("run_failed", "model_unavailable", "run_timeout"), exc
        return
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert finish.choices[0].finish_reason == "stop"
    extras = (finish.model_extra or {})["brickwork"]
    assert {c.id for c in chunks} == {f"chatcmpl-{extras['run_id']}"}
    check_against_store(store, extras, content)
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    _, events = stored(store, extras["run_id"])
    assert usage.total_tokens == sum(
        e["prompt_tokens"] + e["completion_tokens"] for e in events if e["kind"] == "model_call"
    )


def test_models_and_runs(client: openai.OpenAI, server: ApiServer) -> None:
    [model] = list(client.models.list())
    assert model.id == "smart_home" and model.owned_by == "brickwork"
    assert (model.model_extra or {})["description"].startswith("Smart-home assistant")

    extras, _, _ = create(client, model="smart_home", messages=KITCHEN)
    run_id = extras["run_id"]
    auth = {"Authorization": f"Bearer {KEY}"}
    run = httpx.get(f"{server.base_url}/runs/{run_id}", headers=auth, timeout=30).json()
    assert run["run_id"] == run_id and run["graph"] == "smart_home"
    assert run["text"] == KITCHEN[0]["content"]
    nodes = [e["node"] for e in run["events"] if e["kind"] == "node_started"]
    assert nodes[0] == "intent"
    listing = httpx.get(f"{server.base_url}/runs", params={"limit": 5}, headers=auth).json()
    assert listing["data"][0]["run_id"] == run_id
    missing = httpx.get(f"{server.base_url}/runs/nope", headers=auth)
    assert missing.status_code == 404 and "no run 'nope'" in missing.json()["error"]["message"]


def test_bad_requests_raise_the_openai_errors(client: openai.OpenAI, server: ApiServer) -> None:
    with pytest.raises(openai.NotFoundError, match="unknown graph 'kitchen'.*smart_home"):
        client.chat.completions.create(model="kitchen", messages=KITCHEN)
    with pytest.raises(openai.BadRequestError, match="'messages' is empty") as empty:
        client.chat.completions.create(model="smart_home", messages=[])
    assert empty.value.status_code == 400
    with pytest.raises(openai.BadRequestError, match="invalid 'mode'"):
        client.chat.completions.create(
            model="smart_home", messages=KITCHEN, extra_body={"mode": "cheap"}
        )
    with pytest.raises(openai.AuthenticationError, match="wrong API key"):
        openai.OpenAI(base_url=server.base_url, api_key="guess", max_retries=0).models.list()


async def test_concurrent_requests_are_separate_runs_and_a_hostile_one_breaks_none(
    server: ApiServer, store: RunStore
) -> None:
    texts = ["Turn on the kitchen lights", "Lock the front door", "Set the thermostat to 70"] * 2
    hostile = (
        b'{"model": "smart_home", "messages": [{"role": "user", "content": "lights \\ud83d on"}]}'
    )
    headers = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=900) as http:
        bodies = [
            json.dumps({"model": "smart_home", "messages": [{"role": "user", "content": t}]})
            for t in texts
        ]
        responses = await asyncio.gather(
            http.post("/chat/completions", content=hostile),
            *(http.post("/chat/completions", content=b) for b in bodies),
        )
    refused, *innocent = responses
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_encoding"
    # each innocent request is its own run: answered (200) or an honest failure, never a 500
    assert all(r.status_code in (200, 402, 422, 503, 504) for r in innocent), [
        (r.status_code, r.text[:200]) for r in innocent
    ]
    run_ids = [r.json()["brickwork"]["run_id"] for r in innocent]
    assert len(set(run_ids)) == len(texts)
    assert [stored(store, r)[0].text for r in run_ids] == texts


def test_the_conversation_reaches_the_model(client: openai.OpenAI, store: RunStore) -> None:
    extras, _, _ = create(
        client,
        model="smart_home",
        messages=[
            {"role": "user", "content": "Lock the front door"},
            {"role": "assistant", "content": "lock_door(door='front', state='lock') -> done"},
            {"role": "user", "content": "Now turn off the bedroom lights"},
        ],
    )
    run_id = extras["run_id"]
    summary, events = stored(store, run_id)
    assert summary.text == "Now turn off the bedroom lights"
    sent = [
        m["content"]
        for e in events
        if e["kind"] == "node_finished" and e["node"] == "toolcall"
        for attempt in e["attempts"]
        for m in attempt["messages"]
    ]
    assert "Lock the front door" in sent and "Now turn off the bedroom lights" in sent


def test_metrics_count_the_real_runs(
    client: openai.OpenAI, server: ApiServer, store: RunStore
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    for _ in range(2):
        create(client, model="smart_home", messages=KITCHEN)
    assert httpx.get(f"{server.url}/metrics").status_code == 401  # the key guards it
    response = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    runs = store.runs(limit=10)
    by_status: dict[str, int] = {}
    for summary in runs:
        by_status[summary.status] = by_status.get(summary.status, 0) + 1
    for status, count in by_status.items():
        labels = (("graph", "smart_home"), ("status", status))
        assert samples[("brickwork_runs_total", labels)] == count
    graph = (("graph", "smart_home"),)
    assert samples[("brickwork_cost_usd_total", graph)] == pytest.approx(
        sum(s.cost_usd for s in runs)
    )
    assert samples[("brickwork_runs_in_flight", graph)] == 0
    node_counts = {
        labels: value
        for (name, labels), value in samples.items()
        if name == "brickwork_node_latency_seconds_count"
    }
    finished = [e for s in runs for e in stored(store, s.run_id)[1] if e["kind"] == "node_finished"]
    assert sum(node_counts.values()) == len(finished) > 0


# -- failures are errors, hostile input, admission ---------------------------------------------


def test_hostile_bodies_are_400_and_an_old_run_with_a_surrogate_is_readable(
    server: ApiServer, store: RunStore
) -> None:
    headers = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    url = f"{server.base_url}/chat/completions"
    nested = httpx.post(url, content=b"[" * 100_000, headers=headers, timeout=60)
    assert nested.status_code == 400 and "deeper than" in nested.json()["error"]["message"]
    # A run stored before surrogates were refused: its event JSON holds one, escaped.
    store.save(
        RunSummary("legacy1", "smart_home", "default", "hybrid", "hi", "ok", "a", None,
                   0.0, 0.0, 0.1, 0, (), 1.0),
        [{"run_id": "legacy1", "kind": "run_started", "text": "hi \ud83d", "at": 1.0}],
    )  # fmt: skip
    assert store.flush(10)
    run = httpx.get(f"{server.base_url}/runs/legacy1", headers=headers, timeout=30)
    assert run.status_code == 200
    assert run.json()["events"][0]["text"] == "hi \ufffd"


def test_an_unreachable_model_is_a_503_that_names_no_server(store: RunStore) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    config = pool_config_for(f"http://127.0.0.1:{dead}/v1", EMBEDDED_MODEL.served_name)

    def apps() -> Mapping[str, App]:
        app = App.from_graph("graphs.smart_home", pool=ModelPool(config), store=store)
        return {"smart_home": app}

    with ApiServer(apps_factory=apps, timeout_s=120) as running:
        client = openai.OpenAI(base_url=running.base_url, api_key="-", max_retries=0)
        with pytest.raises(openai.InternalServerError) as raised:
            client.chat.completions.create(model="smart_home", messages=KITCHEN)
    error = raised.value
    assert error.status_code == 503
    body = error.response.json()
    assert body["error"]["code"] == "model_unavailable"
    assert str(dead) not in body["error"]["message"] and "127.0.0.1" not in body["error"]["message"]
    summary, _ = stored(store, body["brickwork"]["run_id"])
    assert str(dead) in (summary.error or "")  # the trace keeps the detail


async def test_admission_refuses_at_once_with_429(slm_base_url: str, store: RunStore) -> None:
    from brickwork.admission import AdmissionLimits

    def apps() -> Mapping[str, App]:
        pool = ModelPool(pool_config_for(slm_base_url, EMBEDDED_MODEL.served_name))
        return {"smart_home": App.from_graph("graphs.smart_home", pool=pool, store=store)}

    limits = AdmissionLimits(max_in_flight=1, max_queue=0)
    with ApiServer(apps_factory=apps, timeout_s=600, admission=limits) as running:
        client = openai.AsyncOpenAI(base_url=running.base_url, api_key="-", max_retries=0)
        results = await asyncio.gather(
            *(
                client.chat.completions.create(model="smart_home", messages=KITCHEN)
                for _ in range(4)
            ),
            return_exceptions=True,
        )
        await client.close()
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert 1 <= len(refused) <= 3, results
    for error in refused:
        assert int(error.response.headers["retry-after"]) >= 1
        assert error.response.json()["error"]["code"] == "overloaded"
