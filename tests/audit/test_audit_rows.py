"""Reading data to audit: every format, and every kind of bad row reported by line as the pass goes on."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from aftertune.audit.rows import AuditRow, BadRow, audit_rows, open_source

GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}


def read(path: Path, **kwargs: int) -> list[AuditRow | BadRow]:
    return [row for _, row in audit_rows(open_source(path), **kwargs)]


def test_every_bad_row_is_named_by_line_and_the_good_rows_around_it_are_read(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    lines = [
        json.dumps(GOOD).encode(),  # 1 good
        b'{"messages": [',  # 2 broken JSON
        json.dumps({"instruction": "a", "output": "b"}).encode(),  # 3 another format
        b"",  # 4 blank: skipped, still counted as a line
        json.dumps(
            {"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]}
        ).encode(),
        json.dumps(
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}]}
        ).encode(),
        b"\x00\xff\xfe\x80 binary",  # 7 garbage
        b'{"x": "' + b"a" * (3 * 2**20) + b'"}',  # 8 a 3 MiB line
        json.dumps(GOOD).encode(),  # 9 good
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    rows = read(path, max_row_bytes=2**20)
    assert [(type(r).__name__, r.line) for r in rows] == [
        ("AuditRow", 1), ("BadRow", 2), ("BadRow", 3), ("BadRow", 5), ("BadRow", 6), ("BadRow", 7),
        ("BadRow", 8), ("AuditRow", 9),
    ]  # fmt: skip
    assert [r.row for r in rows] == list(range(8))
    reasons = {r.line: r.reason for r in rows if isinstance(r, BadRow)}
    assert all(reason.startswith(f"{path}:{line}:") for line, reason in reasons.items())
    assert "not valid JSON" in reasons[2]
    assert "Alpaca" in reasons[3] and "first row" in reasons[3]
    assert "where 'user' was expected" in reasons[5]
    assert "empty or whitespace only" in reasons[6]
    assert "not valid UTF-8" in reasons[7]
    assert "3.0 MiB" in reasons[8] and "--max-row-mb" in reasons[8]


def test_json_array_alpaca_sharegpt_csv_and_parquet(tmp_path: Path) -> None:
    array = tmp_path / "alpaca.json"
    array.write_text(
        '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c",\n   "output": "d"}\n]\n'
    )
    rows = read(array)
    assert [(r.line, r.messages[-1].content) for r in rows if isinstance(r, AuditRow)] == [(2, "b"), (3, "d")]

    broken = tmp_path / "broken.json"
    broken.write_text('[\n {"instruction": "a", "output": "b"},\n {"instruction": oops}\n]\n')
    rows = read(broken)
    assert isinstance(rows[0], AuditRow) and isinstance(rows[1], BadRow)
    assert rows[1].reason.startswith(f"{broken}:3:") and "stopped" in rows[1].reason

    share = tmp_path / "share.jsonl"
    share.write_text(
        json.dumps({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]})
        + "\n"
    )
    [row] = read(share)
    assert isinstance(row, AuditRow) and row.answer_text == "Yo"

    table = tmp_path / "data.csv"
    with table.open("w", newline="") as f:
        writer = csv.DictWriter(f, ["instruction", "input", "output"])
        writer.writeheader()
        writer.writerows(
            [
                {"instruction": "a", "input": "", "output": "b"},
                {"instruction": "", "input": "", "output": "c"},
            ]
        )
    rows = read(table)
    assert isinstance(rows[0], AuditRow) and isinstance(rows[1], BadRow) and rows[1].line == 3

    parquet = tmp_path / "data.parquet"
    pq.write_table(pa.Table.from_pylist([{"messages": json.dumps(GOOD["messages"])}]), parquet)
    [row] = read(parquet)
    assert isinstance(row, AuditRow) and row.answer_text == "Hello!"
