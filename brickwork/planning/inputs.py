"""What the planner reads: an eval report's load per request, by mode and tier.

`brickwork eval --json-out FILE` writes `brickwork.evals.report.to_jsonable(EvalReport)`. Per
mode, the planner takes the rows (`n`), accuracy and its interval, model calls per tier and,
when the report has them, prompt and completion tokens per tier, and divides by `n`: the load
one request puts on each tier. Nothing else in the report is used, and a report that lacks
what the planner needs is refused with a message saying how to make one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from brickwork.errors import ConfigError

__all__ = ["EvalLoad", "ModeLoad", "mode_label", "read_report"]

_HOW = "write one with: brickwork eval TARGET --compare slm,hybrid,frontier --json-out FILE"


def mode_label(mode: str) -> str:
    """The planner's name for an eval mode: slm-only, hybrid, routed-hybrid, frontier-only."""
    if mode == "slm":
        return "slm-only"
    if mode == "frontier":
        return "frontier-only"
    if mode.startswith("routed"):
        return "routed-hybrid" + mode.removeprefix("routed")
    return mode


@dataclass(frozen=True)
class ModeLoad:
    """What one request of one eval mode asks of each tier, on average over the mode's rows.

    Attributes:
        mode: The mode as the report names it (slm, hybrid, routed, routed@0.1, frontier).
        n: Rows the averages are over.
        accuracy: Share of rows right (None when the report has none).
        ci95: Its 95 % Wilson interval (None when the report has none).
        calls: Model calls per request, by tier (cache hits excluded, as in the report).
        tokens: Prompt and completion tokens per request, by tier (empty: the report
            predates tokens per tier).
    """

    mode: str
    n: int
    accuracy: float | None
    ci95: tuple[float, float] | None
    calls: Mapping[str, float]
    tokens: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """slm-only, hybrid, routed-hybrid[@margin] or frontier-only."""
        return mode_label(self.mode)

    def missing_tokens(self) -> list[str]:
        """Tiers this mode calls whose tokens the report does not give."""
        return [t for t, calls in self.calls.items() if calls > 0 and t not in self.tokens]

    def with_tokens_per_call(self, prompt: float, completion: float) -> ModeLoad:
        """The same load, `prompt`+`completion` tokens a call on tiers the report has none for."""
        filled = dict(self.tokens)
        for tier in self.missing_tokens():
            filled[tier] = (self.calls[tier] * prompt, self.calls[tier] * completion)
        return replace(self, tokens=filled)

    def tokens_per_call(self, tier: str) -> float | None:
        """Mean prompt + completion tokens of one call on `tier` (None: unknown)."""
        calls = self.calls.get(tier, 0.0)
        if tier not in self.tokens or calls <= 0:
            return None
        prompt, completion = self.tokens[tier]
        return (prompt + completion) / calls


@dataclass(frozen=True)
class EvalLoad:
    """An eval report as the planner reads it: its target, data file and modes."""

    path: str
    target: str
    data: str
    modes: tuple[ModeLoad, ...]

    def mode(self, name: str) -> ModeLoad | None:
        """The mode named `name` in the report, if it ran."""
        return next((m for m in self.modes if m.mode == name), None)


def read_report(path: str | Path) -> EvalLoad:
    """Read `brickwork eval --json-out`'s file (ConfigError naming the problem and the fix)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read eval report {str(file)!r}: {exc.strerror}; {_HOW}") from exc
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"eval report {str(file)!r} is not JSON ({exc}); {_HOW}") from exc
    return report_from_dict(data, source=str(file))


def report_from_dict(data: Any, *, source: str = "report") -> EvalLoad:
    """The planner's view of a parsed eval report (see `read_report`)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("modes"), Mapping):
        raise ConfigError(f"{source!r} is not a brickwork eval report (no 'modes' table); {_HOW}")
    if not data["modes"]:
        raise ConfigError(f"{source!r}: the report has no modes; {_HOW}")
    modes = tuple(_mode(name, raw, source) for name, raw in data["modes"].items())
    return EvalLoad(
        path=source,
        target=str(data.get("target", "?")),
        data=str(data.get("data", "?")),
        modes=modes,
    )


def _mode(name: str, raw: Any, source: str) -> ModeLoad:
    where = f"{source!r}: mode {name!r}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table, got {raw!r}")
    n = raw.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ConfigError(f"{where}: 'n' (rows) must be a whole number > 0, got {n!r}")
    calls = raw.get("calls_by_tier")
    if not isinstance(calls, Mapping):
        raise ConfigError(
            f"{where} has no 'calls_by_tier' (a report from before calls per tier were "
            f"counted); run the eval again. {_HOW}"
        )
    per_call: dict[str, float] = {}
    for tier, count in calls.items():
        per_call[str(tier)] = _count(count, f"{where}: calls_by_tier.{tier}") / n
    tokens: dict[str, tuple[float, float]] = {}
    raw_tokens = raw.get("tokens_by_tier") or {}
    if not isinstance(raw_tokens, Mapping):
        raise ConfigError(f"{where}: 'tokens_by_tier' must be a table, got {raw_tokens!r}")
    for tier, pair in raw_tokens.items():
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise ConfigError(
                f"{where}: tokens_by_tier.{tier} must be [prompt, completion], got {pair!r}"
            )
        what = f"{where}: tokens_by_tier.{tier}"
        tokens[str(tier)] = (_count(pair[0], what) / n, _count(pair[1], what) / n)
    accuracy: Any = raw.get("accuracy")
    ci: Any = raw.get("ci95")
    return ModeLoad(
        mode=str(raw.get("mode") or name),
        n=n,
        accuracy=float(accuracy) if _number(accuracy) else None,
        ci95=(float(ci[0]), float(ci[1]))
        if isinstance(ci, list | tuple) and len(ci) == 2 and all(_number(v) for v in ci)
        else None,
        calls=per_call,
        tokens=tokens,
    )


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{what} must be a whole number >= 0, got {value!r}")
    return value
