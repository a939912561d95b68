"""`brickwork run` as a newcomer reads it at 80 columns: which words are the graph, one line
per node, nothing cut without an ellipsis, short sentences for failures, honest cost labels."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from brickwork._trace import (
    TOP_TIER_ONLY,
    cost_line,
    counterfactual_label,
    print_batch,
    print_trace,
    user_answer,
)
from brickwork.app import App, RunResult
from brickwork.cli import DEFAULT_GRAPH, _split_run_words
from brickwork.events import ModelCallEvent
from brickwork.testing import FunctionModel

GRAPH = str(Path(__file__).resolve().parents[1] / "fixtures" / "two_step_graph.py")
LONG = "Please work out the number in this rather long request " * 3


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["Dim the office lights"], (DEFAULT_GRAPH, ("Dim the office lights",), True)),
        (["smart_home", "Dim the lights"], ("smart_home", ("Dim the lights",), False)),
        (["graphs.support", "I lost my card"], ("graphs.support", ("I lost my card",), False)),
        (["my/graph.py", "hi"], ("my/graph.py", ("hi",), False)),
        (["lights"], (DEFAULT_GRAPH, ("lights",), True)),  # one word, not a graph: a request
        (["smart_hom", "Dim"], ("smart_hom", ("Dim",), False)),  # a typo stays an error
        ([], (DEFAULT_GRAPH, (), True)),  # the demo set
        (
            ["Lock the door", "Dim the lights"],
            (DEFAULT_GRAPH, ("Lock the door", "Dim the lights"), True),
        ),
    ],
)
def test_the_first_word_is_a_graph_only_when_it_names_one(
    words: list[str], expected: tuple[str, tuple[str, ...], bool]
) -> None:
    assert _split_run_words(words) == expected


def test_a_mistyped_graph_is_refused_with_the_known_ones() -> None:
    from brickwork.cli import main

    assert main(["run", "smart_hom", "Dim the lights"]) == 2


async def _runs() -> list[RunResult]:
    """An ok run, and a run whose node fails on both tiers with a long validator message."""

    def answer(body: dict[str, object]) -> str:
        return '{"n": 7}' if "seven" in str(body["messages"]) else '{"n": -1}'

    async with FunctionModel(answer).pool() as pool:
        app = App.from_graph(GRAPH, pool=pool, store=None, checkpoints=None)
        try:
            return [await app.ainvoke("seven " + LONG), await app.ainvoke(LONG)]
        finally:
            await app.aclose()


def _render(results: list[RunResult], *, verbose: bool = False) -> list[str]:
    console = Console(width=80, record=True, color_system=None)
    for result in results:
        print_trace(result, console, verbose=verbose)
    print_batch(results, console, origin="a fake model")
    return console.export_text().splitlines()


async def test_compact_output_is_one_line_per_node_within_80_columns() -> None:
    ok, failed = await _runs()
    assert ok.ok and failed.status == "failed"
    lines = _render([ok, failed])
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    # One line per node, each starting with the node's name in its column.
    for node in ("number", "supervisor"):
        assert any(line.startswith(node) for line in lines)
    failed_lines = [line for line in lines if line.startswith("supervisor")]
    assert failed_lines and all(line.count("…") == 1 for line in failed_lines)  # cut, and says so
    assert not any("minimum" in line for line in lines)  # the validator's words: --verbose only
    assert "brickwork run: two_step graph on a fake model" in lines
    request_rows = [
        line for line in lines if line.startswith("seven Please") or line.startswith("Please")
    ]
    assert len(request_rows) == 2 and all("…" in line for line in request_rows)
    summary = "\n".join(lines[-3:])
    assert "2 requests, 1 ok" in summary and TOP_TIER_ONLY in summary


async def test_verbose_output_keeps_the_validators_words() -> None:
    _, failed = await _runs()
    text = "\n".join(_render([failed], verbose=True))
    assert "minimum" in text  # the raw error
    assert "error:" in text


async def test_a_failed_run_tells_the_user_a_short_sentence() -> None:
    _, failed = await _runs()
    said = user_answer(failed)
    assert said.startswith("Not done") and len(said) < 120
    assert "minimum" not in said and "{" not in said


def test_the_cost_line_never_shows_a_negative_saving() -> None:
    assert cost_line(0.002, 0.001, TOP_TIER_ONLY) == (
        "cost $0.002000; top-tier only $0.001000 (the ladder cost $0.001000 more)"
    )
    assert cost_line(0.001, 0.003, "frontier-only").endswith("(saved $0.002000)")


async def test_the_counterfactual_is_called_top_tier_when_the_top_is_local() -> None:
    async with FunctionModel(lambda body: "{}").pool() as local:
        assert counterfactual_label(local) == TOP_TIER_ONLY


def test_serve_large_refuses_options_of_the_small_model(capsys: pytest.CaptureFixture[str]) -> None:
    from brickwork.cli import main

    for extra in (
        ["--merged", "x"], ["--lora", "a=/tmp"], ["--model", "/tmp"], ["--enable-lora"],
        ["--max-lora-rank", "32"],
    ):  # fmt: skip
        assert main(["serve", "--large", "--port", "18999", *extra]) == 2
        assert "--large serves the bundled large model alone" in capsys.readouterr().err


async def test_each_supervisor_line_shows_its_own_calls_not_the_runs() -> None:
    # With every node on the top tier the supervisor runs once per node: each of its lines
    # takes the calls made since its previous line, so the lines add up to the run.
    from tests.fixtures.graph_fakes import Agents, call

    agents = Agents(
        intent=lambda text, model: "device_command",
        call=lambda text, model: call("toggle_lights", room="kitchen", state="on"),
    )
    async with agents.model().pool() as pool:
        app = App.from_graph(
            "smart_home", pool=pool, store=None, checkpoints=None, graph_options={"knn": False}
        )
        try:
            result = await app.ainvoke("Turn on the kitchen lights", mode="frontier")
        finally:
            await app.aclose()
    assert result.ok
    calls = [e for e in result.events if isinstance(e, ModelCallEvent)]
    assert [c.node for c in calls] == ["supervisor", "supervisor"]
    console = Console(width=80, record=True, color_system=None)
    print_trace(result, console)
    lines = [line for line in console.export_text().splitlines() if line.startswith("supervisor")]
    shown = [int(line.split(" tok")[0].split()[-1]) for line in lines]
    assert shown == [c.prompt_tokens + c.completion_tokens for c in calls]
