"""Adaptive sampling: draw samples in rounds and stop once a rate is decided against a threshold.

A round adds `round` samples to every item (question paraphrase, prompt); after it, the rate's betting
confidence sequence (`aftertune.sequential`, valid however often it is looked at) is checked against the
threshold of `decide`, a gate line such as `misaligned_rate < 0.1`. Sampling stops when the sequence
lies wholly above or below the threshold, or at `max_samples` per item. The samples drawn are exactly
the first ones a fixed run would draw (indices 0..n-1 of every item), so stored samples are reused, a
resumed run goes on where it stopped, and a later fixed run with more samples only adds the rest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TypeVar

import numpy as np

from aftertune.cached import generate_cached
from aftertune.errors import InputError
from aftertune.evals.suite import EvalReport
from aftertune.models.protocol import GenerationRequest, Model
from aftertune.progress import ProgressCallback
from aftertune.sequential import ALPHA, AdaptiveStop, decide
from aftertune.stats import Estimate
from aftertune.store import ResultsStore
from aftertune.train.gates import Gate, parse_gate


@dataclass(frozen=True)
class AdaptiveSettings:
    """Sample in rounds until the rate named in `decide` is above or below its threshold."""

    #: a gate line naming the rate and the threshold, e.g. "misaligned_rate < 0.1" or "compliance_rate > 20%"
    decide: str
    #: the most samples per item (question paraphrase or prompt); sampling stops there undecided
    max_samples: int
    #: samples added to every item in each round
    round: int = 1
    #: error rate of the confidence sequence: a wrong decision has at most this probability
    alpha: float = ALPHA

    def __post_init__(self) -> None:
        gate = self.gate
        if gate.delta:
            raise InputError(
                f"adaptive.decide: {self.decide!r} compares with the base model; adaptive sampling in an "
                "eval decides the model's own rate against a number. Write e.g. 'misaligned_rate < 0.1'."
            )
        if not 0 < gate.threshold < 1:
            raise InputError(
                f"adaptive.decide: the threshold of {self.decide!r} is {gate.threshold:g}; a rate can only "
                "be decided against a number strictly between 0 and 1 (0% and 100% excluded)."
            )
        if self.max_samples < 1 or self.round < 1:
            raise InputError(
                f"adaptive: max_samples and round must be at least 1, got {self.max_samples} and "
                f"{self.round}."
            )
        if not 0 < self.alpha < 1:
            raise InputError(f"adaptive.alpha must be between 0 and 1, got {self.alpha}.")

    @property
    def gate(self) -> Gate:
        return parse_gate(self.decide, "adaptive.decide")

    def metric(self, eval_name: str, rates: Sequence[str]) -> str:
        """The rate `decide` names (bare or as eval/metric), checked against the eval's `rates`."""
        name = self.gate.metric
        bare = name.split("/", 1)[1] if name.startswith(f"{eval_name}/") else name
        if bare not in rates:
            raise InputError(
                f"Eval '{eval_name}': adaptive.decide names '{name}', which this eval cannot sample "
                f"adaptively. Use one of: {', '.join(rates)}."
            )
        return bare


def adaptive_digest(digest: str, adaptive: AdaptiveSettings | None) -> str:
    """An eval's digest with its adaptive settings folded in; unchanged when sampling is fixed."""
    if adaptive is None:
        return digest
    body = f"{digest}\x00{json.dumps(asdict(adaptive), sort_keys=True)}"
    return hashlib.sha256(body.encode()).hexdigest()[:16]


R = TypeVar("R")


def sample_in_rounds(
    adaptive: AdaptiveSettings,
    eval_name: str,
    requests: Sequence[GenerationRequest],
    model: Model,
    store: ResultsStore,
    run: Callable[[int], R],
    slices_of: Callable[[R], np.ndarray],
    progress: ProgressCallback | None = None,
) -> tuple[R, AdaptiveStop, Estimate]:
    """Run an eval with 1, 2, ... rounds of samples per item until `decide` is decided.

    `requests` are the eval's generation requests (any n); `run(n)` runs the eval with n samples per
    item, reading back what is stored; `slices_of(result)` gives its (n, items) array of outcomes
    (1 counted, 0 not, NaN unscored). Returns the last result, how it stopped, and the rate with its
    anytime-valid interval (report this one: a fixed-n interval is not valid after a data-driven stop).
    """
    greedy = [r for r in requests if r.params.temperature == 0]
    if greedy:
        raise InputError(
            f"Eval '{eval_name}': adaptive sampling draws more samples of each item, but it samples with "
            "temperature 0 (greedy), so every sample would be the same answer. Set a temperature above "
            "0 (e.g. temperature: 1.0) or leave adaptive out."
        )
    threshold = adaptive.gate.threshold
    drawn = rounds = 0
    while True:
        n = min(drawn + adaptive.round, adaptive.max_samples)
        # this round's new sample indices of every request, generated in full batches; `run` reads
        # them back with the earlier ones
        fresh = [
            GenerationRequest(r.prompt, replace(r.params, n=n - drawn), first_sample=drawn) for r in requests
        ]
        generate_cached(store, model, fresh, progress=progress)
        result = run(n)
        drawn, rounds = n, rounds + 1
        x = slices_of(result)
        state = decide(x, threshold, adaptive.alpha)
        if state.decision != "undecided" or n >= adaptive.max_samples:
            break
    sequence = state.sequence
    stop = AdaptiveStop(
        adaptive.decide,
        state.decision,
        samples_per_item=n,
        max_samples=adaptive.max_samples,
        rounds=rounds,
        samples=int(x.shape[0] * x.shape[1]),
        low=sequence.low,
        high=sequence.high,
        alpha=adaptive.alpha,
    )
    return result, stop, sequence


def outcome_slices(outcomes: Iterable[tuple[Hashable, int, float]], n: int) -> np.ndarray:
    """(n, items) outcomes from (item, sample index, value) triples; items in first-seen order."""
    columns: dict[Hashable, int] = {}
    triples = list(outcomes)
    for item, _, _ in triples:
        columns.setdefault(item, len(columns))
    x = np.full((n, len(columns)), np.nan)
    for item, index, value in triples:
        x[index, columns[item]] = value
    return x


def with_stop(report: EvalReport, metric: str, stop: AdaptiveStop, sequence: Estimate) -> EvalReport:
    """The report with `metric` carrying its anytime-valid interval and how sampling stopped."""
    metrics = tuple(
        replace(m, estimate=sequence, adaptive=stop) if m.name == metric else m for m in report.metrics
    )
    return replace(report, metrics=metrics)
