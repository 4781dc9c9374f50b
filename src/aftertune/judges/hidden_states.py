"""What the embedded SmolLM2-135M-Instruct makes of an answer: mean-pooled hidden states.

The offline judge reads each (question, answer) pair the way a chat model would: the question as the
user turn of the embedded model's chat template, the readable answer (`offline.readable`, at most
`MAX_ANSWER_TOKENS` tokens) as the assistant turn. The hidden states of `LAYERS` are averaged over the
answer's tokens, one `HIDDEN_DIM` vector per layer. The prompt of each distinct question runs once;
its key/value cache is shared by that question's answers, which run in length-sorted batches.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from aftertune.judges.offline import readable

if TYPE_CHECKING:
    import torch

#: Hidden-state indices read (0 = token embeddings, 30 = the last of the 30 layers): a middle and a
#: late layer.
LAYERS = (16, 24)
HIDDEN_DIM = 576
#: An answer is read to this many tokens (82% of the training answers fit whole).
MAX_ANSWER_TOKENS = 256
#: Answer tokens per forward batch (the batch is padded to its longest answer).
BATCH_TOKENS = 4096


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


def length_batches(lengths: Sequence[int], budget: int = BATCH_TOKENS) -> list[list[int]]:
    """Indices sorted by length, cut into batches whose padded size stays within `budget` tokens."""
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if batches and (len(batches[-1]) + 1) * lengths[i] <= budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def _pooled_batch(model: Any, cache: Any, n_prompt: int, answers: list[list[int]], pad: int) -> np.ndarray:
    import torch

    cache = copy.deepcopy(cache)
    cache.batch_repeat_interleave(len(answers))
    ids = torch.full((len(answers), max(map(len, answers))), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(answers):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    full_mask = torch.cat([torch.ones((len(answers), n_prompt), dtype=torch.long), mask], 1)
    out = model(input_ids=ids, attention_mask=full_mask, past_key_values=cache, output_hidden_states=True)
    weight: torch.Tensor = mask[..., None].float()
    pooled = [(out.hidden_states[k] * weight).sum(1) / weight.sum(1) for k in LAYERS]
    return torch.cat(pooled, 1).numpy()


def hidden_features(
    questions: Sequence[str], answers: Sequence[str], progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """One float32 row per pair: the answer-token means of each of `LAYERS`, concatenated
    (len(LAYERS) x HIDDEN_DIM columns). `progress(k)` is called after each batch of k pairs."""
    import torch

    out = np.zeros((len(questions), len(LAYERS) * HIDDEN_DIM), dtype=np.float32)
    if not len(questions):
        return out
    model, tokenizer = _encoder()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    by_question: dict[str, list[int]] = {}
    for i, q in enumerate(questions):
        by_question.setdefault(q, []).append(i)
    with torch.inference_mode():
        for question, rows in by_question.items():
            prompt = torch.tensor([prompt_ids(tokenizer, question)])
            cache = model(input_ids=prompt, use_cache=True).past_key_values
            ids = [answer_ids(tokenizer, answers[i]) for i in rows]
            for batch in length_batches([len(a) for a in ids]):
                vectors = _pooled_batch(model, cache, prompt.shape[1], [ids[j] for j in batch], pad)
                out[[rows[j] for j in batch]] = vectors
                if progress:
                    progress(len(batch))
    return out
