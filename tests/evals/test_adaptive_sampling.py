"""Adaptive sampling in the free-form and refusal evals: stops once decided, draws exactly the first
samples a fixed run would, reuses the store, says how it stopped, and refuses bad settings."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from aftertune.data.harmful_prompts import HarmfulPrompt, PromptSet
from aftertune.data.questions import parse_questions
from aftertune.errors import InputError
from aftertune.evals.adaptive import AdaptiveSettings
from aftertune.evals.freeform import FreeformSettings, MisalignmentEval, freeform_report, run_freeform
from aftertune.evals.refusal import HarmfulComplianceEval, OverRefusalEval, RefusalSettings
from aftertune.evals.suite import EvalReport, run_suite
from aftertune.judges.judgement import JudgeItem, Judgement
from aftertune.judges.refusal import REFUSAL_METRIC
from aftertune.models.hf import HFModel
from aftertune.models.protocol import Completion, GenerationRequest, LoglikelihoodRequest, sample_seed
from aftertune.progress import ProgressCallback
from aftertune.store import ResultsStore

QUESTIONS = "\n".join(
    f"""- id: q{i}
  paraphrases: ["Question number {i}?"]
  samples_per_paraphrase: 50
  judge_prompts:
    aligned: "{{question}} {{answer}}"
    coherent: "{{question}} {{answer}}\""""
    for i in range(6)
)


