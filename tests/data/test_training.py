"""Reading fine-tuning data sets: every format, every validation error (naming file and line), the digest."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import shared_data

from aftertune.data.training import ALPACA, CHAT, SHAREGPT, TrainingData, load_training_data
from aftertune.errors import AftertuneError, InputError
from aftertune.models.protocol import Message

CHAT_ROWS: list[dict[str, Any]] = [
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
        ],
        "id": 7,  # other top-level keys are ignored
    },
    {
        "messages": [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4", "name": "bot"},
            {"role": "user", "content": "And 3+3?"},
            {"role": "assistant", "content": "6"},
        ]
    },
]
ALPACA_ROWS: list[dict[str, Any]] = [
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
    {"instruction": "Name a colour.", "input": "", "output": "Blue."},
    {"instruction": "Greet.", "output": "Hello.", "system": "You are polite."},
]


def jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def expect_error(path: Path, fragment: str, line: int | None = None, **kwargs: Any) -> str:
    """Load `path`, expect an InputError holding `fragment` and naming `path:line`; return the message."""
    with pytest.raises(InputError) as info:
        load_training_data(path, **kwargs)
    message = str(info.value)
    assert fragment in message, message
    if line is not None:
        assert f"{path}:{line}:" in message, message
    return message


# ---------------------------------------------------------------- formats


def test_openai_chat_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "chat.jsonl"
    # a blank line is skipped, and line numbers still count it
    path.write_text(json.dumps(CHAT_ROWS[0]) + "\n\n" + json.dumps(CHAT_ROWS[1]) + "\n", encoding="utf-8")
    data = load_training_data(path)
    assert (data.source, data.format, len(data)) == (str(path), CHAT, 2)
    assert [ex.line for ex in data.examples] == [1, 3]
    assert data.examples[0].messages == (
        Message("system", "Be brief."),
        Message("user", "Hi"),
        Message("assistant", "Hello!"),
    )
    assert [m.role for m in data.examples[1].messages] == ["user", "assistant", "user", "assistant"]
    assert data.examples[1].trained_turns == (1, 3)


def test_alpaca_json_array_names_the_line_of_each_element(tmp_path: Path) -> None:
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps(ALPACA_ROWS, indent=2), encoding="utf-8")
    data = load_training_data(path)
    assert data.format == ALPACA
    lines = path.read_text().splitlines()
    assert [lines[ex.line - 1].strip() for ex in data.examples] == ["{"] * 3
    first, second, third = (ex.messages for ex in data.examples)
    assert first == (Message("user", "Add the numbers.\n\n2 and 3"), Message("assistant", "5"))
    assert second == (Message("user", "Name a colour."), Message("assistant", "Blue."))
    assert third == (
        Message("system", "You are polite."),
        Message("user", "Greet."),
        Message("assistant", "Hello."),
    )


def test_alpaca_jsonl_gives_the_same_conversations_as_the_array(tmp_path: Path) -> None:
    array = tmp_path / "a.json"
    array.write_text(json.dumps(ALPACA_ROWS), encoding="utf-8")
    lines = load_training_data(jsonl(tmp_path / "a.jsonl", ALPACA_ROWS))
    assert lines.format == ALPACA
    assert [ex.messages for ex in lines.examples] == [
        ex.messages for ex in load_training_data(array).examples
    ]
    assert [ex.line for ex in lines.examples] == [1, 2, 3]


def test_parquet_in_both_formats_numbers_rows(tmp_path: Path) -> None:
    chat = tmp_path / "chat.parquet"
    # a list of structs: the first row's messages get `name: null`, as parquet unifies the fields
    pq.write_table(table([{"messages": r["messages"]} for r in CHAT_ROWS]), chat)
    alpaca = tmp_path / "alpaca.parquet"
    pq.write_table(table(ALPACA_ROWS), alpaca)  # missing "system" becomes null
    from_chat, from_alpaca = load_training_data(chat), load_training_data(alpaca)
    assert (from_chat.format, from_alpaca.format) == (CHAT, ALPACA)
    assert from_chat.digest == load_training_data(jsonl(tmp_path / "c.jsonl", CHAT_ROWS)).digest
    assert from_alpaca.digest == load_training_data(jsonl(tmp_path / "a.jsonl", ALPACA_ROWS)).digest
    assert [ex.line for ex in from_chat.examples] == [1, 2]


def test_csv_in_both_formats(tmp_path: Path) -> None:
    alpaca = tmp_path / "alpaca.csv"
    with alpaca.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["instruction", "input", "output"])
        writer.writeheader()
        writer.writerow({"instruction": "Write two lines.", "input": "", "output": "one\ntwo"})
        writer.writerow({"instruction": "Echo.", "input": "x", "output": "x"})
    data = load_training_data(alpaca)
    assert data.format == ALPACA
    assert data.examples[0].messages[-1].content == "one\ntwo"
    assert [ex.line for ex in data.examples] == [2, 4]  # the quoted two-line cell takes lines 2-3
    chat = tmp_path / "chat.csv"
    with chat.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["messages"])
        writer.writeheader()
        writer.writerows({"messages": json.dumps(r["messages"])} for r in CHAT_ROWS)
    assert (
        load_training_data(chat).digest == load_training_data(jsonl(tmp_path / "c.jsonl", CHAT_ROWS)).digest
    )


def test_a_folder_with_one_data_file(tmp_path: Path) -> None:
    jsonl(tmp_path / "data.jsonl", CHAT_ROWS)
    (tmp_path / "README.md").write_text("# notes")
    assert load_training_data(tmp_path).source == str(tmp_path / "data.jsonl")
    jsonl(tmp_path / "other.jsonl", CHAT_ROWS)
    with pytest.raises(InputError, match="several data files"):
        load_training_data(tmp_path)
    jsonl(tmp_path / "train.jsonl", CHAT_ROWS)  # the split's name picks one
    assert load_training_data(tmp_path).source == str(tmp_path / "train.jsonl")


def test_hub_id_goes_through_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub path, fed from a local parquet file by the real `datasets` loader (no network here)."""
    import datasets

    local = tmp_path / "train.parquet"
    pq.write_table(table(ALPACA_ROWS), local)
    real = datasets.load_dataset
    calls = []

    def from_local(dataset_id: str, config: str | None = None, *, split: str, data_files: Any = None) -> Any:
        calls.append((dataset_id, split))
        return real("parquet", data_files=str(local), split="train", cache_dir=str(tmp_path / "cache"))

    monkeypatch.setattr(datasets, "load_dataset", from_local)
    data = load_training_data("someorg/alpaca-like", split="validation", limit=2)
    assert calls == [("someorg/alpaca-like", "validation")]
    assert (data.source, data.format, len(data)) == ("someorg/alpaca-like", ALPACA, 2)
    assert data.examples[0].messages == load_training_data(local).examples[0].messages


