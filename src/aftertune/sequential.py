"""Anytime-valid confidence sequences for rates, and sequential decisions against a threshold.

Method: the hedged betting capital process of Waudby-Smith & Ramdas, "Estimating means of bounded
random variables by betting", JRSS-B 86(1):1-27, 2024 (arXiv:2010.09686), with their aGRAPA
(approximate growth-rate adaptive) bets. For each candidate rate m two gamblers bet against the data:
K+_t(m) = prod (1 + l+_i (x_i - m)) wins when the rate is above m, K-_t(m) = prod (1 - l-_i (x_i - m))
when it is below. The bets l+/- >= 0 use only earlier data, so under "rate <= m" K+ is a nonnegative
supermartingale (and K- under "rate >= m"); by Ville's inequality (1939) each crosses 2/alpha with
probability at most alpha/2 *ever*. So {m : K+_t(m) < 2/alpha and K-_t(m) < 2/alpha} covers the rate at
every look at once with probability >= 1 - alpha, however often one looks and whenever one stops.

Observations come in *slices*: a slice is one sample of every item (question, prompt), all with one
bet. Items may have different rates: the product of a slice's factors has expectation
prod_q (1 + l (p_q - m)) <= exp(l * sum_q (p_q - m)) <= 1 when their mean rate is <= m, so the target
is the pooled rate over these items (sample-weighted, like the pooled estimate), not over a population
of questions. An unscored sample (NaN) contributes a factor 1; the target is then E[counted] /
E[scored], the rate among scored samples that the pooled estimate reports.

A difference of two rates (subject minus reference, paired by item and sample index) is the mean of
(x - y + 1) / 2 in [0, 1], so the same process decides it (`difference_slices`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from aftertune.stats import Estimate

#: error rate of the sequence: it misses the true rate at some look with probability at most ALPHA
ALPHA = 0.05
#: bets are capped at TRUNCATION / m (TRUNCATION / (1 - m) for K-), so one sample can cost at most this
#: share of the capital. Waudby-Smith & Ramdas use 1/2 or 3/4; any value in (0, 1) keeps validity. 1/2
#: needed fewer samples than 3/4 or 0.9 in bench/adaptive.py's simulation (rate 0.05 vs 0.1: 252 vs 347
#: vs 704 samples on average), since one unexpected sample then costs at most half the capital.
TRUNCATION = 0.5
#: candidate rates the reported interval is computed on (resolution 0.001)
GRID = np.linspace(0.0, 1.0, 1001)
METHOD = "betting confidence sequence (Waudby-Smith & Ramdas 2024, aGRAPA)"

Decision = Literal["above", "below", "undecided"]


@dataclass(frozen=True)
class SequentialDecision:
    """Where the rate stands against `threshold` at the current look, with the confidence sequence."""

    decision: Decision
    threshold: float
    #: the rate (or difference) with its anytime-valid interval at this look; n counts scored samples
    sequence: Estimate
    #: slices (sample indices) seen, and the first slice after which the decision was reached
    slices: int
    decided_at: int | None


def log_capital(x: np.ndarray, m: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """log K+ and log K- after each slice, for every candidate rate in `m`.

    `x` is (..., slices, items) in [0, 1] (NaN: unscored); the result is (..., slices, len(m)), or
    (..., slices) for a scalar `m`. Leading axes are independent streams (simulations).
    """
    x = np.asarray(x, dtype=float)
    scalar = np.ndim(m) == 0
    grid = np.atleast_1d(np.asarray(m, dtype=float))
    valid = ~np.isnan(x)
    x0 = np.where(valid, x, 0.0)
    count, total, squares = valid.sum(-1), x0.sum(-1), (x0**2).sum(-1)
    # statistics of the slices before each slice: its bet may use only those
    n = (np.cumsum(count, -1) - count)[..., None]
    s1 = (np.cumsum(total, -1) - total)[..., None]
    s2 = (np.cumsum(squares, -1) - squares)[..., None]
    # aGRAPA: l = (mu - m) / (var + (mu - m)^2), the mean and variance shrunk towards a Bernoulli(m),
    # so the first slice bets nothing
    mu = (grid + s1) / (n + 1)
    spread = np.maximum(s2 - s1**2 / np.maximum(n, 1), 0.0)
    var = (grid * (1 - grid) + spread) / (n + 1)
    gap = mu - grid
    growth = gap / np.maximum(var + gap**2, 1e-12)
    up = np.clip(growth, 0.0, TRUNCATION / np.maximum(grid, 1e-12))
    down = np.clip(-growth, 0.0, TRUNCATION / np.maximum(1 - grid, 1e-12))
    step_up = np.zeros(up.shape)
    step_down = np.zeros(down.shape)
    # sum over a slice's items of log(1 + l (x - m)); unscored items add 0
    for k in range(x.shape[-1]):
        xk = x0[..., k][..., None] - grid
        ok = valid[..., k][..., None]
        step_up += np.where(ok, np.log1p(up * xk), 0.0)
        step_down += np.where(ok, np.log1p(-down * xk), 0.0)
    log_up, log_down = np.cumsum(step_up, -2), np.cumsum(step_down, -2)
    if scalar:
        return log_up[..., 0], log_down[..., 0]
    return log_up, log_down


def first_crossing(x: np.ndarray, threshold: float, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """For each stream in `x` (..., slices, items): the decision (+1 above, -1 below, 0 undecided) and
    the number of slices after which it was reached (the slice count when undecided)."""
    log_up, log_down = log_capital(x, threshold)
    bound = np.log(2 / alpha)
    crossed = (log_up >= bound) | (log_down >= bound)
    slices = x.shape[-2]
    first = np.where(crossed.any(-1), crossed.argmax(-1), slices - 1)
    at = np.take_along_axis(log_up, first[..., None], -1)[..., 0]
    at_down = np.take_along_axis(log_down, first[..., None], -1)[..., 0]
    decision = np.where(at >= bound, 1, np.where(at_down >= bound, -1, 0))
    # both in one slice cannot happen (the bets of the two sides are never both positive)
    return decision, first + 1


def confidence_sequence(x: np.ndarray, alpha: float = ALPHA, transform: str = "rate") -> Estimate | None:
    """The running-intersection confidence sequence at the last slice of `x` (slices, items).

    `transform="difference"` reads x as (subject - reference + 1) / 2 and reports the difference.
    None when nothing is scored.
    """
    x = np.asarray(x, dtype=float)
    scored = x[~np.isnan(x)]
    if scored.size == 0:
        return None
    log_up, log_down = log_capital(x, GRID)
    bound = np.log(2 / alpha)
    # a rate rejected at any look stays rejected (the intersection of the sequence so far is valid too)
    kept = ~((log_up >= bound) | (log_down >= bound)).any(0)
    value = float(scored.mean())
    if kept.any():
        inside = np.flatnonzero(kept)
        # widen to the rejected neighbours: rates between grid points were not checked
        low = GRID[max(inside[0] - 1, 0)]
        high = GRID[min(inside[-1] + 1, len(GRID) - 1)]
    else:  # every rate rejected: the alpha-probability miss; report the estimate alone
        low = high = value
    low, high = min(float(low), value), max(float(high), value)
    method = f"{METHOD}, {x.shape[0]} slices"
    if transform == "difference":
        return Estimate(2 * value - 1, 2 * low - 1, 2 * high - 1, scored.size, method, 1 - alpha)
    return Estimate(value, low, high, scored.size, method, 1 - alpha)


def decide(
    slices: Sequence[Sequence[float]] | np.ndarray,
    threshold: float,
    alpha: float = ALPHA,
    transform: str = "rate",
) -> SequentialDecision:
    """Is the rate above or below `threshold`, or still undecided, after these slices?

    `slices[j]` holds sample j of every item: 1 counted, 0 not, NaN unscored. With
    `transform="difference"`, slices come from `difference_slices` and `threshold` is a difference.
    """
    x = _as_array(slices)
    m = (threshold + 1) / 2 if transform == "difference" else threshold
    if not 0 < m < 1:
        what = "between -1 and 1 (exclusive)" if transform == "difference" else "between 0 and 1 (exclusive)"
        raise ValueError(f"a sequential threshold must be {what}, got {threshold}")
    sequence = confidence_sequence(x, alpha, transform)
    if sequence is None:
        empty = Estimate(float("nan"), 0.0, 1.0, 0, METHOD, 1 - alpha)
        return SequentialDecision("undecided", threshold, empty, x.shape[0], None)
    decision, after = first_crossing(x, m, alpha)
    verdict: Decision = "above" if decision > 0 else "below" if decision < 0 else "undecided"
    return SequentialDecision(
        verdict, threshold, sequence, x.shape[0], int(after) if verdict != "undecided" else None
    )


def difference_slices(subject: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Paired slices of two models' 0/1 outcomes (slices, items) as (x - y + 1) / 2 in [0, 1]: their
    mean is (difference + 1) / 2. A pair with either side unscored is unscored."""
    return (_as_array(subject) - _as_array(reference) + 1) / 2


