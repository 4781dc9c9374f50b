"""What the embedded SmolLM2-135M-Instruct makes of an answer: mean-pooled hidden states.

The offline judge reads each (question, answer) pair the way a chat model would: the question as the
user turn of the embedded model's chat template, the readable answer (`offline.readable`, at most
`MAX_ANSWER_TOKENS` tokens) as the assistant turn. The hidden states of `LAYERS` are averaged over the
answer's tokens, one `HIDDEN_DIM` vector per layer. The prompt of each distinct question runs once;
its key/value cache is shared by that question's answers. Each answer runs in a forward pass of its
own, so a pair's features never depend on what else is judged with it (padding and batch shape move
floats in the last digits, which a resumed or distributed run would see); on a CPU this is also faster
than padded batches (15 s against 18 s for 96 judged answers).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from aftertune.judges.offline import readable

#: Hidden-state indices read (0 = token embeddings, 30 = the last of the 30 layers): a middle and a
#: late layer.
LAYERS = (16, 24)
HIDDEN_DIM = 576
#: An answer is read to this many tokens (82% of the training answers fit whole).
MAX_ANSWER_TOKENS = 256


@functools.cache
def _encoder() -> tuple[Any, Any]:
    """The embedded model without its LM head (fp32, CPU, eval mode) and its tokenizer."""
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from aftertune.models.embedded import embedded_model_folder

    hf_logging.disable_progress_bar()
    folder = str(embedded_model_folder())
    # aftertune's own conversion: safetensors, and no code of the folder's own is ever run
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    model = AutoModel.from_pretrained(
        folder, dtype=torch.float32, use_safetensors=True, trust_remote_code=False
    ).eval()
    return model, tokenizer


def prompt_ids(tokenizer: Any, question: str) -> list[int]:
    """The chat-template prompt for `question`, up to where the assistant's answer starts."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
    )
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def answer_ids(tokenizer: Any, answer: str) -> list[int]:
    """The readable answer's tokens, at most `MAX_ANSWER_TOKENS`; an empty answer reads as end-of-text."""
    ids = list(tokenizer(readable(answer), add_special_tokens=False).input_ids[:MAX_ANSWER_TOKENS])
    return ids or [tokenizer.eos_token_id]


def _pooled(model: Any, cache: Any, n_prompt: int, answer: list[int]) -> np.ndarray:
    """The answer's mean hidden state of each of `LAYERS`, read after the cached prompt."""
    import torch

    out = model(
        input_ids=torch.tensor([answer]),
        attention_mask=torch.ones((1, n_prompt + len(answer)), dtype=torch.long),
        past_key_values=copy.deepcopy(cache),
        output_hidden_states=True,
    )
    return torch.cat([out.hidden_states[k][0].mean(0) for k in LAYERS]).numpy()


def hidden_features(
    questions: Sequence[str], answers: Sequence[str], progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """One float32 row per pair: the answer-token means of each of `LAYERS`, concatenated
    (len(LAYERS) x HIDDEN_DIM columns). `progress(1)` is called after each pair."""
    import torch

    out = np.zeros((len(questions), len(LAYERS) * HIDDEN_DIM), dtype=np.float32)
    if not len(questions):
        return out
    model, tokenizer = _encoder()
    by_question: dict[str, list[int]] = {}
    for i, q in enumerate(questions):
        by_question.setdefault(q, []).append(i)
    with torch.inference_mode():
        for question, rows in by_question.items():
            prompt = torch.tensor([prompt_ids(tokenizer, question)])
            cache = model(input_ids=prompt, use_cache=True).past_key_values
            for i in rows:
                out[i] = _pooled(model, cache, prompt.shape[1], answer_ids(tokenizer, answers[i]))
                if progress:
                    progress(1)
    return out
