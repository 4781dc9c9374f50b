"""What training runs record in the results store: each evaluated step, gate outcomes, run status.

These tables live in the run's one results store next to generations and judgements, so a report,
a sweep or a resumed run reads everything from one file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Literal

from aftertune.stats import Estimate
from aftertune.store import ResultsStore
from aftertune.train.gates import GateCheck

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tracked_steps (
    run TEXT NOT NULL,
    step INTEGER NOT NULL,
    model TEXT NOT NULL,
    train_loss REAL,
    checkpoint TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (run, step)
);
CREATE TABLE IF NOT EXISTS gate_checks (
    run TEXT NOT NULL,
    step INTEGER NOT NULL,
    gate TEXT NOT NULL,
    metric TEXT NOT NULL,
    failed INTEGER NOT NULL,
    observed TEXT,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (run, step, gate)
);
CREATE TABLE IF NOT EXISTS runs (
    run TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    updated_at TEXT NOT NULL
)
"""

RunState = Literal["running", "done", "stopped_by_gate"]


@dataclass(frozen=True)
class TrackedStep:
    """A step of a run at which the model was evaluated."""

    run: str
    step: int
    model: str
    train_loss: float | None
    #: the checkpoint folder saved at this step, when there is one
    checkpoint: str | None


def ensure_tables(store: ResultsStore) -> None:
    store.ensure_schema(_SCHEMA)


def record_step(store: ResultsStore, step: TrackedStep) -> None:
    with store.transaction() as db:
        db.execute(
            "INSERT OR REPLACE INTO tracked_steps VALUES (?,?,?,?,?,?)",
            (step.run, step.step, step.model, step.train_loss, step.checkpoint, _now()),
        )


def set_checkpoint(store: ResultsStore, run: str, step: int, checkpoint: str) -> None:
    """Note the checkpoint folder saved at `step` (the trainer saves after the step's evaluation)."""
    with store.transaction() as db:
        db.execute(
            "UPDATE tracked_steps SET checkpoint = ? WHERE run = ? AND step = ?", (checkpoint, run, step)
        )


def set_train_loss(store: ResultsStore, run: str, step: int, loss: float) -> None:
    """Note the training loss the trainer logged at `step`."""
    with store.transaction() as db:
        db.execute("UPDATE tracked_steps SET train_loss = ? WHERE run = ? AND step = ?", (loss, run, step))


def tracked_steps(store: ResultsStore, run: str | None = None) -> list[TrackedStep]:
    """Every tracked step (of one run when given), by run then step."""
    sql = "SELECT run, step, model, train_loss, checkpoint FROM tracked_steps"
    where, params = (" WHERE run = ?", (run,)) if run else ("", ())
    rows = store.query(sql + where + " ORDER BY run, step", params)
    return [TrackedStep(*row) for row in rows]


def record_gate_checks(store: ResultsStore, run: str, step: int, checks: list[GateCheck]) -> None:
    with store.transaction() as db:
        db.executemany(
            "INSERT OR REPLACE INTO gate_checks VALUES (?,?,?,?,?,?,?,?)",
            [
                (
                    run,
                    step,
                    c.gate,
                    c.metric,
                    int(c.failed),
                    None if c.observed is None else json.dumps(asdict(c.observed)),
                    c.reason,
                    _now(),
                )
                for c in checks
            ],
        )


def gate_checks(store: ResultsStore, run: str, step: int) -> list[GateCheck]:
    rows = store.query(
        "SELECT gate, metric, failed, observed, reason FROM gate_checks "
        "WHERE run = ? AND step = ? ORDER BY rowid",
        (run, step),
    )
    return [
        GateCheck(
            str(gate),
            str(metric),
            bool(failed),
            None if observed is None else Estimate(**json.loads(str(observed))),
            str(reason),
        )
        for gate, metric, failed, observed, reason in rows
    ]


def set_run_status(
    store: ResultsStore, run: str, status: RunState, reason: str = "", detail: str = "{}"
) -> None:
    with store.transaction() as db:
        db.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?)", (run, status, reason, detail, _now()))


def run_status(store: ResultsStore, run: str) -> tuple[RunState, str] | None:
    """(status, reason) of a run, or None when it never started."""
    rows = store.query("SELECT status, reason FROM runs WHERE run = ?", (run,))
    if not rows:
        return None
    status, reason = rows[0]
    return status, reason


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
