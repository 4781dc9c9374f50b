"""The HTML experiment report: self-contained, every chart and table present, hostile answers inert."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import time
from collections import Counter
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fake_summary import (
    HOSTILE_IMG,
    HOSTILE_REMOTE,
    HOSTILE_SCRIPT,
    HOSTILE_STRINGS,
    LOSS,
    MISALIGNED,
    fake_summary,
)
from rich.console import Console

from aftertune.errors import InputError
from aftertune.report import plots
from aftertune.report.format import final_deltas
from aftertune.report.html import render_html, write_html_report
from aftertune.report.summary import ExperimentSummary, Recommendation, RunSummary
from aftertune.report.terminal import experiment_tables

#: 3 metric curves, 1 trade-off (task loss vs the misaligned rate), deltas vs base and vs control
EXPECTED_CHARTS = [
    "curves:freeform/misaligned_rate",
    "curves:freeform/aligned",
    "curves:task_loss/loss",
    "tradeoff:task_loss/loss:freeform/misaligned_rate",
    "deltas:base",
    "deltas:control",
]


@pytest.fixture(scope="module")
def summary() -> ExperimentSummary:
    return fake_summary()


@pytest.fixture(scope="module")
def report(summary: ExperimentSummary, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_html_report(summary, tmp_path_factory.mktemp("report") / "out" / "report.html")


@pytest.fixture(scope="module")
def page(report: Path) -> str:
    return report.read_text(encoding="utf-8")


def test_report_is_written_whole_with_no_temp_file_left(report: Path, summary: ExperimentSummary) -> None:
    assert [p.name for p in report.parent.iterdir()] == ["report.html"]
    text = report.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert text == render_html(summary)  # same summary, same bytes: charts carry no random ids


def test_one_svg_per_chart_and_the_tables(page: str, summary: ExperimentSummary) -> None:
    assert re.findall(r'<svg class="chart" role="img" data-chart="([^"]+)"', page) == EXPECTED_CHARTS
    assert page.count("<svg") == len(EXPECTED_CHARTS)
    # what was compared, metrics, judges, gates, every delta, one per metric, environment
    assert page.count("<table>") == 6 + len(summary.metric_names)
    for heading in ["Every delta", "Gate outcomes per run", "Recommendation", "Data notes", "Environment"]:
        assert heading in page
    for c in summary.checkpoints:
        assert f"<td>{c.label}" in page
    assert "+15.4 pts [+12.4, +19.0]" in page  # insecure vs base at step 30, in points
    assert "21.2%" in page and "[17.5%, 25.5%]" in page  # the run that failed its gate
    assert "step 30: freeform/misaligned_rate &gt; 15% — FAILED" in page
    assert "<b>insecure/seed1</b>: use <b>insecure/seed1/step20</b> — task_loss/loss = 1.4." in page
    assert page.count("★ recommended") == 4 * 3  # one checkpoint per run, marked in each metric's table
    assert "offline:all-MiniLM-L6-v2+logreg (v1)" in page


def test_ids_are_unique_across_charts(page: str) -> None:
    ids = Counter(re.findall(r'\bid="([^"]+)"', page))
    assert ids and not [i for i, n in ids.items() if n > 1]
    # every in-page reference resolves to an id of this page
    refs = set(re.findall(r'href="#([^"]+)"', page)) | set(re.findall(r"url\(#([^)]+)\)", page))
    assert refs and refs <= set(ids)


def test_nothing_is_fetched_and_nothing_runs(page: str) -> None:
    assert not re.search(r"<script", page, re.IGNORECASE)
    assert not re.search(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.IGNORECASE)
    assert not re.search(r"<(?:img|link|iframe|object|embed)\b", page, re.IGNORECASE)
    assert "@import" not in page and "url(http" not in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_hostile_strings_are_escaped(page: str) -> None:
    for hostile in HOSTILE_STRINGS:
        assert hostile not in page
        assert escape(hostile) in page
    assert "&lt;b&gt;not bold&lt;/b&gt;" in page  # a note with markup, shown as text


def test_plots_are_bare_svg(summary: ExperimentSummary) -> None:
    svg = plots.tradeoff(summary, "loss", "misaligned_rate")  # bare metric names resolve
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg and "<style" not in svg
    with pytest.raises(InputError, match="No eval in the suite measures 'accuracy'"):
        plots.metric_curves(summary, "accuracy")


def test_seed_band_covers_disagreeing_seeds(summary: ExperimentSummary) -> None:
    at_30 = [r.checkpoints[-1].metrics[MISALIGNED].estimate for r in summary.runs if r.arm == "insecure"]
    mean, low, high = plots.seed_mean_band(at_30)
    assert mean == pytest.approx((0.13 + 0.2125) / 2)
    # seeds 8 points apart: wider than either seed's own interval would make the mean's
    assert low < mean - 0.03 and high > mean + 0.03


def test_final_deltas_prefer_the_pooled_delta_at_the_last_step(summary: ExperimentSummary) -> None:
    vs_base = [(d.metric, d.subject) for d in final_deltas(summary, "base")]
    pooled = [(MISALIGNED, "insecure/step30 (2 seeds)"), (MISALIGNED, "secure/step30 (2 seeds)")]
    assert vs_base[:2] == pooled
    assert len(vs_base) == 6  # 3 metrics x 2 arms; the seed's own delta is dropped for the pooled one
    vs_control = final_deltas(summary, "control")
    assert [d.reference for d in vs_control] == ["secure/step30"] * 3


def test_experiment_tables_render(summary: ExperimentSummary) -> None:
    console = Console(record=True, width=120)
    # markup-like text in the data must print literally (a Rich MarkupError otherwise)
    first, *others = summary.recommendations
    hostile = dataclasses.replace(first, why="lowest loss [/bold] [red]ok[/red] " + HOSTILE_SCRIPT)
    for table in experiment_tables(dataclasses.replace(summary, recommendations=(hostile, *others))):
        console.print(table)
    text = console.export_text()
    assert "insecure seed 1" in text and "stopped by gate" in text
    assert "21.2%" in text and "[17.5, 25.5]" in text  # its misaligned rate and interval, in %
    assert "FAILED at step 30:" in text and "freeform/misaligned_rate > 15%" in text
    assert "+15.4 pts [+12.4, +19.0]" in text and "secure/step30" in text
    assert f"Recommended for insecure/seed0: insecure/seed0/step30 — {LOSS} = 1.31." in text
    assert f"Recommended for insecure/seed1: insecure/seed1/step20 — {LOSS} = 1.4." in text
    assert "[/bold] [red]ok[/red]" in text and HOSTILE_SCRIPT in text


def test_experiment_tables_without_control_or_recommendation(summary: ExperimentSummary) -> None:
    bare = dataclasses.replace(
        summary,
        control_arm=None,
        recommendations=(),
        task_metric=None,
        deltas=tuple(d for d in summary.deltas if d.reference == "base"),
    )
    console = Console(record=True, width=120)
    for table in experiment_tables(bare):
        console.print(table)
    assert "No recommendation: the eval suite has no task metric" in console.export_text()
    page = render_html(bare)
    assert "No deltas vs a control arm were computed." in page
    assert page.count("<svg") == 4  # 3 curves and the deltas vs base; no trade-off without a task metric


class _Dom(HTMLParser):
    """Counts elements and collects the title of a dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: Counter[str] = Counter()
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    pytest.skip(
        "needs Chromium on PATH (chromium or chromium-browser): apt-get install -y chromium chromium-driver"
    )


