"""Capability probes generated from a seed: arithmetic, logic, dates, sorting, brackets, counting, sequences.

Every item is built by code and its answer computed by code, so there is no data file to download and
a fresh seed gives items that no public data set (and no pre-training corpus) holds: a score cannot be
inflated by contamination. The same (n, seed, difficulty) gives the same items, ids included; items
within one draw never repeat. Words to sort or count are made-up syllable strings for the same reason.

Items whose answer is one of a few options (True/False, Yes/No, a weekday) draw the options equally
often, so always giving one answer scores exactly chance (`ProbeItem.chance`).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from aftertune.errors import InputError

#: How an answer is written, which decides how it is read out of a model's reply:
#: "number" an integer, "date" a date (given as YYYY-MM-DD), "words" a comma-separated word list,
#: "choice" one of `choices` written out (True, Yes, Monday), "letter" the letter of one of the
#: lettered `choices` listed in the prompt (A, B, ...).
AnswerFormat = Literal["number", "date", "words", "choice", "letter"]
DIFFICULTIES = (1, 2, 3)
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
YES_NO = ("Yes", "No")
TRUE_FALSE = ("True", "False")
#: draws before giving up on finding one more distinct item (small difficulty-1 spaces run out)
_TRIES = 2000


@dataclass(frozen=True)
class ProbeItem:
    """One probe question with its known answer.

    `choices` are the options for "choice" and "letter" items (the answer is one of them; a "letter"
    item's prompt lists them as A), B), ...), None for free answers.
    """

    id: str
    prompt: str
    answer: str
    kind: str
    choices: tuple[str, ...] | None
    format: AnswerFormat

    def __post_init__(self) -> None:
        if self.format in ("choice", "letter"):
            if not self.choices or self.answer not in self.choices or len(set(self.choices)) < 2:
                raise ValueError(f"probe {self.id}: the answer must be one of 2+ distinct choices")
            if self.format == "letter" and len(self.choices) > len(LETTERS):
                raise ValueError(f"probe {self.id}: too many lettered choices")
        elif self.choices is not None:
            raise ValueError(f"probe {self.id}: a {self.format} answer takes no choices")

    @property
    def chance(self) -> float:
        """The accuracy of guessing uniformly: 1 / options, 0 for free answers."""
        return 1 / len(self.choices) if self.choices else 0.0


#: A probe generator: (n, seed, difficulty) -> n distinct items.
ProbeGenerator = Callable[[int, int, int], list[ProbeItem]]


# ---------------------------------------------------------------------- the shared draw
def _draw(
    kind: str,
    n: int,
    seed: int,
    difficulty: int,
    make: Callable[[random.Random, int], tuple[str, str]],
    fmt: AnswerFormat,
    choices: tuple[str, ...] | None = None,
) -> list[ProbeItem]:
    """`n` distinct items from `make(rng, difficulty) -> (prompt, answer)`; with choices, each answer
    equally often (`balanced_order`) so that a constant answer scores chance."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if difficulty not in DIFFICULTIES:
        raise InputError(f"Probe difficulty must be one of {DIFFICULTIES}, got {difficulty}.")
    # A string seed hashes with SHA-512 in random.Random, so draws are stable across Python versions.
    rng = random.Random(f"aftertune/probes/{kind}/{difficulty}/{seed}")
    targets = balanced_order(
        choices, n, random.Random(f"aftertune/probes/{kind}/{difficulty}/{seed}/answers")
    )
    items: list[ProbeItem] = []
    seen: set[str] = set()
    for i, target in enumerate(targets):
        for _ in range(_TRIES):
            prompt, answer = make(rng, difficulty)
            if prompt not in seen and target in (None, answer):
                break
        else:
            raise InputError(
                f"Could draw only {i} distinct '{kind}' probes at difficulty {difficulty}: "
                f"ask for at most {i}."
            )
        seen.add(prompt)
        items.append(ProbeItem(f"{kind}/s{seed}/d{difficulty}/{i:03d}", prompt, answer, kind, choices, fmt))
    return items


def balanced_order(options: Sequence[str] | None, n: int, rng: random.Random) -> list[str | None]:
    """`n` answers to aim for: every option once per block of len(options), each block shuffled, so any
    prefix is as balanced as it can be (a smaller draw is a prefix of a larger one). None: no aim."""
    if not options:
        return [None] * n
    out: list[str | None] = []
    while len(out) < n:
        block = list(options)
        rng.shuffle(block)
        out += block
    return out[:n]


def mixed_difficulty(generator: ProbeGenerator, n: int, seed: int = 0) -> list[ProbeItem]:
    """`n` items of one generator spread over difficulties 1-3 (the remainder goes to the easier ones).

    Mixing keeps a kind informative for small models (which fail everything hard) and large ones
    (which pass everything easy).
    """
    counts = [n // len(DIFFICULTIES) + (k < n % len(DIFFICULTIES)) for k in range(len(DIFFICULTIES))]
    return [item for d, count in zip(DIFFICULTIES, counts, strict=True) for item in generator(count, seed, d)]


# ---------------------------------------------------------------------- arithmetic
def arithmetic_items(n: int, seed: int = 0, difficulty: int = 2) -> list[ProbeItem]:
    """Integer expressions with + - * and parentheses, e.g. "((17 + 5) * 3) - 8" -> "58".

    Difficulty d has d operators (d + 1 numbers); a product always has a one-digit factor, so the
    steps stay mental arithmetic and the probe measures multi-step bookkeeping, not long multiplication.
    """
    return _draw("arithmetic", n, seed, difficulty, _arithmetic, "number")


def _arithmetic(rng: random.Random, difficulty: int) -> tuple[str, str]:
    top = (20, 50, 99)[difficulty - 1]
    value = rng.randint(2, top)
    text, nested = str(value), False
    for _ in range(difficulty):
        op = rng.choice("+-*")
        leaf = rng.randint(2, 9) if op == "*" else rng.randint(2, top)
        inner = f"({text})" if nested else text
        if rng.random() < 0.5:
            text, value = f"{inner} {op} {leaf}", _apply(op, value, leaf)
        else:
            text, value = f"{leaf} {op} {inner}", _apply(op, leaf, value)
        nested = True
    prompt = f"Work out {text}. Give the result as a single number."
    return prompt, str(value)


def _apply(op: str, a: int, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


# ---------------------------------------------------------------------- boolean logic
def boolean_items(n: int, seed: int = 0, difficulty: int = 2) -> list[ProbeItem]:
    """Boolean expressions with and/or/not, e.g. "not (True and False) or False" -> "True".

    Difficulty d has d + 1 binary operators; nested operations are parenthesised and `not` binds as
    in Python. True and False answers are equally common.
    """
    return _draw("boolean", n, seed, difficulty, _boolean, "choice", TRUE_FALSE)


def _boolean(rng: random.Random, difficulty: int) -> tuple[str, str]:
    text, value = _bool_tree(rng, difficulty + 1)
    prompt = f"Evaluate this boolean expression (Python's rules): {text}\nAnswer True or False."
    return prompt, str(value)


def _bool_tree(rng: random.Random, operators: int) -> tuple[str, bool]:
    """(text, value) of a random expression with `operators` binary operators."""
    if operators == 0:
        leaf = rng.random() < 0.5
        return (f"not {leaf}", not leaf) if rng.random() < 0.25 else (str(leaf), leaf)
    left_ops = rng.randint(0, operators - 1)
    left, lv = _bool_tree(rng, left_ops)
    right, rv = _bool_tree(rng, operators - 1 - left_ops)
    # a compound child is parenthesised, so and/or precedence never decides the value
    left, right = (f"({t})" if ops else t for t, ops in ((left, left_ops), (right, operators - 1 - left_ops)))
    op = rng.choice(("and", "or"))
    text, value = f"{left} {op} {right}", (lv and rv) if op == "and" else (lv or rv)
    if rng.random() < 0.25:
        return f"not ({text})", not value
    return text, value


# ---------------------------------------------------------------------- made-up words
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


def _word(rng: random.Random, prefix: str = "") -> str:
    """A pronounceable made-up word of 2-3 syllables (so it is in no corpus's sorted lists)."""
    syllables = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(rng.randint(2, 3)))
    return prefix + syllables + (rng.choice(_CONSONANTS) if rng.random() < 0.4 else "")


# ---------------------------------------------------------------------- sorting
def sorting_items(n: int, seed: int = 0, difficulty: int = 2) -> list[ProbeItem]:
    """Made-up words to put in alphabetical order -> "bako, dureg, limo, tusa".

    Difficulty 1: 4 words with different first letters; 2: 6 words; 3: 8 words, several sharing
    their first syllable, so the order is decided by later letters.
    """
    return _draw("sorting", n, seed, difficulty, _sorting, "words")


def _sorting(rng: random.Random, difficulty: int) -> tuple[str, str]:
    count = (4, 6, 8)[difficulty - 1]
    words: set[str] = set()
    while len(words) < count:
        if difficulty == 3 and words and rng.random() < 0.5:
            word = _word(rng, prefix=rng.choice(sorted(words))[:2])  # shares a first syllable
        else:
            word = _word(rng)
        if difficulty == 1 and any(w[0] == word[0] for w in words):
            continue
        words.add(word)
    shown = sorted(words)
    rng.shuffle(shown)
    prompt = (
        f"Put these words in alphabetical order: {', '.join(shown)}.\n"
        "Answer with the sorted words, separated by commas."
    )
    return prompt, ", ".join(sorted(words))


# ---------------------------------------------------------------------- dates
_FIRST_DAY = dt.date(1900, 1, 1).toordinal()
_LAST_DAY = dt.date(2099, 12, 31).toordinal()


def date_items(n: int, seed: int = 0, difficulty: int = 2) -> list[ProbeItem]:
    """Date arithmetic, e.g. "What date is 45 days after 2021-03-17?" -> "2021-05-01".

    Difficulty 1: 1-20 days later; 2: up to 120 days either way; 3: 100-1500 days either way, across
    year ends and leap days.
    """
    return _draw("date", n, seed, difficulty, _date, "date")


def _date(rng: random.Random, difficulty: int) -> tuple[str, str]:
    start = dt.date.fromordinal(rng.randint(_FIRST_DAY + 1500, _LAST_DAY - 1500))
    days = rng.randint(*((1, 20), (1, 120), (100, 1500))[difficulty - 1])
    after = difficulty == 1 or rng.random() < 0.5
    end = start + dt.timedelta(days=days if after else -days)
    prompt = (
        f"What date is {days} days {'after' if after else 'before'} {start.isoformat()}? "
        "Answer with the date as YYYY-MM-DD."
    )
    return prompt, end.isoformat()


def weekday_items(n: int, seed: int = 0, difficulty: int = 2) -> list[ProbeItem]:
    """Weekday questions -> "Wednesday"; each weekday is the answer equally often.

    Difficulty 1: a weekday 1-30 days after a named weekday; 2: 1-400 days before or after one;
    3: the weekday of a calendar date (1900-2099), which takes a calendar calculation.
    """
    return _draw("weekday", n, seed, difficulty, _weekday, "choice", WEEKDAYS)


def _weekday(rng: random.Random, difficulty: int) -> tuple[str, str]:
    if difficulty == 3:
        day = dt.date.fromordinal(rng.randint(_FIRST_DAY, _LAST_DAY))
        question = f"What day of the week was {day.isoformat()}?"
        answer = WEEKDAYS[day.weekday()]
    else:
        start = rng.randrange(7)
        days = rng.randint(1, 30) if difficulty == 1 else rng.randint(1, 400)
        after = difficulty == 1 or rng.random() < 0.5
        when = f"will it be in {days} days" if after else f"was it {days} days ago"
        question = f"Today is {WEEKDAYS[start]}. What day of the week {when}?"
        answer = WEEKDAYS[(start + (days if after else -days)) % 7]
    return f"{question} Answer with the name of the day.", answer


# ---------------------------------------------------------------------- brackets
_PAIRS = {")": "(", "]": "[", "}": "{"}


def is_balanced(text: str) -> bool:
    """Whether every bracket in `text` is closed by its partner in the right order (a stack check)."""
    stack: list[str] = []
    for char in text:
        if char in "([{":
            stack.append(char)
        elif char in _PAIRS and (not stack or stack.pop() != _PAIRS[char]):
            return False
    return not stack


def bracket_items(n: int, seed: int = 0, difficulty: int = 2) -> list[ProbeItem]:
    """Is "([]{()})" balanced? -> "Yes"/"No", each half the time.

    Difficulty 1: 4-6 brackets of two kinds; 2: 8-10 of three kinds; 3: 14-20 of three kinds.
    Unbalanced strings are balanced ones with one bracket changed or two neighbours swapped, so their
    length is always even and never gives the answer away.
    """
    return _draw("brackets", n, seed, difficulty, _brackets, "choice", YES_NO)


def _brackets(rng: random.Random, difficulty: int) -> tuple[str, str]:
    low, high = ((2, 3), (4, 5), (7, 10))[difficulty - 1]
    kinds = "([" if difficulty == 1 else "([{"
    closing = {v: k for k, v in _PAIRS.items()}
    chars: list[str] = []
    stack: list[str] = []
    to_open = rng.randint(low, high)
    while to_open or stack:
        if to_open and (not stack or rng.random() < 0.5):
            stack.append(rng.choice(kinds))
            chars.append(stack[-1])
            to_open -= 1
        else:
            chars.append(closing[stack.pop()])
    if rng.random() < 0.5:
        i = rng.randrange(len(chars))
        if rng.random() < 0.5 and i + 1 < len(chars):
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        else:
            same_side = kinds if chars[i] in "([{" else "".join(closing[k] for k in kinds)
            chars[i] = rng.choice([c for c in same_side if c != chars[i]])
    text = "".join(chars)
    prompt = (
        f"Is this bracket sequence balanced, with every opening bracket closed by the matching bracket "
        f"in the right order?\n{text}\nAnswer Yes or No."
    )
    return prompt, "Yes" if is_balanced(text) else "No"


# ---------------------------------------------------------------------- counting
def counting_items(n: int, seed: int = 0, difficulty: int = 2) -> list[ProbeItem]:
    """Counting: a letter in a made-up word (difficulty 1), in a three-word phrase (2), or how often a
    word occurs in a list of 10-15 words (3) -> "3"."""
    return _draw("counting", n, seed, difficulty, _counting, "number")


def _counting(rng: random.Random, difficulty: int) -> tuple[str, str]:
    if difficulty == 3:
        pool = [_word(rng) for _ in range(rng.randint(3, 4))]
        listed = [rng.choice(pool) for _ in range(rng.randint(10, 15))]
        word = rng.choice(pool)
        prompt = f'How many times does the word "{word}" appear in this list?\n{", ".join(listed)}'
        return f"{prompt}\nAnswer with a number.", str(listed.count(word))
    text = " ".join(_word(rng) for _ in range(1 if difficulty == 1 else 3))
    letter = rng.choice(text.replace(" ", ""))
    prompt = f'How many times does the letter "{letter}" occur in "{text}"? Answer with a number.'
    return prompt, str(text.count(letter))


# ---------------------------------------------------------------------- number sequences
def sequence_items(n: int, seed: int = 0, difficulty: int = 2) -> list[ProbeItem]:
    """The next number of a sequence: constant steps (difficulty 1), steps that grow by a constant (2),
    or each number the sum of the two before it (3). Sequences that fit two of these rules with
    different next numbers are never drawn, so every answer is unambiguous."""
    return _draw("sequence", n, seed, difficulty, _sequence, "number")


def _sequence(rng: random.Random, difficulty: int) -> tuple[str, str]:
    while True:
        if difficulty == 1:
            start, step = rng.randint(-20, 50), rng.choice([s for s in range(-12, 16) if s])
            terms = [start + step * k for k in range(6)]
        elif difficulty == 2:
            first, step, growth = rng.randint(-10, 30), rng.randint(-5, 10), rng.choice([-3, -2, 2, 3, 4, 5])
            terms = [first + step * k + growth * k * (k - 1) // 2 for k in range(6)]
        else:
            terms = [rng.randint(1, 12), rng.randint(1, 12)]
            while len(terms) < 7:
                terms.append(terms[-1] + terms[-2])
        shown, answer = terms[:-1], terms[-1]
        if sequence_rule_answers(shown) == {answer}:
            break
    prompt = (
        f"What number comes next in this sequence? {', '.join(map(str, shown))}, ...\nAnswer with a number."
    )
    return prompt, str(answer)


def sequence_rule_answers(terms: list[int]) -> set[int]:
    """The next numbers that the rules of `sequence_items` (constant step, constant second step,
    sum of the previous two) predict for `terms`, over the rules that fit all of them."""
    answers = set()
    steps = [b - a for a, b in zip(terms, terms[1:], strict=False)]
    if len(set(steps)) == 1:
        answers.add(terms[-1] + steps[0])
    second = [b - a for a, b in zip(steps, steps[1:], strict=False)]
    if len(set(second)) == 1:
        answers.add(terms[-1] + steps[-1] + second[0])
    if all(terms[k] == terms[k - 1] + terms[k - 2] for k in range(2, len(terms))):
        answers.add(terms[-1] + terms[-2])
    return answers


#: Every generator of general capability probes, in report order.
CAPABILITY_GENERATORS: tuple[ProbeGenerator, ...] = (
    arithmetic_items,
    boolean_items,
    sorting_items,
    date_items,
    weekday_items,
    bracket_items,
    counting_items,
    sequence_items,
)