def _as_array(slices: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    x = np.asarray(slices, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"slices must be (slices, items), got shape {x.shape}")
    if np.any((x < 0) | (x > 1)):
        raise ValueError("observations must lie in [0, 1]")
    return x


@dataclass(frozen=True)
class AdaptiveStop:
    """How an adaptively sampled metric stopped: its decision, the sequence's interval, the samples used."""

    #: the condition decided, a gate line such as "misaligned_rate < 0.1"
    decide: str
    decision: Decision
    #: samples drawn per item (question paraphrase, prompt): indices 0..samples_per_item-1
    samples_per_item: int
    max_samples: int
    rounds: int
    #: samples drawn in all (items x samples_per_item)
    samples: int
    #: the anytime-valid interval of the rate at the stop
    low: float
    high: float
    alpha: float
    method: str = METHOD

    @property
    def stopped_early(self) -> bool:
        return self.samples_per_item < self.max_samples

    def describe(self) -> str:
        """One line, e.g. 'below 0.1 after 3 of at most 20 samples per item (3 rounds, 240 samples)'."""
        verdict = "undecided" if self.decision == "undecided" else f"{self.decision} the threshold"
        return (
            f"{verdict} ({self.decide}) after {self.samples_per_item} of at most {self.max_samples} "
            f"samples per item ({self.rounds} rounds, {self.samples} samples); "
            f"{100 * (1 - self.alpha):g}% sequence [{self.low:.3g}, {self.high:.3g}]"
        )
