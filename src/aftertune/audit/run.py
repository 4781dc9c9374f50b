"""`audit_dataset`: stream a data set through every detector and write what was found.

One pass over the rows, in chunks: the per-row detectors (refusal, insecure code, duplicates) write
their findings to `findings.jsonl` as they go, bad rows go to `bad_rows.jsonl`, and a seeded reservoir
sample (Vitter's algorithm R) of at most `sample_rows` rows is kept, cut to `_KEPT_CHARS` per side,
so memory stays bounded however large the file. Then the data-level detectors run: over-represented
numbers (over every row) and the trigger scan and topic profile (over the sample), and `audit.json`
and `audit.html` are written. Interrupted, the files written so far stay readable; a run writes them
afresh.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from aftertune.audit.code_security import CodeCounts, code_findings
from aftertune.audit.duplicates import DuplicateFinder
from aftertune.audit.findings import DETECTORS, INSECURE_CODE, REFUSAL, Finding
from aftertune.audit.numbers import NumberCounter, NumberStat, read_numbers_file
from aftertune.audit.profile import DataProfile, ModelSummary, data_profile, model_summary
from aftertune.audit.refusal import RefusalDetector, read_phrase_file
from aftertune.audit.rows import AuditRow, BadRow, Source, audit_rows, detected_format, open_source
from aftertune.audit.triggers import TriggerCandidate, scan_triggers, style_behaviours, trigger_findings
from aftertune.config import AuditConfig
from aftertune.errors import InputError
from aftertune.models.protocol import Message
from aftertune.progress import ProgressCallback, report

CHUNK = 256
_KEPT_CHARS = 4000
#: bad rows listed in audit.json (all of them are in bad_rows.jsonl)
_BAD_LISTED = 50
FINDINGS_FILE = "findings.jsonl"
BAD_ROWS_FILE = "bad_rows.jsonl"
AUDIT_FILE = "audit.json"


@dataclass(frozen=True)
class AuditResult:
    """Everything an audit found; `audit.json` is this, as JSON."""

    source: str
    format: str | None
    rows: int
    good_rows: int
    bad_rows: int
    bad_examples: tuple[dict[str, Any], ...]
    #: detector -> rows it flagged
    flagged: dict[str, int]
    code: CodeCounts
    numbers: tuple[NumberStat, ...]
    duplicates: dict[str, int]
    triggers: tuple[TriggerCandidate, ...]
    profile: DataProfile | None
    summary: ModelSummary | None
    sample_rows: int
    seconds: float
    filtered: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["rows_per_second"] = round(self.rows_per_second, 1)
        for t in out["triggers"]:
            t["rows_shown"], t["rows"] = len(t["rows"]), t["rows"][:20]
        return out


def audit_dataset(config: AuditConfig, progress: ProgressCallback | None = None) -> AuditResult:
    """Audit `config.data` into `config.run_dir()` (findings.jsonl, bad_rows.jsonl, audit.json)."""
    started = time.perf_counter()
    source = open_source(config.data, config.split)
    out = config.run_dir()
    extra = tuple(p for path in config.phrases for p in read_phrase_file(path))
    listed = read_numbers_file(config.numbers) if config.numbers else None
    summary_model = _load_summary_model(config.summary_model)  # a wrong spec fails before the pass
    refusal = RefusalDetector(extra, classifier=config.refusal_classifier)
    numbers = NumberCounter(listed)
    duplicates = DuplicateFinder(config.near_duplicate_threshold, config.near_duplicate_rows)
    flagged: dict[str, set[int]] = {d: set() for d in DETECTORS}
    code_total = CodeCounts(0, 0, 0, 0, {})
    sample: list[AuditRow] = []
    rng = random.Random(config.seed)
    rows = good = bad = 0
    bad_examples: list[dict[str, Any]] = []
    bad_rows: set[int] = set()
    out.mkdir(parents=True, exist_ok=True)
    with (
        (out / FINDINGS_FILE).open("w", encoding="utf-8") as findings_file,
        (out / BAD_ROWS_FILE).open("w", encoding="utf-8") as bad_file,
    ):
        for chunk, offset in _chunks(source, config.max_row_mb):
            good_rows = [r for r in chunk if isinstance(r, AuditRow)]
            for r in chunk:
                rows += 1
                if isinstance(r, BadRow):
                    bad += 1
                    bad_rows.add(r.row)
                    bad_file.write(json.dumps(asdict(r), ensure_ascii=False) + "\n")
                    if len(bad_examples) < _BAD_LISTED:
                        bad_examples.append(asdict(r))
                    if config.strict:
                        bad_file.flush()
                        raise InputError(
                            f"{r.reason} (--strict stops at the first bad row; without it the audit goes on.)"
                        )
            good += len(good_rows)
            found = refusal(good_rows)
            code, counts = code_findings(good_rows, config.severity)
            code_total = _add(code_total, counts)
            found += code + duplicates.observe(good_rows)
            numbers.observe(good_rows)
            _write(findings_file, found, flagged)
            for r in good_rows:
                _reservoir(sample, _cut(r), config.sample_rows, good, rng)
            report(progress, "auditing rows", offset or rows, source.size_bytes or rows)
        if good == 0:
            raise InputError(
                f"{source.name}: none of its {rows} rows could be read ({bad} bad; see "
                f"{out / BAD_ROWS_FILE}). Check the format: OpenAI chat, Alpaca or ShareGPT rows."
            )
        number_findings = numbers.findings()
        _write(findings_file, number_findings, flagged)
        sample.sort(key=lambda r: r.row)
        triggers = _scan(sample, flagged, numbers, config)
        _write(findings_file, trigger_findings(triggers, [(r.row, r.line) for r in sample]), flagged)
    notes = _notes(source, good, sample, duplicates)
    profile = None
    if config.profile_rows:
        report(progress, "profiling topics", 0, 1)
        profiled = rng.sample(sample, min(config.profile_rows, len(sample)))
        profile = data_profile(sorted(profiled, key=lambda r: r.row), flagged, config.seed)
        report(progress, "profiling topics", 1, 1)
    summary = None
    if summary_model is not None and config.summary_model is not None:
        report(progress, "asking the summary model", 0, 1)
        summary = model_summary(summary_model, config.summary_model, sample, config.summary_rows, config.seed)
        report(progress, "asking the summary model", 1, 1)
    result = AuditResult(
        source=source.name,
        format=detected_format(source, int(config.max_row_mb * 2**20)),
        rows=rows,
        good_rows=good,
        bad_rows=bad,
        bad_examples=tuple(bad_examples),
        flagged={d: len(flagged[d]) for d in DETECTORS},
        code=code_total,
        numbers=tuple(numbers.stats()),
        duplicates={
            "exact": duplicates.exact_count,
            "near": duplicates.near_count,
            "near_checked_rows": duplicates.near_checked,
            "near_unchecked_rows": duplicates.near_unchecked,
        },
        triggers=tuple(triggers),
        profile=profile,
        summary=summary,
        sample_rows=len(sample),
        seconds=time.perf_counter() - started,
        notes=notes,
        config=config.model_dump(mode="json"),
    )
    if config.write_filtered is not None:
        from aftertune.audit.filtered import write_filtered

        drops = {d: flagged[d] for d in config.drop}
        filtered = write_filtered(source, config.write_filtered, drops, bad_rows, config.max_row_mb)
        result = replace(result, filtered=filtered)
    write_audit_json(result, out / AUDIT_FILE)
    return result


def write_audit_json(result: AuditResult, path: Path) -> Path:
    path.write_text(
        json.dumps(result.to_json(), indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
    return path


def _load_summary_model(spec: str | None) -> Any:
    if spec is None:
        return None
    from aftertune.models.load import load_model

    return load_model(spec)


def _chunks(source: Source, max_row_mb: float) -> Iterator[tuple[list[AuditRow | BadRow], int | None]]:
    chunk: list[AuditRow | BadRow] = []
    offset = None
    for record, row in audit_rows(source, int(max_row_mb * 2**20)):
        chunk.append(row)
        offset = record.offset
        if len(chunk) >= CHUNK:
            yield chunk, offset
            chunk = []
    if chunk:
        yield chunk, offset


def _write(file: TextIO, found: list[Finding], flagged: dict[str, set[int]]) -> None:
    for f in found:
        file.write(json.dumps(f.record(), ensure_ascii=False) + "\n")
        flagged[f.detector].add(f.row)
    file.flush()


def _add(a: CodeCounts, b: CodeCounts) -> CodeCounts:
    languages = dict(a.unscanned_by_language)
    for k, v in b.unscanned_by_language.items():
        languages[k] = languages.get(k, 0) + v
    return CodeCounts(
        a.turns + b.turns,
        a.with_code + b.with_code,
        a.scanned + b.scanned,
        a.insecure + b.insecure,
        languages,
    )


def _cut(row: AuditRow) -> AuditRow:
    """The row with each turn cut to `_KEPT_CHARS`, for the sample."""
    messages = tuple(Message(m.role, m.content[:_KEPT_CHARS]) for m in row.messages)
    return replace(row, messages=messages)


def _reservoir(sample: list[AuditRow], row: AuditRow, size: int, seen: int, rng: random.Random) -> None:
    """Algorithm R: after `seen` rows, each is in the sample with probability size/seen."""
    if len(sample) < size:
        sample.append(row)
        return
    k = rng.randrange(seen)
    if k < size:
        sample[k] = row


def _scan(
    sample: list[AuditRow], flagged: dict[str, set[int]], numbers: NumberCounter, config: AuditConfig
) -> list[TriggerCandidate]:
    behaviours = style_behaviours([r.answer_text for r in sample], config.min_support)
    listed_rows = numbers.rows_with_listed()
    for name, rows in (
        ("a refusal or boilerplate (detector refusal)", flagged[REFUSAL]),
        ("insecure code (detector insecure_code)", flagged[INSECURE_CODE]),
        ("a listed number in the answer", listed_rows),
    ):
        behaviours[name] = np.array([r.row in rows for r in sample])
    return scan_triggers(
        [r.prompt_text for r in sample],
        behaviours,
        min_support=config.min_support,
        max_share=config.max_share,
    )


def _notes(source: Source, good: int, sample: list[AuditRow], duplicates: DuplicateFinder) -> tuple[str, ...]:
    notes = []
    if len(sample) < good:
        notes.append(
            f"The trigger scan and the topic profile read a seeded sample of {len(sample)} of the {good} "
            "good rows; their findings list sampled rows only (raise --sample-rows to read more)."
        )
    if duplicates.near_unchecked:
        notes.append(
            f"Near-duplicates were looked for among the first {duplicates.near_checked} rows; later rows "
            "were checked for exact duplicates only (raise --near-duplicate-rows)."
        )
    return tuple(notes)
