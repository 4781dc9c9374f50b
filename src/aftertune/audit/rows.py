"""The rows of a data set to audit, streamed: good conversations and bad rows, each with its place.

Unlike training (which stops at the first bad row), the audit reads past bad rows: broken JSON,
binary garbage, an over-long line, a row in another format than the first, wrong role order or empty
turns each become a `BadRow` naming its line and the fix, and reading goes on. JSONL is read line by
line with a byte limit per line (a 100 MB single line is skipped in 1 MiB pieces, never held whole);
a JSON array is decoded element by element from a bounded buffer; CSV and parquet row by row; a
Hugging Face dataset id through `datasets`. Formats: OpenAI chat, Alpaca and ShareGPT
(`aftertune.data.training`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aftertune.data.training import (
    DATA_SUFFIXES,
    conversation,
    is_hub_id,
    mixed_formats,
    row_format,
)
from aftertune.data.training_files import data_file_in, file_rows, hub_rows
from aftertune.errors import InputError
from aftertune.models.protocol import Message

#: a row (JSONL line or JSON array element) longer than this is reported and skipped
MAX_ROW_BYTES = 16 * 1024 * 1024
_PIECE = 1 << 20


@dataclass(frozen=True)
class AuditRow:
    """A conversation that passed validation."""

    #: 0-based position among the data set's rows (bad rows counted, blank lines not)
    row: int
    #: 1-based line of the file (the row number for parquet and the hub)
    line: int
    messages: tuple[Message, ...]

    def turns(self, role: str) -> list[str]:
        """The contents of this role's turns, in order."""
        return [m.content for m in self.messages if m.role == role]

    @property
    def prompt_text(self) -> str:
        """System and user turns joined: what the model is shown."""
        return "\n".join(m.content for m in self.messages if m.role != "assistant")

    @property
    def answer_text(self) -> str:
        """Assistant turns joined: what the model learns to write."""
        return "\n".join(self.turns("assistant"))


@dataclass(frozen=True)
class BadRow:
    """A row that cannot be audited, and why (the message names the file and line and the fix)."""

    row: int
    line: int
    reason: str


@dataclass(frozen=True)
class Source:
    """Where the rows come from: a local file (kind = its suffix without the dot) or a hub dataset."""

    name: str
    kind: str
    path: Path | None = None
    split: str = "train"

    @property
    def size_bytes(self) -> int | None:
        return self.path.stat().st_size if self.path is not None else None


@dataclass(frozen=True)
class Record:
    """One raw record: its 0-based row, 1-based line, the parsed value (or a BadRow), and for JSONL
    the line's bytes (so a filtered copy is byte-identical for the rows it keeps)."""

    row: int
    line: int
    value: Any
    raw: bytes | None = None
    #: bytes of the file read so far (for progress), None for the hub
    offset: int | None = None


def open_source(source: str | Path, split: str = "train") -> Source:
    """Resolve a path (a file, or a folder holding one) or a Hugging Face dataset id."""
    path = Path(source).expanduser()
    if path.is_dir():
        path = data_file_in(path, split)
    if path.is_file():
        suffix = path.suffix.lower()
        kind = suffix.lstrip(".") if suffix in DATA_SUFFIXES else "jsonl"
        return Source(str(path), kind, path, split)
    if is_hub_id(str(source)) and path.suffix.lower() not in DATA_SUFFIXES:
        return Source(str(source), "hub", None, split)
    raise InputError(
        f"Data set {path} does not exist. Check the path (relative paths start at {Path.cwd()}); "
        "a Hugging Face dataset id looks like org/name."
    )


def records(source: Source, max_row_bytes: int = MAX_ROW_BYTES) -> Iterator[Record]:
    """Every raw record of the source in order; unreadable ones carry a BadRow as their value."""
    if source.kind == "hub":
        rows = hub_rows(source.name, source.split)
        yield from _tabular(rows, lambda n: f"{source.name} ({source.split} split) row {n}")
        return
    assert source.path is not None
    path = source.path
    if source.kind == "csv" or source.kind == "parquet":
        rows, where, _ = file_rows(path)
        yield from _tabular(rows, where)
    elif _first_char(path) == "[":
        yield from _json_array(path, max_row_bytes)
    else:
        yield from _jsonl(path, max_row_bytes)


def audit_rows(
    source: Source, max_row_bytes: int = MAX_ROW_BYTES
) -> Iterator[tuple[Record, AuditRow | BadRow]]:
    """Each record with its validated conversation or its BadRow. The first good row's format is the
    data set's; rows in another format are bad (one data set holds one format, as for training)."""
    tabular = source.kind in ("csv", "parquet", "hub")
    fmt: str | None = None
    first_at = ""
    for record in records(source, max_row_bytes):
        yield record, _validated(record, source, tabular, fmt, first_at)
        if fmt is None and isinstance(record.value, dict) and row_format(record.value) is not None:
            # fixed by the first row that is at least recognisable, as `load_training_data` does
            fmt, first_at = row_format(record.value), _where(source, record.line)


def detected_format(source: Source, max_row_bytes: int = MAX_ROW_BYTES) -> str | None:
    """The format of the first recognisable row (CHAT, ALPACA or SHAREGPT), or None."""
    for record in records(source, max_row_bytes):
        if isinstance(record.value, dict) and (fmt := row_format(record.value)) is not None:
            return fmt
    return None


