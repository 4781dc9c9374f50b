"""Token ids and labels for supervised fine-tuning, with the loss on assistant turns only.

A conversation is rendered with the tokenizer's chat template, or, for a tokenizer without one, with
aftertune's plain format (models/prompts.py) and the eos token closing each assistant turn. Labels
are the token ids of each trained assistant turn's content and of its end-of-turn token (so the model
learns to stop), and -100 everywhere else.

Assistant turns are found by rendering prefixes of the conversation (the turns before it plus the
generation prompt, then the turns through it) and mapping those character spans onto tokens with the
fast tokenizer's offsets. This works with any template that renders history unchanged, without the
`{% generation %}` markers TRL's `assistant_only_loss` needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from aftertune.data.training import TrainingData, TrainingExample
from aftertune.errors import AftertuneError, InputError
from aftertune.models.prompts import has_chat_template, render_plain
from aftertune.progress import ProgressCallback, report

TooLong = Literal["truncate", "drop"]
#: The label that cross-entropy in torch and transformers skips.
IGNORE_INDEX = -100
#: Rows tokenized per call: the fast tokenizer encodes a batch in parallel.
_BATCH = 256

#: (content start, content end, end of the turn's rendering) in characters of the rendered text
Span = tuple[int, int, int]


@dataclass(frozen=True)
class LengthReport:
    """What max_length did to a data set: rows kept (truncated ones included), truncated, dropped."""

    kept: int
    truncated: int
    dropped: int
    max_length: int
    #: "truncate" or "drop"
    policy: str

    def note(self) -> str:
        """One sentence for a person, e.g. '3 of 200 rows longer than 512 tokens were truncated'."""
        total = self.kept + self.dropped
        if not self.truncated and not self.dropped:
            return f"all {total} rows fit in {self.max_length} tokens"
        if self.policy == "drop":
            return f"{self.dropped} of {total} rows longer than {self.max_length} tokens were dropped"
        note = f"{self.truncated} of {total} rows longer than {self.max_length} tokens were truncated"
        if self.dropped:
            note += (
                f", and {self.dropped} more were dropped because no assistant token was left "
                f"in their first {self.max_length} tokens"
            )
        return note


def tokenize_for_sft(
    data: TrainingData,
    tokenizer: Any,
    max_length: int,
    too_long: TooLong = "truncate",
    *,
    progress: ProgressCallback | None = None,
) -> tuple[list[dict[str, list[int]]], LengthReport]:
    """Rows of `input_ids` and `labels` (-100 off the trained assistant turns), and what max_length did.

    Rows longer than `max_length` tokens keep their first `max_length` tokens ("truncate") or are
    left out ("drop"); a truncated row with no assistant token left is left out too. The rows suit
    `datasets.Dataset.from_list` and TRL's `SFTTrainer`, which uses their labels as they are.
    """
    if max_length < 1:
        raise InputError(f"max_length must be a positive number of tokens, got {max_length}.")
    if too_long not in ("truncate", "drop"):
        raise InputError(f"too_long must be 'truncate' or 'drop', got {too_long!r}.")
    if not getattr(tokenizer, "is_fast", False):
        raise AftertuneError(
            f"Tokenizing for training needs a fast tokenizer (for character offsets), got "
            f"{type(tokenizer).__name__}. Load it with AutoTokenizer.from_pretrained(..., use_fast=True)."
        )
    templated = has_chat_template(tokenizer)
    special = _special_ids(tokenizer)
    rows: list[dict[str, list[int]]] = []
    truncated = dropped = 0
    examples = data.examples
    for start in range(0, len(examples), _BATCH):
        batch = examples[start : start + _BATCH]
        rendered = [
            _render_with_template(tokenizer, ex, data.source)
            if templated
            else _render_plain(tokenizer, ex, data.source)
            for ex in batch
        ]
        # The template already holds the special tokens it wants; the plain format gets the tokenizer's
        # usual ones (e.g. a BOS), as it does at generation time.
        encoded = tokenizer(
            [text for text, _ in rendered], add_special_tokens=not templated, return_offsets_mapping=True
        )
        for (_, spans), ids, offsets in zip(
            rendered, encoded["input_ids"], encoded["offset_mapping"], strict=True
        ):
            labels = _labels(list(ids), offsets, spans, special)
            cut = len(ids) > max_length
            if cut:
                if too_long == "drop":
                    dropped += 1
                    continue
                ids, labels = ids[:max_length], labels[:max_length]
            if all(label == IGNORE_INDEX for label in labels):
                dropped += 1
                continue
            truncated += cut
            rows.append({"input_ids": list(ids), "labels": labels})
        report(progress, "tokenizing", start + len(batch), len(examples))
    return rows, LengthReport(len(rows), truncated, dropped, max_length, too_long)


def _render_with_template(tokenizer: Any, ex: TrainingExample, source: str) -> tuple[str, list[Span]]:
    messages = [{"role": m.role, "content": m.content} for m in ex.messages]
    where = f"{source}:{ex.line}"
    full = _apply_template(tokenizer, messages, where, generation_prompt=False)
    spans = []
    for i in ex.trained_turns:
        before = _apply_template(tokenizer, messages[:i], where, generation_prompt=True)
        through = (
            full
            if i + 1 == len(messages)
            else _apply_template(tokenizer, messages[: i + 1], where, generation_prompt=False)
        )
        if not (through.startswith(before) and full.startswith(through)):
            raise InputError(
                f"{where}: the tokenizer's chat template renders the turns before assistant turn {i + 1} "
                "differently once later turns follow (it re-renders history, e.g. drops earlier reasoning), "
                "so the assistant's tokens cannot be located. Train on rows that end at that turn (one "
                "assistant turn each), or use a tokenizer whose template renders history unchanged."
            )
        content = ex.messages[i].content
        at = through.find(content, len(before))
        if at < 0:  # some templates trim the content
            content = content.strip()
            at = through.find(content, len(before))
        if at < 0:
            raise InputError(
                f"{where}: the tokenizer's chat template changes the text of assistant turn {i + 1}, so its "
                "tokens cannot be located. Use a tokenizer whose template renders content as it is."
            )
        spans.append((at, at + len(content), len(through)))
    return full, spans


def _apply_template(
    tokenizer: Any, messages: list[dict[str, str]], where: str, generation_prompt: bool
) -> str:
    try:
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )
    except Exception as e:
        # Templates raise their own errors (e.g. "System role not supported"); say which row hit one.
        raise InputError(
            f"{where}: the tokenizer's chat template cannot render this conversation ({e}). "
            "Adapt the rows to what the template accepts (e.g. merge the system turn into the first "
            "user turn)."
        ) from e
    return str(text)


def _render_plain(tokenizer: Any, ex: TrainingExample, source: str) -> tuple[str, list[Span]]:
    """render_plain's format, with the eos token after each answer: the stop a base model must learn."""
    eos = tokenizer.eos_token
    if not eos:
        raise AftertuneError(
            f"{source}: the tokenizer has neither a chat template nor an eos token, so the end of an "
            "answer cannot be marked. Use a tokenizer that has one of them."
        )
    text = ""
    spans = []
    trained = set(ex.trained_turns)
    turn_start = 0
    for i, m in enumerate(ex.messages):
        if m.role != "assistant":
            continue
        # the prompt exactly as generation sees it ("...\n\nAssistant:"), then " " and the answer
        prompt = render_plain(ex.messages[turn_start:i])
        text += ("\n\n" if text else "") + prompt + " "
        if i in trained:
            spans.append((len(text), len(text) + len(m.content), len(text) + len(m.content) + len(eos)))
        text += m.content + eos
        turn_start = i + 1
    return text, spans


def _labels(ids: list[int], offsets: Any, spans: list[Span], special: set[int]) -> list[int]:
    """Token ids on tokens overlapping each span's content, then on the tokens after it up to and
    including the first special token of the turn (its end-of-turn marker); -100 elsewhere."""
    labels = [IGNORE_INDEX] * len(ids)
    for content_start, content_end, turn_end in spans:
        for k, (start, end) in enumerate(offsets):
            if end <= content_start or start == end:  # before the turn, or added with no text
                continue
            if start >= turn_end:
                break
            labels[k] = ids[k]
            if start >= content_end and ids[k] in special:
                break
    return labels


def _special_ids(tokenizer: Any) -> set[int]:
    ids = set(getattr(tokenizer, "all_special_ids", []))
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    ids.update(i for i, token in added.items() if getattr(token, "special", False))
    return ids
