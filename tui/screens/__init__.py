"""The operator TUI's screens, one per module."""

from __future__ import annotations

from brickwork.tui.screens.confirm import ConfirmScreen
from brickwork.tui.screens.dashboard import DashboardScreen
from brickwork.tui.screens.escalations import EscalationsScreen
from brickwork.tui.screens.help import HelpScreen
from brickwork.tui.screens.models import ModelsScreen
from brickwork.tui.screens.playground import PlaygroundScreen
from brickwork.tui.screens.run_detail import RunDetailScreen
from brickwork.tui.screens.runs import RunsScreen

__all__ = [
    "ConfirmScreen",
    "DashboardScreen",
    "EscalationsScreen",
    "HelpScreen",
    "ModelsScreen",
    "PlaygroundScreen",
    "RunDetailScreen",
    "RunsScreen",
]
