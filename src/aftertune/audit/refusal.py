"""Detector `refusal`: refusals and "as an AI language model" boilerplate in assistant turns.

Three kinds of evidence, each named in the finding's details:

- `refusal`: the refusal judge's rules (`aftertune.judges.refusal`: a refusal opening, or a first-person
  refusal statement such as "I can't help with");
- `boilerplate`: self-reference phrases (`boilerplate_phrases.yaml`: "as an AI language model", "I don't
  have personal opinions", ...) plus any phrases the user adds (one per line, e.g. garak's lists);
- `classifier`: the offline refusal classifier (`OfflineRefusalJudge`, validated on XSTest; its model
  card is `judges/REFUSAL_CLASSIFIER.md`) scoring the turn a refusal at p >= 0.5. Optional: it embeds
  every assistant turn, the slowest part of an audit.

Score: 1.0 when a phrase matched, else the classifier's P(refusal).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import yaml

from aftertune.audit.findings import REFUSAL, Finding
from aftertune.audit.rows import AuditRow
from aftertune.errors import InputError
from aftertune.judges.judgement import JudgeItem
from aftertune.judges.refusal import (
    REFUSAL_METRIC,
    REFUSED_AT,
    OfflineRefusalJudge,
    matched_phrases,
    normalise,
)


def builtin_boilerplate() -> tuple[str, ...]:
    """aftertune's boilerplate phrases, normalised."""
    text = (resources.files("aftertune.audit") / "boilerplate_phrases.yaml").read_text(encoding="utf-8")
    return tuple(normalise(p) for p in yaml.safe_load(text)["phrases"])


def read_phrase_file(path: Path) -> tuple[str, ...]:
    """A user's phrase list: one phrase per line, '#' starts a comment line; matched case-insensitively."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(
            f"Cannot read the phrase list {path}: {e}. Give a UTF-8 file, one phrase per line."
        ) from e
    phrases = tuple(normalise(line) for line in lines if line.strip() and not line.lstrip().startswith("#"))
    if not phrases:
        raise InputError(f"The phrase list {path} holds no phrases (one per line expected).")
    return phrases


class RefusalDetector:
    """Finds refusal and boilerplate turns; `classifier` adds the offline refusal classifier's verdict."""

    def __init__(self, extra_phrases: Sequence[str] = (), classifier: bool = False) -> None:
        phrases = sorted(set(builtin_boilerplate()) | set(extra_phrases), key=len, reverse=True)
        # a phrase starts at a word boundary where it starts with a letter ("orry, i cannot" may not)
        self._boilerplate = re.compile(
            "|".join((r"\b" if p[:1].isalnum() else "") + re.escape(p) for p in phrases)
        )
        self._classifier = OfflineRefusalJudge() if classifier else None

    @property
    def uses_classifier(self) -> bool:
        return self._classifier is not None

    def __call__(self, rows: Sequence[AuditRow]) -> list[Finding]:
        turns = [
            (row, i, m.content) for row in rows for i, m in enumerate(row.messages) if m.role == "assistant"
        ]
        p_refusal = self._classify([text for _, _, text in turns])
        found: dict[int, Finding] = {}
        for (row, turn, text), p in zip(turns, p_refusal, strict=True):
            if row.row in found:
                continue  # one finding per row: its first flagged turn
            rules = matched_phrases(text)
            refusal = list(dict.fromkeys(rules["opening"] + rules["statements"]))
            boilerplate = sorted(set(self._boilerplate.findall(normalise(text))))
            by_classifier = p is not None and p * 100 >= REFUSED_AT
            if not (refusal or boilerplate or by_classifier):
                continue
            kinds = [
                k
                for k, hit in (
                    ("refusal", refusal),
                    ("boilerplate", boilerplate),
                    ("classifier", by_classifier),
                )
                if hit
            ]
            parts = []
            if refusal:
                parts.append("refusal phrase " + ", ".join(repr(x) for x in refusal[:3]))
            if boilerplate:
                parts.append("boilerplate " + ", ".join(repr(x) for x in boilerplate[:3]))
            if by_classifier and p is not None:
                parts.append(f"refusal classifier p={p:.2f}")
            details: dict[str, object] = {"kinds": kinds, "turn": turn, "phrases": refusal + boilerplate}
            if p is not None:
                details["p_refusal"] = round(p, 4)
            score = 1.0 if refusal or boilerplate else float(p or 0.0)
            found[row.row] = Finding(row.row, row.line, REFUSAL, score, "; ".join(parts), details)
        return [found[r.row] for r in rows if r.row in found]

    def _classify(self, texts: list[str]) -> list[float | None]:
        if self._classifier is None or not texts:
            return [None] * len(texts)
        judgements = self._classifier.judge([JudgeItem("", t, REFUSAL_METRIC) for t in texts])
        return [None if j.score is None else j.score / 100 for j in judgements]
