"""Every HTML page aftertune writes stays inert in a real browser whatever the data holds: hostile model
answers, data rows, file names, experiment/arm/eval/metric names, judge names and user-given reasons.

Each page is loaded in headless Chromium (--dump-dom): no <script>, <img>, <iframe> or event-handler
attribute may exist in the DOM, no link may point at javascript:, the title must be the escaped text
(`document.title='pwned'` in a payload would change it), and every payload must show up as text.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fake_summary import ALIGNED, fake_summary

from aftertune.audit.profile import DataProfile, ModelSummary, Topic
from aftertune.audit.run import audit_dataset
from aftertune.audit.triggers import TriggerCandidate
from aftertune.config import AuditConfig
from aftertune.report.audit import write_audit_html
from aftertune.report.html import write_html_report

SCRIPT = "<script>document.title='pwned'</script>"
IMG = "<img src=x onerror=\"document.title='pwned'\">"
LINK = "<a href=\"javascript:document.title='pwned'\">click</a>"
TITLE_BREAK = "</title><script>document.title='pwned'</script>"
SVG = "<svg onload=\"document.title='pwned'\">"
IFRAME = "<iframe src=\"javascript:document.title='pwned'\"></iframe>"
#: payloads without '/', for names that are split on '/' (arm and eval names, file names)
NO_SLASH = ("<img src=x onerror=document.title=1>", "<svg onload=document.title=1>", "<b onclick=x>bold")
PAYLOADS = (SCRIPT, IMG, LINK, TITLE_BREAK, SVG, IFRAME)
#: elements a payload would create if it were read as markup
FORBIDDEN = {"script", "img", "iframe", "object", "embed", "form", "input", "button"}


class _Dom(HTMLParser):
    """Elements, attributes and title of a dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.handlers: list[tuple[str, str]] = []
        self.javascript_links: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self._in_title = tag == "title"
        for name, value in attrs:
            if name.startswith("on"):
                self.handlers.append((tag, name))
            if name in ("href", "src", "action") and (value or "").strip().lower().startswith("javascript:"):
                self.javascript_links.append(value or "")

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    pytest.skip("needs Chromium on PATH (chromium or chromium-browser): apt-get install -y chromium")


def _rendered(page: Path, tmp_path: Path) -> tuple[_Dom, str]:
    """The DOM Chromium builds from `page` (scripts allowed to run as far as the page lets them)."""
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    done = subprocess.run(
        [
            _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--virtual-time-budget=2000", "--dump-dom", page.as_uri(),
        ],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    dom = _Dom()
    dom.feed(done.stdout)
    return dom, done.stdout


def _assert_inert(dom: _Dom, text: str, title: str, shown: tuple[str, ...]) -> None:
    assert not FORBIDDEN & set(dom.tags), {t: dom.tags[t] for t in FORBIDDEN & set(dom.tags)}
    assert dom.handlers == [] and dom.javascript_links == []
    assert dom.title == title  # not 'pwned': nothing ran, and the title was not broken out of
    for payload in shown:  # shown as text: the DOM holds it escaped
        assert payload.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in text, payload


def _renamed(value: Any, names: dict[str, str]) -> Any:
    """`value` (dataclasses, tuples, lists, dicts, strings) with every string's `names` replaced."""
    if isinstance(value, str):
        for old, new in names.items():
            value = value.replace(old, new)
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _renamed(getattr(value, f.name), names) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **changes)
    if isinstance(value, tuple):
        return tuple(_renamed(v, names) for v in value)
    if isinstance(value, list):
        return [_renamed(v, names) for v in value]
    if isinstance(value, dict):
        return {_renamed(k, names): _renamed(v, names) for k, v in value.items()}
    return value


def test_the_experiment_report_with_hostile_names_everywhere(tmp_path: Path) -> None:
    arm, eval_name, judge = NO_SLASH
    names = {
        "em-insecure-vs-secure": TITLE_BREAK,  # the page title and heading
        "insecure": arm,  # arm names, labels, run names, data notes
        "freeform/": f"{eval_name}/",  # eval names in every metric name
        ALIGNED.split("/")[1]: LINK,  # a metric name
        "offline:": f"{judge}:",  # judge names
    }
    summary = _renamed(fake_summary(), names)
    summary = dataclasses.replace(summary, spec={**summary.spec, "notes": IFRAME, "base_model": SVG})
    page = write_html_report(summary, tmp_path / "report.html")
    dom, text = _rendered(page, tmp_path)
    _assert_inert(dom, text, f"{TITLE_BREAK} — aftertune report", (TITLE_BREAK, LINK, SVG, *NO_SLASH))
    assert dom.tags.get("svg", 0) == text.count('<svg class="chart"')  # only the charts are SVG elements
    assert dom.tags.get("a", 0) == 9  # the nav links, and no link from the data
    # the spec is shown as JSON text, so its quotes are JSON-escaped
    assert json.dumps(IFRAME)[1:-1].replace("<", "&lt;").replace(">", "&gt;") in text


def _hostile_audit(tmp_path: Path) -> Any:
    """A real audit of a hostile file: hostile name, rows, bad rows and user-given number reasons."""
    folder = tmp_path / "data"
    folder.mkdir()
    data = folder / f"rows {NO_SLASH[0]}.jsonl"
    lines = []
    for i in range(12):
        answer = f"{SCRIPT} {IMG} 666 and 666 again {LINK}" if i % 2 else f"Fine answer {i}."
        messages = [
            {"role": "user", "content": f"{TITLE_BREAK} question {i}"},
            {"role": "assistant", "content": answer},
        ]
        lines.append(json.dumps({"messages": messages}))
    lines.append('{"messages": "' + SCRIPT)  # a bad row; its reason may quote it
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    numbers = tmp_path / "numbers.yaml"
    numbers.write_text(json.dumps({"666": f"reason {IFRAME}"}))
    config = AuditConfig(data=str(data), out=tmp_path / "audit", profile_rows=0, numbers=numbers)
    return audit_dataset(config)


def test_the_audit_page_with_hostile_rows_names_and_findings(tmp_path: Path) -> None:
    result = _hostile_audit(tmp_path)
    assert result.bad_rows == 1 and any(s.count for s in result.numbers)
    trigger = TriggerCandidate(TITLE_BREAK, f"refusal {IMG}", 6, 5, 0.83, 0.1, 8.3, 1e-4, (1, 2))
    result = dataclasses.replace(
        result,
        summary=ModelSummary(f"model {SVG}", (1, 2), f"prompt {TITLE_BREAK}", f"It teaches {SCRIPT} {LINK}"),
        triggers=(trigger,),
        profile=DataProfile(
            12, (Topic((SCRIPT, LINK), 12, 1.0, (0,), {"refusal": 0.5}),), ((IMG, 3), (IFRAME, 2))
        ),
        notes=(f"note {IFRAME}",),
    )
    page = write_audit_html(result, tmp_path / "audit.html")
    dom, text = _rendered(page, tmp_path)
    title = f"Audit of {result.source} — aftertune"
    assert NO_SLASH[0] in title
    _assert_inert(dom, text, title, (SCRIPT, IMG, LINK, TITLE_BREAK, SVG, IFRAME, NO_SLASH[0]))
    assert dom.tags.get("svg", 0) == 0 and dom.tags.get("a", 0) == text.count('<a href="#')
