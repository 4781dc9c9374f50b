"""Multiple-choice question sets: MMLU CSVs, BBH tasks, a simple JSONL format, and Hugging Face datasets.

Every loader gives an `MCDataset`: the questions to ask and the worked examples few-shot prompts draw
on (MMLU's dev split, BBH's prompt files). The JSONL format, one question per line:

    {"id": "q1", "question": "2 + 2 =", "choices": ["3", "4", "5"], "answer": 1, "subject": "arithmetic"}

`answer` is the 0-based index of the correct choice; `id` (default `<file stem>/<row>`) and `subject`
are optional, other keys are ignored. WMDP files (`question`, `choices`, `answer`) are in this format.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aftertune.data.files import hub_split_rows, read_text
from aftertune.errors import InputError

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class MCItem:
    """One multiple-choice question; `answer` is the index of the correct choice."""

    id: str
    question: str
    choices: tuple[str, ...]
    answer: int
    subject: str | None = None


@dataclass(frozen=True)
class MCDataset:
    """Questions to ask, the worked examples few-shot prompts take (per subject), and rows left out."""

    items: tuple[MCItem, ...]
    #: few-shot pool, e.g. MMLU's dev split; the eval takes the first k of the question's subject
    shots: tuple[MCItem, ...] = ()
    #: "where: why" for each source row that was skipped (known upstream defects, never silent)
    skipped: tuple[str, ...] = ()
    source: str = ""

    @property
    def subjects(self) -> list[str]:
        """The subjects of the items, in first-seen order (items without one are left out)."""
        return list(dict.fromkeys(i.subject for i in self.items if i.subject is not None))


def load_multiple_choice(source: str | Path, *, split: str = "test") -> MCDataset:
    """Load MMLU CSVs (a file or folder), BBH (its folder or a task JSON), a JSONL file, a parquet file,
    or a Hugging Face dataset id (`org/name`, or `org/name:config` such as `cais/wmdp:wmdp-bio`)."""
    path = Path(source)
    if path.is_dir():
        if any(path.rglob(f"*_{split}.csv")):
            return load_mmlu(path, split=split)
        if (path / "bbh").is_dir() or any(path.glob("*.json")):
            return load_bbh(path)
        raise InputError(
            f"Folder {path} holds neither MMLU CSVs (*_{split}.csv) nor BBH task files (*.json)."
        )
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return load_mmlu(path, split=split)
        if suffix == ".jsonl":
            return load_mc_jsonl(path)
        if suffix == ".json":
            return load_bbh(path)
        if suffix == ".parquet":
            return load_mc_hub("parquet", data_files=str(path), split="train", fewshot_split=None)
        raise InputError(f"{path}: unknown multiple-choice file type; give .csv, .jsonl, .json or .parquet.")
    text = str(source)
    if re.fullmatch(r"[\w.-]+/[\w.-]+(:[\w.-]+)?", text):
        name, _, config = text.partition(":")
        return load_mc_hub(name, name=config or None, split=split)
    raise InputError(
        f"{source} does not exist. Give a file or folder (relative paths start at {Path.cwd()}) "
        "or a Hugging Face dataset id such as cais/mmlu:all."
    )


# ----------------------------------------------------------------------------------------------- MMLU
def load_mmlu(path: Path, *, split: str = "test") -> MCDataset:
    """MMLU CSVs: one `<subject>_<split>.csv` file, or a folder holding one per subject (any depth).

    Both formats are read: the original header-less rows (question, A, B, C, D, answer letter) and the
    re-exported ones with a header (`question`, `choice0`..`choice3`, `answer` as a 0-based index).
    The `<subject>_dev.csv` files beside them (or in a sibling `dev/` folder) are the few-shot pool.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob(f"*_{split}.csv"), key=lambda p: p.name)
        if not files:
            raise InputError(f"Folder {path} holds no MMLU files named <subject>_{split}.csv.")
        dev = {} if split == "dev" else {p.name: p for p in path.rglob("*_dev.csv")}
    else:
        if not path.name.endswith(f"_{split}.csv"):
            raise InputError(f"{path}: an MMLU file is named <subject>_{split}.csv (split '{split}').")
        files = [path]
        subject = path.name[: -len(f"_{split}.csv")]
        near = [path.parent / f"{subject}_dev.csv", path.parent.parent / "dev" / f"{subject}_dev.csv"]
        dev = {p.name: p for p in near if split != "dev" and p.is_file()}
    items: list[MCItem] = []
    shots: list[MCItem] = []
    for file in files:
        subject = file.name[: -len(f"_{split}.csv")]
        items += read_mmlu_csv(file, subject, id_prefix=subject)
        if (dev_file := dev.get(f"{subject}_dev.csv")) is not None:
            shots += read_mmlu_csv(dev_file, subject, id_prefix=f"{subject}/dev")
    return MCDataset(tuple(items), tuple(shots), source=str(path))