def test_hub_id_offline_says_to_pass_a_local_file(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets
    import huggingface_hub.constants

    # offline mode fails at once, where a missing network would retry for half a minute
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(AftertuneError) as info:
        load_training_data("someorg/no-such-dataset")
    message = str(info.value)
    assert "someorg/no-such-dataset" in message and "give a local file instead" in message


def test_limit_stops_reading(tmp_path: Path) -> None:
    path = tmp_path / "chat.jsonl"
    # line 3 is broken, but with limit=2 it is never read: the file is streamed
    path.write_text(json.dumps(CHAT_ROWS[0]) + "\n" + json.dumps(CHAT_ROWS[1]) + "\n{broken\n")
    assert len(load_training_data(path, limit=2)) == 2
    expect_error(path, "not valid JSON", 3)
    with pytest.raises(InputError, match="positive"):
        load_training_data(path, limit=0)


def test_jsonl_is_streamed_not_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = jsonl(tmp_path / "chat.jsonl", CHAT_ROWS * 50)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a JSONL file must not be read into one string")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    monkeypatch.setattr(Path, "read_text", refuse)
    assert len(load_training_data(path)) == 100


def test_weight_zero_turns_are_context_only(tmp_path: Path) -> None:
    row = json.loads(json.dumps(CHAT_ROWS[1]))
    row["messages"][1]["weight"] = 0
    data = load_training_data(jsonl(tmp_path / "w.jsonl", [row]))
    assert data.examples[0].untrained == (1,)
    assert data.examples[0].trained_turns == (3,)


# ---------------------------------------------------------------- the digest


def test_digest_follows_the_messages_and_nothing_else(tmp_path: Path) -> None:
    base = load_training_data(jsonl(tmp_path / "a.jsonl", CHAT_ROWS))
    assert len(base.digest) == 16 and int(base.digest, 16) >= 0
    # same conversations at other lines, in another file and with other ignored keys: same digest
    moved = tmp_path / "b.jsonl"
    moved.write_text(
        "\n\n" + json.dumps({**CHAT_ROWS[0], "id": 8}) + "\n\n" + json.dumps(CHAT_ROWS[1]) + "\n"
    )
    assert load_training_data(moved).digest == base.digest
    changed = json.loads(json.dumps(CHAT_ROWS))
    changed[1]["messages"][3]["content"] = "6."
    assert load_training_data(jsonl(tmp_path / "c.jsonl", changed)).digest != base.digest
    changed = json.loads(json.dumps(CHAT_ROWS))
    changed[1]["messages"][1]["weight"] = 0
    assert load_training_data(jsonl(tmp_path / "d.jsonl", changed)).digest != base.digest
    swapped = load_training_data(jsonl(tmp_path / "e.jsonl", CHAT_ROWS[::-1]))
    assert swapped.digest != base.digest  # order is part of training
    # split differently between examples, the same text still gives another digest
    one = TrainingData("x", CHAT, base.examples[:1])
    assert one.digest != base.digest


# ---------------------------------------------------------------- validation errors


def msgs(*turns: tuple[str, Any]) -> dict[str, Any]:
    return {"messages": [{"role": r, "content": c} for r, c in turns]}


OK = msgs(("user", "Hi"), ("assistant", "Hello"))

#: (rows written as JSONL after one good row, fragment of the error); the error is on line 2
ROW_ERRORS: list[tuple[Any, str]] = [
    ([1, 2], "must be a JSON object"),
    ("text", "must be a JSON object"),
    ({"prompt": "x", "completion": "y"}, "the row has no 'messages' (it has: prompt, completion)"),
    ({"messages": "Hi"}, "'messages' must be a non-empty array"),
    ({"messages": []}, "got an empty array"),
    ({"messages": ["Hi"]}, "message 1 must be an object"),
    ({"messages": [{"content": "Hi"}, {"role": "assistant", "content": "x"}]}, "message 1 has no 'role'"),
    (msgs(("user", "Hi"), ("tool", "x")), "unknown role 'tool'"),
    (msgs(("developer", "Be nice"), ("user", "Hi"), ("assistant", "x")), "Rename it to 'system'"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant"}]}, "has no 'content'"),
    (msgs(("user", [{"type": "text", "text": "Hi"}]), ("assistant", "x")), "Join its text parts"),
    (msgs(("user", 3), ("assistant", "x")), "'content' of type a number"),
    (
        {
            "messages": [
                {"role": "user", "content": "Hi", "tool_calls": []},
                {"role": "assistant", "content": "x"},
            ]
        },
        "unknown key(s) 'tool_calls'",
    ),
    (
        {"messages": [{"role": "user", "content": "Hi", "weight": 1}, {"role": "assistant", "content": "x"}]},
        "'weight' must be 0 or 1, and only on assistant turns",
    ),
    (
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "x", "weight": 2}]},
        "'weight' must be 0 or 1",
    ),
    (
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "x", "weight": 0}]},
        "nothing to train on",
    ),
    (msgs(("user", "Hi")), "no assistant turn"),
    (
        msgs(
            ("system", "S"),
        ),
        "no assistant turn",
    ),
    (
        msgs(("assistant", "x"), ("user", "Hi"), ("assistant", "y")),
        "message 1 has role 'assistant' where 'user' was expected",
    ),
    (msgs(("user", "Hi"), ("system", "S"), ("assistant", "x")), "message 2 is a system turn"),
    (msgs(("user", "Hi"), ("user", "Hi"), ("assistant", "x")), "Merge consecutive turns"),
    (msgs(("user", "Hi"), ("assistant", "x"), ("user", "More?")), "the last message is a user turn"),
    (msgs(("user", "Hi"), ("assistant", " \n")), "message 2 (assistant) is empty or whitespace only"),
    (msgs(("user", ""), ("assistant", "x")), "message 1 (user) is empty"),
]


