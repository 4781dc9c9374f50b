"""Files of (question, answer) rows, e.g. another tool's results, to be judged and written back.

CSV (with a header row) or JSONL (one JSON object per line). Every field of a row is kept.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from aftertune.data.files import read_text
from aftertune.errors import InputError, StoreError

REQUIRED = ("question", "answer")
FORMATS = (".csv", ".jsonl")


def answer_format(path: Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(
            f"{path}: expected a .csv or .jsonl file (rows with question and answer), got '{suffix}'."
        )
    return suffix


def read_answer_rows(path: Path) -> list[dict[str, Any]]:
    """Rows with at least string `question` and `answer` fields; errors name the line."""
    path = Path(path)
    fmt = answer_format(path)
    text = read_text(path, "Answers file")
    rows: list[tuple[int, dict[str, Any]]] = []
    if fmt == ".jsonl":
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{line_no}: not valid JSON ({e.msg} at column {e.colno}).") from e
            if not isinstance(row, dict):
                raise InputError(
                    f"{path}:{line_no}: each line must be a JSON object, got {type(row).__name__}."
                )
            rows.append((line_no, row))
    else:
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise InputError(
                f"{path}:1: the header has no column(s) {', '.join(missing)} (found: {', '.join(header)}). "
                "Rename the columns holding the prompt and the model's answer to 'question' and 'answer'."
            )
        # line numbers count physical lines, so multi-line quoted answers are accounted for
        for row in reader:
            rows.append((reader.line_num, dict(row)))
    if not rows:
        raise InputError(f"{path} holds no rows.")
    for line_no, row in rows:
        for field in REQUIRED:
            if field not in row:
                raise InputError(
                    f"{path}:{line_no}: the row has no '{field}' field (it has: {', '.join(row)})."
                )
            if not isinstance(row[field], str):
                raise InputError(
                    f"{path}:{line_no}: field '{field}' must be a string, got {type(row[field]).__name__}."
                )
    return [row for _, row in rows]


def write_answer_rows(rows: list[dict[str, Any]], path: Path) -> None:
    """Write rows as CSV or JSONL (by the file's suffix), atomically."""
    path = Path(path)
    fmt = answer_format(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8", newline="") as f:
            if fmt == ".jsonl":
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
            else:
                fields = list(dict.fromkeys(k for row in rows for k in row))
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise StoreError(
            f"Cannot write {path}: {e.strerror}. The judgements are kept in the run's results store; free "
            "space or choose another --out and run the same command again (nothing is re-judged)."
        ) from e