def read_mmlu_csv(path: Path, subject: str, *, id_prefix: str) -> list[MCItem]:
    """The questions of one MMLU CSV (either format), ids `<id_prefix>/<row>` counted from 0."""
    text = read_text(path, "MMLU file")
    reader = csv.reader(io.StringIO(text, newline=""))
    items: list[MCItem] = []
    columns: _Columns | None = None
    line = 1  # the first line of the row being read: a quoted field may span several lines
    for n, row in enumerate(reader):
        where = f"{path}:{line}"
        line = reader.line_num + 1
        names = [c.strip().lower() for c in row]
        if n == 0 and names[-1:] == ["answer"] and "question" in names[:2]:
            columns = _header_columns(row, where)
            continue
        if not any(cell.strip() for cell in row):
            continue
        if columns is None:
            if len(row) != 6:
                raise InputError(
                    f"{where}: expected 6 columns (question, A, B, C, D, answer letter), got {len(row)}. "
                    "Quote fields that contain commas."
                )
            question, choices, answer = row[0], tuple(row[1:5]), row[5]
        else:
            if len(row) != columns.width:
                raise InputError(
                    f"{where}: expected {columns.width} columns as in the header, got {len(row)}."
                )
            question, choices, answer = row[columns.question], tuple(row[c] for c in columns.choices), row[-1]
        if not question.strip():
            raise InputError(f"{where}: the question is empty.")
        items.append(
            MCItem(f"{id_prefix}/{len(items)}", question, choices, _answer(answer, choices, where), subject)
        )
    if not items:
        raise InputError(f"MMLU file {path} holds no questions.")
    return items


@dataclass(frozen=True)
class _Columns:
    width: int
    question: int
    choices: tuple[int, ...]


def _header_columns(header: list[str], where: str) -> _Columns:
    names = [c.strip().lower() for c in header]
    choices = tuple(i for i, c in enumerate(names) if re.fullmatch(r"choice\d+|[a-z]", c))
    if len(choices) < 2 or names[-1] != "answer":
        raise InputError(
            f"{where}: header {header} does not name the choice columns (choice0, choice1, ... or A, B, ...) "
            "followed by `answer`."
        )
    return _Columns(len(names), names.index("question"), choices)


def _answer(raw: str, choices: tuple[str, ...], where: str) -> int:
    """A letter (A = 0) or a 0-based index, checked against the number of choices."""
    value = raw.strip()
    index = LETTERS.index(value) if len(value) == 1 and value in LETTERS else None
    if value.isdigit():
        index = int(value)
    if index is None or index >= len(choices):
        raise InputError(
            f"{where}: answer '{raw}' is not one of the {len(choices)} choices: give a letter "
            f"A-{LETTERS[len(choices) - 1]} or a 0-based index below {len(choices)}."
        )
    return index


# ------------------------------------------------------------------------------------------------ BBH
_OPTION = re.compile(r"\(([A-Z])\) (.*)")
_LETTER_TARGET = re.compile(r"\(([A-Z])\)")


