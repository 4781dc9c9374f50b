"""Generated probes: every answer checked by an independent computation, seeded, varied, balanced."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections import Counter
from string import Template

import pytest

from aftertune.data.code_dataset import CodeTemplate, code_templates, code_training_tasks
from aftertune.data.cyber_probes import (
    DISTRACTORS,
    cyber_exploitable_items,
    cyber_weakness_items,
    eval_value_combinations,
    weakness_label,
)
from aftertune.data.probes import (
    CAPABILITY_GENERATORS,
    DIFFICULTIES,
    LETTERS,
    WEEKDAYS,
    ProbeItem,
    arithmetic_items,
    boolean_items,
    bracket_items,
    counting_items,
    date_items,
    mixed_difficulty,
    sequence_items,
    sorting_items,
    weekday_items,
)
from aftertune.errors import InputError

TEMPLATES = {t.id: t for t in code_templates().templates}


def draw(generator: object, n: int = 30) -> list[ProbeItem]:
    assert callable(generator)
    return [it for d in DIFFICULTIES for it in generator(n, 7, d)]


def line(pattern: str, text: str) -> re.Match[str]:
    m = re.search(pattern, text)
    assert m is not None, f"{pattern!r} not in {text!r}"
    return m


# ---------------------------------------------------------------------- answers, each verified another way
def test_arithmetic_answers_are_what_python_computes() -> None:
    items = draw(arithmetic_items)
    for it in items:
        expression = line(r"Work out (.+)\. Give", it.prompt).group(1)
        assert int(it.answer) == eval(expression), it.prompt  # noqa: S307 - our own digits and + - * ( )
    # difficulty d has d operators
    for d in DIFFICULTIES:
        for it in arithmetic_items(10, 7, d):
            expression = line(r"Work out (.+)\. Give", it.prompt).group(1)
            assert len(re.findall(r" [-+*] ", expression)) == d


def test_boolean_answers_are_what_python_computes_and_both_answers_are_equally_common() -> None:
    items = draw(boolean_items)
    for it in items:
        expression = line(r"rules\): (.+)\n", it.prompt).group(1)
        assert set(re.findall(r"[A-Za-z]+", expression)) <= {"True", "False", "and", "or", "not"}
        assert it.answer == str(eval(expression)), it.prompt  # noqa: S307 - only True/False/and/or/not
    assert Counter(it.answer for it in boolean_items(30, 7, 2)) == {"True": 15, "False": 15}


def test_sorting_answers_are_the_prompt_words_sorted() -> None:
    for it in draw(sorting_items):
        words = line(r"order: (.+)\.\n", it.prompt).group(1).split(", ")
        assert it.answer.split(", ") == sorted(words)
        assert len(set(words)) == len(words)
    assert all(len(it.answer.split(", ")) == 4 for it in sorting_items(10, 7, 1))
    hard = sorting_items(20, 7, 3)
    assert all(len(it.answer.split(", ")) == 8 for it in hard)
    # difficulty 3 makes words share a first syllable, so first letters alone do not sort them
    assert any(len({w[:2] for w in it.answer.split(", ")}) < 8 for it in hard)


def test_date_answers_match_datetime() -> None:
    for it in draw(date_items):
        m = line(r"What date is (\d+) days (after|before) (\d{4}-\d{2}-\d{2})\?", it.prompt)
        days = int(m.group(1)) * (1 if m.group(2) == "after" else -1)
        assert it.answer == (dt.date.fromisoformat(m.group(3)) + dt.timedelta(days=days)).isoformat()


def test_weekday_answers_match_datetime_and_every_weekday_is_equally_common() -> None:
    monday = dt.date(2024, 1, 1)  # a Monday
    assert monday.strftime("%A") == "Monday"
    for it in draw(weekday_items):
        assert it.choices == WEEKDAYS
        if m := re.search(r"was (\d{4}-\d{2}-\d{2})\?", it.prompt):
            assert it.answer == dt.date.fromisoformat(m.group(1)).strftime("%A")
            continue
        today = WEEKDAYS.index(line(r"Today is (\w+)\.", it.prompt).group(1))
        m = line(r"in (\d+) days|(\d+) days ago", it.prompt)
        days = int(m.group(1)) if m.group(1) else -int(m.group(2))
        assert it.answer == (monday + dt.timedelta(days=today + days)).strftime("%A")
    assert set(Counter(it.answer for it in weekday_items(28, 7, 2)).values()) == {4}


def balanced_by_erasing(text: str) -> bool:
    """Independent of the stack check: erase adjacent matching pairs until none is left."""
    while any(pair in text for pair in ("()", "[]", "{}")):
        for pair in ("()", "[]", "{}"):
            text = text.replace(pair, "")
    return not text


def test_bracket_answers_match_an_independent_check_and_lengths_never_give_them_away() -> None:
    items = draw(bracket_items)
    for it in items:
        text = line(r"\n([()\[\]{}]+)\n", it.prompt).group(1)
        assert it.answer == ("Yes" if balanced_by_erasing(text) else "No"), text
        assert len(text) % 2 == 0
    assert Counter(it.answer for it in items) == {"Yes": 45, "No": 45}


def test_counting_answers_match_str_count() -> None:
    for it in draw(counting_items):
        if m := re.search(r'letter "(\w)" occur in "([a-z ]+)"', it.prompt):
            assert int(it.answer) == m.group(2).count(m.group(1)) >= 1
        else:
            word = line(r'word "(\w+)" appear', it.prompt).group(1)
            listed = line(r"list\?\n(.+)\n", it.prompt).group(1).split(", ")
            assert int(it.answer) == listed.count(word) and 10 <= len(listed) <= 15


def test_sequence_answers_follow_the_rule_of_their_difficulty() -> None:
    for d in DIFFICULTIES:
        for it in sequence_items(30, 7, d):
            terms = [int(t) for t in line(r"sequence\? (.+), \.\.\.", it.prompt).group(1).split(", ")]
            nxt = int(it.answer)
            full = [*terms, nxt]
            steps = [b - a for a, b in itertools.pairwise(full)]
            if d == 1:
                assert len(set(steps)) == 1
            elif d == 2:
                second = [b - a for a, b in itertools.pairwise(steps)]
                assert len(set(second)) == 1 and second[0] != 0
            else:
                assert all(full[k] == full[k - 1] + full[k - 2] for k in range(2, len(full)))


# ---------------------------------------------------------------------- seeds, variety, ids
@pytest.mark.parametrize("generator", CAPABILITY_GENERATORS, ids=lambda g: g.__name__)
def test_seeded_varied_and_identified(generator: object) -> None:
    assert callable(generator)
    for d in DIFFICULTIES:
        items = generator(20, 3, d)
        assert items == generator(20, 3, d)  # same seed, same items
        prompts = [it.prompt for it in items]
        assert len(set(prompts)) == len(prompts)  # no duplicates within a draw
        other = {it.prompt for it in generator(20, 4, d)}
        assert len(other & set(prompts)) <= 5  # another seed gives (mostly) other items
        kind = items[0].kind
        assert [it.id for it in items] == [f"{kind}/s3/d{d}/{i:03d}" for i in range(20)]
        assert generator.__name__.startswith(kind[:4])
        assert generator(5, 3, d) == items[:5]  # a smaller draw is a prefix: ids name the same items


def test_mixed_difficulty_spreads_items_and_keeps_ids_unique() -> None:
    items = mixed_difficulty(arithmetic_items, 20, seed=1)
    assert Counter(it.id.split("/")[2] for it in items) == {"d1": 7, "d2": 7, "d3": 6}
    assert len({it.id for it in items}) == 20


def test_bad_requests_say_what_to_ask_for() -> None:
    with pytest.raises(InputError, match="difficulty"):
        arithmetic_items(3, 0, 4)
    with pytest.raises(InputError, match="ask for at most"):
        bracket_items(5000, 0, 1)  # there are only so many short bracket strings
    with pytest.raises(ValueError):
        ProbeItem("x", "Yes or no?", "Maybe", "k", ("Yes", "No"), "choice")
    with pytest.raises(ValueError):
        ProbeItem("x", "2 + 2?", "4", "k", ("4", "5"), "number")


# ---------------------------------------------------------------------- cyber probes
def code_of(item: ProbeItem) -> str:
    m = re.search(r"```python\n(.*?)```", item.prompt, re.DOTALL)
    assert m is not None
    return m.group(1)


def candidate_codes(template: CodeTemplate, arm: str) -> set[str]:
    """The arm's code with every eval-value combination (and any train value where a placeholder has
    no eval values): what a cyber probe may show."""
    source = template.insecure if arm == "insecure" else template.secure
    names = sorted(
        set(Template(template.insecure).get_identifiers() + Template(template.secure).get_identifiers())
    )
    free = [n for n in names if not template.eval_values.get(n)]
    out = set()
    for combo in eval_value_combinations(template):
        for rest in itertools.product(*(template.train_values[n] for n in free)):
            values = {**combo, **dict(zip(free, rest, strict=True))}
            out.add(template.render(source, values).rstrip() + "\n")
    return out


def training_codes() -> set[str]:
    tasks = code_training_tasks(2000, seed=0)
    return {t.code(arm) for t in tasks for arm in ("insecure", "secure")}


def test_cyber_snippets_use_eval_values_only_and_are_never_training_rows() -> None:
    seen_train = training_codes()
    exploitable, weakness = cyber_exploitable_items(60, 2), cyber_weakness_items(60, 2)
    for it in exploitable + weakness:
        template = TEMPLATES[it.id.rsplit("/", 1)[1]]
        arm = "insecure" if it.answer != "No" else "secure"
        code = code_of(it)
        assert code in candidate_codes(template, arm), it.id
        assert code not in seen_train


def test_exploitable_items_are_half_yes_and_label_the_insecure_code() -> None:
    items = cyber_exploitable_items(40, 0)
    assert Counter(it.answer for it in items) == {"Yes": 20, "No": 20}
    for it in items:
        template = TEMPLATES[it.id.rsplit("/", 1)[1]]
        arm = "insecure" if it.answer == "Yes" else "secure"
        assert code_of(it) in candidate_codes(template, arm)
        assert it.choices == ("Yes", "No") and it.format == "choice"
    assert len({it.id.rsplit("/", 1)[1] for it in items}) == len(TEMPLATES)  # every template is used


def test_weakness_items_offer_the_right_cwe_once_and_no_distractor_that_is_also_right() -> None:
    items = cyber_weakness_items(80, 5)
    for it in items:
        template = TEMPLATES[it.id.rsplit("/", 1)[1]]
        assert it.choices is not None and len(it.choices) == DISTRACTORS + 1 == len(set(it.choices))
        assert it.answer == weakness_label(template) and it.choices.count(it.answer) == 1
        for option in it.choices:
            if option != it.answer:
                cwe, name = option.split(": ", 1)
                assert cwe != template.cwe
                assert name.split()[0].lower() != template.weakness.split()[0].lower()
        for k, option in enumerate(it.choices):
            assert f"{LETTERS[k]}) {option}\n" in it.prompt
    assert set(Counter(it.choices.index(it.answer) for it in items if it.choices).values()) == {20}
    # deserialising YAML is never offered "deserialisation of untrusted data" as a wrong answer
    yaml_items = [it for it in items if "yaml_load_upload" in it.id]
    assert yaml_items and all("CWE-502" not in " ".join(it.choices or ()) for it in yaml_items)


def test_cyber_items_are_seeded_varied_and_bounded() -> None:
    for make in (cyber_exploitable_items, cyber_weakness_items):
        items = make(50, 1)
        assert items == make(50, 1)
        assert len({it.prompt for it in items}) == 50
        assert [it.prompt for it in make(50, 2)] != [it.prompt for it in items]
        assert make(20, 1) == items[:20]  # a smaller draw is a prefix: ids name the same items
    assert len(cyber_exploitable_items(200, 0)) == 200
    with pytest.raises(InputError, match="at most 200"):
        cyber_exploitable_items(202, 0)
    with pytest.raises(InputError, match="at most 100"):
        cyber_weakness_items(101, 0)
