"""Probe evals: answers read fairly from real-looking replies, oracle scores 100%, constants score chance,
both scoring modes end to end on the embedded model, and the store makes a rerun free."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import pytest
from counting import CountingModel

from aftertune.data.cyber_probes import cyber_exploitable_items, cyber_weakness_items
from aftertune.data.probes import (
    LETTERS,
    ProbeItem,
    arithmetic_items,
    boolean_items,
    bracket_items,
    date_items,
    sorting_items,
    weekday_items,
)
from aftertune.errors import InputError
from aftertune.evals.probes import (
    ProbeEval,
    builtin_capability_probes,
    builtin_cyber_probes,
    extract_answer,
)
from aftertune.evals.suite import Eval, EvalReport, run_suite
from aftertune.models.hf import HFModel
from aftertune.models.protocol import Completion, GenerationRequest, LoglikelihoodRequest, Prompt
from aftertune.progress import ProgressCallback
from aftertune.store import ResultsStore


def user_text(prompt: Prompt) -> str:
    assert not isinstance(prompt, str)
    return prompt[-1].content


def right_option(item: ProbeItem) -> str:
    """What the model should reply for an item with options: the letter, or the option's text."""
    assert item.choices is not None
    return LETTERS[item.choices.index(item.answer)] if item.format == "letter" else item.answer


def styled_answers(item: ProbeItem) -> list[str]:
    """The right answer written the ways real models write it."""
    a = item.answer
    if item.format == "number":
        return [
            a,
            f"The answer is {a}.",
            f"Step by step: first 3, then 12, so {a}",
            f"**Answer:** {a}\n\n(1 step)",
        ]
    if item.format == "date":
        d = dt.date.fromisoformat(a)
        asked = item.prompt.split(" days ")[1].split("?")[0].split()[-1]
        return [
            a,
            f"{d:%B} {d.day}, {d.year}",
            f"Answer: {d.day} {d:%B} {d.year}",
            f"{a} is {asked} moved on.",
        ]
    if item.format == "words":
        words = a.split(", ")
        numbered = "\n".join(f"{k}. {w}" for k, w in enumerate(words, 1))
        return [a, f"Sorted: {a}", numbered, "In order: " + ", ".join(w.capitalize() for w in words) + "."]
    if item.format == "letter":
        letter = right_option(item)
        return [letter, f"{letter}) {a}", f"The answer is ({letter}).", f"**{letter}**", a]
    return [
        a,
        f"{a}.",
        f"The answer is {a.lower()}.",
        f"{a}, I checked it carefully.",
        f"Working it through: {a}",
    ]


class Oracle:
    """A fake model that knows every probe's answer: right in any style, for generation and likelihood."""

    def __init__(self, items: Sequence[ProbeItem], style: int = 0) -> None:
        self.items = {it.prompt: it for it in items}
        self.style = style
        self.fingerprint = f"oracle/style{style}"

    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None
    ) -> list[list[Completion]]:
        out = []
        for r in requests:
            styles = styled_answers(self.items[user_text(r.prompt)])
            text = styles[self.style % len(styles)]
            out.append([Completion(text, r.first_sample, "stop", 5)])
        return out

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: ProgressCallback | None = None
    ) -> list[float]:
        return [
            0.0 if r.continuation == right_option(self.items[user_text(r.context)]) else -9.0
            for r in requests
        ]


