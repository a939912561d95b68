"""The OpenAI-compatible HTTP front over a tiny graph on fake models: shapes, errors, streaming.

The graph is one tool-call node on the simulated hub behind a gate node that can stall
("slow") or raise ("crash"); the models are `FunctionModel`s, so every run is the real App,
graph, agent, ledger and store, and only the model answers are scripted.
"""

from __future__ import annotations

import asyncio
import functools
import json
import types
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langgraph.types import Command

import brickwork.app
from brickwork.agents.toolcall import ToolCallAgent
from brickwork.app import App
from brickwork.errors import ConfigError, ServerStartError
from brickwork.graphs import GraphModule
from brickwork.graphs.builder import END, Specialist, build_graph, write_tool_call
from brickwork.graphs.smart_home import answer, read_request
from brickwork.http.server import ApiServer, create_api
from brickwork.skills.examples import smart_home_skill
from brickwork.store import RunStore
from brickwork.testing import FunctionModel, ModelStep
from brickwork.tools.smart_home import SmartHomeHub

KITCHEN_ON = '{"name": "toggle_lights", "parameters": {"room": "kitchen", "state": "on"}}'
KITCHEN_ANSWER = (
    "toggle_lights(room='kitchen', state='on') -> "
    '{"lights": {"kitchen": {"on": true, "brightness": 100}}}'
)
REJECTED = "Your previous answer was rejected"


def tiny_graph() -> GraphModule:
    """gate -> toolcall -> END; the gate stalls on 'slow' and raises on 'crash'."""
    module = types.ModuleType("tiny_home")
    module.DESCRIPTION = "Tiny test graph: one tool call on a simulated hub."  # type: ignore[attr-defined]

    async def gate(state: dict[str, Any], runtime: Any) -> Command[Any]:
        if "slow" in state["text"]:
            await asyncio.Event().wait()  # never set: only the run's timeout ends this
        if "crash" in state["text"]:
            raise RuntimeError("the gate broke")
        return Command(goto="toolcall")

    def build(*, checkpointer: Any = None) -> Any:
        agent = ToolCallAgent(smart_home_skill(SmartHomeHub()))
        return build_graph(
            [Specialist("toolcall", agent, read_request, next=END, write=write_tool_call)],
            entry="gate",
            plain_nodes={"gate": (gate, ("toolcall",))},
            checkpointer=checkpointer,
        )

    module.build = build  # type: ignore[attr-defined]
    module.answer = answer  # type: ignore[attr-defined]
    return GraphModule("tiny_home", module)


def model_answer(body: dict[str, Any]) -> ModelStep:
    """A valid call (11+3 tokens), except: 'gibberish' is never valid, 'fix it' needs a repair."""
    sent = json.dumps(body["messages"])
    last = body["messages"][-1]["content"]
    if "gibberish" in sent or ("fix it" in sent and REJECTED not in last):
        return ModelStep("not json", prompt_tokens=7, completion_tokens=2)
    return ModelStep(KITCHEN_ON, prompt_tokens=11, completion_tokens=3)


def chat(text: str = "kitchen lights on", **extra: Any) -> dict[str, Any]:
    return {"model": "tiny_home", "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture
def model() -> FunctionModel:
    return FunctionModel(model_answer)


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "runs.sqlite")


@pytest.fixture
async def make_client(
    model: FunctionModel, store: RunStore
) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """Builds an httpx client on the ASGI app: `make_client(**create_api_options)`."""
    pool = model.pool()
    clients: list[httpx.AsyncClient] = []

    def make(app: App | None = None, **options: Any) -> httpx.AsyncClient:
        options.setdefault("timeout_s", 5)
        app = app or App(tiny_graph(), pool=pool, store=store)
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


