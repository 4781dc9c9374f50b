"""Model and judge calls through the store.

What is stored is read back, the rest computed in committed chunks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime

from aftertune.judges.judgement import Judge, JudgeItem, Judgement
from aftertune.models.protocol import (
    Completion,
    GenerationRequest,
    LoglikelihoodRequest,
    Model,
    SamplingParams,
    prompt_to_json,
)
from aftertune.progress import ProgressCallback, report
from aftertune.store import EvalSample, ResultsStore, generation_key, judgement_key


def generate_cached(
    store: ResultsStore,
    model: Model,
    requests: Sequence[GenerationRequest],
    samples: Sequence[EvalSample] | None = None,
    chunk_size: int = 16,
    progress: ProgressCallback | None = None,
) -> list[list[Completion]]:
    """`model.generate`, but every sample already in the store is read back instead of generated.

    Samples are cut into fixed chunks of the full sample list, each generated and committed at once:
    a resumed run sends the model exactly the chunks an uninterrupted run would have, so its results
    are the same, bit for bit, on a deterministic backend.
    """
    fingerprint = model.fingerprint
    units = [
        (i, k, generation_key(fingerprint, r, k)) for i, r in enumerate(requests) for k in r.sample_indices
    ]
    stored = store.get_generations([key for _, _, key in units])
    results: dict[str, Completion] = dict(stored)
    missing_total = len(units) - len(stored)
    done = 0
    report(progress, "generating", 0, missing_total)
    for start in range(0, len(units), chunk_size):
        chunk = [u for u in units[start : start + chunk_size] if u[2] not in stored]
        if not chunk:
            continue
        single = [
            GenerationRequest(requests[i].prompt, _one_sample(requests[i].params), first_sample=k)
            for i, k, _ in chunk
        ]
        completions = [c[0] for c in model.generate(single)]
        store.put_generations(
            fingerprint,
            [(key, single[j], completions[j]) for j, (_, _, key) in enumerate(chunk)],
            [samples[i] for i, _, _ in chunk] if samples is not None else (),
        )
        results.update({key: completions[j] for j, (_, _, key) in enumerate(chunk)})
        done += len(chunk)
        report(progress, "generating", done, missing_total)
    if samples is not None and stored:
        # Samples generated under another eval (or before the eval registry existed) join this one.
        store.put_generations(
            fingerprint,
            [(key, requests[i], stored[key]) for i, _, key in units if key in stored],
            [samples[i] for i, _, key in units if key in stored],
        )
    by_request: list[list[Completion]] = [[] for _ in requests]
    for i, _, key in units:
        by_request[i].append(results[key])
    return by_request


def judge_cached(
    store: ResultsStore,
    judge: Judge,
    items: Sequence[JudgeItem],
    chunk_size: int = 32,
    progress: ProgressCallback | None = None,
) -> list[Judgement]:
    """`judge.judge`, but every judgement already in the store is read back; re-scoring costs nothing."""
    fingerprint = judge.fingerprint
    keys = [judgement_key(fingerprint, it) for it in items]
    results = store.get_judgements(keys)
    todo: dict[str, JudgeItem] = {}
    for key, item in zip(keys, items, strict=True):
        if key not in results:
            todo.setdefault(key, item)  # identical items are judged once
    pending = list(todo.items())
    report(progress, "judging", 0, len(pending))
    for start in range(0, len(pending), chunk_size):
        chunk = pending[start : start + chunk_size]
        judgements = judge.judge([item for _, item in chunk])
        store.put_judgements(fingerprint, [(k, it, j) for (k, it), j in zip(chunk, judgements, strict=True)])
        results.update({k: j for (k, _), j in zip(chunk, judgements, strict=True)})
        report(progress, "judging", min(start + chunk_size, len(pending)), len(pending))
    return [results[k] for k in keys]


def _one_sample(params: SamplingParams) -> SamplingParams:
    return SamplingParams(**{**asdict(params), "n": 1, "stop": tuple(params.stop)})


_LOGLIKELIHOOD_SCHEMA = """
CREATE TABLE IF NOT EXISTS loglikelihoods (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    context TEXT NOT NULL,
    continuation TEXT NOT NULL,
    logprob REAL NOT NULL,
    created_at TEXT NOT NULL
)
"""


def loglikelihood_cached(
    store: ResultsStore,
    model: Model,
    requests: Sequence[LoglikelihoodRequest],
    chunk_size: int = 256,
    progress: ProgressCallback | None = None,
) -> list[float]:
    """`model.loglikelihood`, but every value already in the store is read back instead of computed; the
    rest is computed and committed in chunks (sorted by prompt, so the options of one question and the
    questions that share few-shot examples stay together and share forward passes), so an interrupted
    eval loses at most a chunk."""
    store.ensure_schema(_LOGLIKELIHOOD_SCHEMA)
    fingerprint = model.fingerprint
    keys = [_loglikelihood_key(fingerprint, r) for r in requests]
    found: dict[str, float] = {}
    for start in range(0, len(keys), 500):  # SQLite caps the number of parameters of one query
        some = keys[start : start + 500]
        marks = ",".join("?" * len(some))
        sql = f"SELECT key, logprob FROM loglikelihoods WHERE key IN ({marks})"
        found.update({str(k): float(v) for k, v in store.query(sql, some)})
    pending: dict[str, LoglikelihoodRequest] = {}
    for key, request in zip(keys, requests, strict=True):
        if key not in found:
            pending.setdefault(key, request)  # an option asked twice is scored once
    # In prompt order, so contexts that start alike (one subject's few-shot examples) fall in one
    # chunk and a backend can compute their shared start once.
    todo = sorted(pending.items(), key=lambda kv: (prompt_to_json(kv[1].context), kv[1].continuation))
    report(progress, "scoring", 0, len(todo))
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start : start + chunk_size]
        values = model.loglikelihood([r for _, r in chunk])
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with store.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO loglikelihoods VALUES (?,?,?,?,?,?)",
                [
                    (k, fingerprint, prompt_to_json(r.context), r.continuation, v, now)
                    for (k, r), v in zip(chunk, values, strict=True)
                ],
            )
        found.update({k: v for (k, _), v in zip(chunk, values, strict=True)})
        report(progress, "scoring", start + len(chunk), len(todo))
    return [found[k] for k in keys]


def _loglikelihood_key(model: str, request: LoglikelihoodRequest) -> str:
    body = "\x00".join(("loglikelihood", model, prompt_to_json(request.context), request.continuation))
    return hashlib.sha256(body.encode()).hexdigest()
