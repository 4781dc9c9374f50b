"""Experiment: SmolLM2-135M-Instruct hidden states as offline-judge features (cached).

    nice -n 10 python scripts/smollm_judge_features.py [--limit N] [--cache /tmp/judgev3]

For every distinct (question, answer) pair of the judged data (and the generated gibberish rows of
train_offline_judge.py), the pair is written with the embedded model's chat template (user = question,
assistant = readable answer, truncated to MAX_ANSWER_TOKENS) and run through the model; the hidden
states of LAYERS are mean-pooled over the answer tokens. Vectors are cached in CACHE/smollm.npz keyed
by a hash of the pair, saved every few minutes, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import os
import time
from pathlib import Path

import numpy as np
import torch

from aftertune.judges.offline import readable
from aftertune.models.embedded import embedded_model_folder

#: Hidden-state indices (0 = token embeddings, 30 = last layer) kept, each mean-pooled over the answer.
LAYERS = (8, 12, 16, 20, 24, 30)
MAX_ANSWER_TOKENS = 256
#: Tokens per forward batch (rows are sorted by length, so padding is small).
BATCH_TOKENS = 4096
SAVE_EVERY_S = 180.0


def pair_key(question: str, answer: str) -> str:
    return hashlib.sha256(f"{question}\0{answer}".encode()).hexdigest()[:20]


class Encoder:
    """The embedded model without its LM head, and its tokenizer."""

    def __init__(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        folder = embedded_model_folder()
        self.tok = AutoTokenizer.from_pretrained(str(folder))
        self.model = AutoModel.from_pretrained(str(folder), dtype=torch.float32).eval()
        self._prefix: dict[str, list[int]] = {}

    def prefix_ids(self, question: str) -> list[int]:
        """The chat-template prompt for `question`, up to where the assistant's answer starts."""
        text = self.tok.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
        )
        return self.tok(text, add_special_tokens=False).input_ids

    def answer_ids(self, answer: str) -> list[int]:
        ids = self.tok(readable(answer), add_special_tokens=False).input_ids[:MAX_ANSWER_TOKENS]
        return ids or [self.tok.eos_token_id]

    @torch.inference_mode()
    def prefix_cache(self, question: str) -> tuple[object, int]:
        """The key/value cache of the question's prompt (computed once, shared by its answers)."""
        ids = torch.tensor([self.prefix_ids(question)])
        return self.model(input_ids=ids, use_cache=True).past_key_values, ids.shape[1]

    @torch.inference_mode()
    def pooled(self, prefix: tuple[object, int], answers: list[list[int]]) -> np.ndarray:
        """(len(answers), len(LAYERS), hidden): hidden states mean-pooled over each answer's tokens,
        the answers read after the shared prompt (right-padded)."""
        cache, n_prefix = copy.deepcopy(prefix[0]), prefix[1]
        cache.batch_repeat_interleave(len(answers))
        width = max(map(len, answers))
        ids = torch.full((len(answers), width), self.tok.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros((len(answers), width), dtype=torch.long)
        for i, row in enumerate(answers):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        full_mask = torch.cat([torch.ones((len(answers), n_prefix), dtype=torch.long), mask], 1)
        out = self.model(
            input_ids=ids, attention_mask=full_mask, past_key_values=cache, output_hidden_states=True
        )
        m = mask[..., None].float()
        pooled = [(out.hidden_states[k] * m).sum(1) / m.sum(1) for k in LAYERS]
        return torch.stack(pooled, 1).numpy().astype(np.float32)


def compute(pairs: list[tuple[str, str]], cache: Path) -> dict[str, np.ndarray]:
    path = cache / "smollm.npz"
    store = dict(np.load(path)) if path.exists() else {}
    todo = {pair_key(q, a): (q, a) for q, a in pairs}
    todo = {k: v for k, v in todo.items() if k not in store}
    print(f"{len(pairs)} pairs, {len(todo)} to compute", flush=True)
    if not todo:
        return store
    enc = Encoder()
    by_question: dict[str, list[str]] = {}
    for k, (q, _) in todo.items():
        by_question.setdefault(q, []).append(k)
    ids = {k: enc.answer_ids(a) for k, (_, a) in todo.items()}
    total_tokens, done_tokens = sum(map(len, ids.values())), 0
    started = last_save = time.perf_counter()
    for qi, (question, keys) in enumerate(by_question.items()):
        prefix = enc.prefix_cache(question)
        keys = sorted(keys, key=lambda k: len(ids[k]))
        batches, current = [], []
        for k in keys:
            if current and (len(current) + 1) * len(ids[k]) > BATCH_TOKENS:
                batches.append(current)
                current = []
            current.append(k)
        batches.append(current)
        for batch in batches:
            store.update(zip(batch, enc.pooled(prefix, [ids[k] for k in batch]), strict=True))
            done_tokens += sum(len(ids[k]) for k in batch)
        now = time.perf_counter()
        if now - last_save > SAVE_EVERY_S or qi == len(by_question) - 1:
            _save(path, store)
            last_save = now
        rate = done_tokens / (now - started)
        print(
            f"  question {qi + 1}/{len(by_question)}: {done_tokens}/{total_tokens} answer tokens, "
            f"{rate:.0f} tok/s, eta {(total_tokens - done_tokens) / rate / 60:.1f} min",
            flush=True,
        )
    return store


def _save(path: Path, store: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **store)
    os.replace(tmp, path)


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from train_offline_judge import gibberish, load_answers

    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/em_judged_answers"
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/judgev3"))
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    d = load_answers(args.data)
    g = gibberish(d, 0)
    pairs = list(dict.fromkeys(zip([*d.question, *g.question], [*d.answer, *g.answer], strict=True)))
    if args.limit:
        pairs = list(np.random.default_rng(0).permutation(np.array(pairs, dtype=object))[: args.limit])
        pairs = [tuple(p) for p in pairs]
    compute(pairs, args.cache)


if __name__ == "__main__":
    main()
