"""Short, fixed-width renderings of money, durations, rates and times for tables."""

from __future__ import annotations

import math
import time

__all__ = ["clip", "clock", "money", "pct", "seconds"]


def money(usd: float) -> str:
    """Dollars with as many decimals as a small amount needs: $12.34, $0.0123, -$0.000066."""
    size = abs(usd)
    sign = "-" if usd < 0 else ""
    if size >= 1 or size == 0:
        return f"{sign}${size:,.2f}"
    if size >= 0.01:
        return f"{sign}${size:.4f}"
    if size >= 0.0001:
        return f"{sign}${size:.5f}"
    return f"{sign}${size:.6f}"


def seconds(value: float | None, *, compact: bool = False) -> str:
    """A duration: 47 ms, 1.2 s, 3 m 05 s (compact: 47ms, 1.2s, 3m05s); a dash when unknown."""
    if value is None or math.isnan(value):
        return "-"
    if value < 1:
        text = f"{value * 1000:.0f} ms"
    elif value < 60:
        text = f"{value:.1f} s"
    else:
        minutes, rest = divmod(int(value), 60)
        text = f"{minutes} m {rest:02d} s"
    return text.replace(" ", "") if compact else text


def pct(rate: float) -> str:
    """A share as a whole percentage: 12%."""
    return f"{rate * 100:.0f}%"


def clock(at: float, *, now: float | None = None) -> str:
    """Local time of day for today's timestamps, else the date and time."""
    now = time.time() if now is None else now
    local = time.localtime(at)
    if time.localtime(now)[:3] == local[:3]:
        return time.strftime("%H:%M:%S", local)
    return time.strftime("%m-%d %H:%M", local)


def clip(text: str, width: int) -> str:
    """One line of at most `width` characters, ending in an ellipsis when cut."""
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[: max(width - 1, 0)] + "…"
