"""Rendering results: terminal tables now, the HTML report later."""

from aftertune.report.terminal import flagged_answers, freeform_table

__all__ = ["flagged_answers", "freeform_table"]
