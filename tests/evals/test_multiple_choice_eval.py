"""Multiple choice by log-likelihood: lm-evaluation-harness's prompts, few-shot examples, both modes'
scoring, stored log-likelihoods (a rerun scores nothing), and the embedded model end to end."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from counting import CountingModel

from aftertune.data.multiple_choice import MCDataset, MCItem
from aftertune.errors import InputError
from aftertune.evals.multiple_choice import MultipleChoiceEval, mc_requests
from aftertune.evals.suite import Eval
from aftertune.models.hf import HFModel
from aftertune.models.protocol import Completion, GenerationRequest, LoglikelihoodRequest
from aftertune.progress import ProgressCallback
from aftertune.store import ResultsStore

QUESTION = MCItem("astro/0", "Which planet is red? ", ("Venus", "Mars", "Earth", "Jupiter"), 1, "astronomy")
SHOT = MCItem("astro/dev/0", "What orbits the Earth?", ("The Moon", "Mars", "Io", "Ceres"), 0, "astronomy")


def test_letter_prompt_is_lm_eval_mmlu() -> None:
    requests = mc_requests(QUESTION, [SHOT], "letter")
    expected_context = (
        "The following are multiple choice questions (with answers) about astronomy.\n\n"
        "What orbits the Earth?\nA. The Moon\nB. Mars\nC. Io\nD. Ceres\nAnswer: A\n\n"
        "Which planet is red?\nA. Venus\nB. Mars\nC. Earth\nD. Jupiter\nAnswer:"
    )
    assert [r.context for r in requests] == [expected_context] * 4
    assert [r.continuation for r in requests] == [" A", " B", " C", " D"]


def test_cloze_prompt_is_lm_eval_mmlu_continuation() -> None:
    requests = mc_requests(QUESTION, [SHOT], "cloze")
    assert requests[0].context == (
        "The following are questions (with answers) about astronomy.\n\n"
        "Question: What orbits the Earth?\nAnswer: The Moon\n\n"
        "Question: Which planet is red?\nAnswer:"
    )
    assert [r.continuation for r in requests] == [" Venus", " Mars", " Earth", " Jupiter"]


def test_chat_mode_puts_the_description_in_the_system_turn() -> None:
    (first, *_) = mc_requests(QUESTION, [], "letter", chat=True)
    assert isinstance(first.context, tuple)
    assert [m.role for m in first.context] == ["system", "user"] and first.continuation == "A"


class TableModel:
    """Log-likelihoods from a table keyed by continuation; counts nothing, generates nothing."""

    fingerprint = "table-model"

    def __init__(self, table: dict[str, float]) -> None:
        self.table = table

    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None
    ) -> list[list[Completion]]:
        raise AssertionError("multiple choice never generates")

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: ProgressCallback | None = None
    ) -> list[float]:
        return [self.table[r.continuation.strip()] for r in requests]


def test_accuracy_and_length_normalised_accuracy(tmp_path: Path) -> None:
    """Cloze: the raw pick prefers the short wrong option, the per-character pick the long right one."""
    items = (
        MCItem("q0", "Pick the long one.", ("no", "a much longer answer"), 1),
        MCItem("q1", "Pick yes.", ("yes", "nope"), 0),
    )
    table = {"no": -2.0, "a much longer answer": -4.0, "yes": -1.0, "nope": -3.0}
    ev = MultipleChoiceEval(MCDataset(items), mode="cloze", name="mc")
    assert isinstance(ev, Eval)
    with ResultsStore(tmp_path) as store:
        report = ev.run(CountingModel(TableModel(table)), store)  # type: ignore[arg-type]
    metrics = {m.name: m for m in report.metrics}
    assert metrics["accuracy"].estimate.value == pytest.approx(0.5)
    assert metrics["accuracy_norm"].estimate.value == pytest.approx(1.0)
    assert [(i.item, i.value) for i in metrics["accuracy"].items] == [("q0", 0.0), ("q1", 1.0)]
    (wrong,) = metrics["accuracy"].examples
    assert wrong.item == "q0" and "chose A" in wrong.note and "correct B" in wrong.note


def test_few_shot_examples_come_from_the_pool_else_from_other_questions() -> None:
    pool = tuple(MCItem(f"dev/{k}", f"Shot {k}?", ("a", "b"), 0, "s") for k in range(3))
    items = tuple(MCItem(f"q{k}", f"Question {k}?", ("a", "b"), 1, "s") for k in range(4))
    with_pool = MultipleChoiceEval(MCDataset(items, pool), shots=2)
    assert [s.id for s in with_pool.few_shot(items[0])] == ["dev/0", "dev/1"]  # first k, lm-eval's first_n
    without = MultipleChoiceEval(MCDataset(items), shots=2, seed=3)
    drawn = without.few_shot(items[0])
    assert len(drawn) == 2 and items[0] not in drawn
    assert drawn == MultipleChoiceEval(MCDataset(items[:2] + items[2:]), shots=2, seed=3).few_shot(items[0])
    assert without.digest != MultipleChoiceEval(MCDataset(items), shots=2, seed=4).digest
    with pytest.raises(InputError, match="need 4 worked examples for subject 's', but there are 3"):
        MultipleChoiceEval(MCDataset(items), shots=4)
    with pytest.raises(InputError, match="not 'letter' or 'cloze'"):
        MultipleChoiceEval(MCDataset(items), mode="letters")  # type: ignore[arg-type]


def test_embedded_model_answers_easy_questions_and_a_rerun_scores_nothing(
    embedded: HFModel, tmp_path: Path
) -> None:
    items = (
        MCItem("capital", "What is the capital of France?", ("Berlin", "Paris", "Madrid", "Rome"), 1, "geo"),
        MCItem(
            "colour", "What colour is the sky on a clear day?", ("Green", "Red", "Blue", "Black"), 2, "geo"
        ),
    )
    ev = MultipleChoiceEval(MCDataset(items), mode="cloze", name="easy")
    model = CountingModel(embedded)
    with ResultsStore(tmp_path) as store:
        first = ev.run(model, store)
        assert model.scored == 8
        again = ev.run(model, store)
        assert model.scored == 8, "every log-likelihood came from the store"
    assert again == first
    accuracy = {m.name: m for m in first.metrics}["accuracy"]
    assert accuracy.estimate.n == 2 and accuracy.estimate.value == 1.0
