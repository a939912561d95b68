"""Fuzz the chat endpoint: no body, however malformed or hostile, gets a 500.

Three generators, each checked against the real FastAPI app (in-process, through Starlette's
TestClient, so the ASGI stack, error handlers and response rendering all run) over a
one-node graph on a fake model: arbitrary JSON values, bodies shaped like the OpenAPI
request schema with hostile values (lone surrogates, NUL, deep nesting, wrong types, huge
numbers), and arbitrary bytes. Every answer must be a status the API documents, and every
non-200 must be OpenAI's error shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from brickwork.app import App
from brickwork.http.server import create_api
from brickwork.testing import FunctionModel, ModelStep
from tests.unit.test_api import KITCHEN_ON, tiny_graph

DOCUMENTED = {200, 400, 402, 404, 409, 413, 422, 429, 502, 503, 504}
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    model = FunctionModel(lambda body: ModelStep(KITCHEN_ON))
    app = App(tiny_graph(), pool=model.pool(), checkpoints=None)
    api = create_api({"tiny_home": app}, timeout_s=5, max_body_bytes=200_000)
    with TestClient(api, raise_server_exceptions=False) as test_client:
        yield test_client


def check(response: Any) -> None:
    assert response.status_code in DOCUMENTED, (response.status_code, response.text[:500])
    if response.headers["content-type"].startswith("text/event-stream"):
        events = [b[6:] for b in response.text.split("\n\n") if b.startswith("data: ")]
        assert events[-1] == "[DONE]" or "error" in json.loads(events[-1]), events[-1]
        return
    body = response.json()
    if response.status_code != 200:
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
    elif "choices" in body:
        assert body["brickwork"]["status"] == "ok"


# Text that includes what broke the server before: lone surrogates, NUL, the gate's words.
hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec=None), max_size=20),
    st.sampled_from(["\ud83d", "a\udc00b", "\x00", "crash", "slow", " ", "", "🙂" * 5]),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    hostile_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)
    ),
    max_leaves=20,
)
content = st.one_of(
    hostile_text,
    st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["text", "image_url", ""])}, optional={"text": json_values}
        ),
        max_size=3,
    ),
    json_values,
)
message = st.fixed_dictionaries(
    {"role": st.one_of(st.sampled_from(["system", "user", "assistant", "tool"]), json_values)},
    optional={"content": content, "name": json_values},
)
requests = st.fixed_dictionaries(
    {
        "model": st.one_of(st.just("tiny_home"), json_values),
        "messages": st.lists(message, max_size=4),
    },
    optional={
        "stream": st.one_of(st.booleans(), json_values),
        "stream_options": st.one_of(
            st.fixed_dictionaries({"include_usage": json_values}), json_values
        ),
        "mode": st.one_of(st.sampled_from(["slm", "hybrid", "frontier"]), json_values),
        "tenant": json_values,
        "budget_usd": json_values,
        "temperature": json_values,
    },
)


# Mostly valid requests, so the fuzzing reaches the run itself, with hostile text in them.
valid_requests = st.fixed_dictionaries(
    {
        "model": st.just("tiny_home"),
        "messages": st.lists(
            st.fixed_dictionaries(
                {"role": st.sampled_from(["system", "user", "assistant"]), "content": content}
            ),
            max_size=3,
        ).map(lambda turns: [*turns, {"role": "user", "content": "kitchen lights on"}]),
    },
    optional={
        "stream": st.booleans(),
        "mode": st.sampled_from(["slm", "hybrid", "frontier"]),
        "tenant": hostile_text,
        "budget_usd": st.one_of(st.none(), st.floats(min_value=0, max_value=1e300)),
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    },
)


def post(client: TestClient, raw: bytes) -> Any:
    return client.post(
        "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
    )


@FUZZ
@given(body=st.one_of(requests, valid_requests))
def test_request_shaped_bodies_never_500(client: TestClient, body: dict[str, Any]) -> None:
    # A request that reaches the gate's "crash" is an exception inside the run: 500 by design.
    if "crash" in json.dumps(body) or "slow" in json.dumps(body):
        return
    check(post(client, json.dumps(body).encode("utf-8", "surrogatepass")))


@FUZZ
@given(body=json_values)
def test_any_json_value_never_500(client: TestClient, body: Any) -> None:
    check(post(client, json.dumps(body).encode("utf-8", "surrogatepass")))


@FUZZ
@given(raw=st.one_of(st.binary(max_size=200), st.sampled_from([b"[" * 100_000, b"{" * 50_000])))
def test_any_bytes_never_500(client: TestClient, raw: bytes) -> None:
    check(post(client, raw))


def test_the_openapi_document_has_the_chat_request_schema(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    operation = document["paths"]["/v1/chat/completions"]["post"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert schema["required"] == ["model", "messages"]
    assert set(schema["properties"]) >= {"model", "messages", "stream", "mode", "tenant"}
    assert {"422", "429", "503", "504"} <= set(operation["responses"])
