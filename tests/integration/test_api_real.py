"""The HTTP front on the real smart_home graph and the real local vLLM, through the openai client.

The model is tiny, so nothing here asserts which tool it picks; the assertions tie what the
API says (answer, status, usage, run id) to what the run store recorded for the same run.
The apps are built by `apps_factory` inside the server's own event loop: a pool's HTTP
connections belong to the loop that first uses them.
"""

from __future__ import annotations

import asyncio
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
from brickwork.store import RunStore

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
    else:
        assert content.startswith("The request could not be completed")
    return [e["kind"] for e in events]


def test_a_completion_reports_the_run_it_made(client: openai.OpenAI, store: RunStore) -> None:
    reply = client.chat.completions.create(
        model="smart_home", messages=KITCHEN, extra_body={"mode": "hybrid", "tenant": "home-1"}
    )
    extras = (reply.model_extra or {})["brickwork"]
    assert reply.id == f"chatcmpl-{extras['run_id']}"
    assert reply.model == "smart_home"
    assert reply.choices[0].finish_reason == "stop"
    content = reply.choices[0].message.content or ""
    kinds = check_against_store(store, extras, content)
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    _, events = stored(store, extras["run_id"])
    calls = [e for e in events if e["kind"] == "model_call"]
    assert calls, "the tool-call node ran on the real model"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == sum(c["prompt_tokens"] for c in calls) > 0
    assert reply.usage.completion_tokens == sum(c["completion_tokens"] for c in calls) > 0
    assert stored(store, extras["run_id"])[0].tenant == "home-1"


def test_streaming_works_with_the_openai_client(client: openai.OpenAI, store: RunStore) -> None:
    stream = client.chat.completions.create(
        model="smart_home",
        messages=KITCHEN,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
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

    reply = client.chat.completions.create(model="smart_home", messages=KITCHEN)
    run_id = (reply.model_extra or {})["brickwork"]["run_id"]
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


async def test_concurrent_requests_are_separate_runs(server: ApiServer, store: RunStore) -> None:
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=900)
    texts = ["Turn on the kitchen lights", "Lock the front door", "Set the thermostat to 70"]
    replies = await asyncio.gather(
        *(
            client.chat.completions.create(
                model="smart_home", messages=[{"role": "user", "content": t}]
            )
            for t in texts
        )
    )
    await client.close()
    run_ids = [(r.model_extra or {})["brickwork"]["run_id"] for r in replies]
    assert len(set(run_ids)) == 3
    assert [stored(store, r)[0].text for r in run_ids] == texts


def test_the_conversation_reaches_the_model(client: openai.OpenAI, store: RunStore) -> None:
    reply = client.chat.completions.create(
        model="smart_home",
        messages=[
            {"role": "user", "content": "Lock the front door"},
            {"role": "assistant", "content": "lock_door(door='front', state='lock') -> done"},
            {"role": "user", "content": "Now turn off the bedroom lights"},
        ],
    )
    run_id = (reply.model_extra or {})["brickwork"]["run_id"]
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
        client.chat.completions.create(model="smart_home", messages=KITCHEN)
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
