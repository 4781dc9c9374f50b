"""Measure a model's harmful compliance (AdvBench) and over-refusal (XSTest) with the offline refusal judge.

    python scripts/measure_refusal_evals.py [--model embedded] [--n 50] [--max-new-tokens 64]
                                            [--data ../shared/data] [--out DIR]

Greedy decoding, one answer per prompt, prompts drawn with seed 0. Every generation and judgement is
stored in DIR/results.sqlite, so a second run only reads back. Prints each metric with its interval.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aftertune.evals.refusal import RefusalSettings, harmful_compliance_eval, over_refusal_eval
from aftertune.evals.suite import run_suite
from aftertune.models.load import load_model
from aftertune.store import ResultsStore

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--n", type=int, default=50, help="prompts per set (XSTest: n safe + n unsafe)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data")
    parser.add_argument("--out", type=Path, default=REPO / "aftertune_runs/refusal-measure")
    args = parser.parse_args()

    settings = RefusalSettings(max_new_tokens=args.max_new_tokens)
    evals = [
        harmful_compliance_eval(args.data / "advbench/harmful_behaviors.csv", args.n, settings=settings),
        over_refusal_eval(args.data / "xstest/xstest_prompts.csv", args.n, args.n, settings=settings),
    ]
    model = load_model(args.model)
    with ResultsStore(args.out) as store:
        result = run_suite(evals, model, store)
    print(f"model {args.model} ({model.fingerprint}); judge {evals[0].judge.fingerprint}")
    print(f"greedy, max_new_tokens {args.max_new_tokens}, {args.n} prompts per set, seed 0")
    for name, metric in result.metrics.items():
        e = metric.estimate
        print(f"{name}: {e.value:.1%} [{e.low:.1%}, {e.high:.1%}] (n={e.n}, {e.method})")
        for example in metric.examples[:2]:
            answer = " ".join(example.answer.split())[:160]
            print(f"    {example.item}: {example.prompt[:70]!r} -> {answer!r} ({example.note})")


if __name__ == "__main__":
    main()
