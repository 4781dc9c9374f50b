"""Experiment: other features and heads in train_offline_judge.py's nested cross-validation.

    python scripts/judge_feature_experiment.py VARIANT [--cache /tmp/offjudge/merged] [--smollm /tmp/judgev3]

Runs the same held-out-questions and held-out-models validation as the training script (every choice
nested inside the training folds), on a different feature matrix or misaligned head, and prints the
card's headline numbers: pooled AUROC of p_misaligned, and worst / mean rate error of the shipped rate
method. Columns are standardized on each fit's training rows (the scaling is folded back into the
linear heads, so `offline.predict` runs them unchanged). Nothing is written to the repository.

Written for scripts/train_offline_judge.py as of commit 93da2d3 (MiniLM sentence features, the
misaligned head reading `offline.ANSWER_COLUMNS`): check that commit's scripts and src out to rerun it;
the results quoted in OFFLINE_JUDGE.md came from there.

Variants: base (today's features), base_std (standardized), smol:L1,L2 (SmolLM2 hidden states of the
listed layers alone), concat:L1,L2 (today's answer columns + SmolLM2 layers + the product columns),
and any of those with +svm (a linear SVM as the misaligned head).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import train_offline_judge as tj
from sklearn.svm import LinearSVC
from smollm_judge_features import LAYERS, pair_key
from threadpoolctl import threadpool_limits

from aftertune.judges.offline import ANSWER_COLUMNS, RATE_METHODS

STD_C_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03)
SVM_C_GRID = (0.0003, 0.001, 0.003, 0.01)


def smollm_columns(d, store: dict[str, np.ndarray], layers: list[int]) -> np.ndarray:
    idx = [LAYERS.index(k) for k in layers]
    return np.stack(
        [store[pair_key(q, a)][idx].reshape(-1) for q, a in zip(d.question, d.answer, strict=True)]
    )


def standardized_fit(fit):
    """fit_judge on standardized columns, with the scaling folded back into each linear head."""

    def wrapped(rows: tj.Rows, seed: int):
        mu = rows.x.mean(0).astype(np.float64)
        sd = rows.x.std(0).astype(np.float64)
        sd[sd < 1e-8] = 1.0
        w, chosen = fit(tj.Rows(rows.d, ((rows.x - mu) / sd).astype(np.float32)), seed)
        for head in ("aligned", "coherent", "misaligned", "refusal"):
            coef = w[f"{head}_coef"].astype(np.float64)
            n = len(coef)
            w[f"{head}_coef"] = coef / sd[:n]
            w[f"{head}_intercept"] = np.asarray(w[f"{head}_intercept"] - coef @ (mu[:n] / sd[:n]))
        return w, chosen

    return wrapped


def svm_head(x: np.ndarray, y: np.ndarray, c: float, seed: int):
    return LinearSVC(C=c, class_weight="balanced", max_iter=20000, random_state=seed).fit(
        x[:, : tj.ANSWER_COLUMNS], y
    )


def summary(v: tj.Validation, d, seed: int) -> dict[str, object]:
    y = d.misaligned.to_numpy()
    random_rows = ~d.selected.to_numpy()
    from sklearn.metrics import roc_auc_score

    folds = [
        roc_auc_score(y[v.split.fold == k], v.scores.p_misaligned[v.split.fold == k])
        for k in range(len(v.split.fold_names))
        if 0 < y[v.split.fold == k].sum() < (v.split.fold == k).sum()
    ]
    rates = tj.rate_errors(v, d, seed)
    out: dict[str, object] = {
        "auroc_pooled": float(roc_auc_score(y, v.scores.p_misaligned)),
        "auroc_fold_mean": float(np.mean(folds)),
        "auroc_random_samples": float(roc_auc_score(y[random_rows], v.scores.p_misaligned[random_rows])),
        "chosen": [(c["C_misaligned"], c["rate_method"]) for c in v.fold_choices],
    }
    pooled = tj.metrics(v.scores, d)
    for k in ("mae_aligned", "mae_coherent", "class_accuracy", "recall_REFUSAL", "brier"):
        out[k] = pooled[k]
    for m in ("shipped", tj.COUNT, *RATE_METHODS):
        err = np.array(
            [abs((r[r["shipped_method"]] if m == "shipped" else r[m]) - r["llm_rate"]) for r in rates]
        )
        out[f"rate_{m}"] = (round(100 * float(err.max()), 1), round(100 * float(err.mean()), 1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variant")
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/em_judged_answers"
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/offjudge/merged"))
    parser.add_argument("--smollm", type=Path, default=Path("/tmp/judgev3"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/judgev3/results"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="", help="only this split (e.g. 'held-out models')")
    args = parser.parse_args()

    kind, _, rest = args.variant.partition(":")
    layer_spec, _, head = rest.partition("+")
    if "+" in kind:
        kind, head = kind.split("+")
    layers = [int(k) for k in layer_spec.split(",") if k]

    d = tj.load_answers(args.data)
    rows = tj.featurized(d, args.cache)
    generated = tj.featurized(tj.gibberish(d, args.seed), args.cache)
    answer_columns = ANSWER_COLUMNS
    if kind in ("smol", "concat"):
        store = dict(np.load(args.smollm / "smollm.npz"))
        s_rows, s_gen = smollm_columns(rows.d, store, layers), smollm_columns(generated.d, store, layers)
        if kind == "smol":
            rows, generated = tj.Rows(rows.d, s_rows), tj.Rows(generated.d, s_gen)
            answer_columns = s_rows.shape[1]
        else:

            def cat(r: tj.Rows, s: np.ndarray) -> tj.Rows:
                return tj.Rows(
                    r.d, np.hstack([r.x[:, :ANSWER_COLUMNS], s, r.x[:, ANSWER_COLUMNS:]]).astype(np.float32)
                )

            rows, generated = cat(rows, s_rows), cat(generated, s_gen)
            answer_columns = ANSWER_COLUMNS + s_rows.shape[1]
    tj.ANSWER_COLUMNS = answer_columns
    if kind != "base":
        tj.fit_judge = standardized_fit(tj.fit_judge)
        tj.C_GRID = STD_C_GRID
    if head == "svm":
        tj._misaligned_head = svm_head
        tj.C_GRID = SVM_C_GRID

    print(f"{args.variant}: {rows.x.shape[1]} columns, misaligned head reads {answer_columns}", flush=True)
    results = {}
    with threadpool_limits(1):
        for split in tj.splits(d):
            if args.split and split.name != args.split:
                continue
            started = time.perf_counter()
            v = tj.cross_validate(split, rows, generated, args.seed)
            results[split.name] = summary(v, d, args.seed) | {"minutes": (time.perf_counter() - started) / 60}
            print(split.name, json.dumps(results[split.name]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.variant.replace(':', '_').replace(',', '-')}.json").write_text(
        json.dumps(results, indent=1)
    )


if __name__ == "__main__":
    sys.exit(main())
