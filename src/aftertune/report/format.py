"""How numbers and labels are shown, shared by the terminal, HTML and plot renderers."""

from __future__ import annotations

import re
from typing import Literal

from aftertune.compare import Delta
from aftertune.evals.suite import MetricKind
from aftertune.report.summary import ExperimentSummary, Recommendation
from aftertune.stats import Estimate

#: A subject or reference label: "ARM/stepN" or "ARM/stepN (K seeds)" (pooled over seeds), or
#: "ARM/seedK/stepN" (one run).
_STEP_LABEL = re.compile(r"^(?P<arm>.+?)(?:/seed(?P<seed>\d+))?/step(?P<step>\d+)(?: \(\d+ seeds?\))?$")


def metric_scale(kind: MetricKind) -> float:
    """Factor from a metric's stored value to what is shown: rates in % (deltas in points), others as is."""
    return 100.0 if kind == "rate" else 1.0


def format_value(value: float, kind: MetricKind) -> str:
    """`12.3%` for a rate, `2.346` for a score or loss."""
    return f"{100 * value:.1f}%" if kind == "rate" else f"{value:.4g}"


def format_estimate(e: Estimate | None, kind: MetricKind) -> str:
    """`12.3% [8.1, 17.0]` for a rate, `2.346 [2.301, 2.39]` for a score or loss, `—` when missing."""
    if e is None:
        return "—"
    if kind == "rate":
        return f"{100 * e.value:.1f}% [{100 * e.low:.1f}, {100 * e.high:.1f}]"
    return f"{e.value:.4g} [{e.low:.4g}, {e.high:.4g}]"


def format_delta(e: Estimate | None, kind: MetricKind) -> str:
    """`+4.2 pts [+1.0, +7.5]` for a rate, `-0.0312 [-0.05, -0.01]` otherwise, `—` when missing."""
    if e is None:
        return "—"
    if kind == "rate":
        return f"{100 * e.value:+.1f} pts [{100 * e.low:+.1f}, {100 * e.high:+.1f}]"
    return f"{e.value:+.3g} [{e.low:+.3g}, {e.high:+.3g}]"


def label_parts(summary: ExperimentSummary, label: str) -> tuple[str, int | None, int] | None:
    """(arm, seed or None when pooled over seeds, step) of a checkpoint or delta label; None if unknown."""
    for c in summary.checkpoints:
        if c.label == label:
            return c.arm, c.seed, c.step
    match = _STEP_LABEL.match(label)
    if match is None:
        return None
    return match["arm"], None if match["seed"] is None else int(match["seed"]), int(match["step"])


def final_deltas(summary: ExperimentSummary, reference: Literal["base", "control"]) -> list[Delta]:
    """The deltas at each arm's last measured step, per metric, vs the base model or the control arm.

    Where an arm has a delta pooled over its seeds at that step, only the pooled one is kept; otherwise
    each seed's. Ordered by metric, then arm (as the runs are), then seed.
    """
    wanted = [d for d in summary.deltas if (d.reference == "base") == (reference == "base")]
    parts = {d.subject: label_parts(summary, d.subject) for d in wanted}
    last: dict[tuple[str, str], int] = {}
    pooled: set[tuple[str, str, int]] = set()
    for d in wanted:
        p = parts[d.subject]
        if p is None:
            continue
        arm, seed, step = p
        last[d.metric, arm] = max(step, last.get((d.metric, arm), step))
        if seed is None:
            pooled.add((d.metric, arm, step))
    chosen = []
    for d in wanted:
        p = parts[d.subject]
        if p is None or p[2] != last[d.metric, p[0]]:
            continue
        if p[1] is not None and (d.metric, p[0], p[2]) in pooled:
            continue
        chosen.append(d)
    metric_order = {m: i for i, m in enumerate(summary.metric_names)}
    arm_order = {a: i for i, a in enumerate(dict.fromkeys(r.arm for r in summary.runs))}

    def order(d: Delta) -> tuple[int, int, int]:
        arm, seed, _ = parts[d.subject] or ("", None, 0)
        return metric_order.get(d.metric, len(metric_order)), arm_order.get(arm, len(arm_order)), seed or -1

    return sorted(chosen, key=order)


def metric_kind(summary: ExperimentSummary, metric: str) -> MetricKind:
    """How `metric` is shown, as its first measurement says ("score" when it was never measured)."""
    for c in summary.checkpoints:
        if metric in c.metrics:
            return c.metrics[metric].kind
    return "score"


def recommendation_text(summary: ExperimentSummary, rec: Recommendation) -> str:
    """`insecure/seed0/step20 — task_loss/loss = 1.31. WHY`, or why the run has none."""
    if rec.checkpoint is None or rec.value is None:
        return f"none. {rec.why}"
    value = format_value(rec.value, metric_kind(summary, rec.task_metric))
    return f"{rec.checkpoint} — {rec.task_metric} = {value}. {rec.why}"


def no_recommendation_reason(summary: ExperimentSummary) -> str:
    """Why an experiment with no recommendations at all has none, in one sentence."""
    if summary.task_metric is None:
        return "the eval suite has no task metric to pick a checkpoint by."
    if not any(summary.task_metric in c.metrics for r in summary.runs for c in r.checkpoints):
        return f"no checkpoint measured the task metric {summary.task_metric} yet."
    return "the experiment recorded none."


def recommended_labels(summary: ExperimentSummary) -> set[str]:
    """Labels of the checkpoints recommended for some run."""
    return {r.checkpoint for r in summary.recommendations if r.checkpoint is not None}
