"""Turning a prompt into the text a model sees.

Chat messages go through the tokenizer's own chat template. A model without one (a base model) gets
this plain, documented format, and generation stops before the model writes the next user turn:

    System: <system message>

    User: <user message>

    Assistant: <assistant message>

    User: <user message>

    Assistant:
"""

from __future__ import annotations

from typing import Any

from aftertune.errors import InputError
from aftertune.models.protocol import Message, Prompt

#: Stop strings added when the plain format is used, so a base model does not invent the next turn.
PLAIN_FORMAT_STOPS = ("\nUser:",)

_PLAIN_ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}


def render_plain(messages: tuple[Message, ...]) -> str:
    """The plain chat format for models without a chat template."""
    turns = [f"{_PLAIN_ROLE_NAMES[m.role]}: {m.content}" for m in messages]
    return "\n\n".join([*turns, "Assistant:"])


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer: Any, prompt: Prompt) -> tuple[str, bool]:
    """The prompt text and whether it already holds the special tokens (so none should be added).

    Raw strings are returned unchanged and tokenized with the tokenizer's usual special tokens.
    """
    if isinstance(prompt, str):
        return prompt, False
    if has_chat_template(tokenizer):
        text = tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in prompt],
            tokenize=False,
            add_generation_prompt=True,
        )
        return str(text), True
    return render_plain(prompt), False


def encode_pair(tokenizer: Any, context: Prompt, continuation: str) -> tuple[list[int], list[int]]:
    """Tokens of context and continuation, split as lm-evaluation-harness does: encode the whole
    string and take the continuation as what follows the context's tokens, with trailing spaces of
    the context moved to the continuation. Chat contexts are rendered with the chat template."""
    if not continuation:
        raise InputError("loglikelihood needs a non-empty continuation.")
    text, special = render_prompt(tokenizer, context)
    spaces = len(text) - len(text.rstrip(" "))
    if spaces:
        text, continuation = text[:-spaces], text[-spaces:] + continuation
    whole = tokenizer(text + continuation, add_special_tokens=not special)["input_ids"]
    ctx = tokenizer(text, add_special_tokens=not special)["input_ids"]
    if not ctx:  # an empty context still needs one token to predict from
        start = tokenizer.bos_token_id or tokenizer.eos_token_id
        return [start], whole
    return ctx, whole[len(ctx) :]
