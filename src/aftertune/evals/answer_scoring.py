"""Answer extraction and scoring for generation benchmarks (GSM8K, BIG-Bench Hard, DROP): pure functions.

Each function follows a named reference so our numbers compare with published ones:
- GSM8K: lm-evaluation-harness `gsm8k` (v3.0) filters "strict-match" and "flexible-extract", and its
  exact_match with `ignore_case` and `regexes_to_ignore` [",", "\\$", "(?s).*#### ", "\\.$"].
- BBH: lm-evaluation-harness `bbh_cot_fewshot` (v4.0) "get-answer" filter and case-sensitive exact_match.
- DROP: openai/simple-evals `drop_eval.py`, itself the official DROP evaluation
  (allennlp-reading-comprehension `drop_eval.py`): normalised bag-of-words F1 over answer spans with a
  1-1 span alignment, the maximum over the gold answers.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from aftertune.data.benchmarks import is_number

# ---------------------------------------------------------------------- GSM8K
#: lm-eval gsm8k "strict-match": the number after "#### ", the format of GSM8K's own solutions
_GSM8K_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
#: lm-eval gsm8k "flexible-extract": the last number-like run in the answer ($, commas and points kept)
_GSM8K_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")


def normalize_number(text: str) -> str:
    """A GSM8K answer as lm-eval compares it: commas, "$" and one trailing period removed, lower case.

    `"$1,000."` -> `"1000"`; `"-3"` stays `"-3"`; `"18.0"` stays `"18.0"` (the reference compares strings).
    """
    text = text.strip().replace(",", "").replace("$", "")
    text = re.sub(r"(?s).*#### ", "", text)  # a full GSM8K solution compares by its final number
    return re.sub(r"\.$", "", text).lower()


def gsm8k_gold(answer: str) -> str | None:
    """The gold number of a GSM8K solution (the text after its last "####"), normalised; None without one."""
    if "####" not in answer:
        return None
    gold = normalize_number(answer.rsplit("####", 1)[1])
    return gold or None


def extract_gsm8k_strict(completion: str) -> str | None:
    """The first "#### N" number of a completion, as lm-eval's gsm8k strict-match; None when absent."""
    found = _GSM8K_STRICT.findall(completion)
    return found[0].strip() if found else None


def extract_gsm8k_flexible(completion: str) -> str | None:
    """The last number in a completion, as lm-eval's gsm8k flexible-extract (group_select -1), or None."""
    found = _GSM8K_FLEXIBLE.findall(completion)
    if not found:
        return None
    # findall gives one tuple of groups per match; the match is its non-empty group
    return next(g for g in found[-1] if g).strip()


def gsm8k_correct(extracted: str | None, gold: str) -> bool:
    """lm-eval's exact_match on normalised numbers; an answer with nothing extracted is wrong."""
    return extracted is not None and normalize_number(extracted) == normalize_number(gold)


# ---------------------------------------------------------------------- BIG-Bench Hard
#: lm-eval bbh_cot_fewshot's filter is `(?<=the answer is )(.*)(?=.)`: the rest of the line after the
#: first "the answer is", less its last character (the period of "So the answer is X."). We also accept
#: "The answer is", as lm-eval's bbh_cot_zeroshot strict-match does.
_BBH_ANSWER = re.compile(r"(?:the|The) answer is ([^\n]*)")


def extract_bbh_answer(completion: str) -> str | None:
    """The answer after the first "the answer is" (rest of the line, stripped, a final period dropped).

    Unlike the reference, only a period is dropped, so "So the answer is 6" (no period) still gives "6"
    where the reference's lookahead would cut it to "". None when the phrase is absent.
    """
    match = _BBH_ANSWER.search(completion)
    if match is None:
        return None
    answer = match.group(1).strip()
    return answer[:-1].rstrip() if answer.endswith(".") else answer


def bbh_correct(extracted: str | None, target: str) -> bool:
    """Exact match with the target, case-sensitive as lm-eval's bbh_cot_fewshot (targets keep the case of
    the task's CoT prompt: "True", "valid", "yes", "(B)")."""
    return extracted is not None and extracted.strip() == target.strip()