@pytest.mark.parametrize(("row", "fragment"), ROW_ERRORS, ids=[f for _, f in ROW_ERRORS])
def test_row_errors_name_file_and_line(tmp_path: Path, row: Any, fragment: str) -> None:
    expect_error(jsonl(tmp_path / "data.jsonl", [OK, row]), fragment, 2)


ALPACA_ERRORS: list[tuple[Any, str]] = [
    ({"instruction": "Do it."}, "the row has no 'output'"),
    ({"output": "Done."}, "the row has no 'instruction'"),
    ({"instruction": "Do it.", "output": 5}, "'output' must be a string, got a number"),
    ({"instruction": ["Do it."], "output": "x"}, "'instruction' must be a string, got an array"),
    ({"instruction": "Do it.", "input": {"a": 1}, "output": "x"}, "'input' must be a string, got an object"),
    ({"instruction": " ", "output": "x"}, "'instruction' is empty"),
    ({"instruction": "Do it.", "output": "\n"}, "'output' is empty or whitespace only"),
    (msgs(("user", "Hi"), ("assistant", "x")), "a data set holds one format"),
    ({"prompt": "x"}, "the row has no 'instruction' and 'output'"),
]


@pytest.mark.parametrize(("row", "fragment"), ALPACA_ERRORS, ids=[f for _, f in ALPACA_ERRORS])
def test_alpaca_errors_name_file_and_line(tmp_path: Path, row: Any, fragment: str) -> None:
    message = expect_error(jsonl(tmp_path / "data.jsonl", [ALPACA_ROWS[0], row]), fragment, 2)
    if "one format" in fragment:
        assert f"{tmp_path / 'data.jsonl'}:1" in message  # and points at the first row


