"""Intervals: Wilson for rates, cluster bootstrap for pooled rates, and their fallbacks."""

from __future__ import annotations

import pytest

from aftertune.stats import mean_estimate, pooled_rate, wilson_rate


def test_wilson_interval_matches_the_textbook_values() -> None:
    # Wilson 95% interval for 0/32 has upper bound z^2/(n+z^2) = 3.8415/35.8415
    none = wilson_rate(0, 32)
    assert none is not None and none.low == 0.0 and none.high == pytest.approx(3.8415 / 35.8415, rel=1e-4)
    half = wilson_rate(10, 20)
    assert half is not None and half.value == 0.5 and half.low == pytest.approx(0.2993, abs=1e-3)
    assert half.method == "wilson" and half.n == 20
    assert wilson_rate(0, 0) is None


def test_pooled_rate_resamples_questions() -> None:
    estimate = pooled_rate([0, 2, 6, 0], [10, 10, 10, 10], seed=1)
    assert estimate is not None
    assert estimate.value == pytest.approx(0.2) and estimate.n == 40
    assert 0.0 <= estimate.low < 0.2 < estimate.high <= 0.6
    assert estimate.method == "cluster bootstrap over 4 questions"
    # clustered data: wider than the naive Wilson interval over all 40 samples
    naive = wilson_rate(8, 40)
    assert naive is not None and estimate.high - estimate.low > naive.high - naive.low
    assert pooled_rate([0, 2, 6, 0], [10, 10, 10, 10], seed=1) == estimate  # seeded


def test_pooled_rate_falls_back_to_wilson_when_the_bootstrap_is_degenerate() -> None:
    flat = pooled_rate([0, 0, 0], [5, 5, 5])
    assert flat is not None and flat.value == 0 and flat.high > 0
    assert flat.method == "wilson (no between-question variation)"
    single = pooled_rate([3], [10])
    assert single is not None and single.method == "wilson (one question)"
    assert pooled_rate([0, 1], [0, 0]) is None
    skip_empty = pooled_rate([0, 1, 0], [0, 4, 6])  # a question with no judged samples carries no information
    assert skip_empty is not None and skip_empty.n == 10


def test_mean_with_t_interval() -> None:
    estimate = mean_estimate([10, 20, 30])
    assert estimate is not None and estimate.value == 20 and estimate.low < 20 < estimate.high
    assert mean_estimate([]) is None
    constant = mean_estimate([5, 5])
    assert constant is not None and constant.low == constant.high == 5