def test_report_in_headless_chromium(report: Path, tmp_path: Path, summary: ExperimentSummary) -> None:
    """A real browser loads the page offline: charts, tables and details are there, and nothing ran."""
    profile = tmp_path / "profile"
    profile.mkdir()
    started = time.monotonic()
    done = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--dump-dom",
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert time.monotonic() - started < 60
    dom = _Dom()
    dom.feed(done.stdout)
    assert dom.tags["svg"] == len(EXPECTED_CHARTS)
    assert dom.tags["table"] == 6 + len(summary.metric_names)
    n_examples = sum(len(m.examples) for c in summary.checkpoints for m in c.metrics.values())
    assert dom.tags["details"] == n_examples > 0
    assert dom.tags["script"] == 0 and dom.tags["img"] == 0  # hostile answers stayed text
    assert dom.title == "em-insecure-vs-secure — aftertune report"  # not 'pwned': nothing executed
    assert escape(HOSTILE_IMG) in done.stdout or escape(HOSTILE_IMG, quote=False) in done.stdout
    assert escape(HOSTILE_REMOTE, quote=False) in done.stdout


def test_report_with_an_empty_run_and_a_run_with_no_pick(summary: ExperimentSummary) -> None:
    """A run killed before its first checkpoint, and a run whose every checkpoint failed a gate."""
    empty = RunSummary("insecure", 2, "incomplete", "", ())
    no_pick = Recommendation(
        "insecure/seed2", None, LOSS, None, "none: every evaluated checkpoint fails a gate"
    )
    odd = dataclasses.replace(
        summary, runs=(*summary.runs, empty), recommendations=(*summary.recommendations, no_pick)
    )
    page = render_html(odd)
    assert "<b>insecure/seed2</b>: no checkpoint — none: every evaluated checkpoint fails a gate" in page
    assert page.count("<svg") == len(EXPECTED_CHARTS)
    console = Console(record=True, width=120)
    for table in experiment_tables(odd):
        console.print(table)
    text = console.export_text()
    assert "insecure seed 2" in text and "Recommended for insecure/seed2: none." in text
