"""`--write-filtered`: the data set without the rows chosen detectors flagged, in the input's format.

A second pass over the source: JSONL keeps each kept line byte for byte; a JSON array is written as a
JSON array, CSV with the same columns, parquet with the same schema, and a hub data set as JSONL.
Bad rows are always left out (training would stop on them). The counts say how many rows each rule
dropped (a row flagged by two rules counts under both) and how many went in all.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from aftertune.audit.rows import BadRow, Record, Source, records
from aftertune.errors import InputError

_SUFFIX = {"jsonl": ".jsonl", "json": ".json", "csv": ".csv", "parquet": ".parquet", "hub": ".jsonl"}


def write_filtered(
    source: Source, out: Path, drops: dict[str, set[int]], bad_rows: set[int], max_row_mb: float
) -> dict[str, Any]:
    """Write the rows neither bad nor flagged by a rule in `drops` to `out`; return the counts."""
    if out.suffix.lower() != _SUFFIX[source.kind]:
        raise InputError(
            f"--write-filtered {out}: the input is {source.kind} and the filtered copy keeps its format, so "
            f"name it with the suffix {_SUFFIX[source.kind]}."
        )
    if source.path is not None and out.resolve() == source.path.resolve():
        raise InputError(
            f"--write-filtered {out} is the input file itself; write the filtered copy elsewhere."
        )
    dropped = {rule: 0 for rule in drops}
    kept = bad = dropped_rows = 0
    tmp = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)

    def kept_records() -> Iterator[Record]:
        nonlocal kept, bad, dropped_rows
        for record in records(source, int(max_row_mb * 2**20)):
            if (
                record.row in bad_rows
                or isinstance(record.value, BadRow)
                or not isinstance(record.value, dict)
            ):
                bad += 1
                continue
            hits = [rule for rule, rows in drops.items() if record.row in rows]
            for rule in hits:
                dropped[rule] += 1
            if hits:
                dropped_rows += 1
                continue
            kept += 1
            yield record

    writer = {"jsonl": _jsonl, "hub": _jsonl, "json": _json_array, "csv": _csv, "parquet": _parquet}[
        source.kind
    ]
    writer(kept_records(), tmp, source.kind == "hub")
    tmp.replace(out)  # complete or absent: never a half-written copy under the final name
    return {
        "path": str(out),
        "kept": kept,
        "dropped": dropped_rows,
        "dropped_by_rule": dropped,
        "bad_rows_left_out": bad,
        "rules": sorted(drops),
    }


def _jsonl(rows: Iterator[Record], path: Path, from_hub: bool) -> None:
    with path.open("wb") as f:
        for r in rows:
            if r.raw is not None and not from_hub:
                f.write(r.raw if r.raw.endswith(b"\n") else r.raw + b"\n")
            else:
                f.write(json.dumps(r.value, ensure_ascii=False, default=str).encode() + b"\n")


def _json_array(rows: Iterator[Record], path: Path, _: bool) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write("[")
        for i, r in enumerate(rows):
            f.write(("," if i else "") + "\n  " + json.dumps(r.value, ensure_ascii=False))
        f.write("\n]\n")


def _csv(rows: Iterator[Record], path: Path, _: bool) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer: csv.DictWriter[str] | None = None
        for r in rows:
            if writer is None:
                writer = csv.DictWriter(f, fieldnames=list(r.value))
                writer.writeheader()
            writer.writerow(r.value)


def _parquet(rows: Iterator[Record], path: Path, _: bool) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with ExitStack() as stack:
        writer = None
        batch: list[dict[str, Any]] = []
        for r in rows:
            batch.append(r.value)
            if len(batch) >= 1024:
                writer = _flush(batch, path, writer, stack, pa, pq)
                batch = []
        writer = _flush(batch, path, writer, stack, pa, pq)
        if writer is None:  # nothing kept: an empty file with no columns
            pq.write_table(pa.table({}), path)


def _flush(batch: list[dict[str, Any]], path: Path, writer: Any, stack: ExitStack, pa: Any, pq: Any) -> Any:
    if not batch:
        return writer
    table = pa.Table.from_pylist(batch)
    if writer is None:
        writer = stack.enter_context(pq.ParquetWriter(path, table.schema))
    writer.write_table(table.cast(writer.schema))
    return writer
