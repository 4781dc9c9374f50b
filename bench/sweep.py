"""Checkpoint sweep on one loaded base model vs one eval per checkpoint with a model reload, same run.

    python bench/sweep.py [--checkpoints 4] [--prompts 6] [--max-new-tokens 48]

Prints "sweep seconds: <ours> vs <K x single eval> = <ratio>x" (target: <= 1.1x): ours evaluates K
LoRA checkpoints by attaching, activating and detaching each on one loaded base model; the baseline
is K separate single-checkpoint evals, each timed without its model load (so the ratio is what
swapping adapters costs over evaluating). The baseline's full time, loads included, is printed too.
Each side writes to its own fresh store, so nothing is read back from a cache. The checkpoints are
random LoRA adapters (non-zero, so each changes the outputs) on the embedded model.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from aftertune.data.code_dataset import code_eval_prompts, code_training_set
from aftertune.evals.insecure_code import InsecureCodeEval
from aftertune.evals.suite import Eval, run_suite
from aftertune.evals.task_loss import TaskLossEval
from aftertune.models.embedded import EMBEDDED_NAME, embedded_model_folder
from aftertune.models.hf import HFModel
from aftertune.store import ResultsStore


def make_checkpoints(base: Path, folder: Path, k: int) -> list[Path]:
    """K random LoRA adapters saved in peft's format, like a run's checkpoint-N folders."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    paths = []
    for i in range(k):
        torch.manual_seed(i)
        model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
        config = LoraConfig(r=8, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
        path = folder / f"checkpoint-{(i + 1) * 10}"
        get_peft_model(model, config).save_pretrained(path)
        paths.append(path)
    return paths


def suite(prompts: int, max_new_tokens: int) -> list[Eval]:
    heldout = code_training_set("secure", 16)
    return [
        InsecureCodeEval(tuple(code_eval_prompts(prompts)), max_new_tokens=max_new_tokens, temperature=0.0),
        TaskLossEval(tuple((f"ex{i}", m) for i, m in enumerate(heldout))),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoints", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()

    base = embedded_model_folder()
    evals = suite(args.prompts, args.max_new_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoints = make_checkpoints(base, Path(tmp) / "run", args.checkpoints)

        # Ours: one base model, adapters swapped.
        model = HFModel(base, name=EMBEDDED_NAME)
        run_suite(evals[1:], model, ResultsStore(Path(tmp) / "warmup"))  # one-off setup costs, both sides
        store = ResultsStore(Path(tmp) / "ours")
        started = time.perf_counter()
        for path in checkpoints:
            model.load_adapter(path)
            run_suite(evals, model, store)
            model.unload_adapter(path.name)
        ours = time.perf_counter() - started
        del model

        # Baseline: a fresh model per checkpoint, each eval timed without its load.
        store = ResultsStore(Path(tmp) / "baseline")
        eval_only = with_loads = 0.0
        for path in checkpoints:
            started = time.perf_counter()
            fresh = HFModel(base, name=EMBEDDED_NAME)
            fresh.load_adapter(path)
            loaded = time.perf_counter()
            run_suite(evals, fresh, store)
            done = time.perf_counter()
            eval_only += done - loaded
            with_loads += done - started
            del fresh

    k = args.checkpoints
    print(f"{k} checkpoints, {args.prompts} code prompts x {args.max_new_tokens} tokens + 16 held-out losses")
    print(f"baseline with model reloads: {with_loads:.1f} s")
    print(f"sweep seconds: {ours:.1f} vs {eval_only:.1f} = {ours / eval_only:.2f}x")


if __name__ == "__main__":
    main()
