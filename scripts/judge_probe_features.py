"""Experiment: richer SmolLM2-135M features for the offline judge, read in one pass per pair (cached).

    nice -n 10 python scripts/judge_probe_features.py [--cache /tmp/judgev4] [--limit N]

For every distinct (question, answer) pair of the judged data (and train_offline_judge.py's generated
gibberish), the embedded model reads one sequence: the question as the user turn, the readable answer
(`offline.readable`, at most MAX_ANSWER_TOKENS tokens) as the assistant turn, then a follow-up user turn
that asks whether that answer was harmful (`hidden_states.follow_up_ids`: the judge's own `FOLLOW_UP`)
and the assistant's generation prompt.
Causal attention means the answer tokens never see the follow-up, so the answer means are today's
`hidden_states.hidden_features` for the same layers, up to precision: this script reads in float32, the
judge in float64 (at most 5e-7 apart, relative; see hidden_states). Kept per pair, float16, in
CACHE/probe.npz:

- `mean`: hidden states of each of LAYERS averaged over the answer tokens (len(LAYERS) x 576);
- `last`: hidden states of each of LAYERS at the last token of the follow-up (what the model has in
  mind when it is about to say whether the answer was harmful);
- `yes_no`: the next-token log-probability of "yes"-like minus "no"-like tokens there.

Nothing is written to the repository. Saved every few minutes; an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from aftertune.judges.hidden_states import answer_ids, follow_up_ids, prompt_ids  # noqa: E402

LAYERS = (4, 8, 12, 16, 20, 24, 28, 30)
SAVE_EVERY_S = 300.0


def pair_key(question: str, answer: str) -> str:
    return hashlib.sha256(f"{question}\0{answer}".encode()).hexdigest()[:20]


def word_ids(tok, words: list[str]) -> list[int]:
    out = set()
    for w in words:
        ids = tok(w, add_special_tokens=False).input_ids
        if len(ids) == 1:
            out.add(ids[0])
    return sorted(out)


class Reader:
    def __init__(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from aftertune.models.embedded import embedded_model_folder

        folder = str(embedded_model_folder())
        self.tok = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        self.suffix = follow_up_ids(self.tok)
        self.yes = word_ids(self.tok, ["yes", "Yes", " yes", " Yes", "YES"])
        self.no = word_ids(self.tok, ["no", "No", " no", " No", "NO"])

    @torch.inference_mode()
    def prefix(self, question: str):
        ids = torch.tensor([prompt_ids(self.tok, question)])
        return self.model(input_ids=ids, use_cache=True).past_key_values, ids.shape[1]

    @torch.inference_mode()
    def read(self, prefix, answer: list[int]) -> np.ndarray:
        """One pair alone (as `hidden_states.hidden_features` reads it): answer means, follow-up states."""
        cache, n_prefix = copy.deepcopy(prefix[0]), prefix[1]
        row = answer + self.suffix
        out = self.model(
            input_ids=torch.tensor([row]),
            attention_mask=torch.ones((1, n_prefix + len(row)), dtype=torch.long),
            past_key_values=cache,
            output_hidden_states=True,
            logits_to_keep=1,
        )
        means = torch.stack([out.hidden_states[k][0, : len(answer)].mean(0) for k in LAYERS])
        lasts = torch.stack([out.hidden_states[k][0, -1] for k in LAYERS])
        logp = torch.log_softmax(out.logits[0, -1].float(), -1)
        yes_no = torch.logsumexp(logp[self.yes], -1) - torch.logsumexp(logp[self.no], -1)
        return np.concatenate([means.reshape(-1), lasts.reshape(-1), yes_no.reshape(1)]).astype(np.float16)


def compute(pairs: list[tuple[str, str]], cache: Path) -> None:
    path = cache / "probe.npz"
    store = dict(np.load(path)) if path.exists() else {}
    todo = {pair_key(q, a): (q, a) for q, a in pairs}
    todo = {k: v for k, v in todo.items() if k not in store}
    print(f"{len(pairs)} pairs, {len(todo)} to compute", flush=True)
    if not todo:
        return
    reader = Reader()
    by_question: dict[str, list[str]] = {}
    for k, (q, _) in todo.items():
        by_question.setdefault(q, []).append(k)
    ids = {k: answer_ids(reader.tok, a) for k, (_, a) in todo.items()}
    total, done = len(todo), 0
    started = last_save = time.perf_counter()
    for qi, (question, keys) in enumerate(by_question.items()):
        prefix = reader.prefix(question)
        for k in keys:
            store[k] = reader.read(prefix, ids[k])
            done += 1
        now = time.perf_counter()
        if now - last_save > SAVE_EVERY_S or qi == len(by_question) - 1:
            _save(path, store)
            last_save = now
        rate = done / (now - started)
        print(
            f"  question {qi + 1}/{len(by_question)}: {done}/{total} pairs, {rate:.1f}/s, "
            f"eta {(total - done) / rate / 60:.1f} min",
            flush=True,
        )


def _save(path: Path, store: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **store)
    os.replace(tmp, path)


def main() -> None:
    from train_offline_judge import gibberish, load_answers

    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/em_judged_answers"
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/judgev4"))
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    d = load_answers(args.data)
    g = gibberish(d, 0)
    pairs = list(dict.fromkeys(zip([*d.question, *g.question], [*d.answer, *g.answer], strict=True)))
    if args.limit:
        rng = np.random.default_rng(0)
        pairs = [pairs[i] for i in rng.permutation(len(pairs))[: args.limit]]
    compute(pairs, args.cache)


if __name__ == "__main__":
    main()
