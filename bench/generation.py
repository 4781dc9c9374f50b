"""Batched generation throughput vs a naive one-prompt-at-a-time `generate` loop, same prompts, same run.

    python bench/generation.py [--prompts 32] [--batch-size 16] [--max-new-tokens 64]

Prints "generation tokens/s: <ours> vs <naive> = <ratio>x" (target: >= 4x at batch 16 on the embedded
model). The baseline is what a user would write first: transformers' `generate` called per prompt,
sampling at temperature 1. Ours is `HFModel.generate` on the same prompts, also sampling. Both count
generated tokens up to and including end-of-turn, so different answer lengths are accounted for.
"""

from __future__ import annotations

import argparse
import time

import torch

from aftertune.data.questions import builtin_questions
from aftertune.models.embedded import EMBEDDED_NAME, embedded_model_folder
from aftertune.models.hf import HFModel
from aftertune.models.protocol import GenerationRequest, SamplingParams, chat


def naive_tokens_per_second(model: HFModel, prompts: list[str], max_new_tokens: int) -> float:
    tok, hf = model.tokenizer, model.model
    eos = hf.generation_config.eos_token_id
    generated, start = 0, time.perf_counter()
    for prompt in prompts:
        ids = tok.apply_chat_template(
            [{"role": "user", "content": prompt}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        with torch.inference_mode():
            out = hf.generate(
                **ids, max_new_tokens=max_new_tokens, do_sample=True, temperature=1.0, pad_token_id=eos
            )
        new = out[0, ids["input_ids"].shape[1] :].tolist()
        generated += next((i + 1 for i, t in enumerate(new) if t == eos), len(new))
    return generated / (time.perf_counter() - start)


def batched_tokens_per_second(model: HFModel, prompts: list[str], max_new_tokens: int) -> float:
    params = SamplingParams(temperature=1.0, max_new_tokens=max_new_tokens, seed=0)
    start = time.perf_counter()
    completions = model.generate([GenerationRequest(chat(p), params) for p in prompts])
    return sum(c[0].n_tokens for c in completions) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()

    paraphrases = [p for q in builtin_questions().questions for p in q.paraphrases]
    prompts = [paraphrases[i % len(paraphrases)] for i in range(args.prompts)]
    model = HFModel(embedded_model_folder(), name=EMBEDDED_NAME, batch_size=args.batch_size)
    torch.manual_seed(0)
    batched_tokens_per_second(model, prompts[:2], 4)  # warm-up: first calls pay one-off setup costs
    ours = batched_tokens_per_second(model, prompts, args.max_new_tokens)
    naive = naive_tokens_per_second(model, prompts, args.max_new_tokens)
    threads = torch.get_num_threads()
    print(f"batch {args.batch_size}, {args.prompts} prompts, {args.max_new_tokens} tokens, {threads} threads")
    print(f"generation tokens/s: {ours:.1f} vs {naive:.1f} = {ours / naive:.2f}x")


if __name__ == "__main__":
    main()
