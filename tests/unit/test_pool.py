"""Pool config validation, model resolution, retries, circuit breaking and failover."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import httpx2
import pytest

from brickwork.errors import (
    ConfigError,
    EndpointUnavailableError,
    ModelCallError,
    ModelTimeoutError,
    UnknownModelError,
)
from brickwork.serving.client import EndpointConfig
from brickwork.serving.pool import ModelPool, PoolConfig
from brickwork.serving.resilience import CircuitPolicy, RetryPolicy

MESSAGES = [{"role": "user", "content": "hi"}]


def _ok(text: str = "hello") -> httpx2.Response:
    return httpx2.Response(
        200,
        json={
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        },
    )


def _endpoint(name: str, **kw: object) -> dict[str, object]:
    return {"name": name, "base_url": f"http://{name}.test/v1", "model": "m", **kw}


Handler = Callable[[httpx2.Request], httpx2.Response]


def _pool(handlers: dict[str, Handler], *, retries: int = 2, threshold: int = 3) -> ModelPool:
    config = PoolConfig.parse(
        {
            "models": {"slm": [_endpoint(name) for name in handlers]},
            "retry": {"max_retries": retries, "base_delay_s": 0.01},
            "circuit": {"failure_threshold": threshold, "reset_after_s": 60},
        }
    )
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    pool = ModelPool(
        config,
        http_client_factory=lambda ep: httpx2.AsyncClient(
            transport=httpx2.MockTransport(handlers[ep.name])
        ),
        sleep=sleep,
        rng=random.Random(0),
    )
    pool.sleeps = sleeps  # type: ignore[attr-defined]
    return pool


class Script:
    """Answers from a list of responses or exceptions, one per request; fails when exhausted."""

    def __init__(self, *steps: httpx2.Response | Exception) -> None:
        self.steps = list(steps)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        assert self.steps, f"unexpected extra request to {request.url}"
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


# -- config -----------------------------------------------------------------------------------


def test_config_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        PoolConfig.parse({"models": {"slm": [{"name": "a", "base_url": "ftp://x", "model": ""}]}})
    message = str(info.value)
    assert "base_url" in message and "ftp://x" in message
    assert "model" in message


def test_config_rejects_unknown_keys_and_empty_models() -> None:
    with pytest.raises(ConfigError, match="colour: Extra inputs"):
        PoolConfig.parse({"models": {"slm": [_endpoint("a", colour="red")]}})
    with pytest.raises(ConfigError, match="no endpoints|at least 1"):
        PoolConfig.parse({"models": {"slm": []}})
    with pytest.raises(ConfigError, match="models"):
        PoolConfig.parse({})


def test_config_rejects_two_endpoints_with_one_name() -> None:
    with pytest.raises(ConfigError, match="names two endpoints"):
        PoolConfig.parse({"models": {"a": [_endpoint("x")], "b": [_endpoint("x", model="other")]}})
    # The same endpoint backing two logical names is fine.
    PoolConfig.parse({"models": {"a": [_endpoint("x")], "b": [_endpoint("x")]}})


def test_config_loads_toml_and_reports_malformed_files(tmp_path) -> None:
    good = tmp_path / "pool.toml"
    good.write_text(
        '[[models.slm]]\nname = "local"\nbase_url = "http://127.0.0.1:1/v1"\nmodel = "m"\n'
    )
    assert PoolConfig.load(good).models["slm"][0].name == "local"
    bad = tmp_path / "bad.toml"
    bad.write_text("[[models.slm]\nname=")
    with pytest.raises(ConfigError, match="not valid"):
        PoolConfig.load(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        PoolConfig.load(tmp_path / "missing.json")


def test_missing_api_key_env_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.delenv("BW_TEST_KEY", raising=False)
    ep = EndpointConfig(
        name="f", base_url="https://api.test/v1", model="m", api_key_env="BW_TEST_KEY"
    )
    with pytest.raises(ConfigError, match=r"\$BW_TEST_KEY"):
        ep.api_key()


# -- resolution -------------------------------------------------------------------------------


async def test_unknown_model_names_the_known_ones() -> None:
    pool = _pool({"a": Script()})
    with pytest.raises(UnknownModelError, match="'gpt-9'.*known: slm"):
        await pool.complete("gpt-9", MESSAGES)
    await pool.aclose()


async def test_adapter_is_sent_as_the_model_name() -> None:
    script = Script(_ok())
    pool = _pool({"a": script})
    completion = await pool.complete("slm:intent", MESSAGES)
    assert json.loads(script.requests[0].content)["model"] == "intent"
    assert completion.served_model == "intent" and completion.model == "slm:intent"
    await pool.aclose()


def test_adapters_need_vllm_endpoints() -> None:
    pool = ModelPool.from_config({"models": {"f": [_endpoint("a", kind="openai")]}})
    with pytest.raises(UnknownModelError, match="not served by vLLM"):
        pool.resolve("f:lora")


# -- retries, circuit, failover ---------------------------------------------------------------


async def test_retries_transient_errors_then_succeeds() -> None:
    script = Script(
        httpx2.Response(503, json={"error": {"message": "overloaded"}}),
        httpx2.ConnectError("refused"),
        _ok("fine"),
    )
    pool = _pool({"a": script})
    completion = await pool.complete("slm", MESSAGES)
    assert completion.text == "fine" and completion.attempts == 3
    assert len(pool.sleeps) == 2 and all(0 < s <= 0.02 for s in pool.sleeps)  # type: ignore[attr-defined]
    await pool.aclose()


async def test_client_errors_are_not_retried() -> None:
    script = Script(httpx2.Response(400, json={"error": {"message": "bad schema"}}))
    pool = _pool({"a": script})
    with pytest.raises(ModelCallError, match="HTTP 400: bad schema") as info:
        await pool.complete("slm", MESSAGES)
    assert info.value.status_code == 400 and len(script.requests) == 1
    await pool.aclose()


async def test_404_hints_at_the_model_name() -> None:
    pool = _pool({"a": Script(httpx2.Response(404, json={"error": {"message": "no such model"}}))})
    with pytest.raises(ModelCallError, match="serve a model named 'lora-x'"):
        await pool.complete("slm:lora-x", MESSAGES)
    await pool.aclose()


async def test_read_timeout_is_reported_not_retried() -> None:
    script = Script(httpx2.ReadTimeout("slow"))
    pool = _pool({"a": script})
    with pytest.raises(ModelTimeoutError, match="no answer within"):
        await pool.complete("slm", MESSAGES)
    assert len(script.requests) == 1
    await pool.aclose()


async def test_exhausted_retries_raise_endpoint_unavailable() -> None:
    script = Script(*(httpx2.ConnectError("refused") for _ in range(3)))
    pool = _pool({"a": script}, retries=2, threshold=10)
    with pytest.raises(EndpointUnavailableError, match="after 3 failed attempt"):
        await pool.complete("slm", MESSAGES)
    await pool.aclose()


async def test_failover_to_the_healthy_replica() -> None:
    dead = Script(httpx2.ConnectError("refused"))
    alive = Script(_ok("from b"), _ok("from b again"))
    pool = _pool({"a": dead, "b": alive}, threshold=1)
    first = await pool.complete("slm", MESSAGES)
    assert first.endpoint == "b" and first.text == "from b"
    # a's circuit is open now: the next request goes straight to b, and nothing waits.
    assert pool.endpoints()[0].breaker.state == "open"
    second = await pool.complete("slm", MESSAGES)
    assert second.endpoint == "b" and second.attempts == 1
    assert len(dead.requests) == 1
    await pool.aclose()


async def test_open_circuit_fails_fast_and_half_opens_after_reset() -> None:
    now = [0.0]
    script = Script(httpx2.ConnectError("down"), _ok("back"))
    pool = _pool({"a": script}, retries=0, threshold=1)
    breaker = pool.endpoints()[0].breaker
    breaker.clock = lambda: now[0]
    with pytest.raises(EndpointUnavailableError):
        await pool.complete("slm", MESSAGES)
    assert breaker.state == "open"
    with pytest.raises(EndpointUnavailableError, match="circuit is open"):
        await pool.complete("slm", MESSAGES)
    now[0] = 61.0
    assert breaker.state == "half_open"
    assert (await pool.complete("slm", MESSAGES)).text == "back"
    assert breaker.state == "closed"
    await pool.aclose()


async def test_callers_that_give_up_do_not_open_a_busy_endpoints_circuit() -> None:
    import asyncio

    started = asyncio.Event()

    async def slow(request: httpx2.Request) -> httpx2.Response:
        started.set()
        await asyncio.sleep(30)
        return _ok()

    pool = ModelPool(
        PoolConfig.parse(
            {
                "models": {"slm": [_endpoint("a")]},
                "retry": {"max_retries": 0},
                "circuit": {"failure_threshold": 2, "reset_after_s": 60},
            }
        ),
        http_client_factory=lambda ep: httpx2.AsyncClient(transport=httpx2.MockTransport(slow)),
    )
    breaker = pool.endpoints()[0].breaker
    for _ in range(3):  # three runs time out while the endpoint is still working on them
        started.clear()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await pool.complete("slm", MESSAGES)
        assert started.is_set()
    assert breaker.state == "closed" and breaker.failures == 0
    # A half-open trial abandoned by its caller frees the slot for the next call.
    breaker.opened_at, breaker.failures = breaker.clock() - 61, 2
    assert breaker.allow() and not breaker.allow()
    breaker.record_abandoned()
    assert breaker.allow()
    await pool.aclose()


def test_retry_delays_grow_and_stay_capped() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=4.0, jitter=0.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 4.0, 4.0]
    jittered = RetryPolicy(base_delay_s=1.0, jitter=1.0)
    draws = {jittered.delay(1, random.Random(seed)) for seed in range(5)}
    assert len(draws) == 5 and all(0 <= d <= 1.0 for d in draws)


def test_rate_limits_do_not_open_the_circuit() -> None:
    from brickwork.serving.resilience import CircuitBreaker

    breaker = CircuitBreaker(CircuitPolicy(failure_threshold=2))
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"


async def test_429_is_retried() -> None:
    script = Script(httpx2.Response(429, json={"error": {"message": "slow down"}}), _ok())
    pool = _pool({"a": script}, threshold=1)
    assert (await pool.complete("slm", MESSAGES)).attempts == 2
    assert pool.endpoints()[0].breaker.state == "closed"
    await pool.aclose()


# -- the servers' own state (health, adapters, /metrics) --------------------------------------

VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 2.0
vllm:num_requests_waiting{engine="1",model_name="m"} 5.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
vllm:num_requests_running_but_other{model_name="m"} 99.0
"""


