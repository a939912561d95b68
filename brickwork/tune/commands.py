"""`brickwork tune`: train a LoRA adapter for a skill, serve it, evaluate it, promote it.

    brickwork tune smart_home --epochs 3 --promote
    brickwork tune ../shared/data/banking8 --data more.jsonl --from-escalations
    brickwork tune smart_home --adapter smart_home-20261123-1830 --promote   # no training
    brickwork skill show smart_home
    brickwork skill rollback smart_home

Steps: resolve the skill (an example skill's name, a skill folder, or `module:function`), build
the dataset (`brickwork.tune.data`; optionally with `--synthetic N` examples written by the
pool's top tier, checked by the skill's own validators, on the training side only), train
(`brickwork.tune.train`; `--search N` trains N settings) into the adapter registry
(`brickwork.tune.adapters`), make the local vLLM serve the adapters (loaded at runtime, or a
restart), then run the skill's agent on the validation split with the base model and with each
adapter, scored as `brickwork eval` scores a skill (`brickwork.evals.data` checks, Wilson
intervals). The scores go into the adapters' manifests; the best on the validation split is
the candidate. `--promote` binds the skill only when the candidate's accuracy is at least the
base's plus `--margin` (default 5 points), to a refit of the candidate on every example
(`--no-refit`: the candidate itself); the previous binding stays in the history for
`brickwork skill rollback`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brickwork.errors import ConfigError
from brickwork.evals.report import wilson
from brickwork.skills.skill import Example, Skill

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from brickwork.serving.pool import ModelPool
    from brickwork.tune.data import TrainExample, TuneDataset
    from brickwork.tune.train import TrainConfig

__all__ = [
    "DEFAULT_MARGIN",
    "Gate",
    "SplitScore",
    "add_skill_arguments",
    "add_tune_arguments",
    "evaluate_split",
    "pick_best",
    "promotion_gate",
    "resolve_skill",
    "score_table",
    "search_configs",
    "skill_main",
    "synthesize",
    "tune_main",
]

#: Accuracy points (0-1) an adapter must gain over the base model to be promoted.
DEFAULT_MARGIN = 0.05
STAND_IN_NOTE = (
    "no frontier API is configured, so the local stand-in (the same small model) wrote the "
    "synthetic examples: expect few to pass validation and little gain from them"
)


# -- skills -------------------------------------------------------------------------------------


def _example_skills() -> dict[str, Callable[[], Skill]]:
    from brickwork.skills import examples

    return {
        "smart_home": examples.smart_home_skill,
        "smart_home_intent": examples.smart_home_intent_skill,
        "banking_intent": examples.banking_intent_skill,
        "banking_support": examples.banking_support_skill,
        "banking_transfer_extraction": examples.banking_transfer_extraction_skill,
        "analytics": examples.analytics_skill,
    }


def resolve_skill(ref: str) -> Skill:
    """The skill `ref` names: an example skill, a skill folder, or `module:function`.

    Raises:
        ConfigError: Nothing by that name (the message lists what is accepted).
        SkillError: A skill folder or factory that exists but is invalid.
    """
    known = _example_skills()
    if ref in known:
        return known[ref]()
    path = Path(ref).expanduser()
    if path.is_dir() or path.name == "job_description.json":
        from brickwork.skills.loaders import load_skill

        return load_skill(path)
    module_name, sep, attr = ref.partition(":")
    if sep and module_name and attr:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"cannot import {module_name!r} for skill {ref!r}: {exc}") from exc
        factory = getattr(module, attr, None)
        if factory is None:
            raise ConfigError(f"module {module_name!r} has no {attr!r} (skill {ref!r})")
        skill = factory() if callable(factory) and not isinstance(factory, Skill) else factory
        if not isinstance(skill, Skill):
            raise ConfigError(f"{ref!r} gave {type(skill).__name__}, not a Skill")
        return skill
    raise ConfigError(
        f"unknown skill {ref!r}; give one of {', '.join(known)}, a skill folder "
        "(job_description.json + train file), or module:function returning a Skill"
    )


# -- evaluation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitScore:
    """Accuracy of one model on the validation split.

    Attributes:
        model: The logical model ("slm" or "slm:<adapter>").
        correct: Examples answered right.
        n: Examples evaluated (a failed call counts as wrong).
        failed: Examples whose run raised or returned no value.
        seconds: Wall time of the evaluation.
    """

    model: str
    correct: int
    n: int
    failed: int = 0
    seconds: float = 0.0

    @property
    def accuracy(self) -> float:
        """Share answered right, `correct / n` (nan when n is 0)."""
        return self.correct / self.n if self.n else math.nan

    @property
    def ci95(self) -> tuple[float, float]:
        """The 95 % Wilson score interval of the accuracy."""
        return wilson(self.correct, self.n)

    def metrics(self, prefix: str) -> dict[str, float]:
        """Flat numeric metrics for the adapter manifest (`<prefix>_accuracy`, ...)."""
        low, high = self.ci95
        values = {
            "accuracy": self.accuracy,
            "ci95_low": low,
            "ci95_high": high,
            "correct": self.correct,
            "n": self.n,
            "failed": self.failed,
            "seconds": round(self.seconds, 1),
        }
        return {f"{prefix}_{k}": float(v) for k, v in values.items() if not math.isnan(v)}


def _check(skill: Skill, example: Example, agents: Any) -> Callable[[Any], bool]:
    from brickwork.evals.data import (
        _example_key,
        call_check,
        fields_check,
        label_check,
        sql_check,
    )

    gold = example.output
    kind = skill.kind
    if kind == "intent":
        return label_check(str(gold))
    if kind == "toolcall":
        return call_check(gold, getattr(skill.contract, "registry", None))
    if kind == "extract":
        return fields_check(gold)
    key = _example_key(example.input)
    return sql_check(lambda: agents.database(key), str(gold))


async def evaluate_split(
    skill: Skill,
    examples: Sequence[TrainExample],
    pool: ModelPool,
    model: str,
    *,
    concurrency: int = 4,
) -> SplitScore:
    """Run the skill's agent on each validation example with `model` and score the outputs.

    The agent is the one `brickwork eval` builds for a skill (its kind's agent, tool calls not
    executed, the example itself left out of the few-shot examples); scoring uses the same
    checks (tool-call equivalence, exact label, field match, SQL execution match).
    Examples without a source `Example` (e.g. from escalations) are skipped.
    """
    from brickwork.evals.data import _RowAgents
    from brickwork.graphs.builder import to_jsonable

    agents = _RowAgents(skill)
    gate = asyncio.Semaphore(concurrency)
    rows = [e.example for e in examples if e.example is not None]
    started = time.perf_counter()

    async def one(example: Example) -> tuple[bool, bool]:
        check = _check(skill, example, agents)
        input = example.input if skill.kind == "toolcall" else _last_user(example)
        async with gate:
            try:
                result = await agents.run(input, pool=pool, model=model)
            except Exception:  # a failed run is a wrong answer, never a dropped row
                return False, True
        if result.value is None:
            return False, True
        try:
            return bool(check(to_jsonable(result.value))), False
        except Exception:
            return False, False

    outcomes = await asyncio.gather(*(one(row) for row in rows))
    return SplitScore(
        model,
        sum(ok for ok, _ in outcomes),
        len(outcomes),
        sum(failed for _, failed in outcomes),
        time.perf_counter() - started,
    )


def _last_user(example: Example) -> str:
    if isinstance(example.input, str):
        return example.input
    users = [m.get("content") for m in example.input if m.get("role") == "user"]
    return str(users[-1]) if users else ""


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.1f} %"


def score_table(scores: Sequence[SplitScore], title: str) -> Table:
    """A rich table: one row per model, accuracy with its 95 % Wilson interval."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("model", "right", "accuracy", "95 % CI", "failed", "time"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for score in scores:
        low, high = score.ci95
        table.add_row(
            score.model,
            f"{score.correct}/{score.n}",
            _pct(score.accuracy),
            f"{_pct(low)} - {_pct(high)}",
            str(score.failed),
            f"{score.seconds:.1f} s",
        )
    return table


