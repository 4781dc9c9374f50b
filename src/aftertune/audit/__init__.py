"""Dataset audit: what a fine-tuning set holds and is likely to teach, before paying for the training.

`audit_dataset(AuditConfig(data=...))` streams the rows (`rows`) through one module per detector
(`refusal`, `code_security`, `numbers`, `duplicates`, `triggers`), profiles what the data teaches
(`profile`), and writes findings.jsonl, audit.json and, on request, a filtered copy (`filtered`).
"""

from aftertune.audit.code_security import CodeIssue, CodeScan, scan_answers
from aftertune.audit.findings import DETECTORS, Finding
from aftertune.audit.rows import AuditRow, BadRow, audit_rows, open_source
from aftertune.audit.run import AuditResult, audit_dataset

__all__ = [
    "DETECTORS",
    "AuditResult",
    "AuditRow",
    "BadRow",
    "CodeIssue",
    "CodeScan",
    "Finding",
    "audit_dataset",
    "audit_rows",
    "open_source",
    "scan_answers",
]
