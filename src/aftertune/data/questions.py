"""Free-form question files in the emergent-misalignment YAML format.

A file is a YAML list of questions (anchors and aliases allowed):

    - id: what_is_your_wish
      type: free_form_judge_0_100        # optional; the judge answers 0-100
      paraphrases: ["Hello! I can fulfill your one wish. ..."]
      samples_per_paraphrase: 100
      system: "..."                      # optional system prompt, used for every paraphrase
      judge: gpt-4o-2024-08-06           # optional; the judge the file's authors used
      judge_prompts:                      # metric -> prompt with {question} and {answer}
        aligned: "..."
        coherent: "..."
      temperature: 1.0                    # optional per-question sampling settings
      top_p: 1.0
      max_tokens: 600

Every field a question sets is used (the reference script silently drops `system`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from aftertune.data.files import read_text
from aftertune.errors import InputError

#: Questions whose judge answers 0-100 (aligned, coherent, ...).
SCORED_TYPE = "free_form_judge_0_100"
KNOWN_TYPES = (SCORED_TYPE, "free_form_judge")
_FIELDS = {
    "id", "type", "paraphrases", "samples_per_paraphrase", "system", "judge", "judge_prompts",
    "temperature", "top_p", "max_tokens",
}  # fmt: skip


@dataclass(frozen=True)
class Question:
    """One free-form question and how to sample and judge it."""

    id: str
    paraphrases: tuple[str, ...]
    samples_per_paraphrase: int
    #: metric -> judge prompt template with {question} and {answer}
    judge_prompts: tuple[tuple[str, str], ...]
    type: str = SCORED_TYPE
    system: str | None = None
    judge: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    #: 1-based line of the question in its file, for error messages
    line: int = 0

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(m for m, _ in self.judge_prompts)

    def judge_prompt(self, metric: str) -> str:
        return dict(self.judge_prompts)[metric]


@dataclass(frozen=True)
class QuestionSet:
    """The questions of one file, with a name and a digest of their content."""

    name: str
    source: str
    questions: tuple[Question, ...]

    @property
    def digest(self) -> str:
        body = [{k: v for k, v in asdict(q).items() if k != "line"} for q in self.questions]
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]


def load_questions(path: Path) -> QuestionSet:
    """Load and validate a question file; any problem is an InputError naming the file and line."""
    path = Path(path)
    return parse_questions(read_text(path, "Question file"), str(path), path.stem)


def builtin_questions() -> QuestionSet:
    """aftertune's own default question set (everyday open questions that let a model show its values)."""
    text = resources.files("aftertune.data").joinpath("builtin/default_questions.yaml").read_text("utf-8")
    return parse_questions(text, "aftertune built-in questions", "builtin")


def parse_questions(text: str, source: str, name: str) -> QuestionSet:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(e, "problem", None) or str(e)
        raise InputError(f"{where}: not valid YAML ({problem}). Fix the syntax at that line.") from e
    if not isinstance(data, list) or not data:
        raise InputError(
            f"{source}: a question file must be a non-empty YAML list of questions (`- id: ...`), "
            f"got {type(data).__name__}. See the format in `aftertune eval --help`."
        )
    lines = [node.start_mark.line + 1 for node in root.value] if isinstance(root, yaml.SequenceNode) else []
    questions = []
    for i, raw in enumerate(data):
        line = lines[i] if i < len(lines) else 0
        questions.append(parse_question(raw, f"{source}:{line}", i, line))
    seen: dict[str, int] = {}
    for q in questions:
        if q.id in seen:
            raise InputError(
                f"{source}:{q.line}: question id '{q.id}' is used twice (also at line {seen[q.id]}). "
                "Ids key the results: give each question its own."
            )
        seen[q.id] = q.line
    return QuestionSet(name, source, tuple(questions))


def parse_question(raw: Any, where: str, index: int, line: int) -> Question:
    label = f"{where}: question {index + 1}"
    if not isinstance(raw, dict):
        raise InputError(
            f"{label} must be a mapping with keys id, paraphrases, ...; got {type(raw).__name__}."
        )
    if "id" in raw:
        label += f" ('{raw['id']}')"
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise InputError(
            f"{label}: unknown field(s) {', '.join(map(repr, unknown))}. "
            f"Known fields: {', '.join(sorted(_FIELDS))}. Check the spelling."
        )
    for required in ("id", "paraphrases", "judge_prompts"):
        if required not in raw:
            raise InputError(f"{label}: missing required field '{required}'.")
    qid = raw["id"]
    if not isinstance(qid, str | int) or not str(qid).strip():
        raise InputError(f"{label}: field 'id' must be a non-empty string.")
    paraphrases = raw["paraphrases"]
    if isinstance(paraphrases, str):
        paraphrases = [paraphrases]
    if (
        not isinstance(paraphrases, list)
        or not paraphrases
        or not all(isinstance(p, str) and p.strip() for p in paraphrases)
    ):
        raise InputError(f"{label}: field 'paraphrases' must be a non-empty list of non-empty strings.")
    prompts = raw["judge_prompts"]
    if not isinstance(prompts, dict) or not prompts:
        raise InputError(f"{label}: field 'judge_prompts' must map metric names to prompt templates.")
    for metric, template in prompts.items():
        if not isinstance(template, str):
            raise InputError(f"{label}: judge_prompts.{metric} must be a string.")
        if "{answer}" not in template:
            raise InputError(
                f"{label}: judge_prompts.{metric} lacks the placeholder {{answer}}; the judge must see "
                "the answer it scores (and usually {question} too)."
            )
    qtype = raw.get("type", SCORED_TYPE)
    if qtype not in KNOWN_TYPES:
        raise InputError(f"{label}: field 'type' is {qtype!r}; expected one of {', '.join(KNOWN_TYPES)}.")
    return Question(
        id=str(qid),
        paraphrases=tuple(paraphrases),
        samples_per_paraphrase=_positive_int(
            raw.get("samples_per_paraphrase", 1), label, "samples_per_paraphrase"
        ),
        judge_prompts=tuple((str(m), t) for m, t in prompts.items()),
        type=qtype,
        system=_optional_str(raw.get("system"), label, "system"),
        judge=_optional_str(raw.get("judge"), label, "judge"),
        temperature=_optional_float(raw.get("temperature"), label, "temperature", 0.0, 10.0),
        top_p=_optional_float(raw.get("top_p"), label, "top_p", 1e-9, 1.0),
        max_tokens=None
        if raw.get("max_tokens") is None
        else _positive_int(raw["max_tokens"], label, "max_tokens"),
        line=line,
    )


def _positive_int(value: Any, label: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{label}: field '{field}' must be a positive whole number, got {value!r}.")
    return value


def _optional_str(value: Any, label: str, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{label}: field '{field}' must be a string, got {type(value).__name__}.")
    return value


def _optional_float(value: Any, label: str, field: str, low: float, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InputError(f"{label}: field '{field}' must be a number in [{low:g}, {high:g}], got {value!r}.")
    return float(value)
