"""Small widgets of the operator TUI; each posts its own messages."""

from __future__ import annotations

from brickwork.tui.widgets.filter_bar import Filter, FilterBar
from brickwork.tui.widgets.nav_bar import NavBar
from brickwork.tui.widgets.request_form import RequestForm
from brickwork.tui.widgets.step_view import StepView
from brickwork.tui.widgets.summary_bar import SummaryBar
from brickwork.tui.widgets.timeline import Timeline
from brickwork.tui.widgets.trace_log import TraceLog

__all__ = [
    "Filter",
    "FilterBar",
    "NavBar",
    "RequestForm",
    "StepView",
    "SummaryBar",
    "Timeline",
    "TraceLog",
]
