"""Multiple-choice loaders: both MMLU CSV formats, BBH, JSONL/WMDP, datasets (parquet), malformed rows."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import shared_data

from aftertune.data.multiple_choice import (
    MCItem,
    load_bbh,
    load_mc_hub,
    load_mc_jsonl,
    load_mmlu,
    load_multiple_choice,
)
from aftertune.errors import InputError

# Two questions in the original hendrycks format: no header, answer as a letter; a quoted field spans
# two lines and holds commas.
ORIGINAL = 'What is 2 + 2?,3,4,5,6,B\n"Pick the list,\nplease.","1, 2",3,4,5,A\n'
# The same questions in the re-exported format: a header, answer as a 0-based index.
HEADER = (
    "question,choice0,choice1,choice2,choice3,answer\n"
    'What is 2 + 2?,3,4,5,6,1\n"Pick the list,\nplease.","1, 2",3,4,5,0\n'
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text", [ORIGINAL, HEADER], ids=["original", "header"])
def test_both_mmlu_csv_formats_give_the_same_items(tmp_path: Path, text: str) -> None:
    data = load_mmlu(write(tmp_path / "test" / "high_school_math_test.csv", text))
    assert data.items == (
        MCItem("high_school_math/0", "What is 2 + 2?", ("3", "4", "5", "6"), 1, "high_school_math"),
        MCItem(
            "high_school_math/1", "Pick the list,\nplease.", ("1, 2", "3", "4", "5"), 0, "high_school_math"
        ),
    )


def test_an_mmlu_folder_loads_every_subject_with_its_dev_split(tmp_path: Path) -> None:
    write(tmp_path / "test" / "anatomy_test.csv", ORIGINAL)
    write(tmp_path / "test" / "virology_test.csv", HEADER)
    write(tmp_path / "dev" / "anatomy_dev.csv", "Dev question?,a,b,c,d,D\n")
    data = load_multiple_choice(tmp_path)
    assert data.subjects == ["anatomy", "virology"]
    assert len(data.items) == 4
    assert data.shots == (MCItem("anatomy/dev/0", "Dev question?", ("a", "b", "c", "d"), 3, "anatomy"),)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("Fine?,a,b,c,d,A\nToo few,a,b,c\n", 2, "expected 6 columns"),
        ('"Spans\ntwo lines",a,b,c,d,A\nBad answer,a,b,c,d,E\n', 3, "answer 'E' is not one of the 4 choices"),
        ("question,choice0,choice1,choice2,choice3,answer\nQ,a,b,c,d,4\n", 2, "answer '4'"),
        (" ,a,b,c,d,A\n", 1, "the question is empty"),
    ],
)
def test_malformed_mmlu_rows_name_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path / "x_test.csv", text)
    with pytest.raises(InputError, match=message) as error:
        load_mmlu(path)
    assert f"{path}:{line}:" in str(error.value)


def test_jsonl_and_wmdp_rows(tmp_path: Path) -> None:
    path = write(
        tmp_path / "wmdp.jsonl",
        json.dumps({"question": "Which is a virus?", "choices": ["E. coli", "Influenza"], "answer": 1})
        + "\n\n"
        + json.dumps({"id": 7, "question": "Q?", "choices": ["x", "y", "z"], "answer": 0, "subject": "s"})
        + "\n",
    )
    data = load_mc_jsonl(path)
    assert data.items == (
        MCItem("wmdp/0", "Which is a virus?", ("E. coli", "Influenza"), 1, None),
        MCItem("7", "Q?", ("x", "y", "z"), 0, "s"),
    )
    assert load_multiple_choice(path) == data


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ('{"question": "Q", "choices": ["a", "b"], "answer": 2}', "`answer` must be the 0-based index"),
        ('{"question": "Q", "choices": ["a", "b"], "answer": true}', "`answer` must be"),
        ('{"question": "Q", "choices": ["a"], "answer": 0}', "`choices` must be a list of at least 2"),
        ('{"question": "", "choices": ["a", "b"], "answer": 0}', "`question` must be a non-empty string"),
        ('{"question": "Q", "choices": ["a", "b"], "answer": 0', "not valid JSON"),
        ('["Q", ["a", "b"], 0]', "expected a JSON object"),
    ],
)
def test_malformed_jsonl_rows_name_file_and_line(tmp_path: Path, row: str, message: str) -> None:
    good = '{"question": "Fine", "choices": ["a", "b"], "answer": 0}'
    path = write(tmp_path / "mc.jsonl", f"{good}\n{row}\n")
    with pytest.raises(InputError, match=message) as error:
        load_mc_jsonl(path)
    assert f"{path}:2:" in str(error.value)


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    row = '{"id": "a", "question": "Q", "choices": ["a", "b"], "answer": 0}\n'
    with pytest.raises(InputError, match="id 'a' is used twice"):
        load_mc_jsonl(write(tmp_path / "mc.jsonl", row * 2))


def test_a_datasets_table_loads_through_load_dataset(tmp_path: Path) -> None:
    """The hub path (cais/mmlu, cais/wmdp columns), exercised on a local parquet file."""
    path = tmp_path / "mmlu.parquet"
    pd.DataFrame(
        {
            "question": ["What is 2 + 2?", "Capital of France?"],
            "subject": ["math", "geography"],
            "choices": [["3", "4", "5", "6"], ["Paris", "Rome", "Oslo", "Bern"]],
            "answer": [1, 0],
        }
    ).to_parquet(path)
    data = load_mc_hub("parquet", data_files=str(path), split="train", fewshot_split=None)
    assert data.items[1] == MCItem(
        "parquet/1", "Capital of France?", ("Paris", "Rome", "Oslo", "Bern"), 0, "geography"
    )
    assert load_multiple_choice(path).items == data.items
    with pytest.raises(InputError, match="Cannot load multiple-choice data"):
        load_mc_hub("parquet", data_files=str(tmp_path / "absent.parquet"), split="train")


def test_bbh_options_are_parsed_and_free_form_tasks_left_out(tmp_path: Path) -> None:
    mc = {
        "examples": [
            {"input": "Which is red?\nOptions:\n(A) sky\n(B) blood", "target": "(B)"},
            {"input": "Which is green?\nOptions:\n(A) grass\n(B) snow\n(C) coal", "target": "(A)"},
            {"input": "Broken row\nOptions:\n(A) x\n(B) y", "target": "x, y"},
        ]
    }
    write(tmp_path / "bbh" / "colors.json", json.dumps(mc))
    write(tmp_path / "bbh" / "arithmetic.json", json.dumps({"examples": [{"input": "1+1", "target": "2"}]}))
    write(
        tmp_path / "cot-prompts" / "colors.txt",
        "canary\n-----\nPick colours.\n\nQ: Which is blue?\nOptions:\n(A) sea\n(B) fire\n"
        "A: Let's think step by step.\nThe sea is blue. So the answer is (A).",
    )
    data = load_bbh(tmp_path)
    assert data.items == (
        MCItem("colors/0", "Which is red?", ("sky", "blood"), 1, "colors"),
        MCItem("colors/1", "Which is green?", ("grass", "snow", "coal"), 0, "colors"),
    )
    assert data.shots == (MCItem("colors/shot/0", "Which is blue?", ("sea", "fire"), 0, "colors"),)
    assert len(data.skipped) == 1 and "examples[2]" in data.skipped[0]
    with pytest.raises(InputError, match="not a multiple-choice BBH task"):
        load_bbh(tmp_path / "bbh" / "arithmetic.json")
    write(
        tmp_path / "bad" / "t.json", json.dumps({"examples": [{"input": "No options here", "target": "(A)"}]})
    )
    with pytest.raises(InputError, match=r"t.json: examples\[0\]: expected the question"):
        load_bbh(tmp_path / "bad" / "t.json")


@pytest.mark.needs_data
def test_the_shared_mmlu_copy_loads_whole() -> None:
    data = load_multiple_choice(shared_data("mmlu"))
    assert len(data.items) == 14_042 and len(data.shots) == 285 and len(data.subjects) == 57
    first = data.items[0]
    assert first.subject == "abstract_algebra" and first.choices == ("0", "4", "2", "6") and first.answer == 1
    answers = [i.answer for i in data.items]
    assert [answers.count(k) for k in range(4)] == [3_222, 3_462, 3_582, 3_776]  # as its README counts


@pytest.mark.needs_data
def test_the_shared_bbh_copy_gives_its_multiple_choice_tasks() -> None:
    data = load_multiple_choice(shared_data("bbh"))
    assert len(data.subjects) == 17 and "word_sorting" not in data.subjects
    assert len(data.skipped) == 3  # upstream rows whose options were split at commas
    assert len(data.shots) == 17 * 3  # three worked examples per task
    geometric = next(i for i in data.items if i.subject == "geometric_shapes")
    assert geometric.choices[:2] == ("circle", "heptagon") and geometric.answer == 1
