"""What an experiment report shows, as typed records: built from the results store, rendered by the
terminal table, `summary.json` and the HTML report alike."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from aftertune.compare import Delta
from aftertune.evals.suite import MetricResult
from aftertune.train.gates import GateCheck

__all__ = ["CheckpointResult", "Delta", "ExperimentSummary", "Recommendation", "RunSummary"]

RunStatus = Literal["done", "stopped_by_gate", "incomplete"]


@dataclass(frozen=True)
class CheckpointResult:
    """One evaluated model: the base model (arm "base", step 0) or a checkpoint of a training run."""

    #: e.g. "base" or "insecure/seed0/step20"
    label: str
    arm: str
    seed: int | None
    step: int
    #: the model fingerprint its results are stored under
    model: str
    #: the training loss logged nearest this step (None for the base model)
    train_loss: float | None
    #: eval/metric -> result
    metrics: dict[str, MetricResult]
    gates: tuple[GateCheck, ...] = ()

    @property
    def passes_gates(self) -> bool:
        return not any(g.failed for g in self.gates)


@dataclass(frozen=True)
class RunSummary:
    """One training run (an arm with one seed) and its evaluated checkpoints, in step order."""

    arm: str
    seed: int
    status: RunStatus
    #: why it stopped early (the failed gates), empty otherwise
    stopped_reason: str
    checkpoints: tuple[CheckpointResult, ...]
    #: rows dropped or truncated for length, per data set file, as counted when the data was prepared
    data_notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recommendation:
    """A run's checkpoint to use: the best on the task metric among those that pass every gate
    (one per run: each arm learns its own task, so task metrics compare within a run)."""

    #: the run, e.g. "insecure/seed0"
    run: str
    #: the recommended checkpoint's label, or None when no checkpoint passes every gate
    checkpoint: str | None
    task_metric: str
    #: the recommended checkpoint's task metric value (None with no recommendation)
    value: float | None
    why: str


@dataclass(frozen=True)
class ExperimentSummary:
    """Everything an experiment measured, ready to render."""

    name: str
    base: CheckpointResult
    runs: tuple[RunSummary, ...]
    deltas: tuple[Delta, ...]
    #: one per run that has a task metric
    recommendations: tuple[Recommendation, ...]
    #: the task metric (eval/metric) that picks the recommended checkpoints, when the suite has one
    task_metric: str | None
    control_arm: str | None
    #: which judge produced the judged metrics, per eval (every report says so)
    judges: dict[str, str] = field(default_factory=dict)
    #: the experiment spec as the user wrote it (parsed), and the software/hardware it ran on
    spec: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def checkpoints(self) -> list[CheckpointResult]:
        """The base model, then every checkpoint of every run."""
        return [self.base, *(c for r in self.runs for c in r.checkpoints)]

    @property
    def metric_names(self) -> list[str]:
        """Every eval/metric measured on any model, in first-seen order."""
        return list(dict.fromkeys(m for c in self.checkpoints for m in c.metrics))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n"
