"""Fine-tuning data sets, read into validated conversations with errors that name the file and line.

Accepted sources:

- OpenAI chat JSONL: `{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}` per
  line. Other top-level keys are ignored; a message may also carry `name` (ignored) and `weight`
  (0 or 1 on assistant turns: 0 keeps the turn as context without training on it, as OpenAI does).
- Alpaca: `{"instruction", "input" (optional), "output", "system" (optional)}` in a JSON array or
  JSONL; instruction and input are joined with a blank line into the user turn.
- ShareGPT: `{"conversations": [{"from": "system"|"human"|"gpt", "value": str}, ...]}` ("user" and
  "assistant" are read as "human" and "gpt"); the turns obey the chat rules.
- a local .parquet or .csv file with either format's columns (`messages` as a list or as JSON text);
- a folder holding one such file, or a Hugging Face dataset id `org/name` (read through `datasets`).

JSONL, CSV and parquet are read row by row, so a large file never sits in memory as one string; a
JSON array is parsed whole (keep big data sets in JSONL).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from aftertune.data.training_files import DATA_SUFFIXES, Rows, Where, data_file_in, file_rows, hub_rows
from aftertune.errors import InputError
from aftertune.models.protocol import Message, Role

#: `TrainingData.format` of OpenAI chat rows and of Alpaca rows.
CHAT = "chat"
ALPACA = "alpaca"
SHAREGPT = "sharegpt"
_FORMAT_NAMES = {
    CHAT: "OpenAI chat ('messages')",
    ALPACA: "Alpaca ('instruction'/'output')",
    SHAREGPT: "ShareGPT ('conversations')",
}
_FORMAT_KEYS = {CHAT: "'messages'", ALPACA: "'instruction' and 'output'", SHAREGPT: "'conversations'"}
_FORMATS_EXPECTED = (
    "expected a 'messages' key (OpenAI chat), 'conversations' (ShareGPT) or 'instruction' and 'output' "
    "keys (Alpaca)"
)
#: ShareGPT speaker names (lower-cased) and the chat roles they stand for
_SHAREGPT_ROLES: dict[str, Role] = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
}
_ROLES: tuple[Role, ...] = ("system", "user", "assistant")
_MESSAGE_KEYS = {"role", "content", "name", "weight"}
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


@dataclass(frozen=True)
class TrainingExample:
    """One conversation to train on, and its 1-based line in the file (or row, for parquet and the hub)."""

    messages: tuple[Message, ...]
    line: int
    #: indices into `messages` of assistant turns given `"weight": 0`: context only, not trained on
    untrained: tuple[int, ...] = ()

    @property
    def trained_turns(self) -> tuple[int, ...]:
        """Indices of the assistant turns the model learns to write."""
        return tuple(
            i for i, m in enumerate(self.messages) if m.role == "assistant" and i not in self.untrained
        )


@dataclass(frozen=True)
class TrainingData:
    """A validated training data set: where it came from, its format, and its conversations."""

    source: str
    #: CHAT, ALPACA or SHAREGPT
    format: str
    examples: tuple[TrainingExample, ...]

    def __len__(self) -> int:
        return len(self.examples)

    @cached_property
    def digest(self) -> str:
        """sha256 of the conversations in order (not of where they came from), 16 hex characters.

        It keys cached results: it changes when any message (or turn weight) changes and only then.
        """
        h = hashlib.sha256()
        for ex in self.examples:
            body = [[[m.role, m.content] for m in ex.messages], list(ex.untrained)]
            # one JSON document per line: JSON escapes newlines, so the concatenation is unambiguous
            h.update(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
            h.update(b"\n")
        return h.hexdigest()[:16]


def load_training_data(source: str | Path, *, split: str = "train", limit: int | None = None) -> TrainingData:
    """Read and validate a training data set; any problem is an InputError naming the file and line.

    `source` is a .jsonl/.json/.parquet/.csv file, a folder holding one, or a Hugging Face dataset id
    (`split` picks its split). `limit` keeps the first `limit` examples and stops reading there.
    """
    if limit is not None and limit < 1:
        raise InputError(f"limit must be a positive number of examples, got {limit}.")
    path = Path(source).expanduser()
    if path.is_dir():
        path = data_file_in(path, split)
    if path.exists():
        rows, where, tabular = file_rows(path)
        name = str(path)
    elif is_hub_id(str(source)) and path.suffix.lower() not in DATA_SUFFIXES:
        rows, name, tabular = hub_rows(str(source), split), str(source), True

        def where(n: int) -> str:
            return f"{source} ({split} split) row {n}"
    else:
        raise InputError(
            f"Training data {path} does not exist. Check the path (relative paths start at {Path.cwd()}); "
            "a Hugging Face dataset id looks like org/name."
        )
    fmt, examples = _read_examples(rows, where, limit, tabular, name)
    return TrainingData(name, fmt, examples)


def is_hub_id(source: str) -> bool:
    """Whether `source` looks like a Hugging Face dataset id (org/name)."""
    return _HUB_ID.match(source) is not None


# ---------------------------------------------------------------- rows -> validated conversations


def _read_examples(
    rows: Rows, where: Where, limit: int | None, tabular: bool, name: str
) -> tuple[str, tuple[TrainingExample, ...]]:
    fmt: str | None = None
    first = 0
    examples: list[TrainingExample] = []
    for n, raw in rows:
        at = where(n)
        if not isinstance(raw, dict):
            raise InputError(
                f'{at}: each example must be a JSON object ({{"messages": [...]}} or '
                f'{{"instruction": ..., "output": ...}}), got {_json_type(raw)}.'
            )
        row_fmt = row_format(raw)
        if fmt is None:
            if row_fmt is None:
                raise InputError(
                    f"{at}: cannot tell the data format: {_FORMATS_EXPECTED}; the row has: {_keys(raw)}."
                )
            fmt, first = row_fmt, n
        elif row_fmt is None:
            raise InputError(f"{at}: the row has no {_FORMAT_KEYS[fmt]} (it has: {_keys(raw)}).")
        elif row_fmt != fmt:
            raise InputError(mixed_formats(at, row_fmt, where(first), fmt))
        messages, untrained = conversation(raw, fmt, at, tabular)
        examples.append(TrainingExample(messages, n, untrained))
        if limit is not None and len(examples) >= limit:
            break
    if fmt is None:
        raise InputError(f"Training data {name} is empty: it holds no examples.")
    return fmt, tuple(examples)


def row_format(raw: dict[str, Any]) -> str | None:
    """CHAT, ALPACA or SHAREGPT, told by the row's keys; None when it has none of theirs."""
    if "messages" in raw:
        return CHAT
    if "conversations" in raw:
        return SHAREGPT
    if "instruction" in raw or "output" in raw:
        return ALPACA
    return None


