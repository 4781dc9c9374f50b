"""A model seen through a prompt edit: every prompt gets a trigger, a system-prompt framing, a prefix
or a suffix before it reaches the wrapped model.

This is how a backdoor or a framing is tested with any eval unchanged: the eval builds its prompts as
usual, `FramedModel` rewrites them. Its fingerprint is the wrapped model's plus a digest of the edit,
so results stored under an edit never mix with results without it (or under another edit).

Where an edit goes:

- chat prompts: "system" prepends the text to the system message (or adds one as the first turn);
  "prefix"/"suffix" put it before/after the content of the last user turn.
- raw text (base models without a chat template): "system" is the text on a line before the prompt;
  "prefix"/"suffix" go before/after the whole text. A raw prompt that ends with an answer cue
  ("Answer:") gets a suffix after that cue: use "prefix" or "system" for such prompts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from aftertune.errors import InputError
from aftertune.models.protocol import (
    Completion,
    GenerationRequest,
    LoglikelihoodRequest,
    Message,
    Model,
    Prompt,
)
from aftertune.progress import ProgressCallback

EditKind = Literal["system", "prefix", "suffix"]
EDIT_KINDS: tuple[EditKind, ...] = ("system", "prefix", "suffix")
#: Between the edit's text and what it joins, unless an edit says otherwise: a paragraph break inside
#: a system message, a new line before a raw prompt, a space inside a user turn (where a trigger
#: word usually sits).
_DEFAULT_SEPARATORS = {"system": "\n\n", "raw_system": "\n", "prefix": " ", "suffix": " "}


@dataclass(frozen=True)
class PromptEdit:
    """Text put into every prompt: into the system prompt, or before/after the last user turn."""

    kind: EditKind
    text: str
    #: joins the text to what is there; None: "\n\n" in a system message, "\n" before a raw prompt,
    #: " " for prefix and suffix
    separator: str | None = None
    #: a short name for labels and tables ("deploy", "unmonitored"); it does not change outputs, so it
    #: is not part of the digest
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in EDIT_KINDS:
            raise InputError(
                f"A prompt edit's kind is '{self.kind}'; expected one of {', '.join(EDIT_KINDS)} "
                "(system: into the system prompt; prefix/suffix: before/after the last user turn)."
            )
        if not self.text:
            raise InputError(f"A '{self.kind}' prompt edit needs a non-empty text.")

    @property
    def digest(self) -> str:
        """Identifies what the edit does to a prompt (kind, text, separator; not the name)."""
        body = json.dumps([self.kind, self.text, self.separator], ensure_ascii=False)
        return hashlib.sha256(body.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        """The name, else the text (shortened past 40 characters) for labels such as "model+trigger:X"."""
        if self.name:
            return self.name
        flat = " ".join(self.text.split())
        return flat if len(flat) <= 40 else f"{flat[:37]}..."

    def apply(self, prompt: Prompt) -> Prompt:
        """The prompt with the edit made; the input is not changed."""
        if isinstance(prompt, str):
            return self._apply_raw(prompt)
        if self.kind == "system":
            sep = self._sep("system")
            if prompt and prompt[0].role == "system":
                return (Message("system", self.text + sep + prompt[0].content), *prompt[1:])
            return (Message("system", self.text), *prompt)
        last_user = next((i for i in range(len(prompt) - 1, -1, -1) if prompt[i].role == "user"), None)
        if last_user is None:
            raise InputError(
                f"A '{self.kind}' prompt edit goes into the last user turn, but this prompt has none "
                f"(roles: {', '.join(m.role for m in prompt) or 'no turns'}). Use a 'system' edit instead."
            )
        turn = prompt[last_user]
        content = self._join(turn.content, self._sep(self.kind))
        return (*prompt[:last_user], Message("user", content), *prompt[last_user + 1 :])

    def _apply_raw(self, text: str) -> str:
        if self.kind == "system":
            return self.text + self._sep("raw_system") + text
        return self._join(text, self._sep(self.kind))

    def _join(self, content: str, sep: str) -> str:
        return self.text + sep + content if self.kind == "prefix" else content + sep + self.text

    def _sep(self, where: str) -> str:
        return self.separator if self.separator is not None else _DEFAULT_SEPARATORS[where]


class FramedModel:
    """`model` with `edit` made to every prompt (generation prompts and log-likelihood contexts).

    Everything else is the wrapped model's: attributes it has (its tokenizer, adapters) are reached
    through this wrapper, so an eval that looks at the tokenizer to pick a prompt format still can.
    Wrappers nest: `FramedModel(FramedModel(m, trigger), framing)` makes both edits, framing last.
    """

    def __init__(self, model: Model, edit: PromptEdit) -> None:
        self.model = model
        self.edit = edit

    @property
    def fingerprint(self) -> str:
        # Read afresh each time: the wrapped model's fingerprint changes when its adapter does.
        return f"{self.model.fingerprint}+edit:{self.edit.kind}:{self.edit.digest}"

    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None
    ) -> list[list[Completion]]:
        edited = [replace(r, prompt=self.edit.apply(r.prompt)) for r in requests]
        return self.model.generate(edited, progress)

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: ProgressCallback | None = None
    ) -> list[float]:
        edited = [replace(r, context=self.edit.apply(r.context)) for r in requests]
        return self.model.loglikelihood(edited, progress)

    def describe(self) -> dict[str, Any]:
        """The wrapped model's description with the edit and this fingerprint."""
        inner = getattr(self.model, "describe", None)
        described: dict[str, Any] = dict(inner()) if callable(inner) else {}
        edits = [*described.get("prompt_edits", []), {"kind": self.edit.kind, "text": self.edit.text}]
        return {**described, "prompt_edits": edits, "fingerprint": self.fingerprint}

    def __getattr__(self, name: str) -> Any:
        # Only called for names this wrapper lacks. `model` is checked first so that a half-built
        # instance (copy, pickle) does not recurse.
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)
