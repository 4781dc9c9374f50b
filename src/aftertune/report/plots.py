"""Charts for the experiment report, each returned as an inline SVG string ready to put in a page.

Figures are drawn on matplotlib's Agg canvas without pyplot, so no display is needed and the caller's
backend is left alone. Text is drawn as paths (no fonts to load), the SVG carries no prolog, metadata or
external references, and every id is prefixed per chart so several charts can share one HTML page.
"""

from __future__ import annotations

import hashlib
import html
import io
import math
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Literal

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy import stats

from aftertune.evals.suite import MetricKind, resolve_metric_name
from aftertune.report.format import final_deltas, label_parts, metric_kind, metric_scale, recommended_labels
from aftertune.report.summary import CheckpointResult, ExperimentSummary
from aftertune.stats import Estimate

_BASE_COLOUR = "#444444"
_FAIL_COLOUR = "#d62728"
_RECOMMENDED_COLOUR = "#e6a700"
#: arms take tab10's colours in run order, skipping its red, which marks failed gates
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def metric_curves(summary: ExperimentSummary, metric: str) -> str:
    """`metric` over training steps: per arm the seeds' mean with its 95% CI band, each seed thinly,
    the base model as a reference line with its CI band, and an x where a checkpoint failed a gate."""
    metric = resolve_metric_name(metric, summary.metric_names)
    kind = metric_kind(summary, metric)
    scale = metric_scale(kind)
    colours = arm_colours(summary)
    with _style():
        fig = _figure(7.5, 4.2)
        ax = fig.add_subplot()
        base = summary.base.metrics.get(metric)
        if base is not None:
            e = base.estimate
            ax.axhspan(scale * e.low, scale * e.high, color=_BASE_COLOUR, alpha=0.12, lw=0)
            ax.axhline(scale * e.value, color=_BASE_COLOUR, ls="--", lw=1.2, label="base model (95% CI)")
        seed_legend = True
        failed_legend = True
        for arm, runs in _runs_by_arm(summary).items():
            colour = colours[arm]
            by_step: dict[int, list[Estimate]] = {}
            for run in runs:
                points = [(c.step, c.metrics[metric].estimate) for c in run if metric in c.metrics]
                for step, e in points:
                    by_step.setdefault(step, []).append(e)
                if len(runs) > 1 and points:
                    ax.plot(
                        [s for s, _ in points],
                        [scale * e.value for _, e in points],
                        color=colour,
                        lw=0.8,
                        alpha=0.45,
                        marker=".",
                        ms=3,
                        label="single seeds" if seed_legend else None,
                    )
                    seed_legend = False
                failed = [c for c in run if metric in c.metrics and not c.passes_gates]
                if failed:
                    ax.scatter(
                        [c.step for c in failed],
                        [scale * c.metrics[metric].estimate.value for c in failed],
                        marker="X",
                        s=70,
                        color=_FAIL_COLOUR,
                        edgecolors="white",
                        linewidths=0.6,
                        zorder=5,
                        label="gate failed" if failed_legend else None,
                    )
                    failed_legend = False
            if not by_step:
                continue
            steps = sorted(by_step)
            bands = [seed_mean_band(by_step[s]) for s in steps]
            mean, low, high = (np.array(column) * scale for column in zip(*bands, strict=True))
            if kind == "rate":  # a rate's band cannot leave [0, 100]%
                low, high = np.clip(low, 0, 100), np.clip(high, 0, 100)
            n_seeds = max(len(v) for v in by_step.values())
            ax.fill_between(steps, low, high, color=colour, alpha=0.18, lw=0)
            ax.plot(
                steps,
                mean,
                color=colour,
                lw=2.2,
                marker="o",
                ms=4,
                label=f"{arm} (mean of {n_seeds} seed{'s' * (n_seeds != 1)}, 95% CI)",
            )
        ax.set_xlabel("training step")
        all_steps = sorted({c.step for r in summary.runs for c in r.checkpoints if metric in c.metrics})
        if 0 < len(all_steps) <= 12:  # few checkpoints: tick exactly the evaluated steps
            ax.set_xticks(all_steps)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(_axis_label(summary, metric, kind))
        ax.set_title(metric, loc="left", fontweight="bold")
        _legend(ax)
        return _svg(fig, f"curves:{metric}")


