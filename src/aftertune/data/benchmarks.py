"""Reading generation benchmarks: GSM8K, BIG-Bench Hard (with its chain-of-thought prompts) and DROP.

Each loader takes a local file in the benchmark's published format, or a Hugging Face dataset id read
with `datasets.load_dataset` (for users with internet; `"json"` with `data_files=` reads a local file
through that same path). A malformed row is an InputError naming the file and line (or the dataset,
split and row). Item ids are the 0-based row index (DROP: its `query_id` when the rows carry one), so
the same split read from a file or from the hub gives the same ids.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aftertune.data.files import hub_split_rows
from aftertune.errors import InputError

#: a hub id such as "openai/gsm8k", or a `datasets` builder such as "json"
_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")
_FILE_SUFFIXES = (".json", ".jsonl", ".gz", ".txt", ".csv", ".parquet")
_COT_CUE = "Let's think step by step."
#: BBH tasks whose targets are free answers (True/False, Yes/No, valid/invalid, numbers, bracket
#: sequences, word lists) rather than option letters "(A)".."(R)"
BBH_FREE_ANSWER_TASKS = (
    "boolean_expressions",
    "causal_judgement",
    "dyck_languages",
    "formal_fallacies",
    "multistep_arithmetic_two",
    "navigate",
    "object_counting",
    "sports_understanding",
    "web_of_lies",
    "word_sorting",
)

T = TypeVar("T")


# ---------------------------------------------------------------------- records
@dataclass(frozen=True)
class GSM8KItem:
    """A GSM8K problem; `answer` is the worked solution ending in "#### <number>"."""

    id: str
    question: str
    answer: str

    @property
    def gold(self) -> str:
        """The final number as written after "####" (e.g. "1,000"; scoring removes the commas)."""
        return _gsm8k_gold(self.answer)


@dataclass(frozen=True)
class BBHExample:
    """One BIG-Bench Hard question and its target string ("True", "(B)", "8", "] ]", ...)."""

    id: str
    input: str
    target: str


@dataclass(frozen=True)
class BBHShot:
    """One worked example of a BBH chain-of-thought prompt; `answer` is the text after "A: ", which starts
    with "Let's think step by step." and ends with "So the answer is X."."""

    input: str
    answer: str

    @property
    def reasoning(self) -> str:
        """The answer without its "Let's think step by step." cue."""
        return self.answer.removeprefix(_COT_CUE).strip()


@dataclass(frozen=True)
class BBHPrompt:
    """A task's few-shot chain-of-thought prompt (Suzgun et al. 2022, `cot-prompts/<task>.txt`)."""

    description: str
    shots: tuple[BBHShot, ...]


@dataclass(frozen=True)
class BBHTask:
    """One BBH task: its examples and, when its file was found, its chain-of-thought prompt."""

    name: str
    examples: tuple[BBHExample, ...]
    cot_prompt: BBHPrompt | None = None


@dataclass(frozen=True)
class DROPItem:
    """A DROP question; each gold answer is a tuple of spans (one span for a number, a date or the
    simple-evals format, which joins an answer's spans into one string)."""

    id: str
    passage: str
    question: str
    answers: tuple[tuple[str, ...], ...]


# ---------------------------------------------------------------------- reading rows
def _is_local(source: str | Path) -> bool:
    """A path that exists is a file; a string shaped like a hub id is a dataset id; else an InputError."""
    if Path(source).exists():
        return True
    text = str(source)
    if isinstance(source, str) and _HUB_ID.match(text) and not text.lower().endswith(_FILE_SUFFIXES):
        return False
    raise InputError(
        f"{source} does not exist. Give a local file (relative paths start at {Path.cwd()}) "
        "or a Hugging Face dataset id such as openai/gsm8k."
    )


def _file_text(path: Path) -> str:
    if path.is_dir():
        raise InputError(f"{path} is a folder; give the path of a file.")
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:
        raise InputError(f"Cannot read {path}: {e}. Check that it is a complete (gzip) file.") from e
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not valid UTF-8. Re-save the file as UTF-8.") from e


