"""HumanEval-format pass@k: the estimator, answer -> program, the unit-test judge, the eval end to end."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import shared_data
from counting import CountingModel

from aftertune.data.humaneval import HumanEvalTask, load_humaneval
from aftertune.errors import InputError
from aftertune.evals.code_execution import (
    HumanEvalEval,
    UnitTestJudge,
    pass_at_k,
    pass_at_k_report,
    solution_code,
)
from aftertune.evals.suite import Eval
from aftertune.judges.judgement import Judge, JudgeItem, Judgement
from aftertune.models.hf import HFModel
from aftertune.models.protocol import Completion
from aftertune.sandbox import run_many, sandbox_available
from aftertune.store import ResultsStore

TOY = HumanEvalTask(
    task_id="Toy/0",
    prompt='from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    """Sum of xs."""\n',
    canonical_solution="    return sum(xs)\n",
    test="def check(candidate):\n    assert candidate([1, 2]) == 3\n    assert candidate([]) == 0\n",
    entry_point="total",
)


@pytest.fixture
def sandboxed() -> None:
    ok, why = sandbox_available()
    if not ok:
        pytest.skip(why)


# ---------------------------------------------------------------------- pass@k
def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """The share of all k-subsets of n samples (c of them correct) that hold a correct sample."""
    subsets = list(itertools.combinations([True] * c + [False] * (n - c), k))
    return sum(any(s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_brute_force_and_the_closed_form() -> None:
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                expected = brute_force_pass_at_k(n, c, k)
                assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
                assert pass_at_k(n, c, k) == pytest.approx(
                    1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12
                )
    assert pass_at_k(200, 13, 1) == pytest.approx(13 / 200)  # pass@1 is the share of correct samples
    assert 0 < pass_at_k(1000, 1, 100) < 1  # large n: no overflow, no cancellation to 0 or 1
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(5, 2, 6)


# ---------------------------------------------------------------------- answers -> programs
def test_solution_code_from_chat_answers_and_raw_completions() -> None:
    restated = "```python\ndef total(xs):\n    return sum(xs)\n```\nThis adds the numbers."
    # a restated function follows the prompt, whose imports and stub it replaces
    assert (
        solution_code(TOY.prompt, restated, "total")
        == f"{TOY.prompt.rstrip()}\n\n\ndef total(xs):\n    return sum(xs)\n"
    )
    # the block that defines the function wins over an earlier usage example
    two = "```python\nprint(total([1]))\n```\n```py\ndef total(xs):\n    return 0\n```"
    assert solution_code(TOY.prompt, two, "total").endswith("def total(xs):\n    return 0\n")
    # a raw completion continues the prompt, as upstream HumanEval runs it
    assert solution_code(TOY.prompt, "    return sum(xs)\n", "total") == TOY.prompt + "    return sum(xs)\n"
    # a body given unindented in a block is indented under the signature
    assert (
        solution_code(TOY.prompt, "```python\nreturn sum(xs)\n```", "total")
        == TOY.prompt + "    return sum(xs)\n"
    )
    # an answer cut off inside its block keeps what it has
    cut = solution_code(TOY.prompt, "Sure:\n```python\ndef total(xs):\n    s = 0\n    for x in", "total")
    assert cut.endswith("def total(xs):\n    s = 0\n    for x in")
    # a block in another language is not code to run
    assert solution_code(TOY.prompt, "```bash\nrm -rf /\n```", "total").startswith(TOY.prompt + "    ```bash")


def verdicts(answers: Sequence[str], task: HumanEvalTask = TOY) -> list[Judgement]:
    return UnitTestJudge().judge([JudgeItem(task.prompt, a, "passes_tests", task.harness) for a in answers])


def test_unit_test_judge_scores_passing_failing_and_broken_answers(sandboxed: None) -> None:
    assert isinstance(UnitTestJudge(), Judge)
    good, wrong, broken, slow = verdicts(
        [
            "```python\ndef total(xs):\n    return sum(xs)\n```",
            "    return 0\n",
            "    return sum(xs\n",
            "    while True:\n        pass\n",
        ]
    )
    assert (good.score, good.reason) == (100.0, "passed")
    assert wrong.score == 0.0 and wrong.reason == "exit 1: AssertionError at `assert candidate([1, 2]) == 3`"
    assert broken.score == 0.0 and "SyntaxError" in broken.reason
    assert slow.score == 0.0 and slow.reason == "CPU time over 3 s (SIGXCPU)"
    with pytest.raises(InputError, match="harness"):
        UnitTestJudge().judge([JudgeItem(TOY.prompt, "    return 1\n", "passes_tests")])


@pytest.mark.needs_data
def test_every_canonical_solution_passes_and_wrong_solutions_fail(sandboxed: None) -> None:
    tasks = load_humaneval(shared_data("humaneval/HumanEval.jsonl.gz"))
    results = run_many([t.canonical_program for t in tasks], UnitTestJudge().limits)
    failed = [(t.task_id, r.reason) for t, r in zip(tasks, results, strict=True) if not r.passed]
    assert failed == []
    # each task's tests with the next task's solution, and with a body that returns None: all fail
    wrong = [t.prompt + "    return None\n" + t.harness for t in tasks[:20]]
    wrong += [a.prompt + b.canonical_solution + a.harness for a, b in itertools.pairwise(tasks[:21])]
    assert not any(r.passed for r in run_many(wrong, UnitTestJudge().limits))


# ---------------------------------------------------------------------- the report and the eval
def completion(text: str, index: int = 0) -> Completion:
    return Completion(text, index, "stop", 1)


def test_the_report_has_pass_at_each_k_per_task_and_failing_examples() -> None:
    tasks = [replace(TOY, task_id=f"Toy/{i}") for i in range(3)]
    passed, failed = Judgement(100.0, None, "passed"), Judgement(0.0, None, "exit 1: AssertionError")
    # task 0: 2 of 4 pass; task 1: none; task 2: all
    outcomes = [[passed, passed, failed, failed], [failed] * 4, [passed] * 4]
    completions = [[completion(f"answer {i}", s) for s in range(4)] for i in range(3)]
    report = pass_at_k_report(tasks, completions, [j for o in outcomes for j in o], (1, 2), "he", "d", "m")
    pass1, pass2 = report.metrics
    assert [m.name for m in report.metrics] == ["pass@1", "pass@2"]
    assert [(i.item, i.value, i.weight) for i in pass1.items] == [
        ("Toy/0", 0.5, 4),
        ("Toy/1", 0.0, 4),
        ("Toy/2", 1.0, 4),
    ]
    assert [i.value for i in pass2.items] == pytest.approx([1 - 1 / 6, 0.0, 1.0])
    assert pass1.estimate.value == pytest.approx(0.5) and pass1.estimate.n == 3
    assert (
        pass1.estimate.method.startswith("t over 3 tasks")
        and 0 <= pass1.estimate.low <= pass1.estimate.high <= 1
    )
    assert pass1.kind == "rate" and pass1.higher_is_better is True
    assert [(e.item, e.note) for e in pass1.examples] == [
        ("Toy/0", "exit 1: AssertionError"),
        ("Toy/1", "exit 1: AssertionError"),
    ]
    # one sample per task: each task passes or not, and the interval is Wilson's over tasks
    single = pass_at_k_report(tasks, [[completion("a")]] * 3, [passed, failed, failed], (1,), "he", "d", "m")
    assert single.metrics[0].estimate.value == pytest.approx(1 / 3)
    assert single.metrics[0].estimate.method == "wilson over 3 tasks (one sample each)"


def test_settings_are_checked_and_sampling_follows_the_codex_paper() -> None:
    assert isinstance(HumanEvalEval((TOY,)), Eval)
    assert HumanEvalEval((TOY,)).params.temperature == 0.0  # one sample: greedy
    assert HumanEvalEval((TOY,), samples=10).params.temperature == 0.2
    assert HumanEvalEval((TOY,), samples=10, ks=(1, 10)).params.temperature == 0.8
    assert HumanEvalEval((TOY,), samples=5, ks=(5,)).all_ks == (1, 5)
    base = HumanEvalEval((TOY,), chat=False)
    assert base.prompt(TOY) == TOY.prompt and "\ndef" in base.params.stop
    with pytest.raises(InputError, match="1 <= k <= samples"):
        HumanEvalEval((TOY,), samples=2, ks=(5,))
    with pytest.raises(InputError, match="greedy samples"):
        HumanEvalEval((TOY,), samples=3, temperature=0.0)
    with pytest.raises(InputError, match="used more than once"):
        HumanEvalEval((TOY, TOY))
    assert HumanEvalEval((TOY,)).digest != HumanEvalEval((TOY,), samples=2, ks=(2,)).digest


@pytest.mark.needs_data
def test_embedded_model_end_to_end_and_a_second_run_generates_nothing(
    tmp_path: Path, embedded: HFModel, sandboxed: None
) -> None:
    tasks = load_humaneval(shared_data("humaneval/HumanEval.jsonl.gz"))[:3]
    ev = HumanEvalEval(tasks, samples=2, ks=(2,), max_new_tokens=128)
    model = CountingModel(embedded)
    with ResultsStore(tmp_path) as store:
        first = ev.run(model, store)
        counts = {t: store.count(t) for t in ("generations", "judgements", "eval_samples")}
        assert model.generated == 6 and counts == {"generations": 6, "judgements": 6, "eval_samples": 6}
        second = ev.run(model, store)
        assert model.generated == 6 and {t: store.count(t) for t in counts} == counts
        samples = store.samples()
    assert second == first
    assert [m.name for m in first.metrics] == ["pass@1", "pass@2"]
    for metric in first.metrics:
        assert [i.item for i in metric.items] == [t.task_id for t in tasks]
        assert all(0 <= i.value <= 1 for i in metric.items) and metric.estimate.n == 3
    # every answer's test result is stored next to it
    assert set(samples.question_id) == {t.task_id for t in tasks}
    assert set(samples["passes_tests"]) <= {0.0, 100.0} and samples["passes_tests"].notna().all()
    passed = samples.groupby("question_id")["passes_tests"].apply(lambda s: int((s == 100).sum()))
    assert [i.value for i in first.metrics[0].items] == [passed[t.task_id] / 2 for t in tasks]
