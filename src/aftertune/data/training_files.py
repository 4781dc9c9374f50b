"""Training data sources read as (line or row, raw row) pairs: JSONL, JSON arrays, CSV, parquet, the hub.

JSONL, CSV and parquet are read row by row, so a large file never sits in memory as one string; a
JSON array is parsed whole (keep big data sets in JSONL). Rows are validated in `training.py`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aftertune.data.files import hub_split_rows, read_text
from aftertune.errors import InputError

DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")

#: (row number or line, raw row) pairs, and how to name a row's place in error messages.
Rows = Iterator[tuple[int, Any]]
Where = Callable[[int], str]


def data_file_in(folder: Path, split: str) -> Path:
    """The single data file in `folder` (of several, the one whose name holds `split`); else an InputError."""
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in DATA_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if len(files) > 1:
        # a hub-style folder names its files after the split (train.jsonl, data/train-00000-of-00001.parquet)
        files = [p for p in files if split in p.stem] or files
    if len(files) == 1:
        return files[0]
    if not files:
        raise InputError(f"{folder} is a folder holding no .jsonl, .json, .parquet or .csv file.")
    names = ", ".join(str(p.relative_to(folder)) for p in files[:6]) + (", ..." if len(files) > 6 else "")
    raise InputError(f"{folder} holds several data files ({names}); give the path of the one to train on.")


def file_rows(path: Path) -> tuple[Rows, Where, bool]:
    """The rows of a local file, how to name a row's place, and whether the source is tabular."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _parquet_rows(path), lambda n: f"{path} row {n}", True
    rows = _csv_rows(path) if suffix == ".csv" else _json_rows(path)
    return rows, lambda n: f"{path}:{n}", suffix == ".csv"


def _json_rows(path: Path) -> Rows:
    """A JSON array (parsed whole) or JSON Lines (streamed), told apart by the first character."""
    first = _first_char(path)
    if first == "[":
        yield from _json_array_rows(read_text(path, "Training data"), path)
    else:
        yield from _jsonl_rows(path)


def _first_char(path: Path) -> str:
    try:
        with path.open("rb") as f:
            start = True
            while chunk := f.read(1 << 16):
                if start and chunk.startswith(b"\xef\xbb\xbf"):
                    chunk = chunk[3:]
                start = False
                if stripped := chunk.lstrip(b" \t\r\n"):
                    return chr(stripped[0])
    except OSError as e:
        raise InputError(f"Cannot read training data {path}: {e.strerror}.") from e
    raise InputError(f"Training data {path} is empty.")


def _jsonl_rows(path: Path) -> Rows:
    with path.open("rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise _not_utf8(path, n, raw, e) from e
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(
                    f"{path}:{n}: not valid JSON ({e.msg} at column {e.colno}). Each line must hold one "
                    "whole JSON object (JSON Lines); a pretty-printed file must be a single JSON array."
                ) from e
            yield n, row


def _json_array_rows(text: str, path: Path) -> Rows:
    """The elements of a top-level JSON array, each with the line it starts on."""
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, text.index("[") + 1)
    line, counted = 1, 0
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            line += text.count("\n", counted, pos)
            counted = pos
            try:
                row, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno}).") from e
            yield line, row
            pos = _skip_ws(text, pos)
            if text.startswith(",", pos):
                pos = _skip_ws(text, pos + 1)
                continue
            if text.startswith("]", pos):
                pos += 1
                break
            if pos >= len(text):
                at = text.count("\n") + 1
                raise InputError(f"{path}:{at}: not valid JSON (the array is never closed with ']').")
            at = text.count("\n", 0, pos) + 1
            raise InputError(f"{path}:{at}: not valid JSON (expected ',' or ']' after an array element).")
    pos = _skip_ws(text, pos)
    if pos < len(text):
        at = text.count("\n", 0, pos) + 1
        raise InputError(f"{path}:{at}: not valid JSON (extra data after the closing ']').")


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\n\r":
        pos += 1
    return pos


def _csv_rows(path: Path) -> Rows:
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            try:
                # line numbers count physical lines, so multi-line quoted cells are accounted for;
                # reading the field names consumes the header
                previous = reader.line_num if reader.fieldnames is not None else 0
                for row in reader:
                    yield previous + 1, row
                    previous = reader.line_num
            except csv.Error as e:
                raise InputError(f"{path}:{reader.line_num}: not valid CSV ({e}).") from e
    except UnicodeDecodeError:
        # the decoder works on blocks, so the reader's line number is no guide: find the line itself
        with path.open("rb") as raw_file:
            for n, raw in enumerate(raw_file, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise _not_utf8(path, n, raw, e) from None
        raise


def _parquet_rows(path: Path) -> Rows:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise InputError(
            f"{path}: not a readable parquet file ({e}). Check that it is the file you meant."
        ) from e
    n = 0
    for batch in parquet.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            n += 1
            yield n, row


def hub_rows(dataset_id: str, split: str) -> Rows:
    """The rows of split `split` of a Hugging Face data set (numbered from 1), read through `datasets`.
    Reached when no local file or folder has that name, which the error says."""
    what = "training data (no local file or folder has that name either)"
    for n, (_, row) in enumerate(hub_split_rows(dataset_id, split, what), start=1):
        yield n, row


def _not_utf8(path: Path, line: int, raw: bytes, e: UnicodeDecodeError) -> InputError:
    return InputError(
        f"{path}:{line}: training data is not valid UTF-8 "
        f"(byte {raw[e.start]:#04x} at column {e.start + 1}). "
        "Re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 FILE > NEW`)."
    )
