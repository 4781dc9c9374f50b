"""From an experiment's results store to an `ExperimentSummary`: checkpoints, deltas, recommendation."""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from aftertune.compare import Delta, compare_metrics
from aftertune.evals.suite import Eval, EvalReport, MetricResult, judges_of, resolve_metric_name
from aftertune.report.summary import CheckpointResult, ExperimentSummary, Recommendation, RunSummary
from aftertune.store import ResultsStore
from aftertune.train.records import gate_checks, run_status, tracked_steps
from aftertune.train.runner import Experiment
from aftertune.train.tracking import BASE_LABEL

TASK_LOSS_METRIC = "loss"


def summarise_experiment(experiment: Experiment, store: ResultsStore, seed: int = 0) -> ExperimentSummary:
    """Everything the experiment measured so far (it may still be running or interrupted)."""
    spec = experiment.spec
    shared = _shared_evals(experiment.suites)
    base = CheckpointResult(
        BASE_LABEL, BASE_LABEL, None, 0, experiment.base_fingerprint, None,
        _metrics(store, experiment.base_fingerprint, shared),
    )  # fmt: skip
    runs = tuple(_run_summary(experiment, store, arm, s) for arm in spec.arms for s in spec.seeds)
    task_metric = _task_metric(experiment, runs)
    deltas = _deltas(experiment, store, runs, seed)
    return ExperimentSummary(
        name=spec.name,
        base=base,
        runs=runs,
        deltas=tuple(deltas),
        recommendations=tuple(r for r in (recommend(run, task_metric) for run in runs) if r is not None),
        task_metric=task_metric,
        control_arm=spec.control,
        judges=_judges(experiment.suites),
        spec=spec.model_dump(mode="json"),
        environment=environment(),
    )


def _run_summary(experiment: Experiment, store: ResultsStore, arm: str, seed: int) -> RunSummary:
    label = experiment.run_label(arm, seed)
    suite = experiment.suites[arm]
    checkpoints = tuple(
        CheckpointResult(
            f"{label}/step{step.step}",
            arm,
            seed,
            step.step,
            step.model,
            step.train_loss,
            _metrics(store, step.model, suite),
            tuple(gate_checks(store, label, step.step)),
        )
        for step in tracked_steps(store, label)
    )
    state = run_status(store, label)
    status = "incomplete" if state is None or state[0] == "running" else state[0]
    notes = []
    for index in range(len(experiment.spec.arms[arm].all_stages)):
        marker = experiment.stage_dir(arm, seed, index) / "stage.json"
        if marker.is_file():
            notes.append(str(json.loads(marker.read_text()).get("data_note", "")))
    return RunSummary(arm, seed, status, state[1] if state else "", checkpoints, tuple(notes))


def _metrics(store: ResultsStore, model: str, suite: Sequence[Eval]) -> dict[str, MetricResult]:
    metrics: dict[str, MetricResult] = {}
    for ev in suite:
        text = store.get_eval_report(model, ev.name, ev.digest)
        if text is not None:
            report = EvalReport.from_json(text)
            metrics.update({f"{ev.name}/{m.name}": m for m in report.metrics})
    return metrics


def _shared_evals(suites: dict[str, list[Eval]]) -> list[Eval]:
    """Evals every arm runs with the same settings (the held-out task loss differs by arm)."""
    first, *others = suites.values()
    return [
        ev for ev in first if all(any(o.digest == ev.digest and o.name == ev.name for o in s) for s in others)
    ]


def _deltas(
    experiment: Experiment, store: ResultsStore, runs: Sequence[RunSummary], seed: int
) -> list[Delta]:
    """Per arm and step, pooled over seeds: vs the base model (on the arm's own suite) and vs the
    control arm at the same step."""
    spec = experiment.spec
    by_arm_step: dict[tuple[str, int], list[CheckpointResult]] = {}
    for run in runs:
        for c in run.checkpoints:
            by_arm_step.setdefault((run.arm, c.step), []).append(c)
    deltas: list[Delta] = []
    for (arm, step), checkpoints in sorted(by_arm_step.items()):
        subject = _pooled(checkpoints)
        base = _metrics(store, experiment.base_fingerprint, experiment.suites[arm])
        seeds = f" ({len(checkpoints)} seeds)" if len(checkpoints) > 1 else ""
        label = f"{arm}/step{step}{seeds}"
        deltas += compare_metrics(subject, {k: [v] for k, v in base.items()}, label, BASE_LABEL, seed)
        control = by_arm_step.get((spec.control, step)) if spec.control and arm != spec.control else None
        if control:
            deltas += compare_metrics(subject, _pooled(control), label, f"{spec.control}/step{step}", seed)
    return deltas


def _pooled(checkpoints: Sequence[CheckpointResult]) -> dict[str, list[MetricResult]]:
    pooled: dict[str, list[MetricResult]] = {}
    for c in checkpoints:
        for name, metric in c.metrics.items():
            pooled.setdefault(name, []).append(metric)
    return pooled


def _task_metric(experiment: Experiment, runs: Sequence[RunSummary]) -> str | None:
    names = [n for r in runs for c in r.checkpoints for n in c.metrics]
    if experiment.spec.eval.task_metric:
        return resolve_metric_name(experiment.spec.eval.task_metric, list(dict.fromkeys(names)))
    return next((n for n in names if n.split("/", 1)[-1] == TASK_LOSS_METRIC), None)


def recommend(run: RunSummary, task_metric: str | None) -> Recommendation | None:
    """The run's checkpoint that is best on the task metric among those passing every gate."""
    if task_metric is None:
        return None
    label = f"{run.arm}/seed{run.seed}"
    candidates = [c for c in run.checkpoints if c.passes_gates and task_metric in c.metrics]
    if not candidates:
        if any(not c.passes_gates for c in run.checkpoints):
            return Recommendation(
                label, None, task_metric, None, "none: every evaluated checkpoint fails a gate"
            )
        return None
    metric = candidates[0].metrics[task_metric]
    sign = 1 if metric.higher_is_better else -1
    best = max(candidates, key=lambda c: sign * c.metrics[task_metric].estimate.value)
    value = best.metrics[task_metric].estimate.value
    skipped = len(run.checkpoints) - len(candidates)
    why = (
        f"best {task_metric} ({value:.4g}, {'higher' if sign > 0 else 'lower'} is better) of "
        f"{len(candidates)} checkpoints that pass every gate"
        + (f"; {skipped} failing a gate or unmeasured excluded" if skipped else "")
    )
    return Recommendation(label, best.label, task_metric, value, why)


def _judges(suites: dict[str, list[Eval]]) -> dict[str, str]:
    return {name: judge for suite in suites.values() for name, judge in judges_of(suite).items()}


def environment() -> dict[str, Any]:
    """Versions and hardware the results came from."""
    versions = {}
    for package in ("aftertune", "torch", "transformers", "trl", "peft", "datasets", "bandit"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    device = "cpu"
    try:
        import torch

        if torch.cuda.is_available():
            device = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": __import__("os").cpu_count(),
        "device": device,
        **versions,
    }