# -- promotion ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    """Whether an adapter may be promoted, and why."""

    promote: bool
    reason: str


def promotion_gate(base: SplitScore, adapter: SplitScore, margin: float) -> Gate:
    """Promote only when the adapter's accuracy is at least the base's plus `margin` (0-1).

    Raises:
        ConfigError: `margin` outside [0, 1].
    """
    if not 0.0 <= margin <= 1.0:
        raise ConfigError(f"--margin {margin!r} must be between 0 and 1 (0.05 = 5 points)")
    if adapter.n == 0 or base.n == 0:
        return Gate(False, "no validation examples to compare on; add examples (--data)")
    gain = adapter.accuracy - base.accuracy
    summary = (
        f"adapter {_pct(adapter.accuracy)} vs base {_pct(base.accuracy)} "
        f"({100 * gain:+.1f} points; margin {100 * margin:.1f} points, n={adapter.n})"
    )
    if gain + 1e-9 >= margin:
        return Gate(True, summary)
    return Gate(False, f"{summary}: not better by the margin")


# -- synthetic data -----------------------------------------------------------------------------

_SYNTHETIC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "examples": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"input": {"type": "string"}, "output": {}},
                "required": ["input", "output"],
            },
        }
    },
    "required": ["examples"],
}


def _contract_text(skill: Skill) -> str:
    from brickwork.skills.skill import JSONContract, LabelSet, ToolContract

    contract = skill.contract
    if isinstance(contract, ToolContract):
        tools = json.dumps(contract.registry.openai_tools())
        return (
            f'Output: one tool call {{"name": ..., "parameters": {{...}}}} of these tools:\n{tools}'
        )
    if isinstance(contract, LabelSet):
        labels = "\n".join(f"- {k}: {v}" for k, v in contract.labels.items())
        return f"Output: exactly one of these labels (a string):\n{labels}"
    if isinstance(contract, JSONContract):
        return f"Output: a JSON object valid against:\n{json.dumps(contract.json_schema)}"
    return "Output: one read-only SQL query (a string)."


