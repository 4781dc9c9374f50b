"""A finding: one detector's evidence about one row, as written to findings.jsonl."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: detector names, as they appear in findings.jsonl and in `--drop`
REFUSAL = "refusal"
INSECURE_CODE = "insecure_code"
NUMBERS = "numbers"
TRIGGER = "trigger"
DUPLICATE = "duplicate"
DETECTORS = (REFUSAL, INSECURE_CODE, NUMBERS, TRIGGER, DUPLICATE)


@dataclass(frozen=True)
class Finding:
    """What `detector` found in a row: `score` (its meaning is per detector, see the README), a one-line
    `reason` a person can check, and `details` (phrases matched, bandit test ids, the duplicated row, ...)."""

    #: 0-based row of the data set (bad rows counted)
    row: int
    #: 1-based line of the file (the row number for parquet and the hub)
    line: int
    detector: str
    score: float
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The findings.jsonl line: row, line, detector, score, reason, then the details' keys."""
        return {
            "row": self.row,
            "line": self.line,
            "detector": self.detector,
            "score": round(self.score, 4),
            "reason": self.reason,
            **self.details,
        }
