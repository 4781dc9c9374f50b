"""How the library reports progress without printing: a small callback the CLI turns into Rich bars."""

from __future__ import annotations

from typing import Protocol


class ProgressCallback(Protocol):
    """Called with a stage name, how many units are done, and how many there are in all."""

    def __call__(self, stage: str, done: int, total: int) -> None: ...


def report(progress: ProgressCallback | None, stage: str, done: int, total: int) -> None:
    """Call `progress` if there is one."""
    if progress is not None:
        progress(stage, done, total)