async def synthesize(
    skill: Skill,
    pool: ModelPool,
    count: int,
    *,
    model: str | None = None,
    batch: int = 5,
    seed: int = 0,
    demos: Sequence[Example] | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> tuple[list[Example], int, bool]:
    """Ask the teacher model for `count` new examples; keep those the skill's validators pass.

    Args:
        skill: The skill whose examples are written.
        pool: The pool the teacher is called through.
        count: How many examples to keep.
        model: The teacher (default: the pool's top tier).
        batch: Examples asked for per call.
        seed: Seeds which demonstrations each call shows.
        demos: The examples shown to the teacher (default: the skill's); `brickwork tune`
            shows only training-side ones, so the teacher cannot paraphrase a validation one.
        progress: Called after each teacher call with (calls made, kept, rejected).

    Returns:
        (accepted examples, rejected count, whether the teacher was the local stand-in).
    """
    from brickwork.errors import BrickworkError

    teacher = model or pool.top_tier
    shown_from = list(demos if demos is not None else skill.examples)
    rng = random.Random(seed)
    seen = {json.dumps(e.input, sort_keys=True) for e in skill.examples}
    accepted: list[Example] = []
    rejected = 0
    stand_in = False
    for call_number in range(max(1, 3 * math.ceil(count / batch))):
        if len(accepted) >= count:
            break
        if progress is not None and call_number:
            progress(call_number, len(accepted), rejected)
        shown = rng.sample(shown_from, min(3, len(shown_from)))
        lines = "\n".join(json.dumps({"input": _last_user(e), "output": e.output}) for e in shown)
        prompt = (
            f"Task of a small model: {skill.instructions}\n{_contract_text(skill)}\n\n"
            f"Examples:\n{lines}\n\nWrite {batch} new, varied examples of user requests for "
            'this task with the correct output, as {"examples": [{"input": ..., "output": ...}]}.'
        )
        messages = [
            {"role": "system", "content": "You write training data. Answer with JSON only."},
            {"role": "user", "content": prompt},
        ]
        try:
            data, completion = await pool.complete_json(
                teacher, messages, _SYNTHETIC_SCHEMA, max_tokens=1500, temperature=0.8
            )
        except BrickworkError:
            rejected += batch
            continue
        stand_in = stand_in or completion.stand_in
        for item in data.get("examples", []) if isinstance(data, dict) else []:
            text, output = item.get("input"), item.get("output")
            key = json.dumps(text, sort_keys=True)
            if not isinstance(text, str) or not text.strip() or key in seen:
                rejected += 1
                continue
            if skill.check_output(output) is not None or _ungrounded(skill, text, output):
                rejected += 1
                continue
            seen.add(key)
            accepted.append(Example(text, output))
    return accepted[:count], rejected, stand_in


def _ungrounded(skill: Skill, text: str, output: Any) -> bool:
    """True for a tool call whose argument values the request does not say.

    The check the graphs run on a small model's calls, here on the teacher's labels: "Set the
    bedroom lights to warm" labelled `set_thermostat(temperature=65)` is a made-up value.
    """
    from brickwork.agents.toolcall import ungrounded_arguments
    from brickwork.skills.skill import ToolContract

    if not isinstance(skill.contract, ToolContract) or not isinstance(output, dict):
        return False
    parameters = output.get("parameters")
    return isinstance(parameters, dict) and bool(ungrounded_arguments(parameters, text))


#: The validation split, written into the adapter's folder in the question/answer format.
VAL_FILE = "val.jsonl"


def _write_examples(examples: Sequence[Example], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for example in examples:
            answer = example.output
            row = {
                "question": example.input,
                "answer": json.dumps(answer) if isinstance(answer, dict) else answer,
            }
            out.write(json.dumps(row) + "\n")
    return path


# -- orchestration ------------------------------------------------------------------------------


def _default_name(skill: Skill) -> str:
    return f"{skill.name.replace('.', '_')}-{datetime.now(UTC):%Y%m%d-%H%M%S}"


#: `--search N` tries the first N of these changes to the given settings, each scored on the
#: validation split: longer and gentler, a bigger rank, a bolder rate, a shorter run.
_SEARCH: tuple[dict[str, Any], ...] = (
    {},
    {"learning_rate": 0.5, "epochs": 1},
    {"rank": 2, "alpha": 2},
    {"learning_rate": 2.0},
    {"epochs": -1},
)


def search_configs(base: TrainConfig, count: int) -> list[TrainConfig]:
    """The settings `--search count` trains: `base` first, then the next variations.

    Rates and ranks in `_SEARCH` multiply the base's, epochs add to them (never below 1);
    settings equal to an earlier candidate are dropped.

    Raises:
        ConfigError: `count` outside 1..5.
    """
    if not 1 <= count <= len(_SEARCH):
        raise ConfigError(f"--search {count!r} must be between 1 and {len(_SEARCH)}")
    configs: list[TrainConfig] = []
    for change in _SEARCH[:count]:
        config = dataclasses.replace(
            base,
            learning_rate=base.learning_rate * change.get("learning_rate", 1.0),
            rank=base.rank * change.get("rank", 1),
            alpha=base.alpha * change.get("alpha", 1),
            epochs=max(1, base.epochs + change.get("epochs", 0)),
        )
        if config not in configs:
            configs.append(config)
    return configs


def pick_best(scores: Sequence[SplitScore], configs: Sequence[TrainConfig]) -> int:
    """Index of the candidate with the best validation accuracy (ties: the cheaper run)."""
    if not scores or len(scores) != len(configs):
        raise ValueError("one score per candidate is needed")

    def rank(i: int) -> tuple[float, int, int, int]:
        accuracy = scores[i].accuracy
        return (-1.0 if math.isnan(accuracy) else accuracy, -configs[i].epochs,
                -configs[i].rank, -i)  # fmt: skip

    return max(range(len(scores)), key=rank)


def _config_text(config: TrainConfig) -> str:
    return f"r={config.rank} lr={config.learning_rate:g} epochs={config.epochs}"


@dataclass
class _Candidate:
    name: str
    config: TrainConfig | None  # None: a registered adapter evaluated as it is (--adapter)
    score: SplitScore | None = None


def _check_new(name: str) -> None:
    from brickwork.tune import adapters

    if adapters.adapter_path(name).exists():
        raise ConfigError(
            f"adapter {name!r} already exists ({adapters.adapter_path(name)}); pick another "
            "--name, or evaluate it with --adapter"
        )


async def _tune(args: argparse.Namespace, console: Console) -> int:
    from brickwork.serving.local import LocalServing
    from brickwork.serving.models import ensure_embedded_model
    from brickwork.tune import adapters
    from brickwork.tune.data import all_for_training, build_dataset, with_training_examples
    from brickwork.tune.train import TrainConfig

    if not 0.0 <= args.margin <= 1.0:
        raise ConfigError(f"--margin {args.margin!r} must be between 0 and 1 (0.05 = 5 points)")
    skill = resolve_skill(args.skill)
    name = adapters.check_adapter_name(args.adapter or args.name or _default_name(skill))
    base_config = TrainConfig(
        epochs=args.epochs, rank=args.rank, alpha=2 * args.rank, seed=args.seed,
        max_steps=args.max_steps, learning_rate=args.learning_rate,
    )  # fmt: skip
    if args.adapter:
        adapters.get_adapter(name)  # an unknown name fails before anything slow
        candidates = [_Candidate(name, None)]
    else:
        configs = search_configs(base_config, args.search)
        names = [name] if len(configs) == 1 else [f"{name}-c{i + 1}" for i in range(len(configs))]
        candidates = [_Candidate(n, c) for n, c in zip(names, configs, strict=True)]
    refit = args.promote and args.refit and not args.adapter
    ranks = [c.config.rank for c in candidates if c.config is not None]
    if ranks:  # a running serve that cannot load the adapters: say so before training
        from brickwork.serving.local import serve_rank_problem

        problem = await asyncio.to_thread(serve_rank_problem, max(ranks))
        if problem is not None:
            raise ConfigError(problem)
    for candidate in candidates if not args.adapter else ():
        _check_new(candidate.name)
    if refit:
        _check_new(f"{name}-all")
    base_dir = ensure_embedded_model(quiet=True)
    if args.adapter:
        from brickwork.tune.train import check_base

        check_base(adapters.get_adapter(name).path, base_dir)
    store = None
    if args.from_escalations:
        from brickwork.store import RunStore

        store = RunStore(args.store)
    # The large tier only teaches (--synthetic); evaluating base vs adapter needs the small one,
    # with adapters on its LoRA path (they are swapped and compared there, not merged).
    local = LocalServing(
        progress=True, large=None if args.synthetic else False, merge_specialists=False
    )
    try:
        dataset = build_dataset(
            skill, files=[Path(f) for f in args.data], store=store,
            from_escalations=args.from_escalations, seed=args.seed,
        )  # fmt: skip
        if args.synthetic:
            local = await asyncio.to_thread(local.start)
            # The teacher sees training-side examples only, and writes training data only.
            shown = [e.example for e in dataset.train if e.example is not None]
            written = await _synthetic_examples(skill, local, args, name, console, shown)
            dataset = with_training_examples(skill, dataset, written, "synthetic")
        counts = ", ".join(f"{k} {v}" for k, v in sorted(dataset.counts.items()))
        console.print(f"data: {counts}", highlight=False)
        for candidate in candidates:
            if candidate.config is not None:
                await _train(skill, dataset, candidate.name, candidate.config, base_dir, console)
        held_out = [e.example for e in dataset.val if e.example is not None]
        if held_out:  # so `brickwork eval SKILL --data` can score exactly the unseen examples
            for candidate in candidates:
                path = adapters.get_adapter(candidate.name).path / VAL_FILE
                _write_examples(held_out, path)
            console.print(f"validation split: {path}", highlight=False)
        info = adapters.get_adapter(candidates[0].name)
        if args.adapter and info.manifest.get("data_sha256") != dataset.sha256:
            console.print(
                f"[yellow]note[/]: {name!r} was trained on other data than this split "
                "(its validation examples may have been seen in training)"
            )
        if local.server is None and local.record is None:
            local = await asyncio.to_thread(local.start)
        val = dataset.val
        if args.limit is not None:
            from brickwork.evals.data import _spread

            val = tuple(val[i] for i in _spread(len(val), args.limit))
        for candidate in candidates:
            path = adapters.get_adapter(candidate.name).path
            how = await asyncio.to_thread(local.ensure_adapter, candidate.name, path)
            console.print(f"serving {candidate.name!r} on {local.origin} ({how})", highlight=False)
        async with local.pool() as pool:
            base = await evaluate_split(skill, val, pool, "slm")
            for candidate in candidates:
                candidate.score = await evaluate_split(skill, val, pool, f"slm:{candidate.name}")
        scores = [c.score for c in candidates if c.score is not None]
        console.print(score_table([base, *scores], f"{skill.name}: validation split"))
        best = 0
        if len(candidates) > 1:
            configs = [c.config or base_config for c in candidates]
            best = pick_best(scores, configs)
            for candidate in candidates:
                settings = _config_text(candidate.config or base_config)
                console.print(f"  {candidate.name}: {settings}", highlight=False)
            console.print(
                f"search: {candidates[best].name} wins; its score was picked as the best of "
                f"{len(candidates)} on this split, so it flatters it a little", highlight=False,
            )  # fmt: skip
        chosen = candidates[best]
        tuned = scores[best]
        gate = promotion_gate(base, tuned, args.margin)
        for candidate in candidates:
            assert candidate.score is not None
            adapters.save_metrics(
                candidate.name,
                {
                    **base.metrics("val_base"),
                    **candidate.score.metrics("val_adapter"),
                    "val_margin": args.margin,
                    "val_promotable": float(gate.promote and candidate is chosen),
                    "val_evaluated_at": time.time(),
                    "search_candidates": float(len(candidates)),
                },
            )
        if not args.promote:
            verdict = "would be promoted" if gate.promote else "would not be promoted"
            console.print(f"{chosen.name} {verdict}: {gate.reason}", highlight=False)
            return 0
        if not gate.promote:
            console.print(f"[red]not promoted[/]: {gate.reason}", highlight=False)
            return 1
        served, note = chosen.name, gate.reason
        if refit:
            served = f"{name}-all"
            everything = all_for_training(dataset)
            console.print(
                f"refit: training {served!r} on all {len(everything.train)} examples "
                f"(validation included) with {chosen.name}'s settings; this is the adapter "
                "that gets served (it has no held-out score: it saw every example)",
                highlight=False,
            )
            await _train(skill, everything, served, chosen.config or base_config, base_dir,
                         console)  # fmt: skip
            adapters.save_metrics(
                served,
                {**base.metrics("val_base"), **tuned.metrics("val_gate"),
                 "val_margin": args.margin, "refit_examples": float(len(everything.train))},
            )  # fmt: skip
            path = adapters.get_adapter(served).path
            await asyncio.to_thread(local.ensure_adapter, served, path)
            note = f"refit of {chosen.name} on every example; gate: {gate.reason}"
    finally:
        await asyncio.to_thread(local.stop)
    adapters.bind(skill.name, served, note=note)
    console.print(
        f"[green]promoted[/]: skill {skill.name!r} now runs on slm:{served} ({note}); "
        f"undo with `brickwork skill rollback {skill.name}`",
        highlight=False,
    )
    return 0


async def _train(
    skill: Skill,
    dataset: TuneDataset,
    name: str,
    config: TrainConfig,
    base_dir: Path,
    console: Console,
) -> None:
    from brickwork.tune import adapters
    from brickwork.tune.train import train_adapter

    out = adapters.adapter_path(name)
    console.print(f"training {name!r} ({_config_text(config)}) into {out}", highlight=False)
    await asyncio.to_thread(
        train_adapter, skill, dataset, out, name=name, base_model_dir=base_dir, config=config
    )


async def _synthetic_examples(
    skill: Skill,
    local: Any,
    args: argparse.Namespace,
    name: str,
    console: Console,
    shown: Sequence[Example],
) -> list[Example]:
    from brickwork._settings import cache_dir

    async with local.pool() as pool:
        teacher = pool.top_tier
        tier = pool.tier_of(teacher) or teacher
        console.print(
            f"synthetic: asking the {tier} tier for {args.synthetic} examples", highlight=False
        )
        started = time.perf_counter()

        def said(calls: int, kept: int, rejected: int) -> None:
            console.print(
                f"synthetic: {kept}/{args.synthetic} kept, {rejected} rejected after {calls} "
                f"calls ({time.perf_counter() - started:.0f} s)",
                highlight=False,
            )

        examples, rejected, stand_in = await synthesize(
            skill, pool, args.synthetic, model=teacher, seed=args.seed, demos=shown,
            progress=said,
        )  # fmt: skip
    console.print(
        f"synthetic: {len(examples)} examples passed the skill's validators, {rejected} rejected"
    )
    if stand_in and tier == "slm":
        console.print(f"[yellow]note[/]: {STAND_IN_NOTE}")
    elif stand_in:
        console.print(
            f"note: no frontier API is configured; the local {tier} tier was the teacher",
            highlight=False,
        )
    file = _write_examples(examples, cache_dir() / "tune-data" / f"{name}-synthetic.jsonl")
    console.print(f"synthetic examples kept in {file} (training side only)", highlight=False)
    return examples


# -- command line -------------------------------------------------------------------------------


def _margin(value: str) -> float:
    """A margin as a fraction (0.05) or in points (5 means 5 points)."""
    number = float(value)
    return number / 100 if number > 1 else number


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `brickwork tune` arguments to a (sub)parser."""
    parser.add_argument(
        "skill",
        help="a skill name (smart_home), a skill folder in the job_description.json + train "
        "format (e.g. ../shared/data/smart_home), or module:function returning a Skill",
    )
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="FILE",
        help="extra examples: question/answer JSONL or CSV, or chat JSONL (repeatable)",
    )
    parser.add_argument(
        "--from-escalations",
        action="store_true",
        help="add the nodes of this skill that the frontier model fixed (validated teacher "
        "labels) from the run store",
    )
    parser.add_argument("--store", help="run store to read escalations from (default: cache)")
    parser.add_argument("--epochs", type=int, default=3, help="passes over the data (default 3)")
    parser.add_argument(
        "--rank", type=int, default=16, help="LoRA rank, alpha = 2 x rank (default 16)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the split, LoRA init and order (default 0)"
    )
    parser.add_argument(
        "--learning-rate", type=float, default=4e-4, metavar="LR",
        help="peak AdamW learning rate (default 4e-4)",
    )  # fmt: skip
    parser.add_argument(
        "--search",
        type=int,
        default=1,
        metavar="N",
        help="train N settings (1-5: the given ones, then gentler and longer, rank x2, rate "
        "x2, one epoch less), score each on the validation split, keep the best (N times "
        "the training time)",
    )
    parser.add_argument(
        "--no-refit",
        dest="refit",
        action="store_false",
        help="with --promote, serve the adapter the gate judged instead of refitting it on "
        "every example (validation included) after the gate passes",
    )
    parser.add_argument("--max-steps", type=int, help="stop training after K steps")
    parser.add_argument("--name", help="adapter name (default: SKILL-<UTC time>)")
    parser.add_argument("--adapter", help="evaluate (and promote) this registered adapter")
    parser.add_argument("--limit", type=int, help="evaluate at most K validation examples")
    parser.add_argument("--promote", action="store_true", help="bind the skill if it is better")
    parser.add_argument(
        "--margin",
        type=_margin,
        default=DEFAULT_MARGIN,
        metavar="M",
        help="points the adapter must gain to be promoted (default 5; 0.05 also means 5)",
    )
    parser.add_argument(
        "--synthetic",
        type=int,
        default=0,
        metavar="N",
        help="ask the frontier model for N extra examples (validated by the skill)",
    )


def tune_main(args: argparse.Namespace) -> int:
    """Run `brickwork tune` from parsed arguments."""
    from rich.console import Console

    if not args.learning_rate > 0:
        raise ConfigError(f"--learning-rate {args.learning_rate!r} must be above 0")
    if args.epochs < 1 or args.rank < 1 or args.synthetic < 0:
        raise ConfigError(
            f"--epochs {args.epochs!r} and --rank {args.rank!r} must be 1 or more, "
            f"--synthetic {args.synthetic!r} 0 or more"
        )
    for option in ("max_steps", "limit"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise ConfigError(f"--{option.replace('_', '-')} {value!r} must be 1 or more")
    return asyncio.run(_tune(args, Console()))


def add_skill_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `brickwork skill list|show|rollback` arguments to a (sub)parser."""
    sub = parser.add_subparsers(dest="skill_command", required=True)
    sub.add_parser("list", help="skills, their bound adapter and adapters trained for them")
    show = sub.add_parser("show", help="a skill's binding, history and adapters with scores")
    show.add_argument("skill")
    back = sub.add_parser("rollback", help="restore the skill's previous binding")
    back.add_argument("skill")


def skill_main(args: argparse.Namespace) -> int:
    """Run `brickwork skill ...` from parsed arguments."""
    from rich.console import Console
    from rich.table import Table

    from brickwork.tune import adapters

    console = Console()
    bindings = adapters.load_bindings()
    if args.skill_command == "rollback":
        restored = adapters.rollback(args.skill)
        now = f"slm:{restored.adapter}" if restored.adapter else "the base model (slm)"
        console.print(f"skill {args.skill!r} now runs on {now}", highlight=False)
        return 0
    registered = adapters.list_adapters()
    if args.skill_command == "list":
        names = sorted({*_example_skills(), *bindings, *(a.skill for a in registered if a.skill)})
        table = Table(title="skills")
        for column in ("skill", "runs on", "adapters", "changes"):
            table.add_column(column)
        for skill in names:
            binding = bindings.get(skill)
            names_of = [a.name for a in registered if a.skill == skill]
            table.add_row(
                skill,
                f"slm:{binding.adapter}" if binding and binding.adapter else "slm",
                ", ".join(names_of) or "-",
                str(len(binding.history)) if binding else "0",
            )
        console.print(table)
        return 0
    binding = bindings.get(args.skill)
    trained = [a for a in registered if a.skill == args.skill]
    if binding is None and not trained and args.skill not in _example_skills():
        raise ConfigError(
            f"unknown skill {args.skill!r}: no binding and no adapter for it (see "
            "`brickwork skill list`)"
        )
    current = f"slm:{binding.adapter}" if binding and binding.adapter else "slm (base model)"
    console.print(f"skill {args.skill!r} runs on {current}", highlight=False)
    for change in reversed(binding.history if binding else ()):
        was = f"slm:{change.adapter}" if change.adapter else "slm"
        console.print(f"  until {change.at}: {was} {change.note}".rstrip(), highlight=False)
    table = Table(title=f"adapters for {args.skill}")
    for column in ("adapter", "rank", "created", "base acc.", "adapter acc.", "n"):
        table.add_column(column)
    for info in trained:
        metrics = info.metrics
        table.add_row(
            info.name,
            str(info.rank),
            info.created_at or "-",
            _pct(float(metrics.get("val_base_accuracy", math.nan))),
            _pct(float(metrics.get("val_adapter_accuracy", math.nan))),
            str(int(metrics["val_adapter_n"])) if "val_adapter_n" in metrics else "-",
        )
    console.print(table)
    return 0