# ---------------------------------------------------------------------- DROP
#: simple-evals' ANSWER_PATTERN: the model is asked to end with a line "Answer: $ANSWER"
_DROP_ANSWER = re.compile(r"(?i)Answer\s*:\s*([^\n]+)")
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


@dataclass(frozen=True)
class DropScore:
    """DROP exact match (0 or 1) and F1 (0-100, as the official evaluation and simple-evals report it)."""

    exact_match: float
    f1: float


def extract_drop_answer(response: str) -> str:
    """The text after the first "Answer:" (to the end of its line), else the whole response (simple-evals)."""
    match = _DROP_ANSWER.search(response)
    return match.group(1) if match else response


def drop_normalize(text: str) -> str:
    """The official DROP normalisation: per token (split at spaces and hyphens) lower case, punctuation
    removed unless the token is a number, numbers as floats ("1,000" -> "1000.0"), articles removed,
    whitespace collapsed."""
    parts = []
    for token in re.split(" |-", text):
        token = token.lower()
        if not is_number(token):
            token = "".join(ch for ch in token if ch not in _PUNCTUATION)
        if is_number(token):
            token = str(float(token))
        token = " ".join(_ARTICLES.sub(" ", token).split())
        if token.strip():
            parts.append(token)
    return " ".join(parts).strip()


def _bags(answer: str | Sequence[str]) -> tuple[list[str], list[set[str]]]:
    spans = [answer] if isinstance(answer, str) else list(answer)
    normalized = [drop_normalize(s) for s in spans]
    return normalized, [set(s.split()) for s in normalized]


def _bag_f1(predicted: set[str], gold: set[str]) -> float:
    common = len(gold & predicted)
    precision = common / len(predicted) if predicted else 1.0
    recall = common / len(gold) if gold else 1.0
    if precision == 0.0 and recall == 0.0:
        return 0.0
    return 2 * precision * recall / (precision + recall) * 100


def _numbers_agree(gold: set[str], predicted: set[str]) -> bool:
    """A gold span with numbers only matches a predicted span that shares one of them (official eval)."""
    gold_numbers = {w for w in gold if is_number(w)}
    return not gold_numbers or bool(gold_numbers & {w for w in predicted if is_number(w)})


def drop_em_f1(predicted: str | Sequence[str], gold: str | Sequence[str]) -> DropScore:
    """Exact match and F1 of one predicted answer against one gold answer, each a span or a list of spans.

    Spans are aligned one to one (Hungarian assignment on span F1) and the F1 is the mean over the larger
    number of spans, rounded to 2 decimals, as the official DROP evaluation.
    """
    predicted_spans, predicted_bags = _bags(predicted)
    gold_spans, gold_bags = _bags(gold)
    exact = float(set(predicted_spans) == set(gold_spans) and len(predicted_spans) == len(gold_spans))
    scores = np.zeros((len(gold_bags), len(predicted_bags)))
    for g, gold_bag in enumerate(gold_bags):
        for p, predicted_bag in enumerate(predicted_bags):
            if _numbers_agree(gold_bag, predicted_bag):
                scores[g, p] = _bag_f1(predicted_bag, gold_bag)
    rows, columns = linear_sum_assignment(-scores)
    best = np.zeros(max(len(gold_bags), len(predicted_bags)))
    for row, column in zip(rows, columns, strict=True):
        best[row] = max(best[row], scores[row, column])
    return DropScore(exact, round(float(best.mean()), 2))


def drop_score(predicted: str | Sequence[str], golds: Sequence[str | Sequence[str]]) -> DropScore:
    """The best exact match and the best F1 over the gold answers (empty gold answers skipped, as
    simple-evals' drop_metric); both 0 when every gold answer is empty."""
    scores = [drop_em_f1(predicted, g) for g in golds if "".join([g] if isinstance(g, str) else g).strip()]
    if not scores:
        return DropScore(0.0, 0.0)
    return DropScore(max(s.exact_match for s in scores), max(s.f1 for s in scores))