def _validated(
    record: Record, source: Source, tabular: bool, fmt: str | None, first_at: str
) -> AuditRow | BadRow:
    if isinstance(record.value, BadRow):
        return record.value
    at = _where(source, record.line)
    raw = record.value
    if not isinstance(raw, dict):
        return BadRow(
            record.row, record.line, f"{at}: each row must be a JSON object, got {type(raw).__name__}."
        )
    row_fmt = row_format(raw)
    if row_fmt is None:
        keys = ", ".join(map(str, raw)) or "no keys"
        return BadRow(
            record.row,
            record.line,
            f"{at}: cannot tell the format: expected 'messages' (OpenAI chat), 'conversations' (ShareGPT) or "
            f"'instruction' and 'output' (Alpaca); the row has: {keys}.",
        )
    if fmt is not None and row_fmt != fmt:
        return BadRow(record.row, record.line, mixed_formats(at, row_fmt, first_at, fmt))
    try:
        messages, _ = conversation(raw, row_fmt, at, tabular)
    except InputError as e:
        return BadRow(record.row, record.line, str(e))
    return AuditRow(record.row, record.line, messages)


def _where(source: Source, line: int) -> str:
    if source.kind == "hub":
        return f"{source.name} ({source.split} split) row {line}"
    if source.kind == "parquet":
        return f"{source.name} row {line}"
    return f"{source.name}:{line}"


# ---------------------------------------------------------------------- readers
def _tabular(rows: Iterator[tuple[int, Any]], where: Any) -> Iterator[Record]:
    index = 0
    try:
        for n, value in rows:
            yield Record(index, n, value)
            index += 1
    except InputError as e:
        # a CSV parse error leaves the reader's position unknown: report it and stop this source
        yield Record(index, 0, BadRow(index, 0, f"{e} Reading stopped here."))


def _first_char(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(1 << 16)
    head = head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
    return chr(head[0]) if head else ""


def _jsonl(path: Path, max_row_bytes: int) -> Iterator[Record]:
    with path.open("rb") as f:
        row = line = 0
        while raw := f.readline(max_row_bytes + 1):
            line += 1
            if len(raw) > max_row_bytes and not raw.endswith(b"\n"):
                size = len(raw) + _skip_line(f)
                yield Record(
                    row, line, BadRow(row, line, _too_long(path, line, size, max_row_bytes)), None, f.tell()
                )
                row += 1
                continue
            try:
                text = raw.decode("utf-8-sig" if line == 1 else "utf-8")
            except UnicodeDecodeError as e:
                yield Record(row, line, BadRow(row, line, _not_utf8(path, line, raw, e)), raw, f.tell())
                row += 1
                continue
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as e:
                reason = (
                    f"{path}:{line}: not valid JSON ({e.msg} at column {e.colno}). Each line must hold one "
                    "whole JSON object (JSON Lines)."
                )
                value = BadRow(row, line, reason)
            yield Record(row, line, value, raw, f.tell())
            row += 1


def _skip_line(f: Any) -> int:
    """Read past the rest of the current line in 1 MiB pieces; the number of bytes skipped."""
    skipped = 0
    while piece := f.readline(_PIECE):
        skipped += len(piece)
        if piece.endswith(b"\n"):
            break
    return skipped


def _json_array(path: Path, max_row_bytes: int) -> Iterator[Record]:
    """Elements of a top-level JSON array, decoded one at a time from a buffer that grows only while an
    element is incomplete (never past `max_row_bytes` beyond the element's start)."""
    decoder = json.JSONDecoder()
    with path.open("rb") as f:
        buffer = f.read(_PIECE).decode("utf-8-sig", errors="strict")
        eof = False
        pos = _skip_ws(buffer, buffer.index("[") + 1)
        line = 1 + buffer.count("\n", 0, pos)
        row = 0
        while True:
            # keep at least one piece ahead of the element being decoded
            if not eof and len(buffer) - pos < _PIECE:
                more = f.read(_PIECE)
                eof = not more
                buffer = buffer[pos:] + more.decode("utf-8", errors="replace")
                pos = 0
            if buffer.startswith("]", pos):
                return
            try:
                value, end = decoder.raw_decode(buffer, pos)
            except json.JSONDecodeError as e:
                if not eof and len(buffer) - pos <= max_row_bytes:
                    more = f.read(_PIECE)
                    eof = not more
                    buffer += more.decode("utf-8", errors="replace")
                    continue
                at = line + buffer.count("\n", pos, e.pos)
                why = f"not valid JSON ({e.msg})" if eof else f"an element longer than {max_row_bytes} bytes"
                yield Record(row, at, BadRow(row, at, _array_stopped(path, at, why)), None, f.tell())
                return
            yield Record(row, line, value, None, f.tell())
            row += 1
            after = _skip_ws(buffer, end)
            if buffer.startswith(",", after):
                after = _skip_ws(buffer, after + 1)
            elif not buffer.startswith("]", after):
                at = line + buffer.count("\n", pos, after)
                yield Record(row, at, BadRow(row, at, _array_stopped(path, at, "expected ',' or ']'")), None)
                return
            line += buffer.count("\n", pos, after)
            pos = after


def _array_stopped(path: Path, line: int, why: str) -> str:
    return (
        f"{path}:{line}: {why}. Reading of the JSON array stopped here (JSON Lines lets the audit go on "
        "past a bad row)."
    )


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\n\r":
        pos += 1
    return pos


def _too_long(path: Path, line: int, size: int, limit: int) -> str:
    return (
        f"{path}:{line}: the line is {size / 2**20:.1f} MiB, over the {limit / 2**20:.0f} MiB limit per row "
        "(binary data or a whole file on one line?); skipped. Raise --max-row-mb if rows are that long."
    )


def _not_utf8(path: Path, line: int, raw: bytes, e: UnicodeDecodeError) -> str:
    return (
        f"{path}:{line}: not valid UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1}); binary data? "
        "Re-save the file as UTF-8 or drop the line."
    )