def assert_error(
    response: httpx.Response, status: int, *phrases: str, param: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    for phrase in phrases:
        assert phrase in error["message"], error["message"]
    if param is not None:
        assert error["param"] == param
    return dict(error)


# -- completions ------------------------------------------------------------------------------


async def test_completion_has_the_openai_shape_and_brickwork_extras(
    client: httpx.AsyncClient, store: RunStore
) -> None:
    response = await client.post("/v1/chat/completions", json=chat())
    assert response.status_code == 200
    body = response.json()
    run_id = body["brickwork"]["run_id"]
    summary, events = store.run(run_id)  # type: ignore[misc]
    assert isinstance(body.pop("created"), int)
    assert body == {
        "id": f"chatcmpl-{run_id}",
        "object": "chat.completion",
        "model": "tiny_home",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": KITCHEN_ANSWER},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
        "brickwork": {
            "run_id": run_id,
            "status": "ok",
            "cost_usd": summary.cost_usd,
            "frontier_only_usd": summary.frontier_only_usd,
            "escalations": [],
            "flags": [],
        },
    }
    assert summary.answer == KITCHEN_ANSWER
    assert summary.frontier_only_usd > 0
    assert events[0]["kind"] == "run_started" and events[-1]["kind"] == "run_finished"


async def test_usage_sums_every_model_call_of_the_run(client: httpx.AsyncClient) -> None:
    body = (await client.post("/v1/chat/completions", json=chat("fix it: kitchen on"))).json()
    # the first answer is rejected, the repair turn is valid: 7+11 prompt, 2+3 completion
    assert body["usage"] == {"prompt_tokens": 18, "completion_tokens": 5, "total_tokens": 23}
    assert body["brickwork"]["status"] == "ok"


def assert_clean(message: str) -> None:
    """Nothing internal in a user-facing message: no URL, host, port, path or exception name."""
    for leak in ("http://", ".fake", "Error:", "Traceback", "/work/", "127.0.0.1"):
        assert leak not in message, message


async def test_a_failed_run_is_422_with_its_run_id(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=chat("gibberish"))
    error = assert_error(response, 422, "the request could not be completed")
    assert (error["type"], error["code"]) == ("invalid_request_error", "run_failed")
    assert response.headers["x-should-retry"] == "false"
    extras = response.json()["brickwork"]
    assert extras["status"] == "failed"
    assert extras["escalations"] == [{"node": "toolcall", "reason": "validation_failed"}]
    assert "toolcall:escalation_failed" in extras["flags"]
    assert "failed on the frontier model too" in error["message"]
    assert f"GET /v1/runs/{extras['run_id']}" in error["message"]
    assert_clean(error["message"])
    trace = (await client.get(f"/v1/runs/{extras['run_id']}")).json()
    assert trace["status"] == "failed" and trace["error"]


async def test_budget_usd_stops_the_escalation_with_402(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=chat("gibberish", budget_usd=0))
    error = assert_error(response, 402, "the budget ran out", "budget_exhausted")
    assert error["code"] == "budget_exhausted"
    assert response.json()["brickwork"]["status"] == "over_budget"
    assert response.json()["brickwork"]["escalations"] == []


@pytest.mark.parametrize(
    ("step", "status", "code"),
    [
        (ModelStep("overloaded", status=503), 503, "model_unavailable"),
        (ModelStep("connection refused", status=502), 503, "model_unavailable"),
        (ModelStep("context too long", status=400), 502, "model_error"),
    ],
)
async def test_an_unusable_model_is_a_5xx_that_names_no_server(
    make_client: Callable[..., httpx.AsyncClient],
    store: RunStore,
    step: ModelStep,
    status: int,
    code: str,
) -> None:
    async with FunctionModel(lambda body: step).pool() as pool:
        client = make_client(App(tiny_graph(), pool=pool, store=store))
        response = await client.post("/v1/chat/completions", json=chat())
        error = assert_error(response, status)
        assert (error["code"], error["type"]) == (code, "server_error")
        assert response.headers["x-should-retry"] == "false"
        assert_clean(error["message"])
        run_id = response.json()["brickwork"]["run_id"]
        summary, _ = store.run(run_id)  # type: ignore[misc]
        assert summary.status == "failed" and "fake" in (summary.error or "")  # the trace keeps it


async def test_mode_and_tenant_reach_the_run(
    client: httpx.AsyncClient, model: FunctionModel, store: RunStore
) -> None:
    response = await client.post("/v1/chat/completions", json=chat(mode="frontier", tenant="acme"))
    body = response.json()
    assert body["brickwork"]["status"] == "ok"
    assert [r["model"] for r in model.requests] == ["fake-frontier"]
    summary, _ = store.run(body["brickwork"]["run_id"])  # type: ignore[misc]
    assert (summary.mode, summary.tenant) == ("frontier", "acme")


async def test_a_timeout_answers_504_without_retry_and_is_recorded(
    make_client: Callable[..., httpx.AsyncClient], store: RunStore
) -> None:
    client = make_client(timeout_s=0.2)
    response = await client.post("/v1/chat/completions", json=chat("slow"))
    error = assert_error(response, 504, "did not finish within its 0.2 s limit")
    assert error["code"] == "run_timeout" and error["type"] == "server_error"
    assert response.headers["x-should-retry"] == "false"
    run_id = response.json()["brickwork"]["run_id"]
    assert store.run(run_id)[0].status == "timeout"  # type: ignore[index]


async def test_an_exception_in_the_run_answers_500_without_its_internals(
    client: httpx.AsyncClient, store: RunStore
) -> None:
    response = await client.post("/v1/chat/completions", json=chat("crash"))
    error = assert_error(response, 500, "stopped on an internal error")
    assert error["code"] == "run_error"
    assert "RuntimeError" not in error["message"] and "gate broke" not in error["message"]
    assert response.headers["x-should-retry"] == "false"
    run_id = response.json()["brickwork"]["run_id"]
    assert response.json()["brickwork"]["status"] == "error"
    assert "RuntimeError: the gate broke" in (store.run(run_id)[0].error or "")  # type: ignore[index]


async def test_the_conversation_reaches_the_graph_and_its_last_user_turn_is_the_text(
    client: httpx.AsyncClient, model: FunctionModel, store: RunStore
) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "lock the front door"},
        {"role": "assistant", "content": "lock_door(door='front')", "name": "bot"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "kitchen"}, {"type": "text", "text": "lights on"}],
        },
        {"role": "assistant", "content": "a trailing turn after the request is left out"},
    ]
    body = {"model": "tiny_home", "messages": messages, "temperature": 0.3, "n": 1}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert model.requests[0]["messages"][-4:] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "lock the front door"},
        {"role": "assistant", "content": "lock_door(door='front')"},
        {"role": "user", "content": "kitchen\nlights on"},
    ]
    summary, _ = store.run(response.json()["brickwork"]["run_id"])  # type: ignore[misc]
    assert summary.text == "kitchen\nlights on"


