"""Paired deltas: pooled point estimates, item matching, intervals that widen with seed variation."""

from __future__ import annotations

import numpy as np
import pytest

from aftertune.compare import compare_metrics, metric_delta
from aftertune.evals.suite import ItemScore, MetricResult
from aftertune.stats import Estimate, paired_delta


def rate(values: dict[str, float], weight: float = 10) -> MetricResult:
    items = tuple(ItemScore(k, v, weight) for k, v in values.items())
    mean = sum(values.values()) / len(values)
    return MetricResult("rate", Estimate(mean, mean, mean, len(values), "test"), "rate", False, items)


def test_delta_is_the_pooled_difference_on_shared_items() -> None:
    a = rate({f"q{i}": 0.5 for i in range(10)} | {"only_a": 1.0})
    b = rate({f"q{i}": 0.1 for i in range(10)} | {"only_b": 0.0})
    delta = metric_delta([a], [b])
    assert delta is not None
    assert delta.value == pytest.approx(0.4) and delta.n == 10, "unshared items are left out"
    assert delta.low == pytest.approx(0.4) and delta.high == pytest.approx(0.4), "no item-level variation"


def test_no_delta_without_two_shared_items() -> None:
    assert metric_delta([rate({"a": 1.0, "b": 0.0})], [rate({"c": 1.0, "d": 0.0})]) is None


def test_interval_covers_the_truth_and_flags_real_differences() -> None:
    rng = np.random.default_rng(0)
    n = 60
    base = rng.uniform(0.05, 0.3, n)
    shifted = {f"q{i}": float(np.clip(base[i] + 0.15 + rng.normal(0, 0.1), 0, 1)) for i in range(n)}
    same = {f"q{i}": float(np.clip(base[i] + rng.normal(0, 0.1), 0, 1)) for i in range(n)}
    reference = rate({f"q{i}": float(base[i]) for i in range(n)})
    up = compare_metrics({"e/rate": [rate(shifted)]}, {"e/rate": [reference]}, "up", "base")[0]
    flat = compare_metrics({"e/rate": [rate(same)]}, {"e/rate": [reference]}, "flat", "base")[0]
    assert up.significant and up.estimate.low > 0 and up.verdict == "worse"
    assert flat.estimate.low < 0 < flat.estimate.high and not flat.significant


def test_seed_variation_widens_the_interval() -> None:
    rng = np.random.default_rng(1)
    items, seeds = 40, 4
    values = rng.uniform(0.2, 0.4, (1, items)).repeat(seeds, axis=0)
    noisy = values + rng.normal(0, 0.15, (seeds, 1))  # each seed shifted as a whole
    weights = np.ones((seeds, items))
    reference = rng.uniform(0.2, 0.4, (1, items))
    calm = paired_delta(values, weights, reference, np.ones((1, items)))
    wide = paired_delta(noisy, weights, reference, np.ones((1, items)))
    assert calm is not None and wide is not None
    assert (wide.high - wide.low) > 1.5 * (calm.high - calm.low)
    assert "4 x 1 seeds" in wide.method
