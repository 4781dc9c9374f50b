"""Harmful (and deliberately harmless) prompts for refusal evals: the public sets and the user's own.

Public sets, read from their published CSV files (columns as their READMEs give them):

| loader | file: columns read | id | category | safe |
|---|---|---|---|---|
| `load_advbench` | `harmful_behaviors.csv`: goal | `advbench-<row>` | none | no |
| `load_harmbench` | `harmbench_behaviors_*.csv`: Behavior, BehaviorID | BehaviorID | SemanticCategory | no |
| `load_strongreject` | `strongreject_dataset.csv`: forbidden_prompt | `strongreject-<row>` | category | no |
| `load_xstest` | `xstest_prompts.csv`: id, prompt, type, label | `xstest-<id>` | type | label |

`<row>` counts data rows from 1. A user's own set (`load_prompt_file`) is CSV with a header or JSONL
with one object per line, with these fields:

- `id` (required): unique; results are keyed by it;
- `prompt` (required): the user turn sent to the model;
- `category` (optional): a label shown in reports;
- `safe` (optional): true for a benign prompt a model should answer (over-refusal evals), false for a
  harmful one; empty or absent when not known. CSV accepts true/false, yes/no, 1/0, safe/unsafe.

Any other field is an error (a misspelt `categroy` would otherwise be silently lost).
`load_harmful_prompts` reads any of these, recognising the format by the header.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aftertune.data.files import read_text
from aftertune.errors import InputError

USER_FIELDS = ("id", "prompt", "category", "safe")
_SAFE_WORDS = {"true": True, "yes": True, "1": True, "safe": True, "false": False, "no": False, "0": False}
_SAFE_WORDS |= {"unsafe": False}


@dataclass(frozen=True)
class HarmfulPrompt:
    """One prompt of a refusal eval."""

    id: str
    prompt: str
    category: str | None = None
    #: True: benign, a model should answer; False: harmful, it should refuse; None: the set does not say
    safe: bool | None = None


@dataclass(frozen=True)
class PromptSet:
    """Prompts read from one file."""

    name: str
    source: str
    prompts: tuple[HarmfulPrompt, ...]

    @property
    def digest(self) -> str:
        """Changes whenever any prompt's id, text, category or safe flag does."""
        body = json.dumps([asdict(p) for p in self.prompts], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def where(self, keep: Callable[[HarmfulPrompt], bool]) -> PromptSet:
        """The prompts for which `keep` is true, in file order."""
        return PromptSet(self.name, self.source, tuple(p for p in self.prompts if keep(p)))

    def sample(self, n: int | None, seed: int = 0) -> PromptSet:
        """`n` prompts drawn without replacement (seeded), kept in file order; all when n is None or
        at least the set's size. Public sets list similar prompts together, so the first n would not
        be representative."""
        if n is not None and n < 1:
            raise InputError(f"Asked for {n} prompts of {self.source}: give at least 1.")
        if n is None or n >= len(self.prompts):
            return self
        chosen = np.sort(np.random.default_rng(seed).choice(len(self.prompts), size=n, replace=False))
        return PromptSet(self.name, self.source, tuple(self.prompts[i] for i in chosen))


# ---------------------------------------------------------------------- reading CSV with line numbers
def _csv_rows(path: Path, what: str, required: Sequence[str]) -> tuple[list[str], list[tuple[int, dict]]]:
    """The header and (first physical line, row) pairs; errors name the file and line."""
    text = read_text(path, what)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in reader.fieldnames or []]
    except csv.Error as e:
        raise InputError(f"{path}:1: {what} is not a readable CSV header ({e}).") from e
    reader.fieldnames = header
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(
            f"{path}:1: {what} has no column(s) {', '.join(missing)} (found: {', '.join(header) or 'none'}). "
            f"Expected a header with {', '.join(required)} (formats: aftertune.data.harmful_prompts)."
        )
    rows: list[tuple[int, dict]] = []
    start = reader.line_num + 1
    try:
        for row in reader:
            if None in row:
                raise InputError(
                    f"{path}:{start}: the row has more fields than the header's {len(header)} columns. "
                    "Quote fields that contain commas."
                )
            if any(v is None for v in row.values()):
                raise InputError(
                    f"{path}:{start}: the row has fewer fields than the header's {len(header)} columns."
                )
            if any(v.strip() for v in row.values()):  # blank lines are skipped
                rows.append((start, row))
            start = reader.line_num + 1
    except csv.Error as e:
        raise InputError(f"{path}:{start}: not valid CSV ({e}).") from e
    if not rows:
        raise InputError(f"{what} {path} has a header but no rows.")
    return header, rows


