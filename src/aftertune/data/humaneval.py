"""HumanEval-format coding tasks (Chen et al. 2021, "Evaluating Large Language Models Trained on Code").

A task is a Python function's signature and docstring to complete, and unit tests that check it. The
format is OpenAI's `HumanEval.jsonl.gz`: one JSON object per line with `task_id`, `prompt` (signature +
docstring), `canonical_solution` (a body completing the prompt), `test` (defines `check(candidate)`) and
`entry_point` (the function's name); HumanEval+ and other Python sets converted to it read the same.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

from aftertune.data.files import hub_split_rows
from aftertune.errors import InputError

_FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


@dataclass(frozen=True)
class HumanEvalTask:
    """One function to complete, and the tests its completion must pass."""

    task_id: str
    #: the function's signature and docstring (often after imports and helper functions)
    prompt: str
    #: a function body that completes `prompt` and passes the tests
    canonical_solution: str
    #: Python source defining `check(candidate)`, which asserts on candidate's results
    test: str
    #: the name of the function under test
    entry_point: str

    @property
    def harness(self) -> str:
        """What follows the solution in the program that is run: the tests, then the call to `check`."""
        return f"\n\n{self.test}\n\ncheck({self.entry_point})\n"

    @property
    def canonical_program(self) -> str:
        """The upstream program for the canonical solution: prompt + solution + tests + check call."""
        return self.prompt + self.canonical_solution + self.harness


def load_humaneval(path: Path) -> tuple[HumanEvalTask, ...]:
    """Every task of a HumanEval-format `.jsonl` or `.jsonl.gz` file, in file order.

    A malformed row raises an InputError naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        where = "is a folder" if path.is_dir() else "does not exist"
        raise InputError(f"HumanEval file {path} {where}. Give a .jsonl or .jsonl.gz file of tasks.")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise InputError(f"Cannot read HumanEval file {path}: {e}. Is it a complete gzip file?") from e
    tasks: list[HumanEvalTask] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        task = _task(line, f"{path}:{number}")
        if task.task_id in first_line:
            raise InputError(
                f"{path}:{number}: task_id '{task.task_id}' is already used on line "
                f"{first_line[task.task_id]}. Task ids key the results: give each task its own."
            )
        first_line[task.task_id] = number
        tasks.append(task)
    if not tasks:
        raise InputError(f"HumanEval file {path} holds no tasks.")
    return tuple(tasks)


def load_humaneval_hub(
    dataset: str, split: str = "test", data_files: str | None = None
) -> tuple[HumanEvalTask, ...]:
    """HumanEval-format tasks from a Hugging Face dataset id (e.g. `openai/openai_humaneval`), for
    users with internet; the rows hold the same fields as the JSONL file. (`"json"` with `data_files`
    reads a local file through the same path.)"""
    rows = hub_split_rows(dataset, split, "HumanEval tasks", data_files=data_files)
    tasks = tuple(_task_from_row(row, where) for where, row in rows)
    if not tasks:
        raise InputError(f"The dataset {dataset} ({split}) holds no tasks.")
    return tasks


def _task(line: bytes, where: str) -> HumanEvalTask:
    try:
        row = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise InputError(f"{where}: not valid UTF-8 (byte {line[e.start]:#04x}). Re-save it as UTF-8.") from e
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: not valid JSON ({e.msg} at column {e.colno}).") from e
    return _task_from_row(row, where)


def _task_from_row(row: object, where: str) -> HumanEvalTask:
    if not isinstance(row, dict):
        raise InputError(
            f"{where}: expected a JSON object with {', '.join(_FIELDS)}; got {type(row).__name__}."
        )
    missing = [f for f in _FIELDS if f not in row]
    if missing:
        raise InputError(
            f"{where}: missing field(s) {', '.join(missing)}; each row needs {', '.join(_FIELDS)}."
        )
    for field in _FIELDS:
        if not isinstance(row[field], str):
            raise InputError(f"{where}: field '{field}' must be a string, got {type(row[field]).__name__}.")
    for field in ("task_id", "prompt", "test"):
        if not row[field].strip():
            raise InputError(f"{where}: field '{field}' is empty.")
    if not row["entry_point"].isidentifier():
        raise InputError(f"{where}: entry_point '{row['entry_point']}' is not a Python function name.")
    if "def check(" not in row["test"]:
        raise InputError(f"{where}: field 'test' must define check(candidate), which the harness calls.")
    return HumanEvalTask(*(row[f] for f in _FIELDS))
