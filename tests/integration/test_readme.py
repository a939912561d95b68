"""The README runs as written: its Python example against a `brickwork serve` it finds, and
every `brickwork` command of its shell blocks that can run here (no GPU, no network, no new
vLLM server: `--url` points at the shared small-model server and `BRICKWORK_LARGE=off`); the
others run with `--help`, or are skipped saying why. A README command nobody classified fails
`test_every_readme_command_is_covered`."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from brickwork.serving.models import EMBEDDED_MODEL
from brickwork.serving.registry import ServeLease, ServeRecord

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
#: The README's form of the command, when this checkout has its venv; else the module.
BRICKWORK = [str(ROOT / ".venv/bin/brickwork")] if (ROOT / ".venv/bin/brickwork").exists() else [
    sys.executable, "-m", "brickwork.cli"
]  # fmt: skip


def readme_commands() -> list[list[str]]:
    """Every `.venv/bin/brickwork ...` line of the README's shell blocks, as arguments."""
    found = []
    fence: str | None = None  # the open block's language
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            fence = None if fence is not None else line[3:].strip()
        elif fence in ("", "bash", "sh", "shell") and line.startswith(".venv/bin/brickwork "):
            found.append(shlex.split(line, comments=True)[1:])
    return found


#: How each README command is exercised here, by its first words: "run" (as written, plus
#: the given arguments), "help" (`--help` of that command: it needs what is absent here), or
#: "covered: <test>". Longest prefix wins.
PLAN: dict[tuple[str, ...], str] = {
    ("serve",): "help: starts a vLLM server (never started by tests; one is shared on 8321)",
    ("api",): "help: a long-running HTTP server (its routes: tests/integration/test_api_real.py)",
    ("tui",): "help: interactive (Pilot: tests/unit/test_tui*.py; real: test_tui_real.py)",
    ("tune",): "help: trains a LoRA adapter for minutes and reads ../shared/data (test_tune_*)",
    ("run", "Dim the office lights"): "covered: test_readme_run_command_works_as_written",
    ("run", "analytics"): "run",
    ("run", "support"): "run",
    ("graph", "list"): "run",
    ("graph", "show"): "run",
    ("eval",): "run",
    ("eval", "../shared/data/banking8"): "help: a split of a shared set on real models for "
    "minutes (routed mode on fakes: tests/unit/test_routing_eval.py)",
    ("route",): "help: trains from the eval runs above (on fakes: tests/unit/test_routing_eval.py)",
    ("plan",): "covered: tests/unit/test_planning.py (the CLI on a report `brickwork eval` wrote)",
    ("cache", "calibrate"): "covered: tests/integration/test_cache_semantic_minilm.py",
    ("cache", "stats"): "covered: tests/unit/test_caching.py (the CLI on a run store)",
    ("skill", "list"): "run",
    ("skill", "rollback"): "run",
}


def plan_for(args: list[str]) -> str:
    best = max((k for k in PLAN if tuple(args[: len(k)]) == k), key=len, default=None)
    return PLAN[best] if best is not None else "unclassified"