def delta_bars(summary: ExperimentSummary, reference: Literal["base", "control"]) -> str:
    """Each arm's last-step delta per metric vs the base model or the control arm, with 95% CI error
    bars; significant deltas are solid and starred, the others faint and hatched. Rates in points."""
    deltas = final_deltas(summary, reference)
    what = (
        "the base model"
        if reference == "base"
        else f"the control arm ({summary.control_arm or 'none'}) at the same step"
    )
    with _style():
        if not deltas:
            fig = _figure(7.5, 1.2)
            fig.text(0.5, 0.5, f"No deltas vs {what} were computed.", ha="center", va="center")
            return _svg(fig, f"deltas:{reference}:empty")
        metrics = list(dict.fromkeys(d.metric for d in deltas))
        heights = [0.9 + 0.38 * sum(d.metric == m for d in deltas) for m in metrics]
        fig = _figure(7.5, sum(heights) + 0.5)
        axes = fig.subplots(len(metrics), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
        colours = arm_colours(summary)
        for ax, metric in zip(axes, metrics, strict=True):
            rows = [d for d in deltas if d.metric == metric]
            kind = rows[0].kind
            scale = metric_scale(kind)
            y = np.arange(len(rows))[::-1]
            for yi, d in zip(y, rows, strict=True):
                e = d.estimate
                parts = label_parts(summary, d.subject)
                colour = colours.get(parts[0], _BASE_COLOUR) if parts else _BASE_COLOUR
                ax.barh(
                    yi,
                    scale * e.value,
                    height=0.6,
                    color=colour,
                    alpha=1.0 if d.significant else 0.3,
                    hatch=None if d.significant else "///",
                    edgecolor="black" if d.significant else colour,
                    linewidth=0.8,
                )
                ax.errorbar(
                    scale * e.value,
                    yi,
                    xerr=[[scale * (e.value - e.low)], [scale * (e.high - e.value)]],
                    fmt="none",
                    ecolor="black",
                    elinewidth=1,
                    capsize=3,
                )
                unit = " pts" if kind == "rate" else ""
                # the label sits past the error bar's far end from zero, so it never covers the bar
                right = e.value >= 0
                ax.annotate(
                    f"{scale * e.value:+.3g}{unit}{' *' if d.significant else ''}",
                    (scale * (e.high if right else e.low), yi),
                    xytext=(5 if right else -5, 0),
                    textcoords="offset points",
                    ha="left" if right else "right",
                    va="center",
                    fontsize=8,
                    fontweight="bold" if d.significant else "normal",
                )
            ax.axvline(0, color="black", lw=0.8)
            # every bar of a chart has the same kind of reference, named in the figure's title
            ax.set_yticks(y, [d.subject for d in rows], fontsize=8)
            ax.set_ylim(-0.7, len(rows) - 0.3)
            ax.grid(axis="y", visible=False)
            ax.margins(x=0.25)
            unit = "percentage points" if kind == "rate" else kind
            better = _direction(rows[0].higher_is_better).strip(" ()")
            ax.set_title(f"{metric}: delta in {unit}" + (f", {better}" if better else ""), loc="left")
        fig.suptitle(
            f"Each arm's last step vs {what}\nsolid and *: the 95% CI excludes 0; hatched: it does not",
            x=0.01,
            ha="left",
            fontsize=9,
            fontweight="bold",
        )
        return _svg(fig, f"deltas:{reference}")


def tradeoff(summary: ExperimentSummary, task_metric: str, safety_metric: str) -> str:
    """Every checkpoint as a point (task metric on x, safety metric on y), arms by colour, steps labelled,
    each run's recommended checkpoint ringed and gate-failing checkpoints crossed."""
    task_metric = resolve_metric_name(task_metric, summary.metric_names)
    safety_metric = resolve_metric_name(safety_metric, summary.metric_names)
    x_kind, y_kind = metric_kind(summary, task_metric), metric_kind(summary, safety_metric)
    sx, sy = metric_scale(x_kind), metric_scale(y_kind)
    colours = arm_colours(summary)
    recommended = recommended_labels(summary)
    recommended_legend = True

    def point(c: CheckpointResult) -> tuple[float, float] | None:
        if task_metric not in c.metrics or safety_metric not in c.metrics:
            return None
        return sx * c.metrics[task_metric].estimate.value, sy * c.metrics[safety_metric].estimate.value

    with _style():
        fig = _figure(7.5, 5.0)
        ax = fig.add_subplot()
        base = point(summary.base)
        if base is not None:
            ax.scatter(*base, marker="*", s=180, color=_BASE_COLOUR, zorder=4, label="base model")
            ax.annotate("base", base, xytext=(6, 4), textcoords="offset points", fontsize=8)
        arm_legend: set[str] = set()
        failed_legend = True
        for run in summary.runs:
            colour = colours[run.arm]
            trail = [(c, p) for c in run.checkpoints if (p := point(c)) is not None]
            if not trail:
                continue
            xs, ys = [p[0] for _, p in trail], [p[1] for _, p in trail]
            # a run's checkpoints joined in step order show which way training moved it
            ax.plot(xs, ys, color=colour, lw=0.7, alpha=0.5)
            ax.scatter(
                xs,
                ys,
                s=32,
                color=colour,
                edgecolors="white",
                linewidths=0.5,
                zorder=3,
                label=run.arm if run.arm not in arm_legend else None,
            )
            arm_legend.add(run.arm)
            for c, p in trail:
                ax.annotate(
                    f"{c.step}", p, xytext=(7, -10), textcoords="offset points", fontsize=6.5, color=colour
                )
                if not c.passes_gates:
                    ax.scatter(
                        *p,
                        marker="x",
                        s=80,
                        color=_FAIL_COLOUR,
                        linewidths=1.8,
                        zorder=5,
                        label="gate failed" if failed_legend else None,
                    )
                    failed_legend = False
                if c.label in recommended:
                    ax.scatter(
                        *p,
                        s=320,
                        facecolors="none",
                        edgecolors=_RECOMMENDED_COLOUR,
                        linewidths=2.5,
                        zorder=6,
                        label="recommended for its run" if recommended_legend else None,
                    )
                    recommended_legend = False
        ax.set_xlabel(_axis_label(summary, task_metric, x_kind))
        ax.set_ylabel(_axis_label(summary, safety_metric, y_kind))
        ax.set_title(f"{safety_metric} vs {task_metric}", loc="left", fontweight="bold")
        ax.set_title(
            "every checkpoint; numbers are training steps", loc="right", fontsize=7.5, color="#555555"
        )
        _legend(ax, markerscale=0.7)
        return _svg(fig, f"tradeoff:{task_metric}:{safety_metric}")


def seed_mean_band(estimates: Sequence[Estimate]) -> tuple[float, float, float]:
    """The seeds' mean value at one step and its 95% interval: (mean, low, high).

    One seed: its own interval. Several: their intervals combined as independent estimates of the mean
    (half-widths add in quadrature and divide by k, keeping each side's asymmetry), widened to z*SD/sqrt(k)
    of the seeds' values when the seeds disagree more than their own intervals say.
    """
    if len(estimates) == 1:
        e = estimates[0]
        return e.value, e.low, e.high
    k = len(estimates)
    values = np.array([e.value for e in estimates])
    mean = float(values.mean())
    below = math.sqrt(sum((e.value - e.low) ** 2 for e in estimates)) / k
    above = math.sqrt(sum((e.high - e.value) ** 2 for e in estimates)) / k
    z = float(stats.norm.ppf(0.5 + estimates[0].confidence / 2))
    between = z * float(values.std(ddof=1)) / math.sqrt(k)
    return mean, mean - max(below, between), mean + max(above, between)


def arm_colours(summary: ExperimentSummary) -> dict[str, str]:
    """A fixed colour per arm, in run order, the same in every chart of a report."""
    arms = dict.fromkeys(r.arm for r in summary.runs)
    return {arm: _PALETTE[i % len(_PALETTE)] for i, arm in enumerate(arms)}


def _runs_by_arm(summary: ExperimentSummary) -> dict[str, list[tuple[CheckpointResult, ...]]]:
    arms: dict[str, list[tuple[CheckpointResult, ...]]] = {}
    for run in summary.runs:
        arms.setdefault(run.arm, []).append(run.checkpoints)
    return arms


def _legend(ax: Axes, **kwargs: float) -> None:
    # a chart with nothing labelled (no run measured the metric yet) gets no empty legend box
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7.5, loc="best", framealpha=0.85, **kwargs)


