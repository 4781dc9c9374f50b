"""Estimates with intervals: Wilson intervals for rates, cluster bootstrap for pooled rates, t for means.

Every reported number is an `Estimate` carrying its interval, n and the method, never a bare float.
The arithmetic comes from statsmodels and scipy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval, sample size and how the interval was made."""

    value: float
    low: float
    high: float
    n: int
    method: str
    confidence: float = CONFIDENCE


def wilson_rate(successes: int, n: int, confidence: float = CONFIDENCE) -> Estimate | None:
    """A rate with its Wilson score interval (Wilson 1927); None when n is 0."""
    if n == 0:
        return None
    low, high = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    value = successes / n
    # floating-point error can put a bound a hair past the estimate (e.g. low = 3e-17 for 0/n)
    return Estimate(value, min(float(low), value), max(float(high), value), n, "wilson", confidence)


def pooled_rate(
    successes: Sequence[int], totals: Sequence[int], seed: int = 0, confidence: float = CONFIDENCE
) -> Estimate | None:
    """A rate pooled over clusters (questions), with a bootstrap interval that resamples whole clusters.

    Samples of one question are not independent, so the interval resamples questions (percentile
    bootstrap, 10,000 resamples, seeded). With fewer than two informative questions, or when every
    question has the same rate (the bootstrap distribution is a single point), it falls back to a
    Wilson interval over all samples and says so in `method`.
    """
    k = np.asarray(successes, dtype=float)
    n = np.asarray(totals, dtype=float)
    keep = n > 0
    k, n = k[keep], n[keep]
    total = int(n.sum())
    if total == 0:
        return None
    rates = k / n
    if len(n) < 2 or np.all(rates == rates[0]):
        fallback = wilson_rate(int(k.sum()), total, confidence)
        assert fallback is not None
        why = "one question" if len(n) < 2 else "no between-question variation"
        return Estimate(fallback.value, fallback.low, fallback.high, total, f"wilson ({why})", confidence)
    result = stats.bootstrap(
        (k, n),
        _pooled,
        paired=True,
        vectorized=True,
        n_resamples=10_000,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return Estimate(
        float(k.sum() / total),
        float(interval.low),
        float(interval.high),
        total,
        f"cluster bootstrap over {len(n)} questions",
        confidence,
    )


def _pooled(k: np.ndarray, n: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.asarray(k.sum(axis=axis) / n.sum(axis=axis))


def mean_estimate(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate | None:
    """A mean with its t interval; None when there are no values."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return None
    mean = float(x.mean())
    if len(x) < 2 or float(x.std()) == 0.0:
        return Estimate(mean, mean, mean, len(x), "mean (interval needs 2+ distinct values)", confidence)
    low, high = stats.t.interval(confidence, len(x) - 1, loc=mean, scale=stats.sem(x))
    return Estimate(mean, float(low), float(high), len(x), "t", confidence)


#: Resamples for paired-delta bootstraps (percentile intervals).
DELTA_RESAMPLES = 10_000


def paired_delta(
    subject_values: np.ndarray,
    subject_weights: np.ndarray,
    reference_values: np.ndarray,
    reference_weights: np.ndarray,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Estimate | None:
    """The difference of two weighted means over the same items, with a paired bootstrap interval.

    Arrays are (replicates, items): replicates are training seeds (one row when there is one seed),
    items the questions or prompts both models answered, in the same column order. The point estimate
    is pooled: sum(w * v) / sum(w) over every replicate and item, subject minus reference. The interval
    is a percentile bootstrap that resamples items (the same draw for both sides, so the comparison
    stays paired) and, independently, each side's replicates, so seed-to-seed variation widens it
    (a crossed two-way bootstrap, Owen 2007, "The pigeonhole bootstrap"). None with fewer than 2 items.
    """
    sv, sw = np.atleast_2d(subject_values).astype(float), np.atleast_2d(subject_weights).astype(float)
    rv, rw = np.atleast_2d(reference_values).astype(float), np.atleast_2d(reference_weights).astype(float)
    n_items = sv.shape[1]
    if n_items < 2 or rv.shape[1] != n_items or sw.sum() == 0 or rw.sum() == 0:
        return None
    point = float((sw * sv).sum() / sw.sum() - (rw * rv).sum() / rw.sum())
    rng = np.random.default_rng(seed)
    item_counts = _resample_counts(rng, n_items)
    deltas = _pooled_resampled(sv, sw, item_counts, rng) - _pooled_resampled(rv, rw, item_counts, rng)
    deltas = deltas[np.isfinite(deltas)]
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(deltas, [tail, 100 - tail])
    replicates = f", {sv.shape[0]} x {rv.shape[0]} seeds" if max(sv.shape[0], rv.shape[0]) > 1 else ""
    return Estimate(
        point,
        min(float(low), point),
        max(float(high), point),
        n_items,
        f"paired bootstrap over {n_items} items{replicates}",
        confidence,
    )


def _resample_counts(rng: np.random.Generator, n: int) -> np.ndarray:
    """(DELTA_RESAMPLES, n): how often each of n units is drawn in each bootstrap resample."""
    draws = rng.integers(0, n, size=(DELTA_RESAMPLES, n))
    counts = np.zeros((DELTA_RESAMPLES, n))
    np.add.at(counts, (np.arange(DELTA_RESAMPLES)[:, None], draws), 1)
    return counts


def _pooled_resampled(
    values: np.ndarray, weights: np.ndarray, item_counts: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Pooled weighted mean in every resample: items drawn by `item_counts`, replicates drawn anew."""
    replicate_counts = (
        _resample_counts(rng, values.shape[0]) if values.shape[0] > 1 else np.ones((DELTA_RESAMPLES, 1))
    )
    numerator = np.einsum("br,ri,bi->b", replicate_counts, weights * values, item_counts)
    denominator = np.einsum("br,ri,bi->b", replicate_counts, weights, item_counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return numerator / denominator


def significant(delta: Estimate) -> bool:
    """True when the delta's interval excludes 0."""
    return delta.low > 0 or delta.high < 0
