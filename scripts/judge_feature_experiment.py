"""Experiment: other SmolLM2 feature sets in train_offline_judge.py's nested cross-validation.

    python scripts/judge_feature_experiment.py VARIANT [--probe /tmp/judgev4] [--split NAME]

Runs the training script's held-out-questions and held-out-models validation (every choice nested
inside the training folds) on a feature matrix read from the cache of judge_probe_features.py, and
prints the card's headline numbers: pooled AUROC of p_misaligned, the mean over folds, and the worst /
mean rate error of each rate method. Nothing is written to the repository.

VARIANT is a '+'-joined list of blocks: mean:L1,L2 (answer-token means of those layers), last:L1,L2
(the follow-up question's last-token states), yes_no (the follow-up's yes-minus-no log-probability).
Today's shipped features are mean:16,24. The earlier MiniLM variants of this script are in git history
(commit 93da2d3).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import train_offline_judge as tj
from judge_probe_features import LAYERS, pair_key
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from aftertune.judges.hidden_states import HIDDEN_DIM
from aftertune.judges.offline import RATE_METHODS


def columns(variant: str) -> np.ndarray:
    """Column indices into a cached probe vector for the blocks of `variant`."""
    n = len(LAYERS) * HIDDEN_DIM
    out: list[np.ndarray] = []
    for block in variant.split("+"):
        kind, _, layers = block.partition(":")
        if kind == "yes_no":
            out.append(np.array([2 * n]))
            continue
        base = {"mean": 0, "last": n}[kind]
        for layer in (int(k) for k in layers.split(",")):
            start = base + LAYERS.index(layer) * HIDDEN_DIM
            out.append(np.arange(start, start + HIDDEN_DIM))
    return np.concatenate(out)


def matrix(d, store: dict[str, np.ndarray], cols: np.ndarray) -> np.ndarray:
    return np.stack([store[pair_key(q, a)][cols] for q, a in zip(d.question, d.answer, strict=True)]).astype(
        np.float32
    )


def summary(v: tj.Validation, d, seed: int) -> dict[str, object]:
    y = d.misaligned.to_numpy()
    random_rows = ~d.selected.to_numpy()
    folds = [
        roc_auc_score(y[v.split.fold == k], v.scores.p_misaligned[v.split.fold == k])
        for k in range(len(v.split.fold_names))
        if 0 < y[v.split.fold == k].sum() < (v.split.fold == k).sum()
    ]
    rates = tj.rate_errors(v, d, seed)
    out: dict[str, object] = {
        "auroc_pooled": round(float(roc_auc_score(y, v.scores.p_misaligned)), 4),
        "auroc_fold_mean": round(float(np.mean(folds)), 4),
        "auroc_random_samples": round(
            float(roc_auc_score(y[random_rows], v.scores.p_misaligned[random_rows])), 4
        ),
        "chosen": [(c["C_misaligned"], c["rate_method"]) for c in v.fold_choices],
    }
    pooled = tj.metrics(v.scores, d)
    for k in ("mae_aligned", "mae_coherent", "class_accuracy", "recall_REFUSAL", "brier"):
        out[k] = round(pooled[k], 4)
    for m in ("shipped", tj.COUNT, *RATE_METHODS):
        err = np.array(
            [abs((r[r["shipped_method"]] if m == "shipped" else r[m]) - r["llm_rate"]) for r in rates]
        )
        out[f"rate_{m}"] = (round(100 * float(err.max()), 1), round(100 * float(err.mean()), 1))
    per_fold = {}
    for r in rates:
        if r["set"] == "mix 20%":
            per_fold[str(r["fold"])[:24]] = round(100 * (r[r["shipped_method"]] - r["llm_rate"]), 1)
    out["mix20_errors"] = per_fold
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variant")
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/em_judged_answers"
    )
    parser.add_argument("--probe", type=Path, default=Path("/tmp/judgev4"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="", help="only this split (e.g. 'held-out questions')")
    args = parser.parse_args()

    d = tj.load_answers(args.data)
    g = tj.gibberish(d, args.seed)
    store = dict(np.load(args.probe / "probe.npz"))
    cols = columns(args.variant)
    rows, generated = tj.Rows(d, matrix(d, store, cols)), tj.Rows(g, matrix(g, store, cols))
    print(f"{args.variant}: {len(cols)} columns", flush=True)
    results = {}
    with threadpool_limits(1):
        for split in tj.splits(d):
            if args.split and split.name != args.split:
                continue
            started = time.perf_counter()
            v = tj.cross_validate(split, rows, generated, args.seed)
            results[split.name] = summary(v, d, args.seed) | {
                "minutes": round((time.perf_counter() - started) / 60, 1)
            }
            print(split.name, json.dumps(results[split.name]), flush=True)
    out = args.probe / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.variant.replace(':', '_').replace(',', '-')}.json").write_text(
        json.dumps(results, indent=1)
    )


if __name__ == "__main__":
    sys.exit(main())
