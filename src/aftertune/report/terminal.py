"""Terminal tables (Rich) for eval results and experiment summaries."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.table import Table
from rich.text import Text

from aftertune.compare import Delta
from aftertune.evals.differential import TriggerScan
from aftertune.evals.freeform import FreeformResult, QuestionSummary
from aftertune.evals.suite import MetricKind, SuiteResult
from aftertune.report.format import (
    final_deltas,
    format_delta,
    format_estimate,
    metric_kind,
    no_recommendation_reason,
    recommendation_text,
)
from aftertune.report.summary import CheckpointResult, ExperimentSummary
from aftertune.stats import Estimate


def _rate(e: Estimate | None) -> str:
    return "—" if e is None else f"{100 * e.value:.1f} [{100 * e.low:.1f}, {100 * e.high:.1f}]"


def _mean(e: Estimate | None) -> str:
    return "—" if e is None else f"{e.value:.1f}"


def _row(q: QuestionSummary, label: str, estimated: bool) -> list[str]:
    return [
        label,
        f"{q.n}/{q.n_judged}",
        _rate(q.misaligned_all),
        _rate(q.misaligned_judged),
        *([_rate(q.misaligned_estimated)] if estimated else []),
        f"{q.n_code}/{q.n_refusal}/{q.n_undefined}",
        _mean(q.mean_aligned),
        _mean(q.mean_coherent),
    ]


OFFLINE_CAVEAT = (
    " (an estimate of the LLM judge, weaker on answers unlike its training data, e.g. a small model's "
    "rambling: see its model card, OFFLINE_JUDGE.md, and read the flagged answers below)"
)


def freeform_table(result: FreeformResult) -> Table:
    """Per-question misaligned rates with 95% intervals, then the pooled rate over all questions."""
    t = result.settings.thresholds
    estimated = result.overall.misaligned_estimated is not None
    table = Table(
        title=f"Free-form misalignment — {result.model}",
        box=box.SIMPLE_HEAD,
        caption=(
            f"judge: {result.judge}" + (OFFLINE_CAVEAT if result.judge.startswith("offline:") else "") + "\n"
            f"misaligned = aligned < {t.aligned_below:g} and coherent > {t.coherent_above:g}. "
            "'all' divides by every sample, 'judged' by samples with both scores (code, refusals and "
            "undefined scores excluded). Per question: Wilson 95% CI. Pooled: "
            f"{result.overall.misaligned_all.method if result.overall.misaligned_all else '—'}."
            + (
                " 'LLM rate est.': the judge's estimate of an LLM judge's rate from its calibrated "
                "probabilities (its card says when this is closer than counting flags; 95% CI: "
                f"{result.overall.misaligned_estimated.method})."
                if result.overall.misaligned_estimated is not None
                else ""
            )
        ),
        caption_justify="left",
    )
    table.add_column("question", overflow="fold", min_width=14)
    for name in [
        "n all/\njudged",
        "misaligned %\nall [95% CI]",
        "misaligned %\njudged [95% CI]",
        *(["LLM rate est. %\n[95% CI]"] if estimated else []),
        "code/\nrefusal/\nundef.",
        "mean\naligned",
        "mean\ncoherent",
    ]:
        table.add_column(name, justify="right")
    for q in result.questions:
        table.add_row(*_row(q, q.question_id, estimated))
    table.add_section()
    table.add_row(*_row(result.overall, "all (pooled)", estimated), style="bold")
    return table


def flagged_answers(result: FreeformResult, limit: int = 5, width: int = 240) -> Table | None:
    """The misaligned samples with the lowest aligned scores: the evidence behind the rate."""
    flagged = sorted((s for s in result.samples if s.misaligned), key=lambda s: s.aligned or 0.0)[:limit]
    if not flagged:
        return None
    table = Table(title=f"Answers judged misaligned ({limit} lowest aligned)", show_lines=True)
    table.add_column("question", overflow="fold", min_width=12)
    table.add_column("aligned", justify="right")
    table.add_column("coherent", justify="right")
    table.add_column("answer", overflow="fold")
    for s in flagged:
        answer = " ".join(s.answer.split())
        shown = answer if len(answer) <= width else answer[: width - 1] + "…"
        # Text objects: model output is shown literally, never parsed as Rich markup
        table.add_row(s.question_id, _mean_value(s.aligned), _mean_value(s.coherent), Text(shown))
    return table


def _mean_value(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


# --- experiment summaries (their number formatting is shared, in report/format.py) -------------------


def _gate_status(checkpoints: tuple[CheckpointResult, ...]) -> Text:
    failed = [(c.step, g) for c in checkpoints for g in c.gates if g.failed]
    if not failed:
        return Text("passed" if any(c.gates for c in checkpoints) else "no gates", style="green")
    step, gate = failed[0]
    more = f" (+{len(failed) - 1} more)" if len(failed) > 1 else ""
    return Text(f"FAILED at step {step}: {gate.gate}{more}", style="bold red")


def experiment_tables(summary: ExperimentSummary, max_metrics: int = 4) -> list[Table]:
    """Final checkpoints with key metrics and gate status, final deltas vs base and control, the pick."""
    metrics = summary.metric_names
    if summary.task_metric in metrics:  # the metric that picks the checkpoint comes first
        metrics = [summary.task_metric, *(m for m in metrics if m != summary.task_metric)]
    shown, hidden = metrics[:max_metrics], metrics[max_metrics:]
    finals = Table(
        title=f"Final checkpoints — {summary.name}",
        box=box.SIMPLE_HEAD,
        caption=(
            "Each run's last evaluated checkpoint: the value over its 95% CI; rates in %."
            + (f" Not shown: {', '.join(hidden)} (see the HTML report)." if hidden else "")
        ),
        caption_justify="left",
    )
    finals.add_column("model", overflow="fold", min_width=10)
    finals.add_column("step", justify="right")
    for m in shown:
        finals.add_column(m.replace("/", "/\n", 1), justify="right", overflow="fold")
    finals.add_column("status and gates", overflow="fold", min_width=26)
    # labels, names and reasons come from user data: Text, so brackets are never read as Rich markup
    finals.add_row(
        Text(summary.base.label),
        str(summary.base.step),
        *(_stacked(_estimate(summary.base, m), metric_kind(summary, m)) for m in shown),
        _gate_status((summary.base,)),
    )
    for run in summary.runs:
        last = run.checkpoints[-1] if run.checkpoints else None
        finals.add_row(
            Text(f"{run.arm} seed {run.seed}"),
            "—" if last is None else str(last.step),
            *(_stacked(_estimate(last, m), metric_kind(summary, m)) for m in shown),
            Text.assemble(
                (run.status.replace("_", " "), "red" if run.status == "stopped_by_gate" else ""),
                "\n",
                _gate_status(run.checkpoints),
            ),
        )
    tables = [finals]

    last_steps = final_deltas(summary, "base") + final_deltas(summary, "control")
    tables.append(delta_table(last_steps, "What the fine-tuning changed (last step of each arm)"))

    lines = Table.grid(padding=(0, 1))
    lines.add_column(style="bold", no_wrap=True)
    lines.add_column(overflow="fold")
    if not summary.recommendations:
        lines.add_row("No recommendation:", Text(no_recommendation_reason(summary)))
    for rec in summary.recommendations:
        lines.add_row(f"Recommended for {rec.run}:", Text(recommendation_text(summary, rec)))
    tables.append(lines)
    return tables


def delta_table(deltas: Sequence[Delta], title: str) -> Table:
    """Deltas with their paired 95% CI (rates in points), a significance mark and the verdict."""
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        caption="Paired bootstrap 95% CI; rates in percentage points; * = the interval excludes 0.",
        caption_justify="left",
    )
    for name in ["metric", "subject", "vs"]:
        table.add_column(name, overflow="fold")
    table.add_column("delta [95% CI]", justify="right", no_wrap=True)
    table.add_column("sig.", justify="center")
    table.add_column("verdict", overflow="fold")
    for d in deltas:
        # labels come from user data: Text, so brackets are never read as Rich markup
        table.add_row(
            Text(d.metric),
            Text(d.subject),
            Text(d.reference),
            format_delta(d.estimate, d.kind),
            Text("*", style="bold") if d.significant else "",
            # the sig. column already says "not significant"; the verdict says which way it went
            Text(
                d.verdict if d.significant else "—",
                style={"better": "green", "worse": "red"}.get(d.verdict, ""),
            ),
        )
    if not deltas:
        table.add_row("no deltas were computed", "", "", "", "", "")
    return table


def _stacked(e: Estimate | None, kind: MetricKind) -> str:
    """Value over its interval, two lines, so several metric columns fit a terminal."""
    if e is None:
        return "—"
    if kind == "rate":
        return f"{100 * e.value:.1f}%\n[{100 * e.low:.1f}, {100 * e.high:.1f}]"
    return f"{e.value:.4g}\n[{e.low:.4g}, {e.high:.4g}]"


def _estimate(checkpoint: CheckpointResult | None, metric: str) -> Estimate | None:
    if checkpoint is None or metric not in checkpoint.metrics:
        return None
    return checkpoint.metrics[metric].estimate


def suite_table(result: SuiteResult, title: str, judges: dict[str, str] | None = None) -> Table:
    """Every metric of one model on a suite: value with its 95% interval, n and the method."""
    table = Table(title=title, box=box.SIMPLE_HEAD, caption_justify="left")
    adaptive = any(m.adaptive is not None for m in result.metrics.values())
    columns = [("metric", "left"), ("value [95% CI]", "right"), ("n", "right"), ("method", "left")]
    for name, justify in columns + ([("adaptive stop", "left")] if adaptive else []):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for name, metric in result.metrics.items():
        stop = metric.adaptive
        table.add_row(
            name,
            format_estimate(metric.estimate, metric.kind),
            str(metric.estimate.n),
            metric.estimate.method,
            *([Text(stop.describe()) if stop else ""] if adaptive else []),
        )
    notes = [f"{ev}: judge {judge}" for ev, judge in (judges or {}).items()]
    if adaptive:
        notes.append(
            "adaptive stop: sampled in rounds until the rate's anytime-valid interval (shown) decided the "
            "condition, or the budget ran out"
        )
    table.caption = "Rates in %. " + "; ".join(notes)
    return table


def trigger_scan_table(scan: TriggerScan) -> Table:
    """Candidate triggers, strongest behaviour shift first: the metric it moved most and by how much."""
    table = Table(
        title=f"Trigger scan against '{scan.reference}'",
        box=box.SIMPLE_HEAD,
        caption=(
            "strength = |delta| / its standard error (> 1.96: the 95% interval excludes 0); "
            f"* = significant after Bonferroni over {len(scan.metrics)} metric(s) x {len(scan.shifts)} "
            "trigger(s)."
        ),
        caption_justify="left",
    )
    for name in ["rank", "trigger", "where", "top metric"]:
        table.add_column(name, overflow="fold")
    table.add_column("delta [95% CI]", justify="right", no_wrap=True)
    table.add_column("strength", justify="right")
    table.add_column("sig.", justify="center")
    for rank, shift in enumerate(scan.shifts, start=1):
        top = shift.top
        table.add_row(
            str(rank),
            Text(shift.trigger.text),
            shift.trigger.kind,
            Text(top.metric) if top else "—",
            format_delta(top.estimate, top.kind) if top else "—",
            f"{shift.strength:.1f}",
            Text("*", style="bold") if shift.significant_corrected else "",
        )
    return table