# -- request errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "phrase", "param"),
    [
        (chat(model="nope"), 404, "unknown graph 'nope'; this server serves: tiny_home", "model"),
        ({"model": "tiny_home", "messages": []}, 400, "'messages' is empty", "messages"),
        (
            {"model": "tiny_home", "messages": [{"role": "system", "content": "hi"}]},
            400,
            "has no user message",
            "messages",
        ),
        (chat("   "), 400, "the last user message is empty", "messages"),
        (chat(mode="turbo"), 400, "invalid 'mode': Input should be 'slm', 'hybrid' or", "mode"),
        (chat(budget_usd=-1), 400, "invalid 'budget_usd'", "budget_usd"),
        ({"messages": chat()["messages"]}, 400, "invalid 'model': Field required", "model"),
        (chat(stream="maybe"), 400, "invalid 'stream'", "stream"),
        (
            {"model": "tiny_home", "messages": [{"role": "robot", "content": "x"}]},
            400,
            "invalid 'messages.0.role'",
            "messages.0.role",
        ),
    ],
)
async def test_bad_requests_get_openai_errors(
    client: httpx.AsyncClient, body: Any, status: int, phrase: str, param: str
) -> None:
    response = await client.post("/v1/chat/completions", json=body)
    assert_error(response, status, phrase, param=param)


async def test_text_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    limit = brickwork.app.MAX_TEXT_CHARS
    response = await client.post("/v1/chat/completions", json=chat("a" * (limit + 1)))
    error = assert_error(response, 413, f"{limit + 1} characters; the limit is {limit}")
    assert error["code"] == "text_too_long"


async def test_bodies_over_max_body_bytes_are_refused_before_parsing(
    make_client: Callable[..., httpx.AsyncClient], model: FunctionModel
) -> None:
    client = make_client(max_body_bytes=500)
    big = json.dumps(chat("b" * 600)).encode()
    response = await client.post("/v1/chat/completions", content=big)
    assert_error(response, 413, "the limit is 500")

    async def chunked() -> AsyncIterator[bytes]:  # no content-length: counted while read
        for i in range(0, len(big), 100):
            yield big[i : i + 100]

    response = await client.post("/v1/chat/completions", content=chunked())
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "the limit is 500")
    assert model.requests == []


@pytest.mark.parametrize(
    ("raw", "phrase"),
    [
        (b'{"model": "tiny_home", "messages": [\xff]}', "not valid UTF-8 (byte 36)"),
        (b'{"model": "tiny_home",', "not valid JSON: Expecting property name"),
        (b"[1, 2]", "must be a JSON object, got list"),
    ],
)
async def test_undecodable_bodies_are_400(
    client: httpx.AsyncClient, raw: bytes, phrase: str
) -> None:
    assert_error(await client.post("/v1/chat/completions", content=raw), 400, phrase)