def mixed_formats(at: str, row_fmt: str, first_at: str, fmt: str) -> str:
    """The error for a row whose format differs from the data set's first row."""
    return (
        f"{at}: this row is in the {_FORMAT_NAMES[row_fmt]} format but the first row ({first_at}) is in "
        f"the {_FORMAT_NAMES[fmt]} format; a data set holds one format. Convert the rows to one."
    )


def conversation(
    raw: dict[str, Any], fmt: str, at: str, tabular: bool
) -> tuple[tuple[Message, ...], tuple[int, ...]]:
    """A row of format `fmt` as validated messages and its untrained assistant turns; else an InputError."""
    if fmt == CHAT:
        return _chat_messages(raw["messages"], at, tabular)
    if fmt == SHAREGPT:
        return _chat_messages(_sharegpt_as_chat(raw["conversations"], at, tabular), at, False)
    return _alpaca_messages(raw, at), ()


def _sharegpt_as_chat(value: Any, at: str, tabular: bool) -> Any:
    """ShareGPT turns ({"from", "value"}) as chat messages ({"role", "content"}), for `_chat_messages`."""
    if tabular and isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise InputError(f"{at}: 'conversations' is not valid JSON ({e.msg} at column {e.colno}).") from e
    if not isinstance(value, list):
        return value  # _chat_messages names the type
    turns: list[Any] = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict) or "from" not in turn:
            raise InputError(
                f"{at}: conversations turn {i + 1} must be an object with 'from' and 'value', "
                f"got {_json_type(turn) if not isinstance(turn, dict) else 'keys ' + _keys(turn)}."
            )
        speaker = turn["from"]
        role = _SHAREGPT_ROLES.get(speaker.lower() if isinstance(speaker, str) else speaker)
        if role is None:
            raise InputError(
                f"{at}: conversations turn {i + 1}: unknown speaker {speaker!r}; expected one of "
                f"{', '.join(sorted(_SHAREGPT_ROLES))}."
            )
        turns.append({"role": role, "content": turn.get("value")})
    return turns


