"""The betting confidence sequence: anytime coverage by simulation (where a repeated Wilson interval
fails), decisions against a threshold, unequal item rates, unscored samples and differences."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

from aftertune.sequential import (
    ALPHA,
    confidence_sequence,
    decide,
    difference_slices,
    first_crossing,
    log_capital,
)

STREAMS, LOOKS = 2000, 300


def _ever_excluded(x: np.ndarray, truth: float) -> np.ndarray:
    """Per stream: did the sequence exclude the true rate at any look?"""
    up, down = log_capital(x, truth)
    bound = np.log(2 / ALPHA)
    return ((up >= bound) | (down >= bound)).any(-1)


@pytest.mark.parametrize("rate", [0.05, 0.3])
def test_covers_the_true_rate_at_every_look_where_repeated_wilson_does_not(rate: float) -> None:
    x = (np.random.default_rng(7).random((STREAMS, LOOKS, 1)) < rate).astype(float)
    missed = _ever_excluded(x, rate).mean()
    assert missed <= ALPHA
    # the naive design: a 95% Wilson interval recomputed after every sample
    k = np.cumsum(x[..., 0], axis=1)
    n = np.arange(1, LOOKS + 1)
    low, high = proportion_confint(k, n, alpha=ALPHA, method="wilson")
    naive_missed = ((low > rate) | (high < rate)).any(axis=1).mean()
    assert naive_missed > 2 * ALPHA, naive_missed


def test_the_reported_interval_covers_at_every_look() -> None:
    rng = np.random.default_rng(3)
    rate, streams, looks = 0.3, 150, 120
    missed = 0
    for _ in range(streams):
        x = (rng.random((looks, 1)) < rate).astype(float)
        # the interval after each look, the way `confidence_sequence` reports it
        estimates = [confidence_sequence(x[: t + 1]) for t in range(0, looks, 10)]
        missed += any(e is not None and not e.low <= rate <= e.high for e in estimates)
    assert missed / streams <= ALPHA


def test_items_with_different_rates_are_covered_at_their_pooled_rate() -> None:
    rates = np.array([0.0, 0.05, 0.1, 0.2, 0.3, 0.6, 0.05, 0.1])  # pooled 0.175
    x = (np.random.default_rng(11).random((STREAMS, 60, len(rates))) < rates).astype(float)
    assert _ever_excluded(x, float(rates.mean())).mean() <= ALPHA


def test_decides_above_and_below_and_rarely_wrongly_at_the_threshold() -> None:
    rng = np.random.default_rng(5)
    above = decide((rng.random((60, 8)) < 0.4).astype(float), 0.1)
    assert above.decision == "above" and above.decided_at is not None and above.decided_at < 60
    assert above.sequence.low > 0.1
    below = decide(np.zeros((30, 8)), 0.1)
    assert below.decision == "below" and below.sequence.high < 0.1
    assert decide(np.zeros((1, 8)), 0.1).decision == "undecided"  # the first slice bets nothing
    # at the threshold itself any decision is an error: at most alpha of streams make one
    x = (rng.random((STREAMS, 200, 4)) < 0.1).astype(float)
    decision, _ = first_crossing(x, 0.1)
    assert (decision != 0).mean() <= ALPHA


def test_stops_sooner_the_further_the_rate_is_from_the_threshold() -> None:
    rng = np.random.default_rng(9)
    used = {}
    for rate in (0.2, 0.4):
        decision, after = first_crossing((rng.random((500, 400, 1)) < rate).astype(float), 0.1)
        assert (decision == 1).mean() > 0.95
        used[rate] = after.mean()
    assert used[0.4] < used[0.2] / 3


def test_unscored_samples_are_left_out() -> None:
    x = np.full((20, 4), np.nan)
    x[:, :2] = 1.0
    result = decide(x, 0.5)
    assert result.sequence.n == 40 and result.sequence.value == 1.0 and result.decision == "above"
    assert decide(np.full((3, 2), np.nan), 0.5).decision == "undecided"


def test_a_difference_of_two_rates() -> None:
    rng = np.random.default_rng(2)
    subject = (rng.random((80, 8)) < 0.45).astype(float)
    reference = (rng.random((80, 8)) < 0.1).astype(float)
    pairs = difference_slices(subject, reference)
    result = decide(pairs, 0.0, transform="difference")
    assert result.decision == "above"
    assert result.sequence.low <= 0.35 <= result.sequence.high
    assert result.sequence.value == pytest.approx(subject.mean() - reference.mean())
    # no difference: the sequence for differences covers 0 at every look in nearly all streams
    s = (rng.random((STREAMS, 100, 2)) < 0.2).astype(float)
    r = (rng.random((STREAMS, 100, 2)) < 0.2).astype(float)
    assert _ever_excluded((s - r + 1) / 2, 0.5).mean() <= ALPHA


def test_thresholds_outside_the_open_range_are_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        decide(np.zeros((3, 2)), 0.0)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        decide(np.full((3, 2), 2.0), 0.5)