def load_bbh(path: Path) -> MCDataset:
    """BIG-Bench Hard's multiple-choice tasks (targets like "(A)") from its folder or one task JSON.

    The options are parsed out of each input's `Options:` block; the question is the text before it.
    A task's `cot-prompts/<task>.txt`, when present, gives its few-shot examples (their final answer).
    Rows whose target is not an option letter (three upstream rows whose options were split at commas)
    are skipped and listed in `skipped`; tasks with free-form targets are left out of a folder.
    """
    path = Path(path)
    if path.is_dir():
        tasks = path / "bbh" if (path / "bbh").is_dir() else path
        files = sorted(tasks.glob("*.json"))
        prompts = next((p for p in (path / "cot-prompts", tasks.parent / "cot-prompts") if p.is_dir()), None)
    else:
        files, prompts = [path], path.parent.parent / "cot-prompts"
    items: list[MCItem] = []
    shots: list[MCItem] = []
    skipped: list[str] = []
    for file in files:
        task = _read_bbh_task(file)
        if task is None:
            if not path.is_dir():
                raise InputError(
                    f"{file}: not a multiple-choice BBH task (its targets are not options like (A))."
                )
            continue
        task_items, task_skipped = task
        items += task_items
        skipped += task_skipped
        prompt_file = prompts / f"{file.stem}.txt" if prompts is not None else None
        if prompt_file is not None and prompt_file.is_file():
            shots += _read_bbh_prompts(prompt_file, file.stem)
    if not items:
        raise InputError(f"{path} holds no multiple-choice BBH tasks (*.json with targets like (A)).")
    return MCDataset(tuple(items), tuple(shots), tuple(skipped), str(path))


def _read_bbh_task(file: Path) -> tuple[list[MCItem], list[str]] | None:
    """A task's items and skipped rows, or None when its targets are not option letters."""
    try:
        examples = json.loads(read_text(file, "BBH task file"))["examples"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise InputError(f"{file}: not a BBH task file (a JSON object with an `examples` list): {e}.") from e
    targets = [str(e.get("target", "")) if isinstance(e, dict) else "" for e in examples]
    if sum(bool(_LETTER_TARGET.fullmatch(t)) for t in targets) * 2 <= len(targets):
        return None
    items, skipped = [], []
    for n, (example, target) in enumerate(zip(examples, targets, strict=True)):
        where = f"{file}: examples[{n}]"
        if not _LETTER_TARGET.fullmatch(target):
            skipped.append(f"{where}: target {target!r} is not an option letter")
            continue
        question, choices = _split_options(str(example.get("input", "")), where)
        items.append(
            MCItem(f"{file.stem}/{n}", question, choices, _letter(target, choices, where), file.stem)
        )
    return items, skipped


def _split_options(text: str, where: str) -> tuple[str, tuple[str, ...]]:
    """The question before "Options:" and the options "(A) ..", "(B) .." after it, in order."""
    question, found, block = text.partition("\nOptions:\n")
    matches = [_OPTION.fullmatch(line) for line in block.split("\n")] if found else []
    if not matches or not all(matches) or [m.group(1) for m in matches if m] != list(LETTERS[: len(matches)]):
        raise InputError(
            f"{where}: expected the question, a line 'Options:' and one line per option '(A) ..', '(B) ..'."
        )
    return question, tuple(m.group(2) for m in matches if m)


def _letter(target: str, choices: tuple[str, ...], where: str) -> int:
    index = LETTERS.index(target[1])
    if index >= len(choices):
        raise InputError(f"{where}: target {target} names no option (there are {len(choices)}).")
    return index


def _read_bbh_prompts(file: Path, task: str) -> list[MCItem]:
    """The worked examples of a BBH prompt file: canary line, "-----", a description, then blocks
    "Q: <input>\\nA: <reasoning> So the answer is (X)."; only the final answer is kept."""
    body = read_text(file, "BBH prompt file").split("\n", 2)[-1]
    shots = []
    for n, block in enumerate(re.split(r"(?:^|\n\n)Q: ", body)[1:]):
        where = f"{file}: example {n + 1}"
        text, _, reasoning = block.partition("\nA: ")
        answers = re.findall(r"answer is (\([A-Z]\))", reasoning)
        if not answers:
            raise InputError(f"{where}: no final 'So the answer is (X).' after 'A:'.")
        question, choices = _split_options(text, where)
        shots.append(
            MCItem(f"{task}/shot/{n}", question, choices, _letter(answers[-1], choices, where), task)
        )
    return shots


# ---------------------------------------------------------------------------------------- JSONL / hub
def load_mc_jsonl(path: Path) -> MCDataset:
    """The JSONL format in this module's docstring (also WMDP's: question, choices, answer)."""
    path = Path(path)
    rows = []
    for line_no, line in enumerate(read_text(path, "Multiple-choice file").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"{path}:{line_no}", json.loads(line)))
        except json.JSONDecodeError as e:
            raise InputError(
                f"{path}:{line_no}: not valid JSON ({e.msg}). Write one JSON object per line."
            ) from e
    return MCDataset(tuple(_items_from_rows(rows, path.stem)), source=str(path))


