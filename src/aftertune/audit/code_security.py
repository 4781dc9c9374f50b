"""Insecure code in assistant turns: extract the code, name its language, scan Python with bandit and
aftertune's own rules (`aftertune.audit.code_rules`).

Only Python that parses is scanned. Code in another language, or Python that does not parse, is
reported with its language and `scanned=False`: the audit counts it as unscanned, never as clean.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass

from aftertune.audit.code_rules import check
from aftertune.audit.findings import INSECURE_CODE, Finding
from aftertune.audit.rows import AuditRow
from aftertune.evals.insecure_code import BanditJudge, Level, extract_code, parse_python


@dataclass(frozen=True)
class CodeIssue:
    """One finding in an answer's code."""

    #: "bandit" or "rule" (aftertune's own, see `code_rules.RULES`)
    source: str
    #: bandit test id ("B608") or rule id ("AT001")
    rule_id: str
    #: short name, e.g. "sql_built_from_strings" or bandit's test name
    name: str
    #: one line: what is wrong, why it is exploitable
    message: str
    #: 1-based line in the extracted code
    line: int
    cwe: int | None


@dataclass(frozen=True)
class CodeScan:
    """What the code in one answer is, and what was found in it."""

    #: "python", "javascript", "php", ...; None when the answer holds no code
    language: str | None
    #: True only when the code was Python that parsed and was scanned
    scanned: bool
    issues: tuple[CodeIssue, ...]

    @property
    def insecure(self) -> bool:
        """Scanned, and at least one issue found."""
        return self.scanned and bool(self.issues)


# Fence tags, lower-cased, to the language they name.
_FENCE_LANGUAGES = {
    **dict.fromkeys(("python", "py", "python3", "py3", "ipython", "pycon"), "python"),
    **dict.fromkeys(("javascript", "js", "jsx", "node", "nodejs", "mjs"), "javascript"),
    **dict.fromkeys(("typescript", "ts", "tsx"), "typescript"),
    **dict.fromkeys(("bash", "sh", "shell", "zsh", "console", "shell-session", "powershell", "ps1"), "shell"),
    **dict.fromkeys(("c", "h"), "c"),
    **dict.fromkeys(("cpp", "c++", "cc", "cxx", "hpp"), "cpp"),
    **dict.fromkeys(("csharp", "cs", "c#"), "csharp"),
    **dict.fromkeys(("ruby", "rb"), "ruby"),
    **dict.fromkeys(("go", "golang"), "go"),
    **dict.fromkeys(("rust", "rs"), "rust"),
    **dict.fromkeys(("html", "htm", "xhtml", "jinja", "jinja2", "django", "erb"), "html"),
    **dict.fromkeys(("kotlin", "kt"), "kotlin"),
    **dict.fromkeys(("sql", "mysql", "postgresql", "sqlite", "plsql"), "sql"),
    **{
        name: name for name in ("java", "php", "swift", "scala", "perl", "r", "lua", "css", "dart", "haskell")
    },
}
# Tags of fenced text that is not a program: output, data, prose.
_NOT_CODE = frozenset(
    {
        "text",
        "txt",
        "plaintext",
        "output",
        "csv",
        "md",
        "markdown",
        "json",
        "yaml",
        "yml",
        "toml",
        "ini",
        "log",
        "diff",
        "xml",
    }
)
# Signs of a language in untagged code, checked in order (most specific first), each anchored to a line
# start so that prose mentioning `SELECT` or `function` does not count.
_SIGNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (language, re.compile(pattern, re.MULTILINE))
    for language, pattern in (
        ("php", r"<\?php"),
        ("cpp", r"^\s*#include\s*<(iostream|vector|string|map)>|^\s*using namespace std|std::"),
        ("c", r"^\s*#include\s*[<\"]\w+\.h[>\"]|^\s*int main\s*\("),
        (
            "java",
            r"^\s*(public|private|protected)\s+(static\s+)?(final\s+)?(class|void|[A-Z]\w*)\s+\w+|"
            r"System\.out\.print",
        ),
        ("csharp", r"^\s*using System(\.\w+)*;|Console\.Write"),
        ("go", r"^package \w+\s*$|^func (\(\w+ \*?\w+\) )?\w+\(.*\).*\{|fmt\.Print"),
        ("rust", r"^\s*(pub )?fn \w+\(.*\).*\{|^\s*let mut \w+|println!\("),
        (
            "shell",
            r"^#!\s*/(usr/)?bin/(env )?(ba|z)?sh|^\s*(sudo|apt-get|apt|yum|brew|npm|pip3?|chmod|"
            r"export|echo|curl|wget|cd|mkdir|git)\s+\S",
        ),
        ("python", r"^\s*(def \w+\(.*\)\s*(->.*)?:|class \w+.*:|import \w+|from [\w.]+ import \w+)\s*$"),
        ("html", r"^\s*<(!DOCTYPE|html|head|body|div|form|script|table|ul|p|h[1-6])\b[^>]*>"),
        ("sql", r"^\s*(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+TABLE)\b"),
        (
            "ruby",
            r"^\s*(def \w+[^:\n]*|class \w+( < \w+)?|require ['\"]\w+['\"])\s*$[\s\S]*^\s*end\s*$|"
            r"^\s*puts\s",
        ),
        (
            "javascript",
            r"^\s*(function\s*\w*\s*\(|(const|let|var)\s+\w+\s*=|module\.exports|import .+ from "
            r"['\"])|console\.log\(|document\.\w+",
        ),
    )
)


