"""The `aftertune` command: a thin Typer layer that parses, calls the Python API and renders with Rich.

One module per group of commands: `audit`, `evaluate` (eval, judge) and `experiments` (run, sweep, report,
compare, demo); `common` holds the app, the consoles and error handling they share.
"""

import aftertune.cli.audit
import aftertune.cli.evaluate
import aftertune.cli.experiments  # noqa: F401  (importing them registers their commands)
from aftertune.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    app()
