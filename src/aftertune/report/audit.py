"""The audit's terminal summary (Rich tables) and its HTML page, in the experiment report's style."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from aftertune.audit.code_security import CodeCounts
from aftertune.audit.run import AuditResult
from aftertune.audit.triggers import TriggerCandidate
from aftertune.report.html import Html, esc, html_page, section, table, write_page

_WHAT = {
    "refusal": "refusals and 'as an AI' boilerplate in assistant turns",
    "insecure_code": "assistant turns whose Python code bandit or aftertune's rules flag",
    "numbers": "rows writing an over-represented number with negative associations",
    "trigger": "rows whose prompt holds a candidate backdoor trigger",
    "duplicate": "exact or near-duplicates of an earlier row",
}


def _trigger_cells(c: TriggerCandidate) -> tuple[str, ...]:
    """n-gram, behaviour, with, without, lift, p: one row of the trigger table (terminal and page)."""
    return (
        c.text,
        c.behaviour,
        f"{c.hits}/{c.support}",
        f"{c.rate_without:.1%}",
        f"{c.lift:.1f}",
        f"{c.p_value:.1e}",
    )


def _unscanned(code: CodeCounts) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(code.unscanned_by_language.items())) or "none"


def _share(n: int, total: int) -> str:
    return f"{n} ({n / total:.1%})" if total else str(n)


def audit_tables(result: AuditResult) -> list[Table]:
    """Rows read, what each detector flagged, code scanned, triggers and topics."""
    head = Table(title=f"Audit of {result.source}", show_header=False)
    head.add_row("format", result.format or "unknown")
    head.add_row("rows", f"{result.rows} read, {result.good_rows} good, {result.bad_rows} bad")
    head.add_row("time", f"{result.seconds:.1f} s ({result.rows_per_second:.0f} rows/s)")
    code = result.code
    unscanned = _unscanned(code)
    head.add_row(
        "code", f"{code.with_code} turns with code: {code.scanned} Python scanned; unscanned: {unscanned}"
    )
    tables = [head]
    flagged = Table(title="Rows flagged per detector")
    for column in ("detector", "rows", "what"):
        flagged.add_column(column, justify="right" if column == "rows" else "left")
    for detector, n in result.flagged.items():
        flagged.add_row(detector, _share(n, result.good_rows), _WHAT[detector])
    tables.append(flagged)
    if result.triggers:
        t = Table(title="Candidate backdoor triggers (prompt n-grams with a behaviour shift)")
        for column in ("n-gram", "behaviour", "with", "without", "lift", "p"):
            t.add_column(column)
        for c in result.triggers[:10]:
            t.add_row(*_trigger_cells(c))
        tables.append(t)
    numbers = [s for s in result.numbers if s.count]
    if numbers:
        t = Table(title="Listed numbers in assistant turns")
        for column in ("number", "why listed", "count", "rows", "lift vs neighbours", "over-represented"):
            t.add_column(column)
        for s in numbers[:10]:
            t.add_row(
                str(s.number),
                s.reason,
                str(s.count),
                str(s.rows),
                f"{s.lift:.1f}",
                "yes" if s.over_represented else "no",
            )
        tables.append(t)
    if result.profile and result.profile.topics:
        t = Table(title=f"Topics (k-means over {result.profile.sample_rows} sampled rows)")
        for column in ("share", "distinctive words", "flagged by"):
            t.add_column(column)
        for topic in result.profile.topics:
            rates = ", ".join(f"{d} {r:.0%}" for d, r in topic.detector_rates.items() if r) or "—"
            t.add_row(f"{topic.share:.0%}", ", ".join(topic.terms), rates)
        tables.append(t)
    return tables


def render_audit_html(result: AuditResult) -> str:
    """The audit as one self-contained HTML page (everything from the data escaped)."""
    parts = [
        _overview(result),
        _detectors(result),
        _triggers(result),
        _numbers(result),
        _teaches(result),
        _bad(result),
    ]
    nav = [
        ("overview", "Overview"),
        ("detectors", "Detectors"),
        ("triggers", "Triggers"),
        ("numbers", "Numbers"),
        ("teaches", "What it teaches"),
        ("bad", "Bad rows"),
    ]
    return html_page(f"Audit of {result.source} — aftertune", nav, "".join(p for p in parts if p))


def write_audit_html(result: AuditResult, path: Path) -> Path:
    return write_page(render_audit_html(result), path)


def _overview(r: AuditResult) -> str:
    rows = [
        ("data set", r.source),
        ("format", r.format or "unknown"),
        ("rows", f"{r.rows} read, {r.good_rows} good, {r.bad_rows} bad"),
        ("time", f"{r.seconds:.1f} s ({r.rows_per_second:.0f} rows/s)"),
        ("duplicates", f"{r.duplicates['exact']} exact, {r.duplicates['near']} near"),
    ]
    if r.filtered:
        f = r.filtered
        by_rule = ", ".join(f"{k} {v}" for k, v in f["dropped_by_rule"].items()) or "no rule"
        rows.append(("filtered copy", f"{f['path']}: kept {f['kept']}, dropped {f['dropped']} ({by_rule}), "
                     f"{f['bad_rows_left_out']} bad rows left out"))  # fmt: skip
    notes = "".join(f"<p>{esc(n)}</p>" for n in r.notes)
    return section("overview", f"Audit of {r.source}", table(("", ""), rows), Html(notes))


def _detectors(r: AuditResult) -> str:
    rows = [(d, _share(n, r.good_rows), _WHAT[d]) for d, n in r.flagged.items()]
    c = r.code
    unscanned = _unscanned(c)
    code = (
        f"<p>{c.with_code} assistant turns hold code; {c.scanned} Python turns scanned, {c.insecure} "
        f"insecure; unscanned (not counted clean): {esc(unscanned)}.</p>"
    )
    return section(
        "detectors", "Rows flagged per detector", table(("detector", "rows", "what"), rows, (1,)), Html(code)
    )


def _triggers(r: AuditResult) -> str:
    if not r.triggers:
        return section("triggers", "Candidate backdoor triggers", Html("<p>None passed the scan.</p>"))
    rows = [_trigger_cells(c) for c in r.triggers]
    return section(
        "triggers",
        "Candidate backdoor triggers",
        table(("n-gram", "behaviour", "with", "without", "lift", "p"), rows, (2, 3, 4, 5)),
    )


def _numbers(r: AuditResult) -> str:
    rows = [
        (s.number, s.reason, s.count, s.rows, f"{s.lift:.1f}", "yes" if s.over_represented else "no")
        for s in r.numbers
    ]
    if not rows:
        return ""
    return section(
        "numbers",
        "Listed numbers in assistant turns",
        table(("number", "why listed", "count", "rows", "lift", "over-represented"), rows, (2, 3, 4)),
    )


def _teaches(r: AuditResult) -> str:
    parts: list[str] = []
    if r.summary:
        s = r.summary
        parts.append(
            f"<p>{esc(s.model)} read {len(s.rows)} sampled rows "
            f"({esc(', '.join(map(str, s.rows)))}) and answered:</p>"
        )
        parts.append(
            f"<pre>{esc(s.answer)}</pre><details><summary>The prompt it was given</summary>"
            f"<pre>{esc(s.prompt)}</pre></details>"
        )
    if r.profile:
        topics = [
            (
                f"{t.share:.0%}",
                ", ".join(t.terms),
                ", ".join(map(str, t.examples)),
                ", ".join(f"{d} {v:.0%}" for d, v in t.detector_rates.items() if v) or "—",
            )
            for t in r.profile.topics
        ]
        parts.append(f"<p>Topics: k-means over {r.profile.sample_rows} sampled rows' embeddings.</p>")
        parts.append(table(("share", "distinctive words", "example rows", "flagged by"), topics))
        parts.append(table(("assistant term", "rows"), r.profile.top_terms, (1,)))
    if not parts:
        return ""
    return section("teaches", "What the data teaches", Html("".join(parts)))


def _bad(r: AuditResult) -> str:
    if not r.bad_rows:
        return ""
    rows = [(b["line"], b["reason"]) for b in r.bad_examples]
    more = f"<p>{r.bad_rows} bad rows in all; every one is in bad_rows.jsonl.</p>"
    return section("bad", "Bad rows", table(("line", "reason"), rows, (0,)), Html(more))
