"""What every command shares: the Typer app, the consoles, user-error handling and progress bars."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeRemainingColumn,
)

from aftertune.errors import AftertuneError

app = typer.Typer(
    help="aftertune: what did this fine-tuning do to my model?",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals can hold API keys
    add_completion=False,
)
#: Piped or redirected output is not cut to 80 columns: tables go to logs and files whole.
_PIPED_WIDTH = 120
console = Console()
if not console.is_terminal:
    console = Console(width=_PIPED_WIDTH)
errors = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Print an AftertuneError as one paragraph and exit with its code; no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AftertuneError as e:
            # soft_wrap: one paragraph with no inserted line breaks, so a path or a phrase is never split
            errors.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            errors.print("Interrupted. Every finished chunk is stored: run the same command again to resume.")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


class RichProgress:
    """The library's progress callback, drawn as one Rich bar per stage."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(stage, total=total)
        self._progress.update(self._tasks[stage], completed=done, total=total)


@contextmanager
def progress_bars() -> Iterator[RichProgress]:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=errors,
        transient=False,
    ) as progress:
        yield RichProgress(progress)


@contextmanager
def status(message: str) -> Iterator[None]:
    with errors.status(message):
        yield
