"""The requests a run could not finish, for the terminal and as failures.json beside its results."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from rich import box
from rich.table import Table

from aftertune.errors import StoreError
from aftertune.failures import StoredFailure

FAILURES_FILE = "failures.json"


def failures_table(failures: Sequence[StoredFailure]) -> Table:
    """Failed requests counted by stage and cause, each with one example reason."""
    table = Table("stage", "cause", "failed", "example reason", title="Requests that failed", box=box.SIMPLE)
    counts = Counter((f.stage, f.kind) for f in failures)
    for (stage, kind), n in sorted(counts.items()):
        example = next(f.reason for f in failures if (f.stage, f.kind) == (stage, kind))
        table.add_row(stage, kind, str(n), example)
    return table


def write_failures(failures: Sequence[StoredFailure], run_dir: Path) -> Path | None:
    """Write every failure with its reason to run_dir/failures.json; with none, remove a stale one."""
    path = run_dir / FAILURES_FILE
    try:
        if not failures:
            path.unlink(missing_ok=True)
            return None
        body = {
            "failed": len(failures),
            "by_cause": {
                f"{s}: {k}": n for (s, k), n in sorted(Counter((f.stage, f.kind) for f in failures).items())
            },
            "failures": [asdict(f) for f in failures],
        }
        path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    except OSError as e:
        raise StoreError(f"Cannot write {path}: {e.strerror}. The results store keeps every failure.") from e
    return path
