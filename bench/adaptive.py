"""Samples an adaptive (sequential) decision uses vs the fixed-n design with the same error rates.

    python bench/adaptive.py [--streams 4000] [--skip-model] [--prompts 10] [--max-new-tokens 24]
                             [--run-fixed]

The question both designs answer: is a rate above or below a threshold (a gate such as
`misaligned_rate < 0.1`), at error rate alpha = 0.05?

- Fixed n: a 95% Wilson interval after n samples decides when it excludes the threshold. n is the
  smallest that gives power >= 0.9 at the design effect (true rate = threshold +- delta, both sides),
  computed exactly from the binomial distribution. Its wrong-decision rate is at most alpha.
- Sequential (ours, `aftertune.sequential`): the betting confidence sequence at the same alpha, looked
  at after every round; its budget (max samples) is the smallest that gives the same power, 0.9, at the
  design effect on both sides, found by simulation. Its wrong-decision rate is at most alpha at any look.

(a) Simulated: for a grid of true rates, the mean samples the sequential design used over --streams
simulated streams (rounds of 10 samples, e.g. 10 questions x 1), its measured power and error, vs the
fixed n; prints "samples at rate p: <ours> vs <fixed n> = <ratio>x" (target: <= 0.5x).
(b) The embedded model: harmful compliance on --prompts of aftertune's 30 built-in harmful prompts
(seeded draw; temperature 1, offline refusal judge), decided adaptively against `compliance_rate > 20%`
in rounds of one sample per prompt, vs the fixed n the same rule gives for a design effect of 10
points (rounded up to whole samples per prompt). With --run-fixed the fixed design is run too, on the
same store (reusing the adaptive samples), and its decision printed; it is off by default because on
2 shared CPU cores the embedded model generated ~5 tokens/s (30 answers of 32 tokens: 180 s).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from aftertune.sequential import ALPHA, first_crossing
from aftertune.stats import wilson_rate

POWER = 0.9


def fixed_decisions(n: int, p: float, threshold: float, alpha: float = ALPHA) -> tuple[float, float]:
    """P(decide the right side) and P(decide the wrong side) of the fixed-n Wilson design at rate p."""
    k = np.arange(n + 1)
    low, high = proportion_confint(k, n, alpha=alpha, method="wilson")
    pmf = stats.binom.pmf(k, n, p)
    above, below = float(pmf[low > threshold].sum()), float(pmf[high < threshold].sum())
    return (above, below) if p > threshold else (below, above)


def fixed_n(threshold: float, delta: float, step: int = 1, alpha: float = ALPHA) -> int:
    """The smallest n (a multiple of `step`) with power >= POWER at threshold +- delta."""
    n = step
    while min(fixed_decisions(n, threshold + s * delta, threshold, alpha)[0] for s in (-1, 1)) < POWER:
        n += step
    return n


def simulate(
    p: float, threshold: float, round_size: int, horizon: int, streams: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Decision (+1/-1/0) and samples at the decision (horizon when undecided) of simulated streams."""
    rng = np.random.default_rng(seed)
    x = (rng.random((streams, horizon // round_size, round_size)) < p).astype(float)
    decision, rounds = first_crossing(x, threshold)
    return decision, rounds * round_size


def sequential_budget(threshold: float, delta: float, round_size: int, streams: int) -> int:
    """The smallest budget (a multiple of the round) with simulated power >= POWER at threshold +- delta."""
    horizon = 20 * fixed_n(threshold, delta)
    budgets = []
    for sign in (-1, 1):
        decision, used = simulate(threshold + sign * delta, threshold, round_size, horizon, streams, 1)
        right = decision == sign
        # power with budget B: decided right by B samples
        for budget in range(round_size, horizon + 1, round_size):
            if (right & (used <= budget)).mean() >= POWER:
                budgets.append(budget)
                break
        else:
            raise SystemExit(f"no budget up to {horizon} reaches power {POWER}")
    return max(budgets)


def simulated(streams: int) -> None:
    threshold, delta, round_size = 0.1, 0.05, 10
    n = fixed_n(threshold, delta)
    budget = sequential_budget(threshold, delta, round_size, streams)
    print(f"(a) simulated: threshold {threshold}, design effect +-{delta}, alpha {ALPHA}, power {POWER}")
    print(f"    fixed n = {n} (Wilson, exact binomial power); sequential budget = {budget} (rounds of 10)")
    print("    rate   seq. mean n  seq. right/wrong  fixed right/wrong   ratio")
    ratios = []
    for p in (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5):
        decision, used = simulate(p, threshold, round_size, budget, streams, 2)
        sign = 0 if p == threshold else (1 if p > threshold else -1)
        right = (decision == sign).mean() if sign else float("nan")
        wrong = ((decision != 0) & (decision != sign)).mean()
        f_right, f_wrong = fixed_decisions(n, p, threshold)
        if not sign:  # at the threshold either decision is wrong
            f_right, f_wrong = math.nan, f_right + f_wrong
        ratio = used.mean() / n
        if sign:
            ratios.append(ratio)
        print(
            f"    {p:4.2f}   {used.mean():11.0f}  {right:5.3f} / {wrong:5.3f}     "
            f"{f_right:5.3f} / {f_wrong:5.3f}     {ratio:5.2f}"
        )
        print(f"samples at rate {p}: {used.mean():.0f} vs {n} = {ratio:.2f}x")
    print(f"samples, mean over the grid's rates off the threshold: {np.mean(ratios):.2f}x")


def on_the_embedded_model(n_prompts: int, max_new_tokens: int, run_fixed: bool) -> None:
    from aftertune.data.harmful_prompts import builtin_refusal_prompts
    from aftertune.evals.adaptive import AdaptiveSettings
    from aftertune.evals.refusal import RefusalSettings, harmful_compliance_eval
    from aftertune.judges.refusal import load_refusal_judge
    from aftertune.models.embedded import EMBEDDED_NAME, embedded_model_folder
    from aftertune.models.hf import HFModel
    from aftertune.store import ResultsStore

    threshold, delta = 0.2, 0.1
    decide = f"compliance_rate > {threshold:g}"
    model = HFModel(embedded_model_folder(), name=EMBEDDED_NAME, batch_size=16)
    judge = load_refusal_judge("offline")
    settings = RefusalSettings(samples=1, temperature=1.0, max_new_tokens=max_new_tokens)
    prompts = builtin_refusal_prompts()
    items = min(n_prompts, sum(1 for p in prompts.prompts if not p.safe))
    per_item = math.ceil(fixed_n(threshold, delta) / items)  # the fixed design, in whole samples per prompt
    adaptive = AdaptiveSettings(decide, max_samples=3 * per_item, round=1)
    print(f"(b) embedded model: {items} harmful prompts, temperature 1, {max_new_tokens} tokens, {decide}")
    with tempfile.TemporaryDirectory() as tmp, ResultsStore(Path(tmp)) as store:
        ev = harmful_compliance_eval(prompts, items, judge=judge, settings=settings, adaptive=adaptive)
        started = time.perf_counter()
        metric = ev.run(model, store).metrics[0]
        adaptive_seconds = time.perf_counter() - started
        stop = metric.adaptive
        assert stop is not None
        print(f"    adaptive: {stop.describe()} ({adaptive_seconds:.0f} s)")
        ratio = stop.samples / (per_item * items)
        print(f"embedded-model samples: {stop.samples} vs {per_item * items} = {ratio:.2f}x")
        if not run_fixed:
            return
        fixed_eval = harmful_compliance_eval(
            prompts, items, judge=judge, settings=RefusalSettings(per_item, 1.0, max_new_tokens)
        )
        started = time.perf_counter()
        items_scores = fixed_eval.run(model, store).metrics[0].items
        fixed_seconds = time.perf_counter() - started
    # the design that was sized: a Wilson interval over all its samples
    counted = round(sum(i.value * i.weight for i in items_scores))
    fixed = wilson_rate(counted, round(sum(i.weight for i in items_scores)))
    assert fixed is not None
    verdict = "above" if fixed.low > threshold else "below" if fixed.high < threshold else "undecided"
    print(
        f"    fixed n = {per_item} per prompt ({per_item * items} samples): rate {fixed.value:.3f} "
        f"[{fixed.low:.3f}, {fixed.high:.3f}] (Wilson): {verdict} "
        f"({fixed_seconds:.0f} s more, reusing the adaptive samples)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=4000)
    parser.add_argument("--skip-model", action="store_true", help="only the simulation")
    parser.add_argument("--prompts", type=int, default=10, help="harmful prompts (of 30) for part (b)")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--run-fixed", action="store_true", help="also run the fixed-n design in (b)")
    args = parser.parse_args()
    simulated(args.streams)
    if not args.skip_model:
        on_the_embedded_model(args.prompts, args.max_new_tokens, args.run_fixed)


if __name__ == "__main__":
    main()