async def test_api_key_guards_v1_but_not_health(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    client = make_client(api_key="s3cret")
    missing = await client.post("/v1/chat/completions", json=chat())
    error = assert_error(missing, 401, "missing API key")
    assert error["type"] == "authentication_error"
    wrong = await client.get("/v1/models", headers={"Authorization": "Bearer nope"})
    assert_error(wrong, 401, "wrong API key")
    right = await client.post(
        "/v1/chat/completions", json=chat(), headers={"Authorization": "Bearer s3cret"}
    )
    assert right.status_code == 200
    health = await client.get("/health")
    assert health.json() == {"status": "ok", "graphs": ["tiny_home"]}


async def test_unknown_routes_and_methods_use_the_error_shape(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v1/nothing"), 404, "Not Found")
    assert_error(await client.get("/v1/chat/completions"), 405, "Method Not Allowed")


def test_create_api_needs_apps() -> None:
    with pytest.raises(ConfigError, match="no graphs to serve"):
        create_api({})


# -- models and runs --------------------------------------------------------------------------


async def test_models_lists_the_graphs(client: httpx.AsyncClient) -> None:
    listing = (await client.get("/v1/models")).json()
    assert listing["object"] == "list"
    [model] = listing["data"]
    assert isinstance(model.pop("created"), int)
    assert model == {
        "id": "tiny_home",
        "object": "model",
        "owned_by": "brickwork",
        "description": "Tiny test graph: one tool call on a simulated hub.",
    }
    assert (await client.get("/v1/models/tiny_home")).json()["id"] == "tiny_home"
    assert_error(await client.get("/v1/models/other"), 404, "unknown graph 'other'")


async def test_runs_are_read_from_the_store(client: httpx.AsyncClient) -> None:
    first = (await client.post("/v1/chat/completions", json=chat())).json()
    second = (await client.post("/v1/chat/completions", json=chat("gibberish"))).json()
    run = (await client.get(f"/v1/runs/{first['brickwork']['run_id']}")).json()
    assert run["object"] == "run" and run["status"] == "ok" and run["answer"] == KITCHEN_ANSWER
    kinds = [e["kind"] for e in run["events"]]
    assert kinds == [
        "run_started",
        "node_started",
        "model_call",
        "escalation",
        "node_finished",
        "run_finished",
    ]
    assert run["events"][2]["prompt_tokens"] == 11
    listing = (await client.get("/v1/runs", params={"limit": 1})).json()
    assert [r["run_id"] for r in listing["data"]] == [second["brickwork"]["run_id"]]
    everything = (await client.get("/v1/runs", params={"graph": "tiny_home"})).json()
    assert len(everything["data"]) == 2 and "events" not in everything["data"][0]
    assert (await client.get("/v1/runs", params={"graph": "other"})).json()["data"] == []
    assert_error(await client.get("/v1/runs/feedbeef"), 404, "no run 'feedbeef'")
    assert_error(await client.get("/v1/runs", params={"limit": 0}), 400, "invalid 'limit'")


async def test_runs_without_a_store_are_501(
    make_client: Callable[..., httpx.AsyncClient], model: FunctionModel
) -> None:
    async with model.pool() as pool:
        client = make_client(App(tiny_graph(), pool=pool))
        assert_error(await client.get("/v1/runs"), 501, "keeps no run store")
        # runs still work; an exception is a 500 that names its run
        response = await client.post("/v1/chat/completions", json=chat("crash"))
        assert_error(response, 500, "stopped on an internal error")


# -- streaming --------------------------------------------------------------------------------


def sse(text: str) -> tuple[list[Any], list[str]]:
    """The data payloads (JSON, or the literal [DONE]) and the comment lines of an SSE body."""
    data, comments = [], []
    for block in text.split("\n\n"):
        if not block:
            continue
        assert "\n" not in block, block
        if block.startswith(": "):
            comments.append(block[2:])
        else:
            assert block.startswith("data: "), block
            payload = block.removeprefix("data: ")
            data.append(payload if payload == "[DONE]" else json.loads(payload))
    return data, comments


async def test_streaming_sends_role_content_finish_usage_and_done(
    client: httpx.AsyncClient,
) -> None:
    body = chat(stream=True, stream_options={"include_usage": True})
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    data, comments = sse(response.text)
    role, content, finish, usage, done = data
    assert done == "[DONE]"
    run_id = finish["brickwork"]["run_id"]
    for chunk in (role, content, finish, usage):
        assert chunk["id"] == f"chatcmpl-{run_id}"
        assert chunk["object"] == "chat.completion.chunk" and chunk["model"] == "tiny_home"
    assert role["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    assert content["choices"][0]["delta"] == {"content": KITCHEN_ANSWER}
    assert finish["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert finish["brickwork"]["status"] == "ok"
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    assert comments == ["node_started toolcall", "escalation toolcall", "node_finished toolcall"]


async def test_a_streamed_timeout_ends_with_an_error_event(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    client = make_client(timeout_s=0.2)
    response = await client.post("/v1/chat/completions", json=chat("slow", stream=True))
    data, _ = sse(response.text)
    role, error = data
    assert role["choices"][0]["delta"]["role"] == "assistant"
    assert error["error"]["code"] == "run_timeout"
    assert error["brickwork"]["status"] == "timeout"


async def test_a_streamed_failure_is_an_error_event_then_the_end(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v1/chat/completions", json=chat("gibberish", stream=True))
    data, _ = sse(response.text)
    role, error = data  # no content, no [DONE]: the error is the last thing sent
    assert role["choices"][0]["delta"]["role"] == "assistant"
    assert error["error"]["code"] == "run_failed"
    assert error["brickwork"]["status"] == "failed"
    assert_clean(error["error"]["message"])


# -- the real openai client against ApiServer -------------------------------------------------


class ClosingApp(App):
    """An App that remembers being closed (and on which event loop it ran)."""

    closed = False

    async def aclose(self) -> None:
        self.closed = True
        await super().aclose()


def tiny_apps(
    model: FunctionModel, store: RunStore, made: list[App] | None = None
) -> Callable[[], Mapping[str, App]]:
    def factory() -> Mapping[str, App]:
        app = ClosingApp(tiny_graph(), pool=model.pool(), store=store)
        (made if made is not None else []).append(app)
        return {"tiny_home": app}

    return factory


def test_api_server_serves_the_openai_client(model: FunctionModel, store: RunStore) -> None:
    made: list[App] = []
    with ApiServer(apps_factory=tiny_apps(model, store, made), api_key="k") as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1" and server.port > 0
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        reply = client.chat.completions.create(
            model="tiny_home",
            messages=[{"role": "user", "content": "kitchen lights on"}],
            extra_body={"mode": "slm", "tenant": "t1"},
        )
        assert reply.choices[0].message.content == KITCHEN_ANSWER
        assert reply.usage is not None and reply.usage.total_tokens == 14
        extras = (reply.model_extra or {})["brickwork"]
        assert reply.id == f"chatcmpl-{extras['run_id']}" and extras["status"] == "ok"
        assert store.run(extras["run_id"])[0].tenant == "t1"  # type: ignore[index]

        chunks = list(
            client.chat.completions.create(
                model="tiny_home",
                messages=[{"role": "user", "content": "kitchen lights on"}],
                stream=True,
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == KITCHEN_ANSWER
        assert chunks[-1].choices[0].finish_reason == "stop"
        assert [m.id for m in client.models.list()] == ["tiny_home"]

        with pytest.raises(openai.NotFoundError, match="unknown graph 'x'"):
            client.chat.completions.create(model="x", messages=[{"role": "user", "content": "a"}])
        with pytest.raises(openai.BadRequestError, match="invalid 'mode'"):
            client.chat.completions.create(
                model="tiny_home",
                messages=[{"role": "user", "content": "a"}],
                extra_body={"mode": "fast"},
            )
        wrong = openai.OpenAI(base_url=server.base_url, api_key="no", max_retries=0)
        with pytest.raises(openai.AuthenticationError, match="wrong API key"):
            wrong.models.list()
        assert not made[0].closed  # type: ignore[attr-defined]
    assert made[0].closed  # type: ignore[attr-defined]  # the factory's apps die with the server
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health")


def test_api_server_leaves_apps_it_was_given_open(model: FunctionModel, store: RunStore) -> None:
    app = tiny_apps(model, store)()["tiny_home"]
    with ApiServer({"tiny_home": app}) as server:
        assert httpx.get(f"{server.url}/health").json()["graphs"] == ["tiny_home"]
    assert not app.closed  # type: ignore[attr-defined]


def test_api_server_takes_apps_or_a_factory_and_reports_start_failures(
    model: FunctionModel, store: RunStore
) -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        ApiServer()
    with pytest.raises(ConfigError, match="exactly one"):
        ApiServer({}, apps_factory=tiny_apps(model, store))

    def broken() -> Mapping[str, App]:
        raise RuntimeError("no graphs today")

    with pytest.raises(ServerStartError, match="no graphs today"), ApiServer(apps_factory=broken):
        pass


# -- /metrics ---------------------------------------------------------------------------------


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, by (name, sorted labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_runs_nodes_escalations_and_cost(
    client: httpx.AsyncClient, store: RunStore
) -> None:
    for text, extra in [
        ("kitchen lights on", {}),
        ("kitchen lights on", {"mode": "frontier"}),
        ("gibberish", {}),  # fails on both models after an escalation
        ("crash", {}),  # an exception inside the run: status error, 500
    ]:
        await client.post("/v1/chat/completions", json=chat(text, **extra))
    streamed = await client.post("/v1/chat/completions", json=chat(stream=True))
    assert streamed.status_code == 200 and "[DONE]" in streamed.text

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = scrape(response.text)
    graph = (("graph", "tiny_home"),)

    def runs(status: str) -> float:
        return samples.get(
            ("brickwork_runs_total", (("graph", "tiny_home"), ("status", status))), 0
        )

    assert (runs("ok"), runs("failed"), runs("error")) == (3, 1, 1)
    assert samples[("brickwork_runs_in_flight", graph)] == 0

    stored = store.runs(limit=10)
    assert len(stored) == 5
    assert samples[("brickwork_cost_usd_total", graph)] == pytest.approx(
        sum(s.cost_usd for s in stored)
    )
    assert samples[("brickwork_frontier_only_cost_usd_total", graph)] == pytest.approx(
        sum(s.frontier_only_usd for s in stored)
    )
    assert samples[("brickwork_cost_usd_total", graph)] > 0

    reasons = {
        labels: value
        for (name, labels), value in samples.items()
        if name == "brickwork_escalations_total"
    }
    assert reasons == {
        (("graph", "tiny_home"), ("node", "toolcall"), ("reason", "frontier_mode")): 1,
        (("graph", "tiny_home"), ("node", "toolcall"), ("reason", "validation_failed")): 1,
    }

    # The latency histogram holds every node that finished, with their latencies summed.
    finished = [
        event
        for summary in stored
        for event in store.run(summary.run_id)[1]  # type: ignore[index]
        if event["kind"] == "node_finished"
    ]
    for node in ("toolcall", "supervisor"):
        latencies = [e["latency_s"] for e in finished if e["node"] == node]
        labels = (("graph", "tiny_home"), ("node", node))
        assert latencies, node
        assert samples[("brickwork_node_latency_seconds_count", labels)] == len(latencies)
        assert samples[("brickwork_node_latency_seconds_sum", labels)] == pytest.approx(
            sum(latencies)
        )
        infinite = (*labels[:1], ("le", "+Inf"), *labels[1:])
        assert samples[("brickwork_node_latency_seconds_bucket", infinite)] == len(latencies)


async def test_metrics_show_runs_in_flight(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    client = make_client(timeout_s=0.5)
    slow = asyncio.create_task(client.post("/v1/chat/completions", json=chat("slow")))
    key = ("brickwork_runs_in_flight", (("graph", "tiny_home"),))
    for _ in range(200):  # wait for the run to start, not for a time
        samples = scrape((await client.get("/metrics")).text)
        if samples.get(key) == 1:
            break
        await asyncio.sleep(0.01)
    assert samples[key] == 1
    assert (await slow).status_code == 504
    samples = scrape((await client.get("/metrics")).text)
    assert samples[key] == 0
    assert samples[("brickwork_runs_total", (("graph", "tiny_home"), ("status", "timeout")))] == 1


async def test_metrics_need_the_api_key_unless_public(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    keyed = make_client(api_key="s3cret")
    assert_error(await keyed.get("/metrics"), 401, "missing API key")
    right = await keyed.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert right.status_code == 200 and "brickwork_runs_in_flight" in right.text
    public = make_client(api_key="s3cret", public_metrics=True)
    assert (await public.get("/metrics")).status_code == 200
    assert_error(await public.get("/v1/models"), 401, "missing API key")


async def test_each_api_has_its_own_metrics(make_client: Callable[..., httpx.AsyncClient]) -> None:
    first, second = make_client(), make_client()
    await first.post("/v1/chat/completions", json=chat())
    key = ("brickwork_runs_total", (("graph", "tiny_home"), ("status", "ok")))
    assert scrape((await first.get("/metrics")).text)[key] == 1
    assert key not in scrape((await second.get("/metrics")).text)


# -- hostile input, admission -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b'{"model": "tiny_home", "messages": [{"role": "user", "content": "hi \\ud83d"}]}',
         "messages.0.content"),
        (b'{"model": "tiny_home", "messages": [{"role": "user", "content": "hi"}], '
         b'"tenant": "\\udc00"}', "tenant"),
        (b'{"model": "tiny_home", "messages": [{"role": "user", "content": "hi", '
         b'"\\ud83d": 1}]}', "messages.0.<key>"),
    ],
)  # fmt: skip
async def test_lone_surrogates_are_refused_with_400(
    client: httpx.AsyncClient, model: FunctionModel, raw: bytes, param: str
) -> None:
    response = await client.post("/v1/chat/completions", content=raw)
    error = assert_error(response, 400, "lone UTF-16 surrogate", param=param)
    assert error["code"] == "invalid_encoding"
    assert model.requests == []


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000,
        b'{"model": "tiny_home", "messages": [{"role": "user", "content": "hi", "x": '
        + b"[" * 100
        + b"]" * 100
        + b"}]}",
    ],
)
async def test_over_deep_json_is_400_not_500(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post("/v1/chat/completions", content=raw)
    assert_error(response, 400, "deeper than 64 levels")


async def test_runs_past_the_admission_limit_are_429_with_retry_after(
    make_client: Callable[..., httpx.AsyncClient], model: FunctionModel, store: RunStore
) -> None:
    from brickwork.admission import AdmissionLimits

    app = App(tiny_graph(), pool=model.pool(), store=store)
    client = make_client(app, timeout_s=30, admission=AdmissionLimits(1, 0, 0.0))
    stalled = asyncio.create_task(client.post("/v1/chat/completions", json=chat("slow")))
    while app.admission is None or app.admission.in_flight == 0:
        await asyncio.sleep(0.01)
    for body in (chat(), chat(stream=True)):
        response = await client.post("/v1/chat/completions", json=body)
        error = assert_error(response, 429, "at capacity", "nothing was run")
        assert (error["type"], error["code"]) == ("rate_limit_error", "overloaded")
        assert int(response.headers["retry-after"]) >= 1
        assert "x-should-retry" not in response.headers  # nothing ran: retrying is safe
    stalled.cancel()
    assert app.admission.refused == 2
    assert [r.run_id for r in store.runs()] == []  # refused runs never started
    metrics = scrape((await client.get("/metrics")).text)
    refused = ("brickwork_runs_total", (("graph", "tiny_home"), ("status", "refused")))
    assert metrics[refused] == 2


def test_needs_confirmation_is_409_and_unknown_statuses_are_not_200() -> None:
    from brickwork.http.models import RunOutcome
    from brickwork.http.outcomes import outcome_error

    def outcome(status: str, error: str | None) -> RunOutcome:
        return RunOutcome("r1", status, "", error, 0, 0, 0.0, 0.0, (), ())  # type: ignore[arg-type]

    asked = outcome_error(outcome("needs_confirmation", "unlock_door(door='front')"), 300)
    assert asked is not None and asked.status == 409 and asked.code == "needs_confirmation"
    assert "POST /v1/runs/r1/confirm" in asked.message and "nothing was done" in asked.message
    assert '{"confirm": true}' in asked.message and '{"confirm": false}' in asked.message
    assert asked.headers["x-should-retry"] == "false"
    other = outcome_error(outcome("partial", "step 2 failed"), 300)
    assert other is not None and other.status == 422 and other.code == "run_partial"
    assert outcome_error(outcome("ok", None), 300) is None


# -- answering a confirmation: POST /v1/runs/{run_id}/confirm ----------------------------------


def unlocker_hub() -> tuple[SmartHomeHub, list[dict[str, Any]]]:
    """A hub whose lock_door records every call that actually ran."""
    hub = SmartHomeHub()
    ran: list[dict[str, Any]] = []
    original = hub.lock_door

    @functools.wraps(original)
    def lock_door(**arguments: Any) -> Any:
        ran.append(arguments)
        return original(**arguments)

    hub.lock_door = lock_door  # type: ignore[method-assign]
    return hub, ran


@pytest.fixture
async def home(
    tmp_path: Path, store: RunStore
) -> AsyncIterator[tuple[httpx.AsyncClient, SmartHomeHub, list[dict[str, Any]]]]:
    """The smart_home graph on a fake model that unlocks the front door whatever it is asked."""
    from tests.fixtures.graph_fakes import Agents, call

    agents = Agents(
        intent=lambda text, model: "device_command",
        call=lambda text, model: call("lock_door", door="front", state="unlock"),
    )
    hub, ran = unlocker_hub()
    async with agents.model().pool() as pool:
        app = App.from_graph(
            "smart_home", pool=pool, store=store, checkpoints=tmp_path / "state.sqlite",
            graph_options={"knn": False, "hub": hub},
        )  # fmt: skip
        api = create_api({"smart_home": app}, timeout_s=30)
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client, hub, ran
        await app.aclose()


def ask(text: str = "Is the front door unlocked?") -> dict[str, Any]:
    return {"model": "smart_home", "messages": [{"role": "user", "content": text}]}


async def stop_for_confirmation(client: httpx.AsyncClient) -> str:
    response = await client.post("/v1/chat/completions", json=ask())
    assert_error(response, 409, "needs confirmation", "nothing was done")
    body = response.json()
    run_id = str(body["brickwork"]["run_id"])
    assert f"POST /v1/runs/{run_id}/confirm" in body["error"]["message"]
    return run_id


async def test_confirming_runs_the_call_and_answers_like_a_completion(
    home: tuple[httpx.AsyncClient, SmartHomeHub, list[dict[str, Any]]], store: RunStore
) -> None:
    client, hub, ran = home
    run_id = await stop_for_confirmation(client)
    assert ran == [] and hub.doors["front"].locked
    response = await client.post(f"/v1/runs/{run_id}/confirm", json={"confirm": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion" and body["model"] == "smart_home"
    assert body["id"] == f"chatcmpl-{run_id}"
    assert body["brickwork"]["run_id"] == run_id and body["brickwork"]["status"] == "ok"
    assert "lock_door(door='front', state='unlock')" in body["choices"][0]["message"]["content"]
    assert ran == [{"door": "front", "state": "unlock"}] and not hub.doors["front"].locked
    summary, _ = store.run(run_id) or (None, None)
    assert summary is not None and summary.status == "ok"
    assert summary.tenant == "default" and summary.mode == "hybrid"


async def test_declining_is_422_and_nothing_runs(
    home: tuple[httpx.AsyncClient, SmartHomeHub, list[dict[str, Any]]],
) -> None:
    client, hub, ran = home
    run_id = await stop_for_confirmation(client)
    response = await client.post(f"/v1/runs/{run_id}/confirm", json={"confirm": False})
    assert_error(response, 422, "could not be completed", "not confirmed")
    assert response.json()["brickwork"]["status"] == "failed"
    assert response.headers["x-should-retry"] == "false"
    assert ran == [] and hub.doors["front"].locked


async def test_a_run_is_answered_once_and_only_runs_that_wait_can_be(
    home: tuple[httpx.AsyncClient, SmartHomeHub, list[dict[str, Any]]],
) -> None:
    client, _, ran = home
    run_id = await stop_for_confirmation(client)
    first = await client.post(f"/v1/runs/{run_id}/confirm", json={"confirm": True})
    assert first.status_code == 200
    again = await client.post(f"/v1/runs/{run_id}/confirm", json={"confirm": True})
    assert_error(again, 409, f"run {run_id} is not waiting for a confirmation", "'ok'",
                 param="run_id")  # fmt: skip
    assert again.json()["error"]["code"] == "not_waiting_for_confirmation"
    plain = await client.post("/v1/chat/completions", json=ask("Unlock the front door"))
    assert plain.status_code == 200  # plainly asked: it ran without a question
    done = await client.post(
        f"/v1/runs/{plain.json()['brickwork']['run_id']}/confirm", json={"confirm": False}
    )
    assert_error(done, 409, "not waiting for a confirmation", param="run_id")
    assert len(ran) == 2  # one confirmed call, one plainly asked; no answer ran anything twice


async def test_two_answers_at_once_run_the_call_once(
    home: tuple[httpx.AsyncClient, SmartHomeHub, list[dict[str, Any]]],
) -> None:
    client, _, ran = home
    run_id = await stop_for_confirmation(client)
    url = f"/v1/runs/{run_id}/confirm"
    responses = await asyncio.gather(*(client.post(url, json={"confirm": True}) for _ in range(3)))
    assert sorted(r.status_code for r in responses) == [200, 409, 409]
    assert len(ran) == 1


async def test_unknown_runs_are_404_and_bad_answers_400(
    home: tuple[httpx.AsyncClient, SmartHomeHub, list[dict[str, Any]]],
) -> None:
    client, _, ran = home
    missing = await client.post("/v1/runs/nope/confirm", json={"confirm": True})
    assert_error(missing, 404, "no run 'nope'", param="run_id")
    run_id = await stop_for_confirmation(client)
    url = f"/v1/runs/{run_id}/confirm"
    for body, phrase in [
        ({"confirm": "yes"}, "invalid 'confirm'"),
        ({"confirm": 1}, "invalid 'confirm'"),
        ({}, "invalid 'confirm'"),
        ({"confirm": True, "also": 1}, "invalid 'also'"),
    ]:
        assert_error(await client.post(url, json=body), 400, phrase)
    assert_error(await client.post(url, content=b"yes"), 400, "not valid JSON")
    assert_error(await client.post(url, content=b"[" * 100_000), 400, "deeper than")
    assert ran == []
    still = await client.post(url, json={"confirm": True})  # none of that answered it
    assert still.status_code == 200 and len(ran) == 1


async def test_a_run_of_a_graph_this_server_does_not_serve_is_409(
    make_client: Callable[..., httpx.AsyncClient], store: RunStore
) -> None:
    from brickwork.store import RunSummary

    store.save(
        RunSummary("elsewhere1", "support", "default", "hybrid", "close it",
                   "needs_confirmation", "Please confirm", None, 0.0, 0.0, 0.1, 0, (), 1.0),
        [],
    )  # fmt: skip
    client = make_client()
    response = await client.post("/v1/runs/elsewhere1/confirm", json={"confirm": True})
    assert_error(response, 409, "graph 'support'", "does not serve", param="run_id")
    assert response.json()["error"]["code"] == "graph_not_served"


async def test_confirm_needs_a_run_store(
    make_client: Callable[..., httpx.AsyncClient], model: FunctionModel
) -> None:
    client = make_client(App(tiny_graph(), pool=model.pool()))
    response = await client.post("/v1/runs/r1/confirm", json={"confirm": True})
    assert response.status_code == 501 and response.json()["error"]["code"] == "no_run_store"


def test_openapi_documents_the_confirm_route_and_its_body() -> None:
    api = create_api({"tiny_home": App(tiny_graph(), pool=FunctionModel(model_answer).pool())})
    schema = api.openapi()
    route = schema["paths"]["/v1/runs/{run_id}/confirm"]["post"]
    ref = route["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/ConfirmRequest"
    body = schema["components"]["schemas"]["ConfirmRequest"]
    assert body["required"] == ["confirm"] and body["properties"]["confirm"]["type"] == "boolean"
    assert body["additionalProperties"] is False
    assert {"200", "400", "404", "409", "422"} <= set(route["responses"])
