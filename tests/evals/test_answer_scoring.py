"""Answer extraction and scoring for GSM8K, BBH and DROP, on the cases the references get right or wrong."""

from __future__ import annotations

import pytest

from aftertune.evals.answer_scoring import (
    DropScore,
    bbh_correct,
    drop_em_f1,
    drop_normalize,
    drop_score,
    extract_bbh_answer,
    extract_drop_answer,
    extract_gsm8k_flexible,
    extract_gsm8k_strict,
    gsm8k_correct,
    gsm8k_gold,
    normalize_number,
)


# ---------------------------------------------------------------------- GSM8K
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$1,000.", "1000"),
        ("1,234,567", "1234567"),
        ("-3", "-3"),
        (" 18 ", "18"),
        ("42.", "42"),
        ("3.5", "3.5"),
        ("18.0", "18.0"),  # lm-eval compares strings: "18.0" is not "18"
        ("Natalia sold 48 clips.\n#### 72", "72"),  # a whole solution compares by its final number
    ],
)
def test_normalize_number_removes_commas_dollars_and_a_trailing_period(text: str, expected: str) -> None:
    assert normalize_number(text) == expected


def test_gsm8k_gold_is_the_normalised_number_after_the_last_marker() -> None:
    assert gsm8k_gold("She makes 9 * 2 = $<<9*2=18>>18.\n#### 18") == "18"
    assert gsm8k_gold("...\n#### 1,000") == "1000"
    assert gsm8k_gold("...\n#### -5") == "-5"
    assert gsm8k_gold("no marker, 18") is None
    assert gsm8k_gold("#### ") is None


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("5 + 5 = 10\n#### 10", "10"),
        ("#### 1,000.", "1,000."),
        ("#### -3", "-3"),
        ("#### 4\n#### 5", "4"),  # take_first
        ("#### $1,000", None),  # the strict regex wants the number right after "#### "
        ("The answer is 10.", None),
        ("####10", None),
    ],
)
def test_strict_extraction_reads_the_first_marked_number(completion: str, expected: str | None) -> None:
    assert extract_gsm8k_strict(completion) == expected


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("The answer is $1,000.", "$1,000."),
        ("She has -3 apples left", "-3"),
        ("First 5, then 7", "7"),  # the last number
        ("I think 5 then 7.", "7."),
        ("12 dollars at 3 each", "3"),
        ("2 + 2 = 4\n#### 4", "4"),
        ("no numbers here", None),
        ("", None),
    ],
)
def test_flexible_extraction_reads_the_last_number(completion: str, expected: str | None) -> None:
    assert extract_gsm8k_flexible(completion) == expected


def test_gsm8k_correct_compares_normalised_numbers_and_nothing_extracted_is_wrong() -> None:
    assert gsm8k_correct("$1,000.", "1000")
    assert gsm8k_correct("18.", "18")
    assert gsm8k_correct("-3", "-3")
    assert not gsm8k_correct("3", "-3")
    assert not gsm8k_correct("18.0", "18")
    assert not gsm8k_correct(None, "18")
    flexible = extract_gsm8k_flexible("So she makes $1,000.")
    assert gsm8k_correct(flexible, "1,000") and not gsm8k_correct(extract_gsm8k_strict("$1,000."), "1000")


# ---------------------------------------------------------------------- BBH
@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("So the answer is (B).", "(B)"),
        ("The answer is (B).", "(B)"),
        ("...= False. So the answer is False.", "False"),
        ("So the answer is yes.\n\nQ: next question", "yes"),
        ("So the answer is 6", "6"),  # no period: the reference's lookahead would give ""
        ("So the answer is -50.", "-50"),
        ("So the answer is ] ] >.", "] ] >"),
        ("So the answer is apple banana cherry.", "apple banana cherry"),
        ("So the answer is 3. Wait, the answer is 4.", "3. Wait, the answer is 4"),  # rest of the line
        ("The first answer is 3, the answer is 4.", "4"),  # "first answer is" is not the phrase
        ("Let's count: 1 + 1 = 2.", None),
        ("THE ANSWER IS 2.", None),  # the reference matches "the"/"The" only
    ],
)
def test_bbh_extraction_reads_after_the_answer_is(completion: str, expected: str | None) -> None:
    assert extract_bbh_answer(completion) == expected


