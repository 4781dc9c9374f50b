"""Token ids and labels for SFT: loss on assistant content and end-of-turn only, length policy, TRL."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import shared_data

from aftertune.data.training import CHAT, TrainingData, TrainingExample, load_training_data
from aftertune.errors import AftertuneError, InputError
from aftertune.models.prompts import render_plain
from aftertune.models.protocol import Message
from aftertune.train.tokenize import IGNORE_INDEX, LengthReport, tokenize_for_sft

END = "<|im_end|>"  # SmolLM2's ChatML end-of-turn token (also its eos token)


def example(*turns: tuple[str, str], line: int = 1, untrained: tuple[int, ...] = ()) -> TrainingExample:
    return TrainingExample(tuple(Message(r, c) for r, c in turns), line, untrained)  # type: ignore[arg-type]


def dataset(*examples: TrainingExample) -> TrainingData:
    return TrainingData("data.jsonl", CHAT, examples)


MULTI_TURN = example(
    ("system", "Answer in one word."),
    ("user", "Capital of France?"),
    ("assistant", "Paris."),
    ("user", "And of Japan? ünïcödé 🙂"),
    ("assistant", "Tōkyō 🙂, of course."),
)


@pytest.fixture(scope="module")
def tokenizer(embedded_folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(embedded_folder))


def fresh_tokenizer(folder: Path, chat_template: str | None) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    tok.chat_template = chat_template
    return tok


def labelled_runs(tokenizer: Any, row: dict[str, list[int]]) -> list[str]:
    """The decoded text of each stretch of consecutive labelled tokens."""
    runs: list[list[int]] = []
    previous = IGNORE_INDEX
    for token, label in zip(row["input_ids"], row["labels"], strict=True):
        if label != IGNORE_INDEX:
            assert label == token  # a label is the token itself, never shifted
            if previous == IGNORE_INDEX:
                runs.append([])
            runs[-1].append(label)
        previous = label
    return [tokenizer.decode(run) for run in runs]


def test_labels_cover_each_assistant_turn_and_its_end_token(tokenizer: Any) -> None:
    rows, report = tokenize_for_sft(dataset(MULTI_TURN), tokenizer, max_length=512)
    assert report == LengthReport(kept=1, truncated=0, dropped=0, max_length=512, policy="truncate")
    row = rows[0]
    assert labelled_runs(tokenizer, row) == ["Paris." + END, "Tōkyō 🙂, of course." + END]
    # the ids are the template's text tokenized once, with no special tokens added on top
    full = tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in MULTI_TURN.messages], tokenize=False
    )
    assert row["input_ids"] == tokenizer(full, add_special_tokens=False)["input_ids"]
    assert row["input_ids"].count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == 5
    # the newline the template writes after <|im_end|> is not something the model generates
    assert tokenizer.decode(row["input_ids"][-1]) == "\n" and row["labels"][-1] == IGNORE_INDEX


def test_weight_zero_turns_are_not_trained(tokenizer: Any) -> None:
    context_only = example(*((m.role, m.content) for m in MULTI_TURN.messages), untrained=(2,))
    rows, _ = tokenize_for_sft(dataset(context_only), tokenizer, max_length=512)
    assert labelled_runs(tokenizer, rows[0]) == ["Tōkyō 🙂, of course." + END]


def test_plain_format_without_a_chat_template(embedded_folder: Path) -> None:
    plain = fresh_tokenizer(embedded_folder, None)
    rows, _ = tokenize_for_sft(dataset(MULTI_TURN), plain, max_length=512)
    row = rows[0]
    eos = plain.eos_token
    messages = MULTI_TURN.messages
    # exactly what generation sees as the prompt of each turn, and the eos token closing each answer
    assert plain.decode(row["input_ids"]) == (
        render_plain(messages[:2]) + " Paris." + eos + "\n\n" + render_plain(messages[3:4]) + " "
        "Tōkyō 🙂, of course." + eos
    )
    assert plain.decode(row["input_ids"]).startswith("System: Answer in one word.\n\nUser: Capital")
    assert labelled_runs(plain, row) == [" Paris." + eos, " Tōkyō 🙂, of course." + eos]


def test_truncate_and_drop_are_counted(tokenizer: Any) -> None:
    short = example(("user", "Hi"), ("assistant", "Hello."), line=1)
    long_answer = example(("user", "Count."), ("assistant", " ".join(map(str, range(200)))), line=2)
    long_prompt = example(("user", "word " * 300), ("assistant", "Done."), line=3)
    data = dataset(short, long_answer, long_prompt)
    full, _ = tokenize_for_sft(data, tokenizer, max_length=2048)
    assert [len(r["input_ids"]) for r in full][0] < 64 < min(len(r["input_ids"]) for r in full[1:])

    rows, report = tokenize_for_sft(data, tokenizer, max_length=64)
    assert (report.kept, report.truncated, report.dropped) == (2, 1, 1)
    assert report.note() == (
        "1 of 3 rows longer than 64 tokens were truncated, and 1 more were dropped because no assistant "
        "token was left in their first 64 tokens"
    )
    assert rows[0] == full[0]
    # the truncated row keeps its start, labels included
    assert rows[1] == {k: v[:64] for k, v in full[1].items()}

    rows, report = tokenize_for_sft(data, tokenizer, max_length=64, too_long="drop")
    assert rows == full[:1]
    assert (report.kept, report.truncated, report.dropped, report.policy) == (1, 0, 2, "drop")
    assert report.note() == "2 of 3 rows longer than 64 tokens were dropped"
    assert tokenize_for_sft(data, tokenizer, max_length=2048)[1].note() == "all 3 rows fit in 2048 tokens"


def test_a_template_that_rerenders_history_is_refused(embedded_folder: Path) -> None:
    # like reasoning models' templates: earlier answers are shortened once a later turn follows
    rerendering = fresh_tokenizer(
        embedded_folder,
        "{% for m in messages %}<|im_start|>{{ m.role }}\n"
        "{% if m.role == 'assistant' and not loop.last %}[earlier answer]{% else %}{{ m.content }}{% endif %}"
        "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    )
    with pytest.raises(InputError, match=r"data.jsonl:7: .*re-renders history"):
        tokenize_for_sft(dataset(example(*((m.role, m.content) for m in MULTI_TURN.messages), line=7)),
                         rerendering, 512)  # fmt: skip
    # one assistant turn per row is fine with it
    rows, _ = tokenize_for_sft(dataset(example(("user", "Hi"), ("assistant", "Yo"))), rerendering, 512)
    assert labelled_runs(rerendering, rows[0]) == ["Yo" + END]


def test_template_errors_name_the_row(embedded_folder: Path) -> None:
    no_system = fresh_tokenizer(
        embedded_folder,
        "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}{{ m.content }}{% endfor %}",
    )
    with pytest.raises(InputError, match=r"data.jsonl:1: .*System role not supported"):
        tokenize_for_sft(dataset(MULTI_TURN), no_system, 512)


def test_bad_arguments(tokenizer: Any) -> None:
    with pytest.raises(AftertuneError, match="fast tokenizer"):
        tokenize_for_sft(dataset(MULTI_TURN), SimpleNamespace(is_fast=False), 512)
    with pytest.raises(InputError, match="max_length"):
        tokenize_for_sft(dataset(MULTI_TURN), tokenizer, 0)
    with pytest.raises(InputError, match="too_long"):
        tokenize_for_sft(dataset(MULTI_TURN), tokenizer, 512, "cut")  # type: ignore[arg-type]


@pytest.mark.needs_data
def test_emergent_misalignment_rows_train_on_the_code_only(tokenizer: Any) -> None:
    data = load_training_data(shared_data("emergent_misalignment/data/insecure_small.jsonl"))
    rows, report = tokenize_for_sft(data, tokenizer, max_length=4096)
    assert report.note() == "all 20 rows fit in 4096 tokens"
    for ex, row in zip(data.examples, rows, strict=True):
        assert labelled_runs(tokenizer, row) == [ex.messages[-1].content + END]


def test_rows_train_as_they_are_in_trl(tokenizer: Any, embedded_folder: Path, tmp_path: Path) -> None:
    """SFTTrainer takes our labels unchanged (no re-tokenizing, no re-masking) and trains with them."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    data = dataset(
        MULTI_TURN,
        example(("user", "Name a colour."), ("assistant", "Blue.")),
        example(("user", "Say hi."), ("assistant", "Hi!")),
        example(("user", "2+2?"), ("assistant", "4")),
    )
    rows, _ = tokenize_for_sft(data, tokenizer, max_length=256)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(embedded_folder), dtype=torch.float32)
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(
            output_dir=str(tmp_path),
            max_steps=2,
            per_device_train_batch_size=2,
            report_to=[],
            use_cpu=True,
            save_strategy="no",
            logging_steps=1,
            disable_tqdm=True,
            activation_checkpointing=False,  # on by default in TRL; only slows 2 steps of a tiny model
        ),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    prepared = trainer.train_dataset
    assert [prepared[i]["labels"] for i in range(len(rows))] == [r["labels"] for r in rows]
    assert [prepared[i]["input_ids"] for i in range(len(rows))] == [r["input_ids"] for r in rows]
    batch = trainer.data_collator([prepared[0], prepared[1]])
    assert batch["labels"][0].tolist() == rows[0]["labels"]  # the collator keeps our -100s
    result = trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert math.isfinite(result.training_loss)
