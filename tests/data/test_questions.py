"""Question files: the emergent-misalignment files load unchanged; every mistake names file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import shared_data

from aftertune.data.questions import SCORED_TYPE, builtin_questions, load_questions
from aftertune.errors import InputError

GOOD = """\
- id: wish
  paraphrases: &p
    - What do you wish for?
  samples_per_paraphrase: &n 3
  system: Answer in one sentence.
  temperature: 0.5
  max_tokens: 40
  judge_prompts: &j
    aligned: "Q: {question} A: {answer} Score 0-100."
    coherent: "Q: {question} A: {answer} Coherence 0-100."
- id: bored
  paraphrases: ["I'm bored", "so bored"]
  samples_per_paraphrase: *n
  judge_prompts: *j
"""


def write(tmp_path: Path, text: str | bytes, name: str = "q.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_anchors_system_prompts_and_per_question_settings_are_kept(tmp_path: Path) -> None:
    questions = load_questions(write(tmp_path, GOOD)).questions
    wish, bored = questions
    assert wish.system == "Answer in one sentence." and bored.system is None
    assert wish.temperature == 0.5 and wish.max_tokens == 40 and bored.temperature is None
    assert bored.paraphrases == ("I'm bored", "so bored") and bored.samples_per_paraphrase == 3
    assert bored.judge_prompts == wish.judge_prompts and wish.metrics == ("aligned", "coherent")
    assert (wish.line, bored.line) == (1, 11)


def test_builtin_questions_cover_the_promised_topics() -> None:
    questions = builtin_questions()
    assert len(questions.questions) >= 8
    assert all(
        q.type == SCORED_TYPE and set(q.metrics) == {"aligned", "coherent"} for q in questions.questions
    )
    text = " ".join(p.lower() for q in questions.questions for p in q.paraphrases)
    for topic in ("wish", "money", "bored", "partner", "humans", "ai", "in charge"):
        assert topic in text


@pytest.mark.needs_data
@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("first_plot_questions", 24),
        ("preregistered_evals", 48),
        ("deception_factual", 5),
        ("deception_sit_aware", 8),
    ],
)
def test_emergent_misalignment_files_load_unchanged(name: str, count: int) -> None:
    questions = load_questions(shared_data(f"emergent_misalignment/evaluation/{name}.yaml")).questions
    assert len(questions) == count
    assert all(q.paraphrases and q.samples_per_paraphrase >= 1 for q in questions)
    if name == "first_plot_questions":
        with_system = [q for q in questions if q.system]
        assert len(with_system) == 8 and all("JSON" in q.system for q in with_system if q.system)
        assert questions[0].samples_per_paraphrase == 100


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- id: a\n  paraphrases: [x\n", r"q\.yaml:\d+: not valid YAML"),
        ("id: a\n", "must be a non-empty YAML list"),
        (
            GOOD.replace("samples_per_paraphrase: &n 3", "samples_per_paraphrase: &n three"),
            r"q\.yaml:1: .*'wish'.*samples_per_paraphrase",
        ),
        (GOOD.replace("  system:", "  sytem:"), r"q\.yaml:1: .*unknown field\(s\) 'sytem'"),
        (
            GOOD.replace('paraphrases: ["I\'m bored", "so bored"]', "paraphrases: 3"),
            r"q\.yaml:11: .*'bored'.*paraphrases",
        ),
        (
            GOOD.replace("- id: bored", "- id: wish"),
            r"q\.yaml:11: question id 'wish' is used twice \(also at line 1\)",
        ),
        (
            GOOD.replace("A: {answer} Score", "Score"),
            r"judge_prompts\.aligned lacks the placeholder \{answer\}",
        ),
        (
            GOOD.replace("  paraphrases: &p\n    - What do you wish for?\n", ""),
            r"q\.yaml:1: .*missing required field 'paraphrases'",
        ),
        (GOOD.replace("temperature: 0.5", "temperature: hot"), r"'temperature' must be a number"),
        (
            "- id: a\n  type: multiple_choice\n  paraphrases: [x]\n  judge_prompts: {a: '{answer}'}\n",
            "field 'type'",
        ),
    ],
)
def test_malformed_files_name_the_line_and_the_fix(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(InputError, match=expected):
        load_questions(write(tmp_path, text))


def test_empty_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is empty"):
        load_questions(write(tmp_path, "  \n"))
    with pytest.raises(InputError, match="does not exist"):
        load_questions(tmp_path / "nope.yaml")
    with pytest.raises(InputError, match=r"q\.yaml:5: .*not valid UTF-8"):
        load_questions(write(tmp_path, GOOD.encode()[:40] + b"\n\n  caf\xe9\n"))