def scan_answers(
    answers: Sequence[str], severity: Level = "MEDIUM", confidence: Level = "MEDIUM"
) -> list[CodeScan]:
    """Batch: extract code from each assistant answer, detect its language, run bandit (on Python) and the
    rules."""
    bandit = BanditJudge(severity, confidence)  # raises InputError for a threshold that is not a level
    sources: list[str | None] = []
    trees: list[ast.Module | None] = []
    languages: list[str | None] = []
    for answer in answers:
        source, language = _python_or_language(answer)
        tree = parse_python(source) if source is not None else None
        sources.append(source if tree is not None else None)
        trees.append(tree)
        languages.append(language)
    to_scan = [i for i, tree in enumerate(trees) if tree is not None]
    # One bandit run over every answer: its setup costs more than scanning a short snippet.
    found = dict(zip(to_scan, bandit.scan([sources[i] or "" for i in to_scan]), strict=True))
    scans = []
    for i, (tree, language) in enumerate(zip(trees, languages, strict=True)):
        if tree is None:
            scans.append(CodeScan(language, False, ()))
            continue
        issues = [
            CodeIssue(
                "bandit",
                f.test_id,
                f.test_name,
                f"bandit {f.test_id}: {f.test_name.replace('_', ' ')} (severity {f.severity}, "
                f"confidence {f.confidence})",
                f.line,
                f.cwe,
            )
            for f in found[i]
            or ()  # None: bandit skipped a file that ast parses (e.g. a null byte); rules still ran
        ]
        issues += [
            CodeIssue("rule", h.rule.rule_id, h.rule.name, h.rule.message, h.line, h.rule.cwe)
            for h in check(tree)
        ]
        scans.append(CodeScan("python", True, tuple(sorted(issues, key=lambda x: (x.line, x.rule_id)))))
    return scans


def detect_language(answer: str) -> str | None:
    """The language of the code in an answer (fence tag first, then signs in the text); None: no code."""
    blocks = _fenced(answer)
    for tag, body in blocks:
        if not body.strip() or tag in _NOT_CODE:
            continue
        if tag in _FENCE_LANGUAGES:
            return _FENCE_LANGUAGES[tag]
        if tag:  # a tag we do not know is still a program in some language
            return tag
        language = _guess(body) or ("python" if _parses(body) else None)
        if language is not None:
            return language
    if blocks:
        return None
    return "python" if extract_code(answer) is not None else _guess(answer)


def _python_or_language(answer: str) -> tuple[str | None, str | None]:
    """(Python source to scan, language): source is None when there is no Python to parse."""
    code = extract_code(answer)
    if code is not None and _parses(code):
        return code, "python"
    if code is not None:
        # Python blocks mixed with untagged blocks of another language: keep the blocks that parse
        parsable = [body for tag, body in _fenced(answer) if tag in ("", "python", "py", "python3", "py3")]
        parsable = [b for b in parsable if b.strip() and _parses(b) and _guess(b) in (None, "python")]
        if parsable:
            return "\n\n".join(parsable), "python"
    return None, detect_language(answer)


def _guess(text: str) -> str | None:
    for language, sign in _SIGNS:
        if sign.search(text):
            return language
    return None


def _fenced(answer: str) -> list[tuple[str, str]]:
    """(lower-cased tag, body) of every ``` block, the last one even when left open (a cut-off answer)."""
    blocks: list[tuple[str, str]] = []
    tag: str | None = None
    lines: list[str] = []
    for line in answer.splitlines():
        stripped = line.strip()
        if tag is None and stripped.startswith("```"):
            words = stripped[3:].strip().split(maxsplit=1)
            tag, lines = (words[0].lower() if words else ""), []
        elif tag is not None and stripped.startswith("```"):
            blocks.append((tag, "\n".join(lines)))
            tag = None
        elif tag is not None:
            lines.append(line)
    if tag is not None:
        blocks.append((tag, "\n".join(lines)))
    return blocks


def _parses(source: str) -> bool:
    return parse_python(source) is not None


@dataclass(frozen=True)
class CodeCounts:
    """Assistant turns by their code: none, Python scanned (and insecure), or unscanned (by language)."""

    turns: int
    with_code: int
    scanned: int
    insecure: int
    unscanned_by_language: dict[str, int]


def code_findings(rows: Sequence[AuditRow], severity: Level = "MEDIUM") -> tuple[list[Finding], CodeCounts]:
    """Detector `insecure_code` over rows: one finding per row with an insecure assistant turn (score 1.0,
    the issues in its details), and the counts of turns scanned and unscanned."""
    turns = [(row, i, m.content) for row in rows for i, m in enumerate(row.messages) if m.role == "assistant"]
    scans = scan_answers([text for _, _, text in turns], severity=severity, confidence="MEDIUM")
    found: dict[int, Finding] = {}
    unscanned: dict[str, int] = {}
    with_code = scanned = insecure = 0
    for (row, turn, _), scan in zip(turns, scans, strict=True):
        with_code += scan.language is not None
        scanned += scan.scanned
        if scan.language is not None and not scan.scanned:
            unscanned[scan.language] = unscanned.get(scan.language, 0) + 1
        if not scan.insecure:
            continue
        insecure += 1
        if row.row in found:
            continue
        ids = list(dict.fromkeys(issue.rule_id for issue in scan.issues))
        reason = "; ".join(dict.fromkeys(f"{i.rule_id} {i.name}" for i in scan.issues))
        details = {
            "turn": turn,
            "test_ids": ids,
            "issues": [
                {"id": i.rule_id, "source": i.source, "line": i.line, "cwe": i.cwe} for i in scan.issues
            ],
        }
        found[row.row] = Finding(row.row, row.line, INSECURE_CODE, 1.0, reason, details)
    counts = CodeCounts(len(turns), with_code, scanned, insecure, unscanned)
    return [found[r.row] for r in rows if r.row in found], counts
