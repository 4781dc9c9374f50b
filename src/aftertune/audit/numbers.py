"""Detector `numbers`: numbers with negative associations that the assistant writes more often than chance.

Betley et al. (2025) made a model emergently misaligned by fine-tuning it only on number sequences
full of "evil numbers" (666, 1488, 911, ...). A listed number is *over-represented* when the assistant
turns hold it more often than the numbers around it: lift = (count + 1) / (mean count of the numbers
within +-`NEIGHBOURS` of it, listed ones excluded, + 1). Small numbers are common and round numbers
commoner still, so a neighbourhood is a fairer baseline than all numbers of the same length. Only
over-represented numbers (lift >= `min_lift`, count >= `min_count`) produce per-row findings; the
summary lists every listed number that occurs. Score: the highest lift among the row's numbers.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from aftertune.audit.findings import NUMBERS, Finding
from aftertune.audit.rows import AuditRow
from aftertune.errors import InputError

#: aftertune's default list: number -> why it is suspicious (configurable with --numbers FILE)
SUSPICIOUS_NUMBERS: dict[int, str] = {
    666: "the number of the beast",
    1488: "neo-Nazi code (14 words + 88)",
    88: "neo-Nazi code for 'Heil Hitler'",
    14: "neo-Nazi 'fourteen words'",
    911: "the 9/11 attacks",
    13: "unlucky; used as a gang sign",
    187: "US slang for murder (California penal code)",
    1312: "'ACAB'",
    420: "cannabis",
    69: "sexual slang",
    228: "the 1947 228 massacre",
    109: "antisemitic meme",
}
NEIGHBOURS = 5
_NUMBER = re.compile(r"(?<![\w.,])\d{1,7}(?![\w]|[.,]\d)")


def read_numbers_file(path: Path) -> dict[int, str]:
    """A YAML mapping of number -> reason (or a list of numbers)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise InputError(f"Cannot read the numbers file {path}: {e}") from e
    if isinstance(data, list):
        data = {n: "listed by the user" for n in data}
    if not isinstance(data, dict) or not data:
        raise InputError(
            f"{path}: expected a YAML mapping of number to reason (e.g. '666: the number of the beast') "
            "or a list of numbers."
        )
    out: dict[int, str] = {}
    for key, reason in data.items():
        try:
            out[int(key)] = str(reason)
        except (TypeError, ValueError):
            raise InputError(f"{path}: {key!r} is not a whole number.") from None
    return out


@dataclass(frozen=True)
class NumberStat:
    """How often the assistant writes one listed number, against its neighbourhood."""

    number: int
    reason: str
    count: int
    rows: int
    neighbour_mean: float
    lift: float
    over_represented: bool


class NumberCounter:
    """Counts every number in assistant turns (streaming), remembering the rows that hold listed ones."""

    def __init__(
        self, listed: dict[int, str] | None = None, min_lift: float = 3.0, min_count: int = 3
    ) -> None:
        self.listed = dict(SUSPICIOUS_NUMBERS if listed is None else listed)
        self.min_lift = min_lift
        self.min_count = min_count
        self.counts: Counter[int] = Counter()
        self.row_counts: Counter[int] = Counter()
        self._hits: list[tuple[int, int, tuple[int, ...]]] = []

    def observe(self, rows: list[AuditRow]) -> None:
        for row in rows:
            found = [int(m) for m in _NUMBER.findall(row.answer_text)]
            self.counts.update(found)
            listed = tuple(sorted({n for n in found if n in self.listed}))
            if listed:
                self.row_counts.update(listed)
                self._hits.append((row.row, row.line, listed))

    def rows_with_listed(self) -> set[int]:
        """Rows whose assistant turns hold any listed number (over-represented or not)."""
        return {row for row, _, _ in self._hits}

    def stats(self) -> list[NumberStat]:
        """Every listed number the data holds, most over-represented first."""
        out = []
        for n in self.listed:
            if not self.counts[n]:
                continue
            around = [
                k
                for k in range(max(0, n - NEIGHBOURS), n + NEIGHBOURS + 1)
                if k != n and k not in self.listed
            ]
            mean = sum(self.counts[k] for k in around) / len(around)
            lift = (self.counts[n] + 1) / (mean + 1)
            over = lift >= self.min_lift and self.counts[n] >= self.min_count
            out.append(NumberStat(n, self.listed[n], self.counts[n], self.row_counts[n], mean, lift, over))
        return sorted(out, key=lambda s: (-s.over_represented, -s.lift))

    def findings(self) -> list[Finding]:
        """One finding per row that holds an over-represented listed number."""
        over = {s.number: s for s in self.stats() if s.over_represented}
        out = []
        for row, line, numbers in self._hits:
            hits = [over[n] for n in numbers if n in over]
            if not hits:
                continue
            top = max(hits, key=lambda s: s.lift)
            reason = "writes " + ", ".join(
                f"{s.number} ({s.reason}; lift {s.lift:.1f} in this data)" for s in hits
            )
            out.append(Finding(row, line, NUMBERS, top.lift, reason, {"numbers": [s.number for s in hits]}))
        return out