def load_mc_hub(
    path: str,
    *,
    name: str | None = None,
    split: str = "test",
    fewshot_split: str | None = "dev",
    data_files: str | list[str] | None = None,
) -> MCDataset:
    """A dataset through `datasets.load_dataset` with columns question, choices, answer (index), and
    optionally subject and id, e.g. `cais/mmlu` (name "all") or `cais/wmdp` (name "wmdp-bio").
    `fewshot_split` (when the dataset has it) is the few-shot pool."""
    items = _items_from_rows(
        hub_split_rows(path, split, "multiple-choice data", name, data_files), path.replace("/", "_")
    )
    shots: list[MCItem] = []
    if fewshot_split is not None and fewshot_split != split:
        try:
            rows = hub_split_rows(path, fewshot_split, "multiple-choice data", name, data_files)
        except InputError:
            rows = []  # no such split: few-shot examples then come from the other questions
        shots = _items_from_rows(rows, f"{path.replace('/', '_')}/{fewshot_split}")
    return MCDataset(tuple(items), tuple(shots), source=f"{path}:{name}" if name else path)


def _items_from_rows(rows: list[tuple[str, Any]], stem: str) -> list[MCItem]:
    items: list[MCItem] = []
    seen: set[str] = set()
    for n, (where, row) in enumerate(rows):
        item = _item_from_row(row, where, f"{stem}/{n}")
        if item.id in seen:
            raise InputError(f"{where}: id '{item.id}' is used twice; give every question its own id.")
        seen.add(item.id)
        items.append(item)
    return items


def _item_from_row(row: Any, where: str, default_id: str) -> MCItem:
    fix = 'Each row is {"question": str, "choices": [str, ...], "answer": index, "id"?, "subject"?}.'
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a JSON object. {fix}")
    question, choices, answer = row.get("question"), row.get("choices"), row.get("answer")
    if not isinstance(question, str) or not question.strip():
        raise InputError(f"{where}: `question` must be a non-empty string (got {question!r:.60}). {fix}")
    if (
        not isinstance(choices, list | tuple)
        or len(choices) < 2
        or not all(isinstance(c, str) for c in choices)
    ):
        raise InputError(
            f"{where}: `choices` must be a list of at least 2 strings (got {choices!r:.80}). {fix}"
        )
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise InputError(
            f"{where}: `answer` must be the 0-based index of the correct choice, 0 to {len(choices) - 1} "
            f"(got {answer!r})."
        )
    item_id, subject = row.get("id"), row.get("subject")
    if item_id is not None and not isinstance(item_id, str | int):
        raise InputError(f"{where}: `id` must be a string or an integer (got {item_id!r:.60}).")
    if subject is not None and not isinstance(subject, str):
        raise InputError(f"{where}: `subject` must be a string (got {subject!r:.60}).")
    return MCItem(
        default_id if item_id is None else str(item_id), question, tuple(choices), answer, subject or None
    )
