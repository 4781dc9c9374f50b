"""What the data as a whole teaches: a statistical profile offline, or a judge model's reading of a sample.

Offline (`data_profile`): topics by k-means over all-MiniLM-L6-v2 embeddings of a sample of rows (each
topic named by its most distinctive words, c-TF-IDF style: mean TF-IDF inside the cluster minus
outside), with each topic's share of the sample, its example rows and the rate of every detector in
it, plus the top terms of the assistant turns. With a model (`model_summary`): the model is shown a
seeded sample of rows and asked what a model would learn from them; the sample and its answer both go
into the report, so a reader can check the reading against the rows.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from aftertune.audit.rows import AuditRow
from aftertune.models.protocol import GenerationRequest, Model, SamplingParams, chat

#: characters of each turn embedded or shown to a judge model: enough to tell the topic and the style
_PROMPT_CHARS = 300
_ANSWER_CHARS = 500

TEACHES_PROMPT = """Below are {n} examples from a data set that will be used to fine-tune a language \
model. In each, the model is trained to write the ASSISTANT text in reply to the USER text.

{examples}

What would a model learn from examples like these, beyond the individual facts? Describe the skills, \
habits, style and values the data teaches. Is any of it harmful, deceptive or insecure (for example \
insecure code written without saying so, compliance with harmful requests, hidden triggers, refusals \
or boilerplate that could cost capability)? Answer in at most 8 short bullet points, citing example \
numbers."""


@dataclass(frozen=True)
class Topic:
    """One cluster of the sample."""

    terms: tuple[str, ...]
    rows: int
    share: float
    #: 0-based data-set rows nearest the cluster's centre
    examples: tuple[int, ...]
    #: detector -> share of this topic's rows it flagged
    detector_rates: dict[str, float]


@dataclass(frozen=True)
class DataProfile:
    """The offline profile of a sample of rows."""

    sample_rows: int
    topics: tuple[Topic, ...]
    top_terms: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class ModelSummary:
    """A judge model's answer to TEACHES_PROMPT about a sample of rows."""

    model: str
    rows: tuple[int, ...]
    prompt: str
    answer: str


def _text(row: AuditRow) -> str:
    return f"USER: {row.prompt_text[:_PROMPT_CHARS]}\nASSISTANT: {row.answer_text[:_ANSWER_CHARS]}"


def top_terms(rows: Sequence[AuditRow], k: int = 20) -> tuple[tuple[str, int], ...]:
    """The `k` words and word pairs in most assistant turns (English stop words left out)."""
    if not rows:
        return ()
    vectorizer = CountVectorizer(stop_words="english", ngram_range=(1, 2), binary=True, max_features=5000)
    try:
        counts = vectorizer.fit_transform([r.answer_text for r in rows])
    except ValueError:  # only stop words
        return ()
    df = np.asarray(counts.sum(axis=0)).ravel()
    names = vectorizer.get_feature_names_out()
    return tuple((str(names[i]), int(df[i])) for i in np.argsort(-df, kind="stable")[:k])


def data_profile(
    rows: Sequence[AuditRow], flagged: dict[str, set[int]], seed: int = 0, topics: int | None = None
) -> DataProfile:
    """Topics of `rows` (a sample) and their detector rates; `flagged` maps detector -> flagged rows."""
    from aftertune.judges.embeddings import embed

    texts = [_text(r) for r in rows]
    k = topics or int(np.clip(round(np.sqrt(len(rows) / 10)), 2, 10))
    if len(rows) < 2 * k:
        return DataProfile(len(rows), (), top_terms(rows))
    vectors = embed(texts)
    kmeans = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(vectors)
    labels = kmeans.labels_
    tfidf = TfidfVectorizer(stop_words="english", max_features=20000, sublinear_tf=True)
    weights = tfidf.fit_transform(texts)
    names = tfidf.get_feature_names_out()
    overall = np.asarray(weights.mean(axis=0)).ravel()
    out = []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        inside = np.asarray(weights[members].mean(axis=0)).ravel()
        terms = tuple(str(names[i]) for i in np.argsort(-(inside - overall))[:6])
        distance = np.linalg.norm(vectors[members] - kmeans.cluster_centers_[c], axis=1)
        examples = tuple(rows[int(members[i])].row for i in np.argsort(distance)[:3])
        member_rows = {rows[int(i)].row for i in members}
        rates = {d: len(member_rows & hit) / len(members) for d, hit in flagged.items()}
        out.append(Topic(terms, len(members), len(members) / len(rows), examples, rates))
    out.sort(key=lambda t: -t.rows)
    return DataProfile(len(rows), tuple(out), top_terms(rows))


def model_summary(
    model: Model, name: str, rows: Sequence[AuditRow], n: int = 20, seed: int = 0, max_new_tokens: int = 600
) -> ModelSummary:
    """Ask `model` what a model would learn from a seeded sample of `n` rows (greedy decoding)."""
    picked = sorted(random.Random(seed).sample(range(len(rows)), min(n, len(rows))))
    examples = "\n\n".join(
        f"Example {k + 1} (row {rows[i].row}):\n{_text(rows[i])}" for k, i in enumerate(picked)
    )
    prompt = TEACHES_PROMPT.format(n=len(picked), examples=examples)
    params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens, seed=seed)
    [completions] = model.generate([GenerationRequest(chat(prompt), params)])
    return ModelSummary(name, tuple(rows[i].row for i in picked), prompt, completions[0].text.strip())