def _direction(higher_is_better: bool | None) -> str:
    return {True: " (higher is better)", False: " (lower is better)", None: ""}[higher_is_better]


def _axis_label(summary: ExperimentSummary, metric: str, kind: MetricKind) -> str:
    better = next(
        (c.metrics[metric].higher_is_better for c in summary.checkpoints if metric in c.metrics), None
    )
    unit = " (%)" if kind == "rate" else ""
    return f"{metric}{unit}{_direction(better)}"


def _style() -> AbstractContextManager[None]:
    """rcParams every chart is drawn under."""
    return mpl.rc_context(
        {
            "svg.fonttype": "path",  # glyphs as paths: viewable with no fonts installed
            "svg.hashsalt": "aftertune",  # fixed, so the same summary gives the same SVG
            "font.family": "DejaVu Sans",  # ships with matplotlib
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
        }
    )


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


_ID = re.compile(r'\bid="([^"]+)"')


def _svg(fig: Figure, name: str) -> str:
    """The figure as a bare <svg> element: no prolog, metadata, comments or global style; ids prefixed."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.DOTALL)
    text = re.sub(r"<!--.*?-->\s*", "", text, flags=re.DOTALL)
    # matplotlib's `*{stroke-linejoin...}` rule would restyle the whole page once inlined; the report's
    # stylesheet sets the same on svg content
    text = re.sub(r"<defs>\s*<style[^>]*>.*?</style>\s*</defs>\s*", "", text, flags=re.DOTALL)
    # ids must be unique in a page holding several charts: a prefix from the chart's name and content
    prefix = "c" + hashlib.sha256(f"{name}\n{text}".encode()).hexdigest()[:8] + "-"
    ids = set(_ID.findall(text))
    text = _ID.sub(lambda m: f'id="{prefix}{m[1]}"', text)
    text = re.sub(
        r'(href="#|url\(#)([^")]+)',
        lambda m: m[1] + (prefix + m[2] if m[2] in ids else m[2]),
        text,
    )
    label = html.escape(name)
    return text.replace(
        "<svg ", f'<svg class="chart" role="img" data-chart="{label}" aria-label="{label}" ', 1
    ).strip()