def brickwork(
    args: list[str], home: Path, *, timeout_s: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the CLI on a private cache and state folder, never the large model, 80 columns."""
    env = {
        **os.environ,
        "BRICKWORK_CACHE_DIR": str(home / "cache"),
        "BRICKWORK_STATE_DIR": str(home / "state"),
        "BRICKWORK_LARGE": "off",
        "COLUMNS": "80",
        "TERM": "dumb",
    }
    return subprocess.run(
        [*BRICKWORK, *args], capture_output=True, text=True, env=env, timeout=timeout_s,
        check=False, cwd=ROOT,
    )  # fmt: skip


def test_every_readme_command_is_covered() -> None:
    commands = readme_commands()
    assert len(commands) >= 10, commands
    unclassified = [" ".join(c) for c in commands if plan_for(c) == "unclassified"]
    assert not unclassified, f"classify these README commands in PLAN: {unclassified}"


@pytest.mark.parametrize("name", ["serve", "api", "tui", "tune"])
def test_readme_commands_that_need_what_is_absent_answer_help(name: str, tmp_path: Path) -> None:
    assert any(plan_for(c).startswith("help") for c in readme_commands() if c[0] == name)
    done = brickwork([name, "--help"], tmp_path, timeout_s=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: brickwork") and "Traceback" not in done.stderr


def test_readme_graph_and_skill_commands_run_as_written(tmp_path: Path) -> None:
    ran = []
    for args in readme_commands():
        if plan_for(args) != "run" or args[0] not in ("graph", "skill"):
            continue
        done = brickwork(args, tmp_path, timeout_s=120)
        ran.append(args[:2])
        assert "Traceback" not in done.stderr, done.stderr
        if args[:2] == ["graph", "list"]:
            assert done.returncode == 0
            names = {line.split(":")[0] for line in done.stdout.splitlines()}
            assert {"smart_home", "support", "analytics"} <= names, done.stdout
        elif args[:2] == ["graph", "show"]:
            assert done.returncode == 0 and "\ngraph TD;\n" in done.stdout  # Mermaid
            assert "intent" in done.stdout, done.stdout
        elif args[:2] == ["skill", "list"]:
            assert done.returncode == 0 and "smart_home" in done.stdout
        else:  # skill rollback on a fresh cache: nothing to go back to, said in plain words
            assert done.returncode == 2 and "no earlier binding" in done.stderr, done.stderr
    assert sorted(ran) == [["graph", "list"], ["graph", "show"], ["skill", "list"],
                           ["skill", "rollback"]]  # fmt: skip


def test_readme_store_prune_runs(tmp_path: Path) -> None:
    """The README's `brickwork store prune --days N [--store URL]`, on a store of its own."""
    assert "brickwork store prune --days" in README.read_text()
    store = tmp_path / "runs.sqlite"
    done = brickwork(["store", "prune", "--days", "3650", "--store", str(store)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "deleted 0 run(s) started more than 3650 day(s) ago" in done.stdout


@pytest.mark.vllm
def test_readme_run_commands_on_other_graphs(slm_base_url: str, tmp_path: Path) -> None:
    """`run analytics "..."` (trace) and `run support "..." --json` (one JSON object)."""
    store = tmp_path / "runs.sqlite"
    runs = [a for a in readme_commands() if a[0] == "run" and plan_for(a) == "run"]
    assert {a[1] for a in runs} == {"analytics", "support"}
    for args in runs:
        done = brickwork([*args, "--url", slm_base_url, "--store", str(store)], tmp_path)
        assert done.returncode in (0, 1), done.stderr  # 1: the run failed, said in plain words
        assert "Traceback" not in done.stderr, done.stderr
        if "--json" in args:
            [line] = done.stdout.strip().splitlines()
            body = json.loads(line)
            assert body["graph"] == "support" and body["status"], body
        else:
            assert args[1 + 1] in done.stdout.splitlines()[0], done.stdout  # titled by request
            assert re.search(r"^\w+ · run [0-9a-f]+ · ", done.stdout, flags=re.M), done.stdout
            assert all(len(line) <= 80 for line in done.stdout.splitlines()), done.stdout


@pytest.mark.vllm
def test_readme_eval_command_on_two_rows(slm_base_url: str, tmp_path: Path) -> None:
    """The README's eval command with `--limit 2` and `--url`: one table, a mode per row."""
    [args] = [a for a in readme_commands() if a[0] == "eval" and plan_for(a) == "run"]
    done = brickwork([*args, "--limit", "2", "--url", slm_base_url], tmp_path, timeout_s=900)
    assert done.returncode == 0, done.stderr
    for mode in args[args.index("--compare") + 1].split(","):
        assert re.search(rf"\b{mode}\b", done.stdout), done.stdout


@pytest.mark.vllm
def test_readme_python_example_runs(
    slm_base_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    # Publish the test server (the session's, or $BRICKWORK_TEST_VLLM_URL's) as a running
    # `brickwork serve`, so the example finds and reuses it.
    url = httpx.URL(slm_base_url)
    assert url.port is not None
    monkeypatch.setenv("BRICKWORK_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("BRICKWORK_LARGE", "off")
    lease = ServeLease(url.port, root=tmp_path)
    lease.acquire()
    lease.publish(
        ServeRecord(
            pid=os.getpid(),
            host=url.host,
            port=url.port,
            served_name=EMBEDDED_MODEL.served_name,
            adapters=(),
            model=EMBEDDED_MODEL.served_name,
            log=str(tmp_path / "vllm.log"),
            started_at=datetime.now(UTC).isoformat(),
        )
    )
    try:
        for block in blocks:
            exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})
    finally:
        lease.release()
    out = capsys.readouterr().out
    assert re.search(r"^(ok|failed|over_budget) ", out, flags=re.M), out  # the App example
    assert re.search(
        r"^(lights|locks) [0-9.e-]+ \{'room': '.*'\} [0-9.]+ Usage\(", out, flags=re.M
    ), out


@pytest.mark.vllm
def test_readme_run_command_works_as_written_at_80_columns(
    slm_base_url: str, tmp_path: Path
) -> None:
    """`brickwork run "Dim the office lights"` (the README's form): the default graph, said so;
    compact output within 80 columns; the stand-in note once."""
    command = re.search(r'brickwork run "([^"]+)"', README.read_text())
    assert command is not None and command.group(1) == "Dim the office lights"
    env = {**os.environ, "COLUMNS": "80", "BRICKWORK_LARGE": "off", "TERM": "dumb"}
    done = subprocess.run(
        [sys.executable, "-m", "brickwork.cli", "run", command.group(1),
         "--url", slm_base_url, "--store", str(tmp_path / "runs.sqlite")],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr  # 1: the run failed, said in plain words
    assert "graph: smart_home (the default" in done.stderr
    assert "loading the intent embedding model" in done.stderr
    lines = done.stdout.splitlines()
    assert lines and all(len(line) <= 80 for line in lines), done.stdout
    assert any(line.startswith("intent") for line in lines)  # one line per node
    assert done.stderr.count("no frontier API is configured") <= 1
