"""Rendering results: terminal tables (Rich) and the experiment report as one self-contained HTML file.

The HTML names are imported lazily: they pull in matplotlib, which the terminal tables (and modules that
only need `report.summary`) should not pay for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from aftertune.report.terminal import delta_table, experiment_tables, flagged_answers, freeform_table

_LAZY = {
    "render_html": "aftertune.report.html",
    "write_html_report": "aftertune.report.html",
}

__all__ = [
    "delta_table",
    "experiment_tables",
    "flagged_answers",
    "freeform_table",
    "render_html",
    "write_html_report",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'aftertune.report' has no attribute {name!r}")


def __dir__() -> list[str]:
    return [*globals(), *__all__]


if TYPE_CHECKING:
    from aftertune.report.html import render_html, write_html_report