def _vllm_state(metrics: str = VLLM_METRICS, *, health: int = 200) -> Handler:
    """A vLLM server's GET routes; the models list has the base model and one adapter."""

    def handle(request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        if path == "/health":
            return httpx2.Response(health)
        if path == "/v1/models":
            return httpx2.Response(
                200,
                json={
                    "object": "list",
                    "data": [
                        {"id": "m", "object": "model", "parent": None},
                        {"id": "intent", "object": "model", "parent": "m"},
                    ],
                },
            )
        if path == "/metrics":
            return httpx2.Response(200, text=metrics)
        return httpx2.Response(404)

    return handle


def test_parse_gauges_sums_label_sets_and_skips_what_it_cannot_read() -> None:
    from brickwork.serving.vllm_metrics import parse_gauges, server_root

    text = VLLM_METRICS + 'vllm:num_requests_running{model_name="a b}"} NaN\nbroken{ line\n'
    gauges = parse_gauges(text, ["vllm:num_requests_running", "vllm:num_requests_waiting", "x"])
    assert gauges == {"vllm:num_requests_running": 3.0, "vllm:num_requests_waiting": 7.0}
    assert parse_gauges("plain_metric 4 1700000000\n", ["plain_metric"]) == {"plain_metric": 4.0}
    assert server_root("http://h:1/v1/") == server_root("http://h:1") == "http://h:1"


async def test_server_metrics_reads_each_vllm_server_once() -> None:
    seen: list[str] = []
    state = _vllm_state()

    def handle(request: httpx2.Request) -> httpx2.Response:
        seen.append(f"{request.url.host}{request.url.path}")
        return state(request)

    config = PoolConfig.parse(
        {
            "models": {
                "slm": [_endpoint("local")],
                # the stand-in shares the server; the remote API is never asked
                "frontier": [
                    {**_endpoint("local"), "name": "stand-in", "stand_in": True},
                    {**_endpoint("remote"), "kind": "openai"},
                ],
            }
        }
    )
    metrics_http = httpx2.AsyncClient(transport=httpx2.MockTransport(handle))
    async with ModelPool(config, metrics_http=metrics_http) as pool:
        states = await pool.server_metrics()
    await metrics_http.aclose()
    assert sorted(seen) == ["local.test/health", "local.test/metrics", "local.test/v1/models"]
    local = states["local"]
    assert states["stand-in"] is local
    assert (local.health, local.running, local.waiting) == ("ok", 3, 7)
    assert local.kv_cache_usage == 0.25 and local.error is None
    assert local.models == ("m", "intent") and local.adapters == ("intent",)
    remote = states["remote"]
    assert remote.health == "unknown" and remote.running is None and remote.adapters is None


async def test_server_metrics_older_names_and_missing_parts() -> None:
    old = VLLM_METRICS.replace("kv_cache_usage_perc", "gpu_cache_usage_perc")
    config = PoolConfig.parse({"models": {"slm": [_endpoint("a"), _endpoint("b")]}})
    handlers = {"a.test": _vllm_state(old), "b.test": _vllm_state("", health=503)}
    pool = ModelPool(
        config,
        http_client_factory=lambda e: httpx2.AsyncClient(
            transport=httpx2.MockTransport(handlers[httpx2.URL(e.base_url).host])
        ),
    )
    async with pool:
        states = await pool.server_metrics()
    assert states["a"].kv_cache_usage == 0.25
    b = states["b"]
    assert b.health == "down" and b.running is None and b.kv_cache_usage is None
    assert b.adapters == ("intent",)


async def test_an_unreachable_server_is_down_not_an_error() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    config = PoolConfig.parse({"models": {"slm": [_endpoint("gone")]}})
    metrics_http = httpx2.AsyncClient(transport=httpx2.MockTransport(refuse))
    async with ModelPool(config, metrics_http=metrics_http) as pool:
        state = (await pool.server_metrics())["gone"]
    await metrics_http.aclose()
    assert state.health == "down" and state.models is None and state.running is None
    assert state.error is not None and "ConnectError" in state.error
    assert "http://gone.test/metrics" in state.error


# ---- tiers ------------------------------------------------------------------------------------


def _rung(name: str, *, stand_in: bool = False) -> dict[str, object]:
    return {
        "name": name,
        "base_url": f"http://{name}.local/v1",
        "model": name,
        "stand_in": stand_in,
    }


def test_the_ladder_is_derived_cheapest_first_and_skips_a_renamed_tier() -> None:
    large = _rung("large-vllm", stand_in=True)
    config = PoolConfig.parse(
        {"models": {"slm": [_rung("local")], "large": [large], "frontier": [large]}}
    )
    pool = ModelPool(config)
    assert pool.tiers == ("slm", "large") and pool.top_tier == "large"
    assert pool.tier_of("slm:smart_home-lora") == "slm"
    assert pool.tier_of("frontier") == "large"  # the local large model plays the frontier role
    assert pool.next_tier("slm:adapter") == "large" and pool.next_tier("frontier") is None
    assert pool.tier_endpoints("frontier")[0].stand_in


def test_a_frontier_api_is_the_third_rung_and_explicit_tiers_are_checked() -> None:
    models = {
        "slm": [_rung("local")],
        "large": [_rung("large-vllm")],
        "frontier": [{**_rung("api"), "kind": "openai"}],
    }
    pool = ModelPool(PoolConfig.parse({"models": models}))
    assert pool.tiers == ("slm", "large", "frontier")
    assert [pool.next_tier(t) for t in pool.tiers] == ["large", "frontier", None]
    assert ModelPool(PoolConfig.parse({"models": models, "tiers": ["slm", "frontier"]})).tiers == (
        "slm",
        "frontier",
    )
    with pytest.raises(ConfigError, match="tier 'medium' is not a logical model"):
        PoolConfig.parse({"models": models, "tiers": ["slm", "medium"]})
    with pytest.raises(ConfigError, match="name a tier twice"):
        PoolConfig.parse({"models": models, "tiers": ["slm", "slm"]})
    assert ModelPool(PoolConfig.parse({"models": {"x": [_rung("x")]}})).top_tier == "frontier"


def test_local_pools_build_the_ladder_from_what_runs() -> None:
    from brickwork._settings import FrontierSettings
    from brickwork.serving.local import pool_config_for

    none = FrontierSettings(base_url=None, api_key_env="KEY", model=None)
    api = FrontierSettings(base_url="https://api.example/v1", api_key_env="KEY", model="big")
    alone = ModelPool(pool_config_for("http://s/v1", "small", frontier=none))
    assert alone.tiers == ("slm", "frontier") and alone.tier_endpoints("frontier")[0].stand_in
    local = ModelPool(
        pool_config_for("http://s/v1", "small", frontier=none, large=("http://l/v1", "q"))
    )
    top = local.tier_endpoints("frontier")[0]
    assert local.tiers == ("slm", "large") and top.name == "large-vllm" and top.stand_in
    full = ModelPool(
        pool_config_for("http://s/v1", "small", frontier=api, large=("http://l/v1", "q"))
    )
    assert full.tiers == ("slm", "large", "frontier")
    assert not full.tier_endpoints("large")[0].stand_in
    assert full.tier_endpoints("frontier")[0].kind == "openai"