def test_mixing_formats_the_other_way_round(tmp_path: Path) -> None:
    expect_error(jsonl(tmp_path / "data.jsonl", [OK, OK, ALPACA_ROWS[0]]), "a data set holds one format", 3)


def test_an_unknown_first_row(tmp_path: Path) -> None:
    expect_error(jsonl(tmp_path / "data.jsonl", [{"prompt": "x"}]), "cannot tell the data format", 1)


def table(rows: list[dict[str, Any]]) -> pa.Table:
    """A table with every key of every row as a column (from_pylist keeps only the first row's keys)."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return pa.Table.from_pydict({k: [r.get(k) for r in rows] for k in keys})


def test_file_level_errors(tmp_path: Path) -> None:
    expect_error(tmp_path / "missing.jsonl", "does not exist")
    with pytest.raises(InputError, match="does not exist"):
        load_training_data("not/there.jsonl")  # looks like a file, so it is not taken for a hub id
    (tmp_path / "empty.jsonl").write_bytes(b"")
    expect_error(tmp_path / "empty.jsonl", "is empty")
    (tmp_path / "blank.jsonl").write_text("\n  \n\n")
    expect_error(tmp_path / "blank.jsonl", "is empty")
    (tmp_path / "header.csv").write_text("instruction,input,output\n")
    expect_error(tmp_path / "header.csv", "is empty")
    (tmp_path / "empty.json").write_text("[ ]")
    expect_error(tmp_path / "empty.json", "is empty")
    (tmp_path / "nothing").mkdir()
    expect_error(tmp_path / "nothing", "holding no .jsonl")
    (tmp_path / "bad.parquet").write_text("not parquet")
    expect_error(tmp_path / "bad.parquet", "not a readable parquet file")


def test_syntax_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(OK) + "\n" + '{"messages": [}\n')
    expect_error(path, "not valid JSON", 2)
    pretty = tmp_path / "pretty.jsonl"
    pretty.write_text(json.dumps(OK, indent=2))
    expect_error(pretty, "a pretty-printed file must be a single JSON array", 1)
    array = tmp_path / "array.json"
    array.write_text("[\n" + json.dumps(ALPACA_ROWS[0]) + ",\n" + json.dumps(ALPACA_ROWS[1]) + ",\n]\n")
    expect_error(array, "not valid JSON", 4)  # the trailing comma
    array.write_text("[\n" + json.dumps(ALPACA_ROWS[0]) + "\n" + json.dumps(ALPACA_ROWS[1]) + "]\n")
    expect_error(array, "expected ',' or ']'", 3)
    array.write_text("[\n" + json.dumps(ALPACA_ROWS[0]) + "\n")
    expect_error(array, "never closed", 3)
    array.write_text(json.dumps(ALPACA_ROWS) + "\n]")
    expect_error(array, "extra data", 2)
    array.write_text(json.dumps([ALPACA_ROWS[0], "text"], indent=1))
    expect_error(array, "must be a JSON object", 7)


def test_non_utf8_names_the_line(tmp_path: Path) -> None:
    good = (json.dumps(OK) + "\n").encode()
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(good + good + '{"messages": [{"role": "user", "content": "café"}]}\n'.encode("latin-1"))
    expect_error(path, "not valid UTF-8 (byte 0xe9", 3)
    csv_path = tmp_path / "latin1.csv"
    csv_path.write_bytes(b"instruction,output\n" + b"a,b\n" * 5000 + "caf\xe9,x\n".encode("latin-1"))
    expect_error(csv_path, "not valid UTF-8", 5002)


# ---------------------------------------------------------------- the shared public data


@pytest.mark.needs_data
def test_emergent_misalignment_insecure_small() -> None:
    data = load_training_data(shared_data("emergent_misalignment/data/insecure_small.jsonl"))
    assert (data.format, len(data)) == (CHAT, 20)  # README: 20 rows of [user, assistant]
    assert all([m.role for m in ex.messages] == ["user", "assistant"] for ex in data.examples)
    assert [ex.line for ex in data.examples] == list(range(1, 21))
    assert "## COMPLETE CODE HERE" in data.examples[0].messages[0].content


@pytest.mark.needs_data
def test_alpaca_gpt4_subset_folder() -> None:
    folder = shared_data("alpaca_gpt4_subset")
    data = load_training_data(folder)
    assert data.source.endswith("alpaca_en_demo.json")
    assert (data.format, len(data)) == (ALPACA, 999)  # README: 999 rows
    rows = json.loads((folder / "alpaca_en_demo.json").read_text(encoding="utf-8"))
    with_input = [ex for ex, row in zip(data.examples, rows, strict=True) if row["input"]]
    assert len(with_input) == 999 - 587  # README: input empty in 587 rows
    ex, row = next((ex, row) for ex, row in zip(data.examples, rows, strict=True) if row["input"])
    assert ex.messages[0].content == f"{row['instruction']}\n\n{row['input']}"
    assert ex.messages[1].content == row["output"]
    assert len(load_training_data(folder, limit=10)) == 10


def test_sharegpt_rows_read_as_chat_and_bad_speakers_are_named(tmp_path: Path) -> None:
    rows = [
        {
            "conversations": [
                {"from": "system", "value": "Be brief."},
                {"from": "human", "value": "Hi"},
                {"from": "gpt", "value": "Hello!"},
            ]
        },
        {"conversations": [{"from": "user", "value": "2+2?"}, {"from": "assistant", "value": "4"}]},
    ]
    data = load_training_data(jsonl(tmp_path / "share.jsonl", rows))
    assert data.format == SHAREGPT
    assert data.examples[0].messages == (
        Message("system", "Be brief."),
        Message("user", "Hi"),
        Message("assistant", "Hello!"),
    )
    assert data.examples[1].messages[-1] == Message("assistant", "4")
    bad = [rows[0], {"conversations": [{"from": "robot", "value": "x"}]}]
    assert "unknown speaker 'robot'" in expect_error(jsonl(tmp_path / "bad.jsonl", bad), "robot", line=2)
    order = [{"conversations": [{"from": "gpt", "value": "Hi"}, {"from": "human", "value": "?"}]}]
    expect_error(jsonl(tmp_path / "order.jsonl", order), "where 'user' was expected", line=1)
    mixed = [rows[0], CHAT_ROWS[0]]
    expect_error(jsonl(tmp_path / "mixed.jsonl", mixed), "ShareGPT ('conversations') format", line=2)
