"""The experiment report as one self-contained HTML file: inline CSS and SVG, nothing to fetch, no script.

Everything that comes from data (names, labels, prompts, model answers, notes, spec values) is escaped:
model answers are hostile input. A Content-Security-Policy that allows no script and no fetch backs
the escaping up, should a browser ever be talked into reading markup in the data.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from html import escape
from importlib import resources
from pathlib import Path

from aftertune import __version__
from aftertune.atomic import write_text
from aftertune.evals.suite import Example, MetricResult
from aftertune.report import plots
from aftertune.report.format import (
    format_delta,
    format_value,
    metric_kind,
    no_recommendation_reason,
    recommended_labels,
)
from aftertune.report.summary import ExperimentSummary


class Html(str):
    """Markup built here and already escaped; every other string that reaches the page is escaped."""


def esc(value: object) -> str:
    return value if isinstance(value, Html) else escape(str(value))


def table(head: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[int] = ()) -> Html:
    """A table in a horizontally scrolling box; cells are escaped unless they are `Html`."""
    th = "".join(f"<th>{esc(c)}</th>" for c in head)
    thead = f"<thead><tr>{th}</tr></thead>" if any(head) else ""  # key-value tables need no header
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{esc(c)}</td>' if i in numeric else f"<td>{esc(c)}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return Html(f'<div class="scroll"><table>{thead}<tbody>{"".join(body)}</tbody></table></div>')


def section(anchor: str, title: str, *parts: str) -> str:
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{"".join(parts)}</section>'


def _figure(svg: str, caption: str) -> str:
    return f'<figure class="chart">{svg}<figcaption>{esc(caption)}</figcaption></figure>'


def _direction(higher_is_better: bool | None) -> str:
    return {True: "higher", False: "lower", None: "neither"}[higher_is_better]


def _metric_info(summary: ExperimentSummary, metric: str) -> MetricResult | None:
    return next((c.metrics[metric] for c in summary.checkpoints if metric in c.metrics), None)


def _judge(summary: ExperimentSummary, metric: str) -> str:
    return summary.judges.get(metric.split("/", 1)[0], "—")


def _header(summary: ExperimentSummary) -> str:
    arms: dict[str, list[int]] = {}
    for run in summary.runs:
        arms.setdefault(run.arm, []).append(run.seed)
    arm_list = "".join(
        f"<li><b>{esc(arm)}</b>{' (control)' if arm == summary.control_arm else ''}: seeds "
        f"{esc(', '.join(str(s) for s in seeds))}</li>"
        for arm, seeds in arms.items()
    )
    n_checkpoints = sum(len(r.checkpoints) for r in summary.runs)
    named = summary.spec.get(
        "base_model"
    )  # as the user named it; the fingerprint is what results are keyed by
    facts = table(
        ["", ""],
        [
            ["base model", f"{named} (fingerprint {summary.base.model})" if named else summary.base.model],
            ["arms", Html(f"<ul>{arm_list}</ul>") if arm_list else "none"],
            ["control arm", summary.control_arm or "none (deltas vs a control are not computed)"],
            ["task metric", summary.task_metric or "none"],
            ["checkpoints evaluated", f"{n_checkpoints} in {len(summary.runs)} runs, plus the base model"],
        ],
    )
    metrics = table(
        ["metric", "kind", "better when", "judge"],
        [
            [
                m,
                info.kind if info else "—",
                _direction(info.higher_is_better if info else None),
                _judge(summary, m),
            ]
            for m in summary.metric_names
            for info in [_metric_info(summary, m)]
        ],
    )
    judges = (
        table(["eval", "judge"], summary.judges.items()) if summary.judges else "<p>No judged metrics.</p>"
    )
    return (
        f"<header><h1>{esc(summary.name)}</h1><p class='sub'>aftertune experiment report: what the "
        "fine-tuning changed, every number with its 95% confidence interval. Rates are in %, their deltas in "
        "percentage points (pts).</p></header>"
        + section(
            "compared", "What was compared", facts, "<h3>Metrics</h3>", metrics, "<h3>Judges</h3>", judges
        )
    )


def _recommendation(summary: ExperimentSummary) -> str:
    if not summary.recommendations:
        reason = no_recommendation_reason(summary)
        body = f'<div class="callout none"><b>No checkpoint is recommended:</b> {esc(reason)}</div>'
        return section("recommendation", "Recommendation", body)
    items = []
    for rec in summary.recommendations:
        if rec.checkpoint is None or rec.value is None:
            items.append(f'<li class="none"><b>{esc(rec.run)}</b>: no checkpoint — {esc(rec.why)}</li>')
        else:
            value = format_value(rec.value, metric_kind(summary, rec.task_metric))
            items.append(
                f"<li><b>{esc(rec.run)}</b>: use <b>{esc(rec.checkpoint)}</b> — {esc(rec.task_metric)} = "
                f"{esc(value)}. <small>{esc(rec.why)}</small></li>"
            )
    css = "callout" if any(r.checkpoint for r in summary.recommendations) else "callout none"
    intro = (
        "<p>One checkpoint per run: the best on the task metric among those that pass every gate "
        "(each arm learns its own task, so the task metric compares within a run).</p>"
    )
    return section(
        "recommendation", "Recommendation", intro, f'<div class="{css}"><ul>{"".join(items)}</ul></div>'
    )


def _gates(summary: ExperimentSummary) -> str:
    rows = []
    for run in summary.runs:
        checks = [(c.step, g) for c in run.checkpoints for g in c.gates]
        failures = [f"step {step}: {g.gate} — {g.reason}" for step, g in checks if g.failed]
        status = Html(f'<span class="badge {escape(run.status)}">{esc(run.status.replace("_", " "))}</span>')
        rows.append(
            [
                f"{run.arm} seed {run.seed}",
                status,
                ", ".join(str(c.step) for c in run.checkpoints) or "none",
                f"{len(checks) - len(failures)} of {len(checks)} passed" if checks else "no gates",
                Html("<br>".join(esc(f) for f in failures)) if failures else "—",
                run.stopped_reason or "—",
            ]
        )
    outcomes = table(
        ["run", "status", "steps evaluated", "gate checks", "failed gates", "stopped because"], rows
    )
    return section("gates", "Gate outcomes per run", outcomes)


def _charts(summary: ExperimentSummary) -> str:
    parts = []
    for metric in summary.metric_names:
        parts.append(
            _figure(
                plots.metric_curves(summary, metric),
                f"{metric} over training. Thick line: the mean of an arm's seeds, band: its 95% CI; "
                "thin lines: single seeds; dashed line and grey band: the base model with its 95% CI; "
                "red X: a checkpoint that failed a gate.",
            )
        )
    for safety in _tradeoff_metrics(summary):
        assert summary.task_metric is not None
        parts.append(
            _figure(
                plots.tradeoff(summary, summary.task_metric, safety),
                f"Trade-off: every checkpoint's {summary.task_metric} (task) against {safety}. Ringed: each "
                "run's recommended checkpoint; red x: failed a gate; star: the base model.",
            )
        )
    return section("curves", "Metrics over training", *parts)


def _tradeoff_metrics(summary: ExperimentSummary) -> list[str]:
    """The metrics drawn against the task metric: rates where less is better (harm rates)."""
    if summary.task_metric is None or summary.task_metric not in summary.metric_names:
        return []
    return [
        m
        for m in summary.metric_names
        if m != summary.task_metric
        and (info := _metric_info(summary, m)) is not None
        and info.kind == "rate"
        and info.higher_is_better is False
    ]


def _deltas(summary: ExperimentSummary) -> str:
    parts = [
        _figure(
            plots.delta_bars(summary, "base"),
            "Each arm's change vs the base model at its last step (pooled over seeds where available), with "
            "the paired bootstrap 95% CI.",
        )
    ]
    if any(d.reference != "base" for d in summary.deltas):
        parts.append(
            _figure(
                plots.delta_bars(summary, "control"),
                f"Each arm's change vs the control arm ({summary.control_arm}) at the same step: what the "
                "fine-tuning data did beyond fine-tuning as such.",
            )
        )
    else:
        parts.append("<p>No deltas vs a control arm were computed.</p>")
    order = {m: i for i, m in enumerate(summary.metric_names)}
    rows = [
        [
            d.metric,
            d.subject,
            d.reference,
            format_delta(d.estimate, d.kind),
            Html('<b class="sig">yes</b>') if d.significant else "no",
            d.verdict,
            d.estimate.n,
            d.estimate.method,
        ]
        for d in sorted(
            summary.deltas, key=lambda d: (order.get(d.metric, len(order)), d.reference != "base")
        )
    ]
    parts.append("<h3>Every delta</h3>")
    parts.append(
        table(
            ["metric", "subject", "reference", "delta [95% CI]", "significant", "effect", "n", "method"],
            rows,
            (3, 6),
        )
    )
    return section("deltas", "What changed: deltas vs base and vs control", *parts)


def _checkpoint_tables(summary: ExperimentSummary) -> str:
    recommended = recommended_labels(summary)
    parts = []
    for metric in summary.metric_names:
        info = _metric_info(summary, metric)
        kind = metric_kind(summary, metric)
        rows = []
        for c in summary.checkpoints:
            if metric not in c.metrics:
                continue
            e = c.metrics[metric].estimate
            label = (
                Html(f"{esc(c.label)} <b class='rec'>★ recommended</b>")
                if c.label in recommended
                else c.label
            )
            failed = [g.gate for g in c.gates if g.failed]
            rows.append(
                [
                    label,
                    c.step,
                    format_value(e.value, kind),
                    f"[{format_value(e.low, kind)}, {format_value(e.high, kind)}]",
                    e.n,
                    e.method,
                    "—" if c.train_loss is None else f"{c.train_loss:.4g}",
                    Html(f'<span class="fail">failed: {esc("; ".join(failed))}</span>')
                    if failed
                    else ("passed" if c.gates else "—"),
                ]
            )
        better = _direction(info.higher_is_better if info else None)
        parts.append(f"<h3>{esc(metric)} <small>({esc(kind)}; better when {better})</small></h3>")
        parts.append(
            table(
                ["model", "step", "value", "95% CI", "n", "method", "train loss", "gates"],
                rows,
                (1, 2, 3, 4, 6),
            )
        )
    return section("checkpoints", "Every checkpoint, per metric", *parts)


def _example_html(ex: Example) -> str:
    score = "—" if ex.score is None else f"{ex.score:.4g}"
    head = f"score {score} · {ex.item}" + (f" · {ex.note}" if ex.note else "")
    return (
        f"<details><summary>{esc(head)}</summary><dl>"
        f"<dt>prompt</dt><dd><pre>{esc(ex.prompt)}</pre></dd>"
        f"<dt>answer</dt><dd><pre>{esc(ex.answer)}</pre></dd>"
        f"<dt>score</dt><dd>{esc(score)}</dd><dt>note</dt><dd>{esc(ex.note or '—')}</dd></dl></details>"
    )


def _examples(summary: ExperimentSummary) -> str:
    parts = []
    for metric in summary.metric_names:
        shown = [(c, c.metrics[metric].examples) for c in summary.checkpoints if metric in c.metrics]
        shown = [(c, examples) for c, examples in shown if examples]
        if not shown:
            continue
        parts.append(f"<h3>{esc(metric)} <small>(judge: {esc(_judge(summary, metric))})</small></h3>")
        for c, examples in shown:
            parts.append(f"<h4>{esc(c.label)}</h4>" + "".join(_example_html(ex) for ex in examples))
    if not parts:
        parts.append("<p>No example answers were recorded.</p>")
    intro = "<p>The answers behind each metric, worst first, per model. Click one to read it.</p>"
    return section("examples", "Worst example answers", intro, *parts)


def _data_notes(summary: ExperimentSummary) -> str:
    parts = []
    for run in summary.runs:
        if run.data_notes:
            notes = "".join(f"<li>{esc(n)}</li>" for n in run.data_notes)
            parts.append(f"<h3>{esc(run.arm)} seed {run.seed}</h3><ul>{notes}</ul>")
    return section("data", "Data notes", *(parts or ["<p>No rows were dropped or truncated.</p>"]))


def _spec(summary: ExperimentSummary) -> str:
    spec = json.dumps(summary.spec, indent=2, ensure_ascii=False, default=str)
    env = table(
        ["", ""],
        [
            [k, v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)]
            for k, v in summary.environment.items()
        ],
    )
    return section(
        "spec",
        "Experiment spec and environment",
        f"<pre class='spec'>{esc(spec)}</pre>",
        "<h3>Environment</h3>",
        env,
    )


_NAV = [
    ("compared", "Compared"),
    ("recommendation", "Recommendation"),
    ("gates", "Gates"),
    ("curves", "Curves"),
    ("deltas", "Deltas"),
    ("checkpoints", "Checkpoints"),
    ("examples", "Examples"),
    ("data", "Data notes"),
    ("spec", "Spec"),
]

#: the page's style sheet, inlined into the page so the report stays one self-contained file
_CSS_FILE = "report.css"

#: no script, no fetch of any kind: the page needs only its own inline style and inline SVG
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def _css() -> str:
    return resources.files("aftertune.report").joinpath(_CSS_FILE).read_text("utf-8")


def render_html(summary: ExperimentSummary) -> str:
    """The whole report as one HTML document that needs no network and runs no script."""
    body = "".join(
        [
            _header(summary),
            _recommendation(summary),
            _gates(summary),
            _charts(summary),
            _deltas(summary),
            _checkpoint_tables(summary),
            _examples(summary),
            _data_notes(summary),
            _spec(summary),
        ]
    )
    return html_page(f"{summary.name} — aftertune report", _NAV, body)


def html_page(title: str, nav: Sequence[tuple[str, str]], body: str) -> str:
    """A self-contained page in the report style: inline CSS, a no-script CSP, a nav of (anchor, title)."""
    links = "".join(f'<a href="#{anchor}">{esc(name)}</a>' for anchor, name in nav)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(title)}</title><style>\n{_css()}</style></head>"
        f"<body><nav>{links}</nav><main>{body}"
        f"<footer>Made by aftertune {escape(__version__)}.</footer></main></body></html>\n"
    )


def write_html_report(summary: ExperimentSummary, path: Path) -> Path:
    """Render the report and write it to `path` atomically."""
    return write_page(render_html(summary), path)


def write_page(text: str, path: Path) -> Path:
    """Write a page to `path` atomically (a temp file beside it, then a rename), readable by all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, text)
