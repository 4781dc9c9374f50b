"""Comparisons: per metric, the paired delta of one evaluated model (or several seeds of it) against
another, with a bootstrap interval over the items both answered and a significance flag."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from aftertune.evals.suite import EvalReport, MetricKind, MetricResult
from aftertune.stats import Estimate, paired_delta, significant


@dataclass(frozen=True)
class Delta:
    """A paired difference subject - reference on one metric, with its bootstrap interval."""

    metric: str
    kind: MetricKind
    higher_is_better: bool | None
    #: label of the evaluated model(s): a checkpoint label, or "ARM/stepN" pooled over seeds
    subject: str
    #: "base", or the control arm's label at the same step
    reference: str
    estimate: Estimate
    significant: bool

    @property
    def verdict(self) -> str:
        """'better', 'worse' or 'changed' when significant (by the metric's direction), else 'no change'."""
        if not self.significant:
            return "no significant change"
        if self.higher_is_better is None:
            return "changed"
        return "better" if (self.estimate.value > 0) == self.higher_is_better else "worse"


def metric_delta(
    subject: Sequence[MetricResult], reference: Sequence[MetricResult], seed: int = 0
) -> Estimate | None:
    """Delta of the pooled metric, subject minus reference, over the items every result shares.

    Each side is one result per seed (one for a single model). None when fewer than 2 items are
    shared (e.g. held-out losses on different data), so nothing is compared that is not paired.
    """
    if not subject or not reference:
        return None
    shared = set.intersection(*({i.item for i in r.items} for r in [*subject, *reference]))
    items = sorted(shared)
    if len(items) < 2:
        return None

    def arrays(results: Sequence[MetricResult]) -> tuple[np.ndarray, np.ndarray]:
        rows = [{i.item: i for i in r.items} for r in results]
        values = np.array([[row[i].value for i in items] for row in rows])
        weights = np.array([[row[i].weight for i in items] for row in rows])
        return values, weights

    sv, sw = arrays(subject)
    rv, rw = arrays(reference)
    return paired_delta(sv, sw, rv, rw, seed=seed)


def compare_metrics(
    subject: Mapping[str, Sequence[MetricResult]],
    reference: Mapping[str, Sequence[MetricResult]],
    subject_label: str,
    reference_label: str,
    seed: int = 0,
) -> list[Delta]:
    """A Delta for every metric both sides measured on shared items (keys are eval/metric)."""
    deltas = []
    for name, results in subject.items():
        if name not in reference or not results:
            continue
        estimate = metric_delta(results, reference[name], seed)
        if estimate is None:
            continue
        first = results[0]
        deltas.append(
            Delta(
                name,
                first.kind,
                first.higher_is_better,
                subject_label,
                reference_label,
                estimate,
                significant(estimate),
            )
        )
    return deltas


def pair_reports(
    subject: Sequence[EvalReport], reference: Sequence[EvalReport]
) -> list[tuple[EvalReport, EvalReport]]:
    """Reports of the same eval on two models, matched by the eval's settings digest (the same data
    and sampling); with no shared digest, an eval that each side ran once is paired as is (its items
    decide what is comparable). Reports are given oldest first; the newest match wins."""
    pairs = []
    for name in dict.fromkeys(r.eval for r in subject):
        mine = [r for r in subject if r.eval == name]
        theirs = [r for r in reference if r.eval == name]
        shared = [r for r in reversed(mine) if any(t.digest == r.digest for t in theirs)]
        if shared:
            pairs.append((shared[0], next(t for t in reversed(theirs) if t.digest == shared[0].digest)))
        elif len(mine) == 1 and len(theirs) == 1:
            pairs.append((mine[0], theirs[0]))
    return pairs