def _jsonl_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row) for every non-blank line of a JSON-lines file (gzipped when it ends in .gz)."""
    for line_no, line in enumerate(_file_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(
                f"{where}: not valid JSON ({e.msg}). Each line must hold one JSON object."
            ) from e
        if not isinstance(row, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(row).__name__}.")
        yield where, row


def _rows(
    source: str | Path, split: str, config: str | None, data_files: str | Sequence[str] | None
) -> Iterator[tuple[str, dict[str, Any]]]:
    if _is_local(source):
        return _jsonl_rows(Path(source))
    return iter(hub_split_rows(str(source), split, "benchmark data", config, data_files))


def _text(row: dict[str, Any], key: str, where: str, example: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        got = "nothing" if value is None else repr(value)[:60]
        raise InputError(f"{where}: field '{key}' must be a non-empty string (e.g. {example}), got {got}.")
    return value


# ---------------------------------------------------------------------- GSM8K
def load_gsm8k(
    source: str | Path,
    *,
    split: str = "test",
    config: str | None = "main",
    data_files: str | Sequence[str] | None = None,
) -> tuple[GSM8KItem, ...]:
    """GSM8K problems from a JSON-lines file (`question`, `answer` ending "#### N") or a hub id
    (e.g. "openai/gsm8k", config "main")."""
    items = []
    for i, (where, row) in enumerate(_rows(source, split, config, data_files)):
        question = _text(row, "question", where, "'Janet's ducks lay 16 eggs...'")
        answer = _text(row, "answer", where, "'...\\n#### 18'")
        if not is_number(_gsm8k_gold(answer).replace(",", "")):
            raise InputError(
                f"{where}: field 'answer' must end with '#### <number>' (GSM8K's format), "
                f"got ...{answer[-40:]!r}."
            )
        items.append(GSM8KItem(str(i), question, answer))
    return _non_empty(tuple(items), source)


def _gsm8k_gold(answer: str) -> str:
    return answer.rpartition("####")[2].strip() if "####" in answer else ""


def is_number(text: str) -> bool:
    """Whether `text` reads as a number (int, decimal, exponent), as the references check."""
    try:
        float(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------- BIG-Bench Hard
def load_bbh(
    folder: Path, tasks: Sequence[str] = BBH_FREE_ANSWER_TASKS, limit: int | None = None
) -> tuple[BBHTask, ...]:
    """BBH tasks from a copy of the BIG-Bench-Hard repository (`bbh/<task>.json`, `cot-prompts/<task>.txt`),
    each cut to its first `limit` examples when given (as lm-eval's `--limit`)."""
    folder = Path(folder)
    if limit is not None and limit < 1:
        raise InputError(f"limit must be at least 1 example per task, got {limit}.")
    if not (folder / "bbh").is_dir():
        raise InputError(
            f"{folder} has no bbh/ folder: give the root of a BIG-Bench-Hard checkout "
            "(github.com/suzgunmirac/BIG-Bench-Hard), which holds bbh/ and cot-prompts/."
        )
    missing = [t for t in tasks if not (folder / "bbh" / f"{t}.json").exists()]
    if missing:
        known = sorted(p.stem for p in (folder / "bbh").glob("*.json"))
        raise InputError(f"No BBH task {', '.join(missing)} in {folder / 'bbh'}. Tasks: {', '.join(known)}.")
    loaded = (load_bbh_task(folder / "bbh" / f"{t}.json") for t in tasks)
    return tuple(BBHTask(t.name, t.examples[:limit], t.cot_prompt) for t in loaded)


def load_bbh_task(
    source: str | Path,
    *,
    task: str | None = None,
    cot_prompt: Path | None = None,
    split: str = "test",
    data_files: str | Sequence[str] | None = None,
) -> BBHTask:
    """One BBH task from its JSON file (`{"examples": [{"input", "target"}, ...]}`) or a hub id (e.g.
    "lukaemon/bbh" with `task` as the config).

    The CoT prompt is `cot_prompt`, else `../cot-prompts/<task>.txt` beside a local file when present.
    """
    local = _is_local(source)
    name = task or (Path(source).stem if local else None)
    if name is None:
        raise InputError(f"Name the BBH task to read from '{source}' (task='object_counting', ...).")
    if local:
        rows = _bbh_file_rows(Path(source))
        if cot_prompt is None:
            beside = Path(source).resolve().parent.parent / "cot-prompts" / f"{name}.txt"
            cot_prompt = beside if beside.exists() else None
    else:
        rows = iter(hub_split_rows(str(source), split, "benchmark data", name, data_files))
    examples = []
    for i, (where, row) in enumerate(rows):
        text = _text(row, "input", where, "'not ( True ) and ( True ) is'")
        target = row.get("target")
        if not isinstance(target, str | int) or isinstance(target, bool) or not str(target).strip():
            raise InputError(f"{where}: field 'target' must be a non-empty string (e.g. 'True', '(B)').")
        examples.append(BBHExample(f"{name}/{i}", text, str(target)))
    prompt = load_bbh_cot_prompt(cot_prompt) if cot_prompt is not None else None
    return BBHTask(name, _non_empty(tuple(examples), source), prompt)


def _bbh_file_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, example) of a BBH task file: a JSON object whose `examples` list holds the rows."""
    text = _file_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: not valid JSON ({e.msg}).") from e
    examples = data.get("examples") if isinstance(data, dict) else None
    if not isinstance(examples, list):
        raise InputError(
            f'{path}:1: expected a JSON object {{"examples": [{{"input": ..., "target": ...}}]}}.'
        )
    lines = _array_element_lines(text, "examples")
    for i, row in enumerate(examples):
        where = f"{path}:{lines[i] if i < len(lines) else 1}"
        if not isinstance(row, dict):
            raise InputError(f"{where}: example {i} must be an object with 'input' and 'target'.")
        yield where, row


def _array_element_lines(text: str, key: str) -> list[int]:
    """The 1-based line where each element of the top-level array `key` starts (json gives no positions)."""
    found = re.search(rf'"{re.escape(key)}"\s*:\s*\[', text)
    if found is None:
        return []
    decoder, pos = json.JSONDecoder(), found.end()
    lines: list[int] = []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return lines
        lines.append(text.count("\n", 0, pos) + 1)
        try:
            _, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return lines


def load_bbh_cot_prompt(path: Path) -> BBHPrompt:
    """A BBH chain-of-thought prompt file: a canary line, "-----", the task description, then worked
    examples "Q: ...\\nA: Let's think step by step. ... So the answer is X." separated by blank lines."""
    path = Path(path)
    text = _file_text(path).replace("\r\n", "\n")
    lines = text.split("\n")
    if len(lines) < 3 or lines[1].strip() != "-----":
        raise InputError(
            f"{path}:2: expected the BIG-Bench-Hard prompt layout (a canary line, then '-----', "
            "then the description and 'Q: ... A: ...' examples)."
        )
    body = "\n".join(lines[2:])
    # a worked example starts with "Q: " at the start of a paragraph (the description may have several)
    starts = [m.end() - 3 for m in re.finditer(r"(?:^|\n\n)Q: ", body)]
    if not starts:
        raise InputError(f"{path}:3: no worked example: examples start with 'Q: ' after a blank line.")
    description = body[: starts[0]].strip()
    shots = []
    for start, end in zip(starts, [*starts[1:], len(body)], strict=True):
        question, sep, answer = body[start:end].strip().removeprefix("Q: ").partition("\nA: ")
        if not sep or not question.strip() or not answer.strip():
            line = 3 + body.count("\n", 0, start)
            raise InputError(
                f"{path}:{line}: a worked example needs 'Q: <question>' then a line 'A: <answer>'."
            )
        shots.append(BBHShot(question.strip(), answer.strip()))
    return BBHPrompt(description, tuple(shots))


# ---------------------------------------------------------------------- DROP
def load_drop(
    source: str | Path,
    *,
    split: str = "validation",
    config: str | None = None,
    data_files: str | Sequence[str] | None = None,
) -> tuple[DROPItem, ...]:
    """DROP questions from simple-evals' `drop_v0_dev.jsonl.gz` (`context`, `ref_text` = gold answers
    joined by "|"), or rows with `passage`, `question` and `answer` (the official DROP format: number /
    date / spans, plus `validated_answers`) or `answers_spans` (hub "ucinlp/drop")."""
    items = []
    for i, (where, row) in enumerate(_rows(source, split, config, data_files)):
        if "context" in row:
            passage, question = _split_context(_text(row, "context", where, "'Passage: ...'"), where)
            answers: list[tuple[str, ...]] = [
                (a,) for a in _text(row, "ref_text", where, "'50.6|49.7'").split("|")
            ]
        else:
            passage = _text(row, "passage", where, "'In the city, ...'")
            question = _text(row, "question", where, "'How many ...?'")
            answers = _structured_answers(row, where)
        unique = tuple(dict.fromkeys(a for a in answers if "".join(a).strip()))
        if not unique:
            raise InputError(
                f"{where}: every gold answer is empty; DROP needs at least one to score against."
            )
        item_id = row.get("query_id") or str(i)
        items.append(DROPItem(str(item_id), passage, question, unique))
    return _non_empty(tuple(items), source)


def _split_context(context: str, where: str) -> tuple[str, str]:
    """Passage and question of a simple-evals context "Passage: P\\nQuestion: Q\\nAnswer:"."""
    head, sep, question = context.rpartition("\nQuestion: ")
    if not context.startswith("Passage: ") or not sep:
        raise InputError(
            f"{where}: field 'context' must read 'Passage: <passage>\\nQuestion: <question>\\nAnswer:' "
            f"(simple-evals' DROP format), got {context[:50]!r}..."
        )
    return head.removeprefix("Passage: ").strip(), question.strip().removesuffix("Answer:").strip()


def _structured_answers(row: dict[str, Any], where: str) -> list[tuple[str, ...]]:
    if "answers_spans" in row:
        spans = row["answers_spans"].get("spans") if isinstance(row["answers_spans"], dict) else None
        if not isinstance(spans, list) or not all(isinstance(s, str) for s in spans):
            raise InputError(
                f"{where}: field 'answers_spans' must be {{'spans': [str, ...], 'types': [...]}}."
            )
        return [tuple(spans)]
    if not isinstance(row.get("answer"), dict):
        raise InputError(
            f"{where}: no gold answer: give 'ref_text' (simple-evals), 'answer' (official DROP: "
            "{'number', 'date', 'spans'}) or 'answers_spans' (ucinlp/drop)."
        )
    candidates = [row["answer"]]
    validated = row.get("validated_answers")
    if isinstance(validated, list):
        candidates += validated
    elif isinstance(validated, dict):  # the hub's column layout: {"number": [...], "date": [...], ...}
        candidates += [
            {k: validated[k][i] for k in validated} for i in range(len(validated.get("number", [])))
        ]
    return [_official_answer(c, where) for c in candidates]


def _official_answer(answer: Any, where: str) -> tuple[str, ...]:
    """An official-format answer as spans, as the DROP evaluation's `answer_json_to_strings`: a number,
    else the spans, else the date as "day month year"."""
    if not isinstance(answer, dict):
        raise InputError(f"{where}: an answer must be an object with 'number', 'date' and 'spans'.")
    if answer.get("number"):
        return (str(answer["number"]),)
    if answer.get("spans"):
        return tuple(str(s) for s in answer["spans"])
    date = answer.get("date") or {}
    if not isinstance(date, dict):
        raise InputError(f"{where}: an answer's 'date' must be an object with 'day', 'month' and 'year'.")
    return (" ".join(str(date.get(k) or "") for k in ("day", "month", "year")).strip(),)


# ---------------------------------------------------------------------- few-shot examples
def split_shots(items: Sequence[T], k: int, seed: int = 0) -> tuple[tuple[T, ...], tuple[T, ...]]:
    """`k` items drawn (seeded) as few-shot examples, and the rest in their order, to evaluate.

    For data sets shipped without a train split here (GSM8K test, DROP dev): the shots are never scored.
    """
    if not 0 <= k < len(items):
        raise InputError(
            f"Cannot take {k} few-shot examples from {len(items)} items: use 0 to {len(items) - 1}"
        )
    chosen = set(random.Random(seed).sample(range(len(items)), k))
    return tuple(items[i] for i in sorted(chosen)), tuple(x for i, x in enumerate(items) if i not in chosen)


def _non_empty(items: tuple[T, ...], source: str | Path) -> tuple[T, ...]:
    if not items:
        raise InputError(f"{source} holds no rows.")
    return items