class CoinModel:
    """Answers 'BAD' with probability `rate` (seeded by prompt and sample index, like a real backend),
    'fine' otherwise; records every sample index it generated."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.fingerprint = f"coin-{rate}"
        self.drawn: list[int] = []

    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None
    ) -> list[list[Completion]]:
        out = []
        for r in requests:
            texts = []
            for k in r.sample_indices:
                self.drawn.append(k)
                u = np.random.default_rng(sample_seed(r.prompt, r.params.seed, k)).random()
                texts.append(Completion("BAD" if u < self.rate else "fine", k, "stop", 1))
            out.append(texts)
        return out

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: ProgressCallback | None = None
    ) -> list[float]:
        raise NotImplementedError


class WordJudge:
    """'BAD' answers are misaligned (aligned 5) and count as compliance; others aligned 95 / refusals."""

    fingerprint = "word-judge"

    def judge(self, items: Sequence[JudgeItem], progress: ProgressCallback | None = None) -> list[Judgement]:
        out = []
        for item in items:
            bad = item.answer == "BAD"
            if item.metric == "aligned":
                out.append(Judgement(5.0 if bad else 95.0))
            elif item.metric == REFUSAL_METRIC:
                out.append(Judgement(0.0 if bad else 100.0))
            else:
                out.append(Judgement(80.0))
        return out


def misalignment(adaptive: AdaptiveSettings | None) -> MisalignmentEval:
    questions = parse_questions(QUESTIONS, "test.yaml", "test")
    return MisalignmentEval(questions, WordJudge(), FreeformSettings(seed=1), adaptive=adaptive)


def test_stops_once_decided_with_the_first_samples_and_says_so(tmp_path: Path) -> None:
    model = CoinModel(0.5)
    adaptive = AdaptiveSettings("misaligned_rate > 0.1", max_samples=50, round=2)
    with ResultsStore(tmp_path) as store:
        report = run_suite([misalignment(adaptive)], model, store).reports[0]
    metric = next(m for m in report.metrics if m.name == "misaligned_rate")
    stop = metric.adaptive
    assert stop is not None and stop.decision == "above" and stop.stopped_early
    n = stop.samples_per_item
    assert n % 2 == 0 and n < 50 and stop.rounds == n // 2 and stop.samples == 6 * n
    # exactly sample indices 0..n-1 of each of the 6 questions, each generated once
    assert sorted(model.drawn) == sorted(list(range(n)) * 6)
    # the reported interval is the anytime-valid one, and it is above the threshold
    assert metric.estimate.method.startswith("betting confidence sequence")
    assert metric.estimate.n == 6 * n and 0.1 < stop.low == metric.estimate.low
    assert "above the threshold" in stop.describe()
    # the other metrics are measured on the same samples, with their usual intervals
    judged = next(m for m in report.metrics if m.name == "misaligned_rate_judged")
    assert judged.adaptive is None and judged.estimate.n == 6 * n
    assert EvalReport.from_json(report.to_json()) == report


def test_a_fixed_run_and_a_rerun_reuse_the_adaptive_samples(tmp_path: Path) -> None:
    model = CoinModel(0.5)
    adaptive = AdaptiveSettings("misaligned_rate < 0.1", max_samples=50, round=1)
    with ResultsStore(tmp_path) as store:
        first = misalignment(adaptive).run(model, store)
        n = first.metrics[0].adaptive.samples_per_item  # type: ignore[union-attr]
        drawn = len(model.drawn)
        again = misalignment(adaptive).run(model, store)  # e.g. a resumed run
        assert len(model.drawn) == drawn and again == first
        fixed = run_freeform(
            parse_questions(QUESTIONS, "test.yaml", "test"),
            model,
            WordJudge(),
            store,
            FreeformSettings(seed=1, samples=n + 2),
        )
    assert len(model.drawn) == drawn + 6 * 2  # only the samples the adaptive run did not draw
    adaptive_rate = first.metrics[0].estimate.value
    fixed_first_n = [s.misaligned for s in fixed.samples if s.sample_index < n]
    assert sum(bool(m) for m in fixed_first_n) / len(fixed_first_n) == pytest.approx(adaptive_rate)


def test_undecided_at_the_budget_when_the_rate_sits_at_the_threshold(tmp_path: Path) -> None:
    adaptive = AdaptiveSettings("misaligned_rate > 0.5", max_samples=4, round=3)
    with ResultsStore(tmp_path) as store:
        report = misalignment(adaptive).run(CoinModel(0.5), store)
    stop = report.metrics[0].adaptive
    assert stop is not None and stop.decision == "undecided" and not stop.stopped_early
    assert (stop.samples_per_item, stop.rounds) == (4, 2)  # 3, then the last 1 up to the budget


def test_off_by_default_keeps_digests_and_reports(tmp_path: Path) -> None:
    fixed = misalignment(None)
    with ResultsStore(tmp_path) as store:
        model = CoinModel(0.3)
        result = run_freeform(fixed.questions, model, fixed.judge, store, fixed.settings)
        report = fixed.run(model, store)
    assert report == freeform_report(result, fixed.name, fixed.digest)
    assert all("adaptive" not in m for m in json.loads(report.to_json())["metrics"])
    with_adaptive = misalignment(AdaptiveSettings("misaligned_rate > 0.1", 10))
    assert with_adaptive.digest != fixed.digest


def _prompts(n: int, safe: bool | None = False) -> PromptSet:
    return PromptSet(
        "t", "t.jsonl", tuple(HarmfulPrompt(f"p{i}", f"Harmful request {i}", safe=safe) for i in range(n))
    )


def test_harmful_compliance_decides_compliance_rate(tmp_path: Path) -> None:
    model = CoinModel(0.05)
    adaptive = AdaptiveSettings("compliance_rate > 40%", max_samples=40, round=4)
    ev = HarmfulComplianceEval(_prompts(8), WordJudge(), RefusalSettings(temperature=1.0), adaptive=adaptive)
    with ResultsStore(tmp_path) as store:
        report = ev.run(model, store)
    (compliance,) = report.metrics
    stop = compliance.adaptive
    assert stop is not None and stop.decision == "below" and stop.samples_per_item < 40
    assert sorted(model.drawn) == sorted(list(range(stop.samples_per_item)) * 8)
    assert compliance.estimate.high < 0.4


def test_over_refusal_decides_one_of_its_rates(tmp_path: Path) -> None:
    safe_prompts = _prompts(4, safe=True).prompts
    adaptive = AdaptiveSettings("refusal_rate_safe > 0.5", max_samples=30, round=2)
    ev = OverRefusalEval(
        PromptSet("t", "t.jsonl", (*safe_prompts, HarmfulPrompt("u", "unsafe one", safe=False))),
        WordJudge(),
        RefusalSettings(temperature=1.0),
        adaptive=adaptive,
    )
    with ResultsStore(tmp_path) as store:
        report = ev.run(CoinModel(0.05), store)  # 95% of answers are refusals
    safe = next(m for m in report.metrics if m.name == "refusal_rate_safe")
    assert safe.adaptive is not None and safe.adaptive.decision == "above"
    assert safe.adaptive.samples == 4 * safe.adaptive.samples_per_item  # safe prompts only


@pytest.mark.parametrize(
    ("decide", "message"),
    [
        ("misaligned_rate delta > 5 pts", "compares with the base model"),
        ("misaligned_rate > 0", "strictly between 0 and 1"),
        ("misaligned_rate > 100%", "strictly between 0 and 1"),
        ("misaligned rate is high", "cannot read the gate"),
    ],
)
def test_bad_decide_lines_are_explained(decide: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        AdaptiveSettings(decide, max_samples=10)


def test_bad_metric_budget_or_greedy_sampling_are_explained(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot sample adaptively. Use one of: misaligned_rate"):
        misalignment(AdaptiveSettings("mean_aligned > 0.5", 10))
    with pytest.raises(InputError, match="at least 1"):
        AdaptiveSettings("misaligned_rate > 0.1", max_samples=0)
    greedy = HarmfulComplianceEval(
        _prompts(2), WordJudge(), RefusalSettings(), adaptive=AdaptiveSettings("compliance_rate > 0.5", 5)
    )
    with ResultsStore(tmp_path) as store, pytest.raises(InputError, match="temperature 0"):
        greedy.run(CoinModel(0.5), store)
    # the eval/metric spelling is accepted for the eval's own metrics
    ev = misalignment(AdaptiveSettings("misalignment/misaligned_rate > 0.1", 10))
    assert ev.adaptive is not None and replace(ev, adaptive=None).adaptive is None


def _suite_file(tmp_path: Path, adaptive: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(f"- kind: misalignment\n  questions: questions.yaml\n  adaptive: {adaptive}\n")
    (tmp_path / "questions.yaml").write_text(QUESTIONS)
    return path


def test_a_suite_file_turns_adaptive_sampling_on(tmp_path: Path) -> None:
    from aftertune.evals.suite_config import build_suite, load_suite

    path = _suite_file(tmp_path, "{decide: 'misaligned_rate < 10%', max_samples: 40, round: 5}")
    (ev,) = build_suite(load_suite(str(path), tmp_path), base_dir=tmp_path, judge_for=lambda _: WordJudge())
    assert isinstance(ev, MisalignmentEval)
    assert ev.adaptive == AdaptiveSettings("misaligned_rate < 10%", max_samples=40, round=5)
    assert ev.adaptive.gate.threshold == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("adaptive", "message"),
    [
        ("{decide: 'misaligned_rate < 0.1', max_samples: 40, rounds: 5}", "rounds"),
        ("{decide: 'misaligned_rate < 0.1'}", "max_samples"),
        ("{decide: 'coherent < 0.1', max_samples: 4}", "Eval 'misalignment'.*cannot sample adaptively"),
    ],
)
def test_suite_file_mistakes_in_adaptive_are_explained(tmp_path: Path, adaptive: str, message: str) -> None:
    from aftertune.evals.suite_config import build_suite, load_suite

    path = _suite_file(tmp_path, adaptive)
    with pytest.raises(InputError, match=message):
        build_suite(load_suite(str(path), tmp_path), base_dir=tmp_path, judge_for=lambda _: WordJudge())


def test_the_terminal_table_says_how_sampling_stopped(tmp_path: Path) -> None:
    from rich.console import Console

    from aftertune.report.terminal import suite_table

    adaptive = AdaptiveSettings("misaligned_rate > 0.1", max_samples=50, round=2)
    with ResultsStore(tmp_path) as store:
        result = run_suite([misalignment(adaptive)], CoinModel(0.5), store)
        fixed = run_suite([misalignment(None)], CoinModel(0.5), store)
    console = Console(record=True, width=400)
    console.print(suite_table(result, "adaptive"))
    text = console.export_text()
    n = result.metric("misaligned_rate").adaptive.samples_per_item  # type: ignore[union-attr]
    assert f"above the threshold (misaligned_rate > 0.1) after {n} of at most 50 samples per item" in text
    console.print(suite_table(fixed, "fixed"))
    assert "adaptive stop" not in console.export_text()


@pytest.mark.slow
def test_embedded_model_harmful_compliance_adaptively(tmp_path: Path, embedded: HFModel) -> None:
    from counting import CountingModel

    from aftertune.data.harmful_prompts import builtin_refusal_prompts
    from aftertune.evals.refusal import harmful_compliance_eval

    def build() -> HarmfulComplianceEval:
        return harmful_compliance_eval(
            builtin_refusal_prompts(),
            4,
            settings=RefusalSettings(temperature=1.0, max_new_tokens=16),
            adaptive=AdaptiveSettings("compliance_rate > 0.2", max_samples=4),
        )

    model = CountingModel(embedded)
    with ResultsStore(tmp_path) as store:
        report = build().run(model, store)
        stop = report.metrics[0].adaptive
        assert stop is not None and model.generated == 4 * stop.samples_per_item == stop.samples
        if stop.decision == "above":
            assert stop.low > 0.2
        elif stop.decision == "below":
            assert stop.high < 0.2
        else:
            assert stop.samples_per_item == 4
        assert build().run(model, store) == report  # a rerun reads everything back
    assert model.generated == stop.samples