def _chat_messages(value: Any, at: str, tabular: bool) -> tuple[tuple[Message, ...], tuple[int, ...]]:
    if tabular and isinstance(value, str):
        # CSV cells (and some hub data sets) hold the message list as JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise InputError(f"{at}: 'messages' is not valid JSON ({e.msg} at column {e.colno}).") from e
    if not isinstance(value, list) or not value:
        got = "an empty array" if value == [] else _json_type(value)
        raise InputError(
            f'{at}: \'messages\' must be a non-empty array of {{"role", "content"}} objects, got {got}.'
        )
    messages: list[Message] = []
    untrained: list[int] = []
    for i, raw in enumerate(value):
        label = f"{at}: message {i + 1}"
        if not isinstance(raw, dict):
            raise InputError(f"{label} must be an object with 'role' and 'content', got {_json_type(raw)}.")
        # tabular sources fill keys that other rows have with null: a null key is an absent key
        unknown = sorted(k for k, v in raw.items() if k not in _MESSAGE_KEYS and v is not None)
        if unknown:
            raise InputError(
                f"{label}: unknown key(s) {', '.join(map(repr, unknown))}; a message has 'role', "
                "'content' and optionally 'name' and 'weight'. "
                "Remove the other keys (tool calls are not supported)."
            )
        role = raw.get("role")
        if role is None:
            raise InputError(f"{label} has no 'role' (it has: {_keys(raw)}).")
        if role not in _ROLES:
            hint = " Rename it to 'system'." if role == "developer" else ""
            raise InputError(
                f"{label}: unknown role {role!r}; expected 'system', 'user' or 'assistant'.{hint} Tool and "
                "function turns are not supported: drop them or the row."
            )
        label += f" ({role})"
        content = raw.get("content")
        if not isinstance(content, str):
            hint = " Join its text parts into one string." if isinstance(content, list) else ""
            what = "has no 'content'" if content is None else f"has 'content' of type {_json_type(content)}"
            raise InputError(f"{label} {what}; it must be a string.{hint}")
        weight = raw.get("weight")
        if weight is not None:
            if role != "assistant" or weight not in (0, 1) or isinstance(weight, bool):
                raise InputError(
                    f"{label}: 'weight' must be 0 or 1, and only on assistant turns; got {weight!r}."
                )
            if weight == 0:
                untrained.append(i)
        messages.append(Message(role, content))
    _check_turns(messages, at)
    if all(i in untrained for i, m in enumerate(messages) if m.role == "assistant"):
        raise InputError(
            f"{at}: every assistant turn has weight 0, so there is nothing to train on. Drop the row."
        )
    return tuple(messages), tuple(untrained)


def _check_turns(messages: list[Message], at: str) -> None:
    """An optional system turn first, then user and assistant alternating from user, ending with assistant."""
    roles = [m.role for m in messages]
    if "assistant" not in roles:
        raise InputError(
            f"{at}: the conversation has no assistant turn, so there is nothing to train on. "
            "Add the answer the model should learn, or drop the row."
        )
    offset = 1 if roles[0] == "system" else 0
    for i, m in enumerate(messages):
        if m.role == "system" and i > 0:
            raise InputError(
                f"{at}: message {i + 1} is a system turn; only the first message may be one. "
                "Merge it into the first system message or drop it."
            )
        expected = "user" if (i - offset) % 2 == 0 else "assistant"
        if i >= offset and m.role != expected:
            raise InputError(
                f"{at}: message {i + 1} has role '{m.role}' where '{expected}' was expected: after an "
                "optional system turn, user and assistant turns alternate, starting with user. "
                "Merge consecutive turns of one role into one."
            )
        if m.role != "system" and not m.content.strip():
            raise InputError(
                f"{at}: message {i + 1} ({m.role}) is empty or whitespace only. "
                + (
                    "The model would learn to answer nothing: fill in the answer or drop the row."
                    if m.role == "assistant"
                    else "Fill in the prompt or drop the row."
                )
            )
    if roles[-1] != "assistant":
        raise InputError(
            f"{at}: the last message is a {roles[-1]} turn; a training conversation ends with an assistant "
            "turn (the text the model learns to write). Drop the trailing turn or add its answer."
        )


def _alpaca_messages(raw: dict[str, Any], at: str) -> tuple[Message, ...]:
    for key in ("instruction", "output"):
        if key not in raw:
            raise InputError(f"{at}: the row has no '{key}' (it has: {_keys(raw)}).")
    fields: dict[str, str] = {}
    for key in ("instruction", "input", "output", "system"):
        value = raw.get(key)
        if value is None and key in ("input", "system"):
            value = ""  # optional, and tabular sources give null where a row lacks it
        if not isinstance(value, str):
            raise InputError(f"{at}: '{key}' must be a string, got {_json_type(value)}.")
        fields[key] = value
    if not fields["instruction"].strip():
        raise InputError(f"{at}: 'instruction' is empty. Fill in the prompt or drop the row.")
    if not fields["output"].strip():
        raise InputError(
            f"{at}: 'output' is empty or whitespace only; the model would learn to answer nothing. "
            "Fill in the answer or drop the row."
        )
    user = fields["instruction"]
    if fields["input"].strip():
        user = f"{user}\n\n{fields['input']}"
    system = [Message("system", fields["system"])] if fields["system"].strip() else []
    return (*system, Message("user", user), Message("assistant", fields["output"]))


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


def _keys(row: dict[Any, Any]) -> str:
    return ", ".join(map(str, row)) or "no keys"
