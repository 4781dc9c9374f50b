"""Reading HumanEval-format task files: the real file, and every kind of malformed row named by file:line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from conftest import shared_data

from aftertune.data.humaneval import HumanEvalTask, load_humaneval, load_humaneval_hub
from aftertune.errors import InputError

ROW = {
    "task_id": "Toy/0",
    "prompt": 'def add(a: int, b: int) -> int:\n    """Return a + b."""\n',
    "canonical_solution": "    return a + b\n",
    "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n",
    "entry_point": "add",
}


def write_rows(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.needs_data
def test_the_shared_humaneval_file_has_its_164_tasks() -> None:
    tasks = load_humaneval(shared_data("humaneval/HumanEval.jsonl.gz"))
    assert [t.task_id for t in tasks] == [f"HumanEval/{i}" for i in range(164)]
    first = tasks[0]
    assert first.entry_point == "has_close_elements" and first.prompt.startswith("from typing import List")
    assert (
        first.harness.endswith("\n\ncheck(has_close_elements)\n") and "def check(candidate)" in first.harness
    )
    assert first.canonical_program.startswith(first.prompt + first.canonical_solution)


def test_jsonl_and_gzip_files_read_the_same(tmp_path: Path) -> None:
    plain = write_rows(
        tmp_path / "tasks.jsonl", [json.dumps(ROW), "", json.dumps({**ROW, "task_id": "Toy/1"})]
    )
    packed = tmp_path / "tasks.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    tasks = load_humaneval(plain)
    assert tasks == load_humaneval(packed)
    assert tasks[0] == HumanEvalTask(**ROW) and [t.task_id for t in tasks] == ["Toy/0", "Toy/1"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"tasks.jsonl:2: not valid JSON"),
        ("[1, 2]", r"tasks.jsonl:2: expected a JSON object"),
        (
            json.dumps({k: v for k, v in ROW.items() if k != "test"}),
            r"tasks.jsonl:2: missing field\(s\) test",
        ),
        (json.dumps({**ROW, "task_id": 7}), r"tasks.jsonl:2: field 'task_id' must be a string, got int"),
        (json.dumps({**ROW, "entry_point": "add numbers"}), r"tasks.jsonl:2: entry_point 'add numbers'"),
        (json.dumps({**ROW, "test": "assert True\n"}), r"tasks.jsonl:2: field 'test' must define check"),
        (json.dumps({**ROW, "prompt": "  "}), r"tasks.jsonl:2: field 'prompt' is empty"),
        (json.dumps(ROW), r"tasks.jsonl:2: task_id 'Toy/0' is already used on line 1"),
    ],
)
def test_a_malformed_row_names_the_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = write_rows(tmp_path / "tasks.jsonl", [json.dumps(ROW), line])
    with pytest.raises(InputError, match=message):
        load_humaneval(path)


def test_missing_empty_and_broken_files_say_so(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_humaneval(tmp_path / "absent.jsonl")
    with pytest.raises(InputError, match="holds no tasks"):
        load_humaneval(write_rows(tmp_path / "empty.jsonl", [""]))
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(gzip.compress(json.dumps(ROW).encode())[:20])
    with pytest.raises(InputError, match="Cannot read HumanEval file .*broken.jsonl.gz"):
        load_humaneval(broken)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(
        json.dumps(ROW).encode() + b"\n" + json.dumps({**ROW, "task_id": "Toy/9"}).encode()[:-2] + b'\xe9"}'
    )
    with pytest.raises(InputError, match="latin.jsonl:2: not valid UTF-8"):
        load_humaneval(latin)


def test_the_hub_path_reads_the_same_tasks(tmp_path: Path) -> None:
    """`load_humaneval_hub` (openai/openai_humaneval for users online), exercised on a local file."""
    plain = write_rows(tmp_path / "tasks.jsonl", [json.dumps(ROW), json.dumps({**ROW, "task_id": "Toy/1"})])
    assert load_humaneval_hub("json", split="train", data_files=str(plain)) == load_humaneval(plain)
    broken = write_rows(tmp_path / "broken.jsonl", [json.dumps({**ROW, "entry_point": "not a name"})])
    with pytest.raises(InputError, match=r"json\[train\] row 0: entry_point"):
        load_humaneval_hub("json", split="train", data_files=str(broken))
    with pytest.raises(InputError, match="Cannot load HumanEval tasks .* from the Hugging Face hub"):
        load_humaneval_hub("json", split="train", data_files=str(tmp_path / "absent.jsonl"))