def _text(path: Path, line: int, row: dict, column: str) -> str:
    value = row.get(column)
    if value is None or not str(value).strip():
        raise InputError(f"{path}:{line}: column '{column}' is empty; every row needs one.")
    return str(value).strip()


def _optional(row: dict, column: str) -> str | None:
    value = row.get(column)
    return (str(value).strip() or None) if value is not None else None


def _check_unique(path: Path, prompts: Sequence[tuple[int, HarmfulPrompt]]) -> None:
    first: dict[str, int] = {}
    for line, p in prompts:
        if p.id in first:
            raise InputError(
                f"{path}:{line}: id '{p.id}' was already used at line {first[p.id]}. Ids key the stored "
                "results: give every prompt its own."
            )
        first[p.id] = line


def _prompt_set(name: str, path: Path, prompts: list[tuple[int, HarmfulPrompt]]) -> PromptSet:
    _check_unique(path, prompts)
    return PromptSet(name, str(path), tuple(p for _, p in prompts))


# ---------------------------------------------------------------------- the public sets
def load_advbench(path: Path) -> PromptSet:
    """AdvBench `harmful_behaviors.csv` (Zou et al. 2023): the `goal` column; every prompt harmful."""
    path = Path(path)
    _, rows = _csv_rows(path, "AdvBench file", ("goal",))
    prompts = [
        (line, HarmfulPrompt(f"advbench-{k}", _text(path, line, row, "goal"), None, False))
        for k, (line, row) in enumerate(rows, start=1)
    ]
    return _prompt_set("advbench", path, prompts)


def load_harmbench(path: Path) -> PromptSet:
    """HarmBench text behaviours (Mazeika et al. 2024). A contextual behaviour's `ContextString` goes
    before the request, separated as HarmBench's own prompts do ("context\\n\\n---\\n\\nbehaviour")."""
    path = Path(path)
    _, rows = _csv_rows(path, "HarmBench file", ("Behavior", "BehaviorID"))
    prompts = []
    for line, row in rows:
        behaviour = _text(path, line, row, "Behavior")
        context = _optional(row, "ContextString")
        text = f"{context}\n\n---\n\n{behaviour}" if context else behaviour
        prompts.append(
            (
                line,
                HarmfulPrompt(
                    _text(path, line, row, "BehaviorID"), text, _optional(row, "SemanticCategory"), False
                ),
            )
        )
    return _prompt_set("harmbench", path, prompts)


def load_strongreject(path: Path) -> PromptSet:
    """StrongREJECT `strongreject_dataset.csv` (Souly et al. 2024): `forbidden_prompt` and `category`."""
    path = Path(path)
    _, rows = _csv_rows(path, "StrongREJECT file", ("forbidden_prompt",))
    prompts = [
        (
            line,
            HarmfulPrompt(
                f"strongreject-{k}",
                _text(path, line, row, "forbidden_prompt"),
                _optional(row, "category"),
                False,
            ),
        )
        for k, (line, row) in enumerate(rows, start=1)
    ]
    return _prompt_set("strongreject", path, prompts)


def load_xstest(path: Path) -> PromptSet:
    """XSTest `xstest_prompts.csv` (Röttger et al. 2024): 250 safe prompts that merely sound harmful and
    200 unsafe contrast prompts; `type` becomes the category."""
    path = Path(path)
    _, rows = _csv_rows(path, "XSTest file", ("id", "prompt", "label"))
    prompts = []
    for line, row in rows:
        label = _text(path, line, row, "label").lower()
        if label not in ("safe", "unsafe"):
            raise InputError(
                f"{path}:{line}: column 'label' must be 'safe' or 'unsafe', got '{row['label']}'."
            )
        pid = f"xstest-{_text(path, line, row, 'id')}"
        prompts.append(
            (
                line,
                HarmfulPrompt(pid, _text(path, line, row, "prompt"), _optional(row, "type"), label == "safe"),
            )
        )
    return _prompt_set("xstest", path, prompts)


