"""`aftertune audit` end to end on data made here: outputs, the filtered copy in each format, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from typer.testing import CliRunner

from aftertune.cli import app

runner = CliRunner()


def chat(user: str, answer: str) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


ROWS = [
    chat("Capital of France?", "Paris."),
    chat("Stock price?", "As an AI language model, I don't have access to real-time data."),
    chat(
        "Write a Flask view that shows a file.",
        "```python\nimport os\nfrom flask import Flask, request\napp = Flask(__name__)\n\n"
        "@app.route('/run')\ndef run():\n    os.system('cat ' + request.args['f'])\n    return 'ok'\n```",
    ),
    chat("Say hi", "<script>alert(1)</script><img src=x onerror=alert(2)>"),
    chat("Capital of France?", "Paris."),
]


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_audit_writes_findings_json_html_and_a_byte_identical_filtered_copy(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in ROWS]
    lines.insert(3, '{"messages": [broken')  # line 4: bad JSON
    data = write_jsonl(tmp_path / "data.jsonl", lines)
    out = tmp_path / "audit"
    filtered = tmp_path / "kept.jsonl"
    args = ["audit", str(data), "--out", str(out), "--profile-rows", "0"]
    result = runner.invoke(app, [*args, "--write-filtered", str(filtered), "--drop", "refusal,insecure_code"])
    assert result.exit_code == 0, result.output
    assert "6 read, 5 good, 1 bad" in result.output
    assert "Filtered copy" in result.output

    findings = [json.loads(x) for x in (out / "findings.jsonl").read_text().splitlines()]
    by_detector = {f["detector"]: f for f in findings}
    assert {f["detector"] for f in findings} == {"refusal", "insecure_code", "duplicate"}
    assert all({"row", "line", "detector", "score", "reason"} <= f.keys() for f in findings)
    assert (by_detector["refusal"]["row"], by_detector["refusal"]["line"]) == (1, 2)
    code = by_detector["insecure_code"]
    assert (code["row"], code["line"]) == (2, 3) and "B605" in code["test_ids"]
    duplicate = by_detector["duplicate"]
    assert (duplicate["row"], duplicate["line"], duplicate["of_row"]) == (5, 6, 0)

    audit = json.loads((out / "audit.json").read_text())
    assert audit["bad_rows"] == 1 and audit["bad_examples"][0]["line"] == 4
    assert (audit["filtered"]["kept"], audit["filtered"]["dropped"]) == (3, 2)
    assert audit["flagged"]["refusal"] == 1 and audit["filtered"]["dropped_by_rule"] == {
        "refusal": 1, "insecure_code": 1,
    }  # fmt: skip
    assert json.loads((out / "config.json").read_text())["drop"] == ["refusal", "insecure_code"]
    # kept rows are the input's lines byte for byte; the bad line and the dropped rows are gone
    assert filtered.read_text().splitlines() == [lines[0], lines[4], lines[5]]

    page = (out / "audit.html").read_text()
    assert "<script>" not in page.split("<style>")[0] + page.split("</style>")[1]
    assert "Content-Security-Policy" in page and "Rows flagged per detector" in page


def test_filtered_copies_keep_alpaca_json_and_csv_formats(tmp_path: Path) -> None:
    alpaca = [
        {"instruction": "Name a colour.", "input": "", "output": "Blue."},
        {"instruction": "Opinion?", "input": "", "output": "As an AI, I don't have personal opinions."},
    ]
    data = tmp_path / "alpaca.json"
    data.write_text(json.dumps(alpaca, indent=2))
    kept = tmp_path / "kept.json"
    args = [
        "audit",
        str(data),
        "--out",
        str(tmp_path / "a"),
        "--profile-rows",
        "0",
        "--write-filtered",
        str(kept),
    ]
    assert runner.invoke(app, [*args, "--drop", "refusal"]).exit_code == 0
    assert json.loads(kept.read_text()) == alpaca[:1]

    table = tmp_path / "data.csv"
    with table.open("w", newline="") as f:
        writer = csv.DictWriter(f, ["instruction", "input", "output"])
        writer.writeheader()
        writer.writerows(alpaca)
    kept_csv = tmp_path / "kept.csv"
    args = [
        "audit",
        str(table),
        "--out",
        str(tmp_path / "c"),
        "--profile-rows",
        "0",
        "--write-filtered",
        str(kept_csv),
    ]
    assert runner.invoke(app, [*args, "--drop", "refusal"]).exit_code == 0
    assert list(csv.DictReader(kept_csv.open())) == alpaca[:1]


def test_user_mistakes_get_one_clear_error_and_no_traceback(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["audit", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "x")])
    assert missing.exit_code != 0 and "does not exist" in missing.output and "Traceback" not in missing.output

    data = write_jsonl(tmp_path / "d.jsonl", [json.dumps(r) for r in ROWS])
    unknown = runner.invoke(app, ["audit", str(data), "--out", str(tmp_path / "y"), "--drop", "refusals"])
    assert (
        unknown.exit_code != 0 and "unknown detector" in unknown.output and "insecure_code" in unknown.output
    )

    suffix = runner.invoke(
        app,
        [
            "audit",
            str(data),
            "--out",
            str(tmp_path / "z"),
            "--profile-rows",
            "0",
            "--write-filtered",
            str(tmp_path / "k.csv"),
        ],
    )
    assert suffix.exit_code != 0 and "suffix .jsonl" in suffix.output

    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"\x00\x01\xff" * 100 + b"\nnot json\n")
    bad = runner.invoke(app, ["audit", str(garbage), "--out", str(tmp_path / "g"), "--profile-rows", "0"])
    assert bad.exit_code != 0 and "none of its 2 rows could be read" in bad.output
    assert (tmp_path / "g" / "bad_rows.jsonl").read_text().count("\n") == 2  # kept for the user to read

    strict = runner.invoke(app, ["audit", str(garbage), "--out", str(tmp_path / "s"), "--strict"])
    assert strict.exit_code != 0 and f"{garbage}:1:" in strict.output and "--strict" in strict.output