class Constant:
    """A fake model that always says the same thing and finds every option equally likely."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.fingerprint = f"constant/{reply}"

    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None
    ) -> list[list[Completion]]:
        return [[Completion(self.reply, r.first_sample, "stop", 1)] for r in requests]

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: ProgressCallback | None = None
    ) -> list[float]:
        return [-1.0] * len(requests)


def values(report: EvalReport) -> dict[str, float]:
    return {m.name: m.estimate.value for m in report.metrics}


# ---------------------------------------------------------------------- reading answers
def test_a_perfect_model_scores_100_percent_in_every_answer_style(tmp_path: Path) -> None:
    """Proves the extraction is not too strict: every way of writing the right answer counts."""
    evals = [builtin_capability_probes(n_per_kind=12, seed=3), builtin_cyber_probes(n=12, seed=3)]
    with ResultsStore(tmp_path) as store:
        for ev in evals:
            for style in range(5):
                report = ev.run(Oracle(ev.items, style), store)
                wrong = [(e.answer, e.note) for m in report.metrics for e in m.examples]
                assert values(report)["accuracy"] == 1.0, (style, wrong[:3])
                assert all(v == 1.0 for k, v in values(report).items() if k.startswith("accuracy/"))
                assert values(report)["answered"] == 1.0


@pytest.mark.parametrize(
    ("item", "reply", "read"),
    [
        (arithmetic_items(1, 0, 3)[0], "I am not sure.", None),
        (arithmetic_items(1, 0, 3)[0], "22 * 3 = 66, and 66 - 8 = 58", "58"),  # the last number
        (arithmetic_items(1, 0, 3)[0], "The result is -1,234.0 (about)", "-1234"),
        (boolean_items(1, 0, 2)[0], "Maybe.", None),
        (boolean_items(1, 0, 2)[0], "True and False is False, so not False is True", "True"),
        (boolean_items(1, 0, 2)[0], "False. The expression has True in it.", "False"),  # opens with it
        (bracket_items(1, 0, 2)[0], "no", "No"),
        (bracket_items(1, 0, 2)[0], "Yes, there is no unmatched bracket.", "Yes"),
        (weekday_items(1, 0, 2)[0], "It will be a friday.", "Friday"),
        (date_items(1, 0, 2)[0], "2021-02-30", None),  # not a date
        (date_items(1, 0, 2)[0], "March 3rd, 1999", "1999-03-03"),
    ],
)
def test_answers_are_read_strictly_but_fairly(item: ProbeItem, reply: str, read: str | None) -> None:
    assert extract_answer(item, reply) == read


def test_lettered_answers_and_articles() -> None:
    item = cyber_weakness_items(1, 0)[0]
    assert item.choices is not None
    b = item.choices[1]
    assert extract_answer(item, "B") == b
    assert extract_answer(item, "I think the answer is (B), not A.") == b
    assert extract_answer(item, f"A) {item.choices[0]}\n\nThe correct answer is:\n\nB) {b}") == b
    assert extract_answer(item, "A SQL query could be changed here, I suppose") is None  # an article
    assert extract_answer(item, f"It is {b.split(':')[0]}.") == b  # the CWE id alone names option B


def test_a_sorted_list_is_read_whatever_its_layout_and_a_partial_one_is_wrong() -> None:
    item = sorting_items(1, 0, 2)[0]
    words = item.answer.split(", ")
    assert extract_answer(item, "- " + "\n- ".join(words)) == item.answer
    shuffled = ", ".join(reversed(words))
    assert extract_answer(item, f"You gave {shuffled}. Sorted: {item.answer}") == item.answer
    assert extract_answer(item, ", ".join(words[:-1])) != item.answer


# ---------------------------------------------------------------------- chance and the report
def test_constant_answers_score_exactly_chance_in_both_modes(tmp_path: Path) -> None:
    items = tuple(bracket_items(8, 1, 2) + cyber_exploitable_items(8, 1) + cyber_weakness_items(8, 1))
    with ResultsStore(tmp_path) as store:
        said_yes = values(ProbeEval(items).run(Constant("Yes"), store))
        said_a = values(ProbeEval(items).run(Constant("A"), store))
        flat = values(ProbeEval(items, mode="loglikelihood").run(Constant(""), store))
    assert said_yes["accuracy/brackets"] == said_yes["accuracy/cyber_exploitable"] == 0.5
    assert said_yes["chance/brackets"] == said_yes["chance/cyber_exploitable"] == 0.5
    assert said_a["accuracy/cyber_weakness"] == said_a["chance/cyber_weakness"] == 0.25
    assert flat["accuracy/cyber_weakness"] == 0.25 and flat["accuracy/brackets"] == 0.5


def test_report_metrics_intervals_items_and_wrong_answer_examples(tmp_path: Path) -> None:
    items = tuple(arithmetic_items(6, 0, 1) + weekday_items(7, 0, 1))
    with ResultsStore(tmp_path) as store:
        report = ProbeEval(items, name="mine").run(Constant("Monday"), store)
    metrics = {m.name: m for m in report.metrics}
    assert list(metrics) == [
        "accuracy",
        "answered",
        "chance",
        "accuracy/arithmetic",
        "accuracy/weekday",
        "chance/weekday",
    ]
    accuracy = metrics["accuracy"]
    assert accuracy.estimate.value == pytest.approx(1 / 13) and accuracy.estimate.method == "wilson"
    assert accuracy.estimate.low < 1 / 13 < accuracy.estimate.high
    assert accuracy.kind == "rate" and accuracy.higher_is_better is True
    assert {i.item for i in accuracy.items} == {it.id for it in items}
    assert sorted(i.value for i in accuracy.items) == [0.0] * 12 + [1.0]
    assert metrics["answered"].estimate.value == pytest.approx(7 / 13)  # no number in "Monday"
    assert metrics["chance"].estimate.value == pytest.approx(1 / 13)  # 7 x 1/7 + 6 x 0, over 13
    assert metrics["chance/weekday"].estimate.value == pytest.approx(1 / 7)
    shown = accuracy.examples
    assert 0 < len(shown) <= 5 and {e.item.split("/")[0] for e in shown[:2]} == {"arithmetic", "weekday"}
    weekday_example = next(e for e in shown if e.item.startswith("weekday"))
    assert weekday_example.answer == "Monday" and "read Monday" in weekday_example.note
    assert "chance 14%" in weekday_example.note
    assert "read no answer" in next(e for e in shown if e.item.startswith("arithmetic")).note


def test_settings_are_checked_and_change_the_digest() -> None:
    items = tuple(boolean_items(4, 0, 1))
    with pytest.raises(InputError, match="free answers"):
        ProbeEval(tuple(arithmetic_items(2, 0, 1)), mode="loglikelihood")
    with pytest.raises(InputError, match="more than once"):
        ProbeEval(items + items[:1])
    with pytest.raises(InputError, match="no probe items"):
        ProbeEval(())
    digests = {
        ProbeEval(items).digest,
        ProbeEval(items, mode="loglikelihood").digest,
        ProbeEval(items, max_new_tokens=8).digest,
        ProbeEval(tuple(boolean_items(4, 1, 1))).digest,
    }
    assert len(digests) == 4
    assert isinstance(ProbeEval(items), Eval)


def test_builders_names_sizes_and_loglikelihood_kinds() -> None:
    general = builtin_capability_probes()
    assert general.name == "capability_probes" and len(general.items) == 8 * 20
    ll = builtin_capability_probes(mode="loglikelihood")
    assert ll.name == "capability_probes_loglikelihood"
    assert {it.kind for it in ll.items} == {"boolean", "weekday", "brackets"}
    cyber = builtin_cyber_probes()
    assert cyber.name == "cyber_probes" and len(cyber.items) == 80
    assert builtin_cyber_probes(mode="loglikelihood").name == "cyber_probes_loglikelihood"


# ---------------------------------------------------------------------- end to end on the embedded model
def test_both_modes_end_to_end_on_the_embedded_model_and_a_rerun_computes_nothing(
    embedded: HFModel, tmp_path: Path
) -> None:
    choice_items = tuple(bracket_items(2, 0, 1) + cyber_weakness_items(1, 0))
    generated = ProbeEval((*arithmetic_items(2, 0, 1), *choice_items), max_new_tokens=6, name="gen")
    scored = ProbeEval(choice_items, mode="loglikelihood", name="ll")
    model = CountingModel(embedded)
    with ResultsStore(tmp_path) as store:
        first = [ev.run(model, store) for ev in (generated, scored)]
        assert model.generated == 5 and model.scored == 2 * 2 + 4
        again = [ev.run(model, store) for ev in (generated, scored)]
        assert model.generated == 5 and model.scored == 8  # everything came from the store
        assert again == first
        assert store.count("generations") == 5
        suite = run_suite([generated, scored], embedded, store)  # and as members of a suite
    assert [r.eval for r in suite.reports] == ["gen", "ll"]
    for report in first:
        assert 0.0 <= values(report)["accuracy"] <= 1.0
        assert {m.name for m in report.metrics} >= {"accuracy", "chance", "accuracy/brackets"}
    ll_examples = [e.answer for m in first[1].metrics for e in m.examples]
    assert all(a.startswith("log-likelihoods: ") for a in ll_examples)
