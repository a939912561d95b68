"""Answering a confirmation over the real HTTP front on 127.0.0.1, with the openai client.

What is tested is the HTTP front (uvicorn, the route, the status codes, the store, the
checkpoint), not the model: the smart_home graph runs on a scripted fake that unlocks the
front door whatever it is asked, so every run reliably stops for a confirmation. The server
is real: `ApiServer` on a free port of 127.0.0.1, with a SQLite run store and checkpoints.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from brickwork.app import App
from brickwork.http.server import ApiServer
from brickwork.store import RunStore
from brickwork.tools.smart_home import SmartHomeHub
from tests.fixtures.graph_fakes import Agents, call

KEY = "confirm-key"
ASKED = [{"role": "user", "content": "Is the front door unlocked?"}]


class Home:
    """The hub the served graph acts on, and every lock_door call that actually ran."""

    def __init__(self) -> None:
        self.hub = SmartHomeHub()
        self.ran: list[dict[str, Any]] = []
        original = self.hub.lock_door

        @functools.wraps(original)
        def lock_door(**arguments: Any) -> Any:
            self.ran.append(arguments)
            return original(**arguments)

        self.hub.lock_door = lock_door  # type: ignore[method-assign]


@pytest.fixture
def home() -> Home:
    return Home()


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "runs.sqlite")


@pytest.fixture
def server(tmp_path: Path, store: RunStore, home: Home) -> Iterator[ApiServer]:
    agents = Agents(
        intent=lambda text, model: "device_command",
        call=lambda text, model: call("lock_door", door="front", state="unlock"),
    )

    def apps() -> Mapping[str, App]:
        app = App.from_graph(
            "smart_home", pool=agents.model().pool(), store=store,
            checkpoints=tmp_path / "state.sqlite", graph_options={"knn": False, "hub": home.hub},
        )  # fmt: skip
        return {"smart_home": app}

    with ApiServer(apps_factory=apps, api_key=KEY, timeout_s=60) as running:
        assert running.host == "127.0.0.1"
        yield running


@pytest.fixture
def client(server: ApiServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=60)


def stop(client: openai.OpenAI) -> tuple[str, str]:
    """A request that stops for a confirmation: its run id and the 409 message."""
    with pytest.raises(openai.ConflictError) as raised:
        client.chat.completions.create(model="smart_home", messages=ASKED)  # type: ignore[arg-type]
    body = raised.value.response.json()
    assert body["error"]["code"] == "needs_confirmation"
    return str(body["brickwork"]["run_id"]), str(body["error"]["message"])


def confirm(client: openai.OpenAI, run_id: str, answer: Any) -> httpx.Response:
    """POST the answer with the openai client's own transport (auth, base URL)."""
    return client.post(f"/runs/{run_id}/confirm", body={"confirm": answer}, cast_to=httpx.Response)


def test_the_409_names_the_route_and_confirming_runs_the_call_once(
    client: openai.OpenAI, server: ApiServer, store: RunStore, home: Home
) -> None:
    run_id, message = stop(client)
    assert f"POST /v1/runs/{run_id}/confirm" in message and home.ran == []
    assert home.hub.doors["front"].locked

    reply = confirm(client, run_id, True)
    assert reply.status_code == 200
    body = reply.json()
    assert body["object"] == "chat.completion" and body["id"] == f"chatcmpl-{run_id}"
    assert body["brickwork"]["status"] == "ok"
    assert "lock_door(door='front', state='unlock')" in body["choices"][0]["message"]["content"]
    assert home.ran == [{"door": "front", "state": "unlock"}]
    assert not home.hub.doors["front"].locked
    found = store.run(run_id)
    assert found is not None and found[0].status == "ok"

    with pytest.raises(openai.ConflictError) as again:  # answered: a second answer runs nothing
        confirm(client, run_id, True)
    assert again.value.response.json()["error"]["code"] == "not_waiting_for_confirmation"
    assert len(home.ran) == 1
    trace = httpx.get(
        f"{server.base_url}/runs/{run_id}", headers={"Authorization": f"Bearer {KEY}"}
    )
    assert trace.status_code == 200 and trace.json()["status"] == "ok"


def test_declining_is_422_and_nothing_runs(client: openai.OpenAI, home: Home) -> None:
    run_id, _ = stop(client)
    with pytest.raises(openai.UnprocessableEntityError) as declined:
        confirm(client, run_id, False)
    body = declined.value.response.json()
    assert body["error"]["code"] == "run_failed" and body["brickwork"]["run_id"] == run_id
    assert "127.0.0.1" not in body["error"]["message"]
    assert home.ran == [] and home.hub.doors["front"].locked


def test_unknown_runs_bad_answers_and_the_key(
    client: openai.OpenAI, server: ApiServer, home: Home
) -> None:
    with pytest.raises(openai.NotFoundError, match="no run 'nope'"):
        confirm(client, "nope", True)
    run_id, _ = stop(client)
    with pytest.raises(openai.BadRequestError, match="invalid 'confirm'"):
        confirm(client, run_id, "yes")
    url = f"{server.base_url}/runs/{run_id}/confirm"
    assert httpx.post(url, json={"confirm": True}).status_code == 401  # the key guards it
    assert home.ran == []
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v1/runs/{run_id}/confirm" in schema["paths"]
    assert "ConfirmRequest" in schema["components"]["schemas"]