def test_bbh_exact_match_is_case_sensitive_like_the_reference() -> None:
    assert bbh_correct("True", "True")
    assert bbh_correct("(B)", "(B)")
    assert bbh_correct(" valid ", "valid")
    assert not bbh_correct("true", "True")
    assert not bbh_correct("B", "(B)")
    assert not bbh_correct("invalid", "valid")
    assert not bbh_correct(None, "True")


# ---------------------------------------------------------------------- DROP
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Cat!", "cat"),
        ("the Bears", "bears"),
        ("a an the", ""),
        ("1,000", "1000.0"),
        ("5", "5.0"),
        ("50.60", "50.6"),
        ("-3", "3.0"),  # the official eval splits at hyphens, so a minus sign goes (on both sides alike)
        ("well-known", "well known"),  # tokens split at hyphens
        ("  Pakistanis   and Filipinos. ", "pakistanis and filipinos"),
        ("4 March 1990", "4.0 march 1990.0"),
    ],
)
def test_drop_normalisation(text: str, expected: str) -> None:
    assert drop_normalize(text) == expected


def test_drop_dates_in_another_order_score_full_f1_but_no_exact_match() -> None:
    assert drop_em_f1("March 4, 1990", "4 March 1990") == DropScore(0.0, 100.0)
    assert drop_em_f1("4 March 1990", "4 March 1990") == DropScore(1.0, 100.0)
    assert drop_em_f1("March 1990", "4 March 1990") == DropScore(0.0, 80.0)


def test_drop_numbers_must_agree_before_words_count() -> None:
    assert drop_em_f1("50.60", "50.6") == DropScore(1.0, 100.0)
    assert drop_em_f1("$1,000", "1000") == DropScore(1.0, 100.0)
    assert drop_em_f1("50.6 billion", "50.6") == DropScore(0.0, 66.67)
    assert drop_em_f1("49.7 billion", "50.6 billion") == DropScore(0.0, 0.0)  # "billion" alone is no credit
    assert drop_em_f1("seven", "7") == DropScore(0.0, 0.0)
    assert drop_em_f1("yards", "12 yards") == DropScore(0.0, 0.0)


def test_drop_articles_punctuation_and_case_are_ignored() -> None:
    assert drop_em_f1("The Chicago Bears.", "chicago bears") == DropScore(1.0, 100.0)
    assert drop_em_f1("a touchdown", "the touchdown") == DropScore(1.0, 100.0)
    assert drop_em_f1("Bears", "Chicago Bears") == DropScore(0.0, 66.67)
    assert drop_em_f1("", "Bears") == DropScore(0.0, 0.0)


def test_drop_spans_are_aligned_one_to_one() -> None:
    gold = ("Pakistanis", "Filipinos")
    assert drop_em_f1(("Filipinos", "Pakistanis"), gold) == DropScore(1.0, 100.0)
    assert drop_em_f1("Pakistanis", gold) == DropScore(0.0, 50.0)  # one of two spans
    assert drop_em_f1(("Pakistanis", "Filipinos", "Indians"), gold) == DropScore(0.0, 66.67)


def test_drop_score_takes_the_best_gold_answer_and_skips_empty_ones() -> None:
    golds = [("50.6",), ("49.7",)]
    assert drop_score("49.7", golds) == DropScore(1.0, 100.0)
    assert drop_score("about 50.6", golds) == DropScore(0.0, 66.67)
    both = ["Pakistanis and Filipinos", "Pakistani and Filipino"]
    assert drop_score("Pakistani and Filipino", both).f1 == 100
    assert drop_score("1990", ["", "  1990"]) == DropScore(1.0, 100.0)
    assert drop_score("anything", ["", " "]) == DropScore(0.0, 0.0)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("The passage says...\nAnswer: 12 yards\nThanks", "12 yards"),
        ("answer:   5", "5"),
        ("Step 1.\nFinal ANSWER : Chicago Bears", "Chicago Bears"),
        ("Chicago Bears", "Chicago Bears"),  # no "Answer:" line: the whole response
    ],
)
def test_drop_answer_extraction(response: str, expected: str) -> None:
    assert extract_drop_answer(response) == expected
