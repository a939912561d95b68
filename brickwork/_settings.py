"""Settings read from the environment, in one place and only when asked (never at import).

Precedence everywhere: explicit arguments, then these environment variables, then the
documented defaults below.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_SERVE_PORT",
    "FrontierSettings",
    "cache_dir",
    "frontier_settings",
    "gc_freeze_setting",
    "large_tier_setting",
    "state_dir",
]

#: Port that `brickwork serve` listens on unless told otherwise.
DEFAULT_SERVE_PORT = 8321


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Root of brickwork's cache: `$BRICKWORK_CACHE_DIR`, else `~/.cache/brickwork`."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("BRICKWORK_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "brickwork"


def state_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Where running servers leave their state files and locks."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("BRICKWORK_STATE_DIR")
    if env:
        return Path(env).expanduser()
    return cache_dir() / "run"


@dataclass(frozen=True)
class FrontierSettings:
    """Where the frontier model lives; all three unset means the local stand-in."""

    base_url: str | None
    api_key_env: str
    model: str | None

    @property
    def configured(self) -> bool:
        """True when a real frontier API is configured."""
        return bool(self.base_url and self.model)


def frontier_settings() -> FrontierSettings:
    """Read `BRICKWORK_FRONTIER_BASE_URL`, `_API_KEY` and `_MODEL`."""
    return FrontierSettings(
        base_url=os.environ.get("BRICKWORK_FRONTIER_BASE_URL") or None,
        api_key_env="BRICKWORK_FRONTIER_API_KEY",
        model=os.environ.get("BRICKWORK_FRONTIER_MODEL") or None,
    )


def large_tier_setting() -> bool | None:
    """Whether to serve the local large tier, from `BRICKWORK_LARGE`.

    "off" never serves it, "on" always does (an error names the packages when they are
    missing), unset or "auto" (None) serves it when its packages are installed.

    Raises:
        ValueError: Any other value (the message lists the accepted ones).
    """
    value = (os.environ.get("BRICKWORK_LARGE") or "auto").strip().lower()
    if value in ("auto", ""):
        return None
    if value in ("on", "1", "true", "yes"):
        return True
    if value in ("off", "0", "false", "no"):
        return False
    raise ValueError(f"BRICKWORK_LARGE={value!r}: use 'on', 'off' or 'auto'")


def gc_freeze_setting() -> bool:
    """Whether an App may freeze the start-up heap (`brickwork.app.freeze_startup_heap`).

    `BRICKWORK_GC_FREEZE` set to 0, false, no or off turns it off; unset or anything else
    leaves it on.
    """
    value = os.environ.get("BRICKWORK_GC_FREEZE", "").strip().lower()
    return value not in ("0", "false", "no", "off")