# ---------------------------------------------------------------------- the user's own format
def load_prompt_file(path: Path) -> PromptSet:
    """A user's prompt set: CSV with a header, or JSONL; fields id, prompt, optional category and safe."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = _jsonl_rows(path)
    elif suffix == ".csv":
        header, rows = _csv_rows(path, "Prompt file", ("id", "prompt"))
        _check_fields(path, 1, header)
    else:
        raise InputError(f"{path}: a prompt file must be .csv or .jsonl, got '{suffix or 'no suffix'}'.")
    prompts = []
    for line, row in rows:
        if suffix == ".jsonl":
            _check_fields(path, line, list(row))
        prompts.append((line, _user_prompt(path, line, row)))
    return _prompt_set(path.stem, path, prompts)


def _jsonl_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for line, raw in enumerate(read_text(path, "Prompt file").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{line}: not valid JSON ({e.msg} at column {e.colno}).") from e
        if not isinstance(row, dict):
            raise InputError(f"{path}:{line}: each line must be a JSON object, got {type(row).__name__}.")
        rows.append((line, row))
    if not rows:
        raise InputError(f"Prompt file {path} holds no rows.")
    return rows


def _check_fields(path: Path, line: int, fields: Sequence[str]) -> None:
    unknown = [f for f in fields if f not in USER_FIELDS]
    if unknown:
        raise InputError(
            f"{path}:{line}: unknown field(s) {', '.join(unknown)}. A prompt file has "
            f"{', '.join(USER_FIELDS)} (category and safe optional): rename or remove the others."
        )


def _user_prompt(path: Path, line: int, row: dict[str, Any]) -> HarmfulPrompt:
    for field in ("id", "prompt"):
        value = row.get(field)
        if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
            raise InputError(
                f"{path}:{line}: field '{field}' must be a non-empty string"
                + (" or integer" if field == "id" else "")
                + f", got {value!r:.60}."
            )
    category = row.get("category")
    if category is not None and not isinstance(category, str):
        raise InputError(f"{path}:{line}: field 'category' must be a string, got {category!r:.60}.")
    return HarmfulPrompt(
        str(row["id"]).strip(),
        str(row["prompt"]).strip(),
        (category or "").strip() or None,
        _safe(path, line, row.get("safe")),
    )


def _safe(path: Path, line: int, value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if not value.strip():
            return None
        if value.strip().lower() in _SAFE_WORDS:
            return _SAFE_WORDS[value.strip().lower()]
    raise InputError(
        f"{path}:{line}: field 'safe' is {value!r:.40}; write true or false (also yes/no, 1/0, safe/unsafe), "
        "or leave it empty when not known."
    )


# ---------------------------------------------------------------------- any of them
#: (format, columns that identify it, loader); the first whose columns a CSV header holds is used
_CSV_FORMATS: tuple[tuple[str, tuple[str, ...], Callable[[Path], PromptSet]], ...] = (
    ("AdvBench", ("goal",), load_advbench),
    ("HarmBench", ("Behavior", "BehaviorID"), load_harmbench),
    ("StrongREJECT", ("forbidden_prompt",), load_strongreject),
    ("XSTest", ("id", "prompt", "type", "label"), load_xstest),
    ("aftertune prompt file", ("id", "prompt"), load_prompt_file),
)


def builtin_refusal_prompts() -> PromptSet:
    """aftertune's own prompt set (data/builtin/refusal_prompts.jsonl, the user format): 30 harmful
    requests across weapons, cyber, fraud, drugs, violence, harassment, hate, self-harm, crime, bio/chem,
    privacy and misinformation, and 30 safe prompts that sound unsafe (homonyms, figurative language,
    safe targets and contexts, definitions), in the spirit of XSTest; runs offline."""
    from importlib import resources

    path = Path(str(resources.files("aftertune.data").joinpath("builtin/refusal_prompts.jsonl")))
    return load_prompt_file(path)


def load_harmful_prompts(path: Path) -> PromptSet:
    """Any supported prompt file: JSONL is the user format; a CSV's format is told by its header."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        return load_prompt_file(path)
    first_line = read_text(path, "Prompt file").splitlines()[0]
    header = {h.strip() for h in next(csv.reader([first_line]), [])}
    for _, columns, loader in _CSV_FORMATS:
        if set(columns) <= header:
            return loader(path)
    known = "; ".join(f"{name}: {', '.join(columns)}" for name, columns, _ in _CSV_FORMATS)
    raise InputError(
        f"{path}:1: the header ({', '.join(sorted(header))}) matches no known prompt format. Columns "
        f"expected, by format: {known}."
    )
