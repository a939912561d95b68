"""`brickwork plan` on eval reports written by the real `brickwork eval` (the package's model
fake answers; every figure the planner reads comes from the real harness and report writer):
tokens per tier in the report, instances = ceil(peak rate / capacity), $/month, $ per 1M,
the break-even volume, the labels, the plot and the refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from brickwork.cli import main
from brickwork.errors import ConfigError
from brickwork.evals import arun_eval
from brickwork.evals.report import to_jsonable
from brickwork.planning import (
    HOURS_PER_MONTH,
    SECONDS_PER_MONTH,
    ApiPrice,
    Capacity,
    break_even,
    make_plan,
    plan_mode,
    read_report,
)
from brickwork.planning.inputs import report_from_dict
from brickwork.testing import FunctionModel, ModelStep

SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer", "minimum": 0}},
    "required": ["n"],
    "additionalProperties": False,
}
EASY = {f"give {i}": i for i in range(6)}
HARD = {f"please work out which number this long request means, case {i}": i for i in range(6, 10)}
ANSWERS = {**EASY, **HARD}
#: Tokens each tier's fake answer reports (prompt, completion).
TOKENS = {"fake-slm": (400, 20), "fake-large": (600, 30)}


def ladder_model() -> FunctionModel:
    """slm: right on short questions, an invalid number on long ones (fails the schema, so
    hybrid climbs); large: always right."""

    def answer(body: dict[str, Any]) -> ModelStep:
        users = [m["content"] for m in body["messages"] if m["role"] == "user"]
        text = next(u for u in reversed(users) if u in ANSWERS)
        right = body["model"] == "fake-large" or text in EASY
        prompt, completion = TOKENS[body["model"]]
        value = ANSWERS[text] if right else -1
        return ModelStep(
            json.dumps({"n": value}), prompt_tokens=prompt, completion_tokens=completion
        )

    return FunctionModel(answer)


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """slm, hybrid and frontier modes of a one-node skill on a slm/large ladder, as
    `brickwork eval --json-out` writes them."""
    import asyncio

    folder = tmp_path_factory.mktemp("numbers")
    job = {"task_description": "Give the number.", "output_schema": SCHEMA}
    (folder / "job_description.json").write_text(json.dumps(job))
    rows = [json.dumps({"question": q, "answer": json.dumps({"n": n})}) for q, n in ANSWERS.items()]
    (folder / "train.jsonl").write_text("\n".join(rows) + "\n")

    async def evaluate() -> dict[str, Any]:
        async with ladder_model().pool(tiers=("slm", "large")) as pool:
            report = await arun_eval(
                str(folder), None, compare_modes=["slm", "hybrid", "frontier"], pool=pool,
                console=Console(quiet=True),
            )  # fmt: skip
        return to_jsonable(report)

    out = folder / "report.json"
    out.write_text(json.dumps(asyncio.run(evaluate()), indent=2, default=str))
    return out


def test_the_eval_report_carries_tokens_per_tier(report_file: Path) -> None:
    raw = json.loads(report_file.read_text())
    slm = raw["modes"]["slm"]
    assert slm["calls_by_tier"] and set(slm["tokens_by_tier"]) == set(slm["calls_by_tier"])
    calls = slm["calls_by_tier"]["slm"]
    assert slm["tokens_by_tier"]["slm"] == [400 * calls, 20 * calls]
    top = raw["modes"]["frontier"]
    assert set(top["calls_by_tier"]) == {"large"}
    assert top["tokens_by_tier"]["large"] == [600 * top["calls_by_tier"]["large"],
                                              30 * top["calls_by_tier"]["large"]]  # fmt: skip
    load = read_report(report_file)
    assert [m.mode for m in load.modes] == ["slm", "hybrid", "frontier"]
    assert load.mode("slm") is not None and load.mode("slm").tokens_per_call("slm") == 420  # type: ignore[union-attr]
    hybrid = load.mode("hybrid")
    assert hybrid is not None and hybrid.calls["large"] > 0  # the hard rows climbed
    assert hybrid.tokens_per_call("large") == 630
    assert hybrid.label == "hybrid" and load.modes[0].label == "slm-only"
    assert load.modes[2].label == "frontier-only"


def test_instances_are_the_peak_rate_over_one_instances_capacity(report_file: Path) -> None:
    load = read_report(report_file)
    volume, peak = 50_000_000.0, 3.0
    plan = make_plan(
        load, volume=volume, peak_factor=peak, tps={"slm": 2000.0}, rps={"large": 0.5},
        usd_per_hour=0.10,
    )  # fmt: skip
    raw = json.loads(report_file.read_text())["modes"]
    peak_rps = volume / (730 * 3600) * peak
    for mode in plan.modes:
        n = raw[mode.load.mode]["n"]
        assert mode.peak_requests_per_s == pytest.approx(peak_rps)
        for tier in mode.tiers:
            calls = raw[mode.load.mode]["calls_by_tier"][tier.tier] / n
            per_call = 420 if tier.tier == "slm" else None
            capacity = 2000.0 / per_call if per_call else 0.5
            assert tier.capacity_calls_per_s == pytest.approx(capacity)
            assert tier.instances == math.ceil(peak_rps * calls / capacity)
            assert tier.usd_per_month == pytest.approx(tier.instances * 0.10 * 730)
        assert mode.usd_per_month == pytest.approx(sum(t.usd_per_month for t in mode.tiers))
        assert mode.usd_per_1m_requests == pytest.approx(mode.usd_per_month / volume * 1e6)
    slm_only = plan.modes[0]
    assert [t.tier for t in slm_only.tiers] == ["slm"]  # no large instance for slm-only
    # The API alternative is the top-tier-only mode's tokens at list price, for every mode.
    top_tokens = raw["frontier"]["tokens_by_tier"]["large"]
    per_request = (top_tokens[0] * 1.25 + top_tokens[1] * 10.0) / 1e6 / raw["frontier"]["n"]
    assert all(m.api_usd_per_request == pytest.approx(per_request) for m in plan.modes)
    assert plan.api_tokens_from == "frontier"


def test_a_hand_computed_plan_and_its_break_even() -> None:
    """1 call of 1,000 tokens per request on slm; one instance serves 1,000 tokens/s = 1
    call/s at $1/hour ($730/month); the API costs $0.001 a request."""
    load = report_from_dict(
        {"modes": {"slm": {"mode": "slm", "n": 10, "calls_by_tier": {"slm": 10},
                           "tokens_by_tier": {"slm": [5000, 5000]}}}}
    ).modes[0]  # fmt: skip
    capacity = {"slm": Capacity("slm", usd_per_hour=1.0, tokens_per_s=1000.0)}
    api = ApiPrice(input_usd_per_mtok=1.0, output_usd_per_mtok=1.0)  # 1,000 tokens = $0.001
    # One instance holds SECONDS_PER_MONTH calls a month at peak factor 1.
    full = SECONDS_PER_MONTH
    plan = plan_mode(load, full, capacity, api, peak_factor=1.0)
    assert plan.tiers[0].instances == 1 and plan.usd_per_month == pytest.approx(730.0)
    assert plan_mode(load, full * 1.01, capacity, api, peak_factor=1.0).tiers[0].instances == 2
    assert plan_mode(load, full, capacity, api, peak_factor=2.0).tiers[0].instances == 2
    # Break-even: $730 of instance a month vs $0.001 a request -> 730,000 requests, far
    # below one instance's 2.628M: the second instance (at 2.628M) is already paid for.
    assert plan.break_even_volume == pytest.approx(730_000)
    assert plan.api_usd_per_month == pytest.approx(full * 0.001)
    # An API cheaper per request than a saturated instance: self-hosting never pays.
    cheap = ApiPrice(input_usd_per_mtok=0.2, output_usd_per_mtok=0.2)
    assert plan_mode(load, full, capacity, cheap, peak_factor=1.0).break_even_volume is None


def test_break_even_walks_the_staircase() -> None:
    # One tier, 1 instance per 1,000 requests at $10 each; the API $0.015 a request. The
    # line meets the first step at 666.7; at 1,000+ the bill is $20 > $15: above the line
    # until 1,333.3; at 2,000+ $30 vs $30: equal, never above again.
    assert break_even([(1 / 1000, 10.0)], 0.015) == pytest.approx(1333.333, rel=1e-6)
    # Barely cheaper per request than the API: many steps rise above the line first.
    exact = break_even([(1 / 1000, 10.0)], 0.011)
    assert exact is not None

    # Check by brute force: from `exact` up the bill never exceeds the line, just below it does.
    def bill(v: float) -> float:
        return math.ceil(v / 1000 - 1e-12) * 10.0

    assert all(bill(v) <= 0.011 * v + 1e-9 for v in [exact + i * 7.3 for i in range(5000)])
    assert bill(exact * 0.999) > 0.011 * exact * 0.999
    # Two tiers with different steps, and what the plan pays an API itself.
    both = break_even([(1 / 1000, 10.0), (1 / 300, 2.0)], 0.03, metered_per_request=0.005)
    assert both is not None

    def bill2(v: float) -> float:
        tiers = math.ceil(v / 1000 - 1e-12) * 10.0 + math.ceil(v / 300 - 1e-12) * 2.0
        return tiers + 0.005 * v

    assert all(bill2(v) <= 0.03 * v + 1e-9 for v in [both + i * 1.7 for i in range(20000)])
    assert bill2(both * 0.999) > 0.03 * both * 0.999
    assert break_even([(1 / 1000, 10.0)], 0.01) is None  # same slope: never
    assert break_even([], 0.01) == 0.0  # nothing to host: no fixed cost


def test_the_cli_prints_every_mode_with_labelled_sources(
    report_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", str(report_file), "--volume", "10M"]) == 0
    out = capsys.readouterr().out
    for label in ("slm-only", "hybrid", "frontier-only", "break-even", "cores needed"):
        assert label in out
    assert "measured: calls, tokens and accuracy per request: eval report" in out
    assert "measured: slm throughput: 1,470 tokens/s per instance" in out
    assert "assumed: instance price per hour" in out
    assert "assumed: API alternative: the frontier mode's tokens" in out

    assert main(["plan", str(report_file), "--hardware", "h100", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["hardware"] == "h100" and body["volume_per_month"] == 1_000_000
    assert [m["label"] for m in body["modes"]] == ["slm-only", "hybrid", "frontier-only"]
    kinds = {s["what"].split(":")[0]: s["provenance"] for s in body["sources"]}
    assert kinds["slm throughput"] == "assumed" and kinds["large throughput"] == "assumed"
    assert any("H100-80GB" in s["what"] for s in body["sources"])  # the serving.profiles plan
    for mode in body["modes"]:
        assert mode["instances"] == sum(t["instances"] for t in mode["tiers"])
        assert mode["usd_per_month"] == pytest.approx(mode["instances"] * 2.5 * HOURS_PER_MONTH)


def test_the_plot_is_a_png(report_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "cost.png"
    assert main(["plan", str(report_file), "--plot", str(out), "--json"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read eval report"),
        ("{not json", "is not JSON"),
        ('{"rows": []}', "not a brickwork eval report"),
        ('{"modes": {}}', "has no modes"),
        ('{"modes": {"slm": {"n": 0, "calls_by_tier": {}}}}', "'n' \\(rows\\)"),
        ('{"modes": {"slm": {"n": 3}}}', "no 'calls_by_tier'"),
        ('{"modes": {"slm": {"n": 3, "calls_by_tier": {"slm": -1}}}}', "whole number >= 0"),
        (
            '{"modes": {"slm": {"n": 3, "calls_by_tier": {"slm": 3}, '
            '"tokens_by_tier": {"slm": 5}}}}',
            "\\[prompt, completion\\]",
        ),
    ],
)
def test_malformed_reports_are_refused_with_the_fix(
    tmp_path: Path, content: str | None, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        read_report(path)
    assert main(["plan", str(path)]) == 2
    assert "error:" in capsys.readouterr().err


def test_missing_figures_are_refused_or_labelled_assumed(tmp_path: Path) -> None:
    old = {"modes": {"slm": {"n": 2, "calls_by_tier": {"slm": 2, "medium": 1}}}}
    load = report_from_dict(old, source="old.json")
    with pytest.raises(ConfigError, match="--tokens-per-call"):
        make_plan(load)
    with pytest.raises(ConfigError, match="--rps medium=N"):
        make_plan(load, tokens_per_call=(450, 20))
    plan = make_plan(load, tokens_per_call=(450, 20), rps={"medium": 1.0}, usd_per_hour=0.2)
    provenance = {s.what.split(":")[0]: s.provenance for s in plan.sources}
    assert provenance["medium throughput"] == "given"
    assert any(s.provenance == "assumed" and "--tokens-per-call" in s.what for s in plan.sources)
    with pytest.raises(ConfigError, match="volume must be > 0"):
        plan_mode(plan.modes[0].load, 0, plan.capacities, plan.api)
    with pytest.raises(ConfigError, match="peak factor"):
        make_plan(load, tokens_per_call=(450, 20), rps={"medium": 1.0}, usd_per_hour=0.2,
                  peak_factor=0.5)  # fmt: skip


def test_tiers_served_by_an_api_are_paid_per_token_not_hosted(report_file: Path) -> None:
    raw = json.loads(report_file.read_text())["modes"]
    plan = make_plan(read_report(report_file), volume=2e6, api_tiers=("large",))
    hybrid, top = plan.modes[1], plan.modes[2]
    [slm, large] = hybrid.tiers
    assert (slm.api, large.api) == (False, True) and large.instances == 0
    prompt, completion = raw["hybrid"]["tokens_by_tier"]["large"]
    metered = (prompt * 1.25 + completion * 10.0) / 1e6 / raw["hybrid"]["n"]
    assert large.usd_per_month == pytest.approx(metered * 2e6)
    assert hybrid.usd_per_month == pytest.approx(slm.usd_per_month + metered * 2e6)
    # The frontier-only mode on an API is the API itself: nothing hosted, no break-even.
    assert top.instances == 0 and top.break_even_volume is None
    assert top.usd_per_month == pytest.approx(top.api_usd_per_month)


def test_the_products_own_benchmark_files_give_measured_requests_per_s(
    report_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The shapes benchmarks/serving.py and benchmarks/large_model.py write (they need a model
    # server to run, so their rows are written here with the same keys).
    serving = tmp_path / "serving.json"
    rows = [
        {"model": "slm", "concurrency": c, "json_schema": schema, "requests": 32,
         "requests_per_s": rate, "output_tokens_per_s": rate * 20, "p50_ms": 1, "p95_ms": 2}
        for c, schema, rate in ((1, True, 1.2), (16, True, 3.4), (16, False, 9.9))
    ]  # fmt: skip
    serving.write_text(json.dumps({"startup_s": None, "rows": rows}))
    large = tmp_path / "large_model.json"
    large.write_text(json.dumps([
        {"dtype": "float32", "cores": [0], "requests_per_s": 0.9, "in_flight": 4},
        {"dtype": "bfloat16", "cores": [0, 1], "requests_per_s": 2.0, "in_flight": 4},
        {"dtype": "bfloat16", "cores": [1], "requests_per_s": 1.1, "in_flight": 4},
        {"dtype": "bfloat16", "cores": [0], "error": "OOM"},
    ]))  # fmt: skip
    args = ["plan", str(report_file), "--benchmark", str(serving), "--benchmark", str(large)]
    assert main([*args, "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    capacity = {t["tier"]: t["capacity_calls_per_s"] for m in body["modes"] for t in m["tiers"]}
    # The busiest JSON-schema row of slm (not the faster free-text one); bfloat16 on one core.
    assert capacity == {"slm": 3.4, "large": 1.1}
    sources = {s["what"].split(":")[0]: s for s in body["sources"]}
    assert sources["slm throughput"]["provenance"] == "measured"
    assert "serving.json: slm, 16 in flight" in sources["slm throughput"]["what"]
    assert "large_model.json: bfloat16 on cores [1]" in sources["large throughput"]["what"]
    # A figure given by hand wins over the benchmark, and says so.
    assert main([*args, "--rps", "slm=5", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    kinds = {s["what"].split(":")[0]: s["provenance"] for s in body["sources"]}
    assert kinds["slm throughput"] == "given" and kinds["large throughput"] == "measured"
    bad = tmp_path / "other.json"
    bad.write_text('{"rows": [{"model": "slm", "json_schema": false, "requests_per_s": 2}]}')
    assert main(["plan", str(report_file), "--benchmark", str(bad)]) == 2
    assert "no JSON-schema rows of the slm tier" in capsys.readouterr().err
