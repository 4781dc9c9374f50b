"""Probe evals: generated questions with known answers, scored by greedy generation or by log-likelihood.

Data: `ProbeItem`s (`aftertune.data.probes`, `aftertune.data.cyber_probes`), made from a seed, so the
default suite runs offline and no score is inflated by contamination. Sampling and scoring, by `mode`:

- "generate": one greedy short answer per item (through the store, so nothing is generated twice);
  the answer is read out by the item's format (`extract_answer`) and compared with the known one.
  A reply with no readable answer counts as wrong (`answered` says how many had one).
- "loglikelihood": for items with options (True/False, Yes/No, weekdays, lettered choices), the
  option the model finds most likely as its reply; this works for base models too. Items without
  options cannot be scored this way.

Metrics: `accuracy` and `accuracy/<kind>` (Wilson intervals; items are the probe ids, 1 right, 0
wrong), `chance` and `chance/<kind>` for kinds with options: the accuracy of guessing uniformly
(Yes/No and True/False 50%, weekdays 1/7 = 14%, 4 lettered options 25%, free answers 0%). The
generators give every option equally often, so a model that always says one thing scores chance too.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Literal

from aftertune.cached import generate_cached, loglikelihood_cached
from aftertune.data.cyber_probes import cyber_exploitable_items, cyber_weakness_items
from aftertune.data.probes import CAPABILITY_GENERATORS, LETTERS, ProbeItem, mixed_difficulty
from aftertune.errors import InputError
from aftertune.evals.suite import EvalReport, Example, ItemScore, MetricResult
from aftertune.models.protocol import (
    GenerationRequest,
    LoglikelihoodRequest,
    Model,
    SamplingParams,
    chat,
)
from aftertune.progress import ProgressCallback
from aftertune.stats import Estimate, wilson_rate
from aftertune.store import EvalSample, ResultsStore

ScoringMode = Literal["generate", "loglikelihood"]
SCORING_MODES: tuple[ScoringMode, ...] = ("generate", "loglikelihood")
#: bumped whenever extract_answer changes what counts as an answer (it is part of the digest)
_EXTRACTOR_VERSION = "1"
#: wrong answers shown per metric
_EXAMPLES = 5


# ---------------------------------------------------------------------- reading answers out of replies
# "The answer is X", "Answer: X", "Final answer = X": the answer follows the last such phrase.
_MARKER = re.compile(r"\b(?:final answer|answer|result)\s*(?:is|would be|will be|:|=)", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d])")
_NUMBER_WORDS = (
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
    *("eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"),
    "twenty",
)
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)
_MONTHS = (
    *("january", "february", "march", "april", "may", "june"),
    *("july", "august", "september", "october", "november", "december"),
)
_MONTH = "(" + "|".join(_MONTHS) + ")"
_ISO_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{1,2})-(\d{1,2})(?!\d)")
_MONTH_FIRST = re.compile(_MONTH + r"\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})", re.IGNORECASE)
_DAY_FIRST = re.compile(r"(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH + r",?\s+(\d{4})", re.IGNORECASE)
#: between two words of a written list: separators, list numbers, bullets, quotes, markdown
_LIST_GAP = re.compile(r"[\s,;.:\-*\d()\"'`>]*")

_Found = tuple[int, int, str]  # (start, end, normalised answer)


def extract_answer(item: ProbeItem, reply: str) -> str | None:
    """The answer in `reply`, written as `item.answer` would be, or None when it has none.

    Strict but fair: the answer after the last "the answer is"/"Answer:" if there is one; for options,
    an option the reply opens with ("No, because ..."); else the last candidate in the reply (the
    last number, date or option named), so working shown before the answer does no harm.
    """
    reply = reply.replace("\u2212", "-").replace("\u2013", "-")  # typographic minus and dash
    if item.format == "number":
        return _pick(reply, _numbers(reply), opening=False)
    if item.format == "date":
        # the question's own date, restated in the reply, is never the answer (offsets are >= 1 day)
        asked = {found for _, _, found in _dates(item.prompt)}
        return _pick(reply, [d for d in _dates(reply) if d[2] not in asked], opening=False)
    if item.format == "words":
        return _word_list(item, reply)
    assert item.choices is not None  # "choice" and "letter" items have options (checked by ProbeItem)
    if item.format == "letter":
        return _letter(item.choices, reply)
    found = sorted(_mentions(item.choices, reply))
    # a reply that restates a boolean expression ("True and False is False") opens with an operand
    restates = bool(found) and re.match(r"\s+(?:and|or)\b", reply[found[0][1] :], re.IGNORECASE) is not None
    return _pick(reply, found, opening=not restates)


def _pick(reply: str, found: list[_Found], opening: bool) -> str | None:
    if not found:
        return None
    found = sorted(found)
    for marker in reversed(list(_MARKER.finditer(reply))):
        after = [f for f in found if f[0] >= marker.end()]
        if after:
            return after[0][2]
    first = found[0]
    if opening and not re.search(r"[A-Za-z0-9]", reply[: first[0]]):
        return first[2]
    return found[-1][2]


def _numbers(reply: str) -> list[_Found]:
    found = []
    for m in _NUMBER.finditer(reply):
        value = float(m.group().replace(",", ""))
        found.append((m.start(), m.end(), str(int(value)) if value.is_integer() else str(value)))
    found += [
        (m.start(), m.end(), str(_NUMBER_WORDS.index(m.group().lower())))
        for m in _NUMBER_WORD.finditer(reply)
    ]
    return found


def _dates(text: str) -> list[_Found]:
    found = []
    for pattern, order in ((_ISO_DATE, "ymd"), (_MONTH_FIRST, "mdy"), (_DAY_FIRST, "dmy")):
        for m in pattern.finditer(text):
            parts = dict(zip(order, m.groups(), strict=True))
            month = int(parts["m"]) if parts["m"].isdigit() else _MONTHS.index(parts["m"].lower()) + 1
            try:
                found.append((m.start(), m.end(), date(int(parts["y"]), month, int(parts["d"])).isoformat()))
            except ValueError:
                continue  # not a real date (2021-02-30)
    return found


def _mentions(options: Sequence[str], reply: str) -> list[_Found]:
    pattern = re.compile(r"\b(" + "|".join(re.escape(o) for o in options) + r")\b", re.IGNORECASE)
    lowered = {o.lower(): o for o in options}
    return [(m.start(), m.end(), lowered[m.group().lower()]) for m in pattern.finditer(reply)]


def _letter(choices: Sequence[str], reply: str) -> str | None:
    """A lettered option: "B", "(B)", "B)", "B.", "**B**", "option B"; else the one option whose text
    or CWE id the reply names. An article ("A SQL injection") is not read as option A."""
    letters = LETTERS[: len(choices)]
    pattern = re.compile(
        rf"\(([{letters}])\)|\b(?:option|choice)\s+([{letters}])\b|\b([{letters}])\b(?=\s*(?:[).:,*]|$))",
        re.MULTILINE,
    )
    found = [
        (m.start(), m.end(), choices[letters.index(next(g for g in m.groups() if g))])
        for m in pattern.finditer(reply)
    ]
    picked = _pick(reply, found, opening=True)
    if picked is not None:
        return picked
    named = {
        c
        for c in choices
        if c.lower() in reply.lower() or re.search(rf"\b{re.escape(c.split(':')[0])}\b", reply)
    }
    return named.pop() if len(named) == 1 else None


def _word_list(item: ProbeItem, reply: str) -> str | None:
    """The last complete run of the words to sort (they are in the prompt), as "a, b, c"."""
    vocabulary = set(item.answer.split(", "))
    runs: list[list[str]] = []
    last_end = None
    for m in re.finditer(r"[A-Za-z]+", reply):
        word = m.group().lower()
        if word not in vocabulary:
            last_end = None
            continue
        if last_end is not None and _LIST_GAP.fullmatch(reply[last_end : m.start()]):
            runs[-1].append(word)
        else:
            runs.append([word])
        last_end = m.end()
    if not runs:
        return None
    complete = [r for r in runs if len(r) == len(vocabulary)]
    best: list[str] = complete[-1] if complete else max(runs, key=len)
    return ", ".join(best)


# ---------------------------------------------------------------------- the eval
@dataclass(frozen=True)
class ProbeEval:
    """Probe items scored by greedy generation or by the log-likelihood of their options (`mode`)."""

    items: tuple[ProbeItem, ...]
    mode: ScoringMode = "generate"
    #: tokens of a generated answer; the prompts ask for the answer alone
    max_new_tokens: int = 48
    name: str = "probes"

    def __post_init__(self) -> None:
        if not self.items:
            raise InputError(f"Eval '{self.name}' has no probe items: give at least one.")
        ids = [it.id for it in self.items]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise InputError(
                f"Eval '{self.name}': probe ids {', '.join(repeated[:5])} are used more than once."
            )
        if self.mode not in SCORING_MODES:
            raise InputError(
                f"Eval '{self.name}': mode '{self.mode}' is not one of {', '.join(SCORING_MODES)}."
            )
        free = sorted({it.kind for it in self.items if not it.choices})
        if self.mode == "loglikelihood" and free:
            raise InputError(
                f"Eval '{self.name}': {', '.join(free)} probes have free answers, which log-likelihood "
                "scoring cannot compare: drop them or use mode 'generate'."
            )

    @property
    def params(self) -> SamplingParams:
        """Greedy decoding of a short answer."""
        return SamplingParams(temperature=0.0, max_new_tokens=self.max_new_tokens)

    @property
    def digest(self) -> str:
        body = json.dumps(
            {
                "items": [asdict(it) for it in self.items],
                "mode": self.mode,
                "max_new_tokens": self.max_new_tokens,
                "name": self.name,
                "extractor": _EXTRACTOR_VERSION,
            },
            sort_keys=True,
        )
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def run(self, model: Model, store: ResultsStore, progress: ProgressCallback | None = None) -> EvalReport:
        """Answer every probe and report accuracy overall and per kind, with chance levels."""
        if self.mode == "generate":
            replies = self._generate(model, store, progress)
            answers = [extract_answer(it, r) for it, r in zip(self.items, replies, strict=True)]
        else:
            replies, answers = self._loglikelihood(model, store, progress)
        return probe_report(
            self.items, replies, answers, self.mode, self.name, self.digest, model.fingerprint
        )

    def _generate(self, model: Model, store: ResultsStore, progress: ProgressCallback | None) -> list[str]:
        generation = json.dumps(
            {"items": [[it.id, it.prompt] for it in self.items], "params": asdict(self.params)},
            sort_keys=True,
        )
        sample_eval = f"{self.name}/{hashlib.sha256(generation.encode()).hexdigest()[:12]}"
        requests = [GenerationRequest(chat(it.prompt), self.params) for it in self.items]
        where = [EvalSample(sample_eval, it.id, 0, it.prompt) for it in self.items]
        completions = generate_cached(store, model, requests, where, progress=progress)
        return [per_item[0].text for per_item in completions]

    def _loglikelihood(
        self, model: Model, store: ResultsStore, progress: ProgressCallback | None
    ) -> tuple[list[str], list[str | None]]:
        """Each item's likeliest option; the "reply" shown for it lists every option's log-likelihood.

        The full log-probability of each option's text is compared (not per token or byte): each option
        is a whole reply, and the probability of the whole reply is what a greedy model acts on.
        """
        requests = [
            LoglikelihoodRequest(chat(it.prompt), option) for it in self.items for option in _options(it)
        ]
        logprobs = iter(loglikelihood_cached(store, model, requests, progress=progress))
        replies: list[str] = []
        answers: list[str | None] = []
        for it in self.items:
            assert it.choices is not None  # checked in __post_init__
            scored = [
                (next(logprobs), option, choice)
                for option, choice in zip(_options(it), it.choices, strict=True)
            ]
            best = max(scored, key=lambda s: s[0])  # the first of equals wins
            answers.append(best[2])
            replies.append("log-likelihoods: " + ", ".join(f"{o} {lp:.2f}" for lp, o, _ in scored))
        return replies, answers


def _options(item: ProbeItem) -> list[str]:
    """What the model would reply for each option: its letter for lettered options, else its text."""
    assert item.choices is not None
    return list(LETTERS[: len(item.choices)]) if item.format == "letter" else list(item.choices)


def probe_report(
    items: Sequence[ProbeItem],
    replies: Sequence[str],
    answers: Sequence[str | None],
    mode: ScoringMode,
    name: str,
    digest: str,
    model: str,
) -> EvalReport:
    """`accuracy`, `accuracy/<kind>`, `chance`, `chance/<kind>` (kinds with options) and, for generated
    replies, `answered` (the share with a readable answer)."""
    outcomes = list(zip(items, replies, answers, strict=True))
    kinds = list(dict.fromkeys(it.kind for it in items))
    metrics = [_accuracy("accuracy", outcomes)]
    if mode == "generate":
        answered = wilson_rate(sum(a is not None for a in answers), len(items))
        assert answered is not None
        scores = tuple(ItemScore(it.id, float(a is not None)) for it, a in zip(items, answers, strict=True))
        metrics.append(MetricResult("answered", answered, "rate", None, scores))
    metrics.append(_chance("chance", items))
    for kind in kinds:
        metrics.append(_accuracy(f"accuracy/{kind}", [o for o in outcomes if o[0].kind == kind]))
    for kind in kinds:
        of_kind = [it for it in items if it.kind == kind]
        if of_kind[0].choices:
            metrics.append(_chance(f"chance/{kind}", of_kind))
    return EvalReport(name, digest, model, tuple(metrics))


def _accuracy(name: str, outcomes: Sequence[tuple[ProbeItem, str, str | None]]) -> MetricResult:
    right = [answer == it.answer for it, _, answer in outcomes]
    estimate = wilson_rate(sum(right), len(right))
    assert estimate is not None  # every kind has items
    scores = tuple(ItemScore(it.id, float(ok)) for (it, _, _), ok in zip(outcomes, right, strict=True))
    wrong = [(it, reply, answer) for (it, reply, answer), ok in zip(outcomes, right, strict=True) if not ok]
    # one wrong answer of each kind before a second of any, so the evidence shows different tasks
    by_kind: dict[str, list[tuple[ProbeItem, str, str | None]]] = {}
    for outcome in wrong:
        by_kind.setdefault(outcome[0].kind, []).append(outcome)
    ranked = sorted(
        ((rank, outcome) for group in by_kind.values() for rank, outcome in enumerate(group)),
        key=lambda pair: pair[0],
    )
    examples = tuple(
        Example(
            it.id,
            it.prompt,
            reply,
            0.0,
            f"expected {it.answer}; read {answer if answer is not None else 'no answer'}; "
            f"chance {it.chance:.0%}",
        )
        for _, (it, reply, answer) in ranked[:_EXAMPLES]
    )
    return MetricResult(name, estimate, "rate", True, scores, examples)


def _chance(name: str, items: Sequence[ProbeItem]) -> MetricResult:
    value = sum(it.chance for it in items) / len(items)
    # exact, not estimated: the accuracy of uniform guessing over the options shown
    estimate = Estimate(value, value, value, len(items), "exact (1 / options; 0 for free answers)")
    return MetricResult(name, estimate, "rate", None, tuple(ItemScore(it.id, it.chance) for it in items))


# ---------------------------------------------------------------------- built-in probe sets
def builtin_capability_probes(
    n_per_kind: int = 20, seed: int = 0, mode: ScoringMode = "generate", max_new_tokens: int = 48
) -> ProbeEval:
    """General capability probes: every kind of `aftertune.data.probes`, `n_per_kind` items each over
    difficulties 1-3. In "loglikelihood" mode only the kinds with options (boolean, weekday,
    brackets). Named "capability_probes" ("capability_probes_loglikelihood" in that mode)."""
    items = [it for g in CAPABILITY_GENERATORS for it in mixed_difficulty(g, n_per_kind, seed)]
    if mode == "loglikelihood":
        items = [it for it in items if it.choices]
    return ProbeEval(tuple(items), mode, max_new_tokens, _name("capability_probes", mode))


def builtin_cyber_probes(
    n: int = 40, seed: int = 0, mode: ScoringMode = "generate", max_new_tokens: int = 48
) -> ProbeEval:
    """Cyber-knowledge probes (`aftertune.data.cyber_probes`): `n` "exploitable?" items and `n`
    "which weakness?" items. Named "cyber_probes" ("cyber_probes_loglikelihood" in that mode)."""
    items = cyber_exploitable_items(n, seed) + cyber_weakness_items(n, seed)
    return ProbeEval(tuple(items), mode, max_new_tokens, _name("cyber_probes", mode))


def _name(base: str, mode: ScoringMode) -> str:
    # distinct names let one suite hold both modes (names are unique within a suite)
    return base if mode == "generate" else f"{base}_loglikelihood"
