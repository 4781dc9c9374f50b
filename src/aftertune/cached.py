"""Model and judge calls through the store.

What is stored is read back, the rest computed in committed chunks. A request that fails (see
`aftertune.failures`) neither stops the other chunks nor loses the finished results: it is recorded with
its reason, and once every chunk was tried the call raises `IncompleteWork`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

from aftertune.failures import Failure, incomplete, partial_results, settle
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

Unit = TypeVar("Unit")


def unstored_chunks(
    units: Sequence[Unit], key: Callable[[Unit], str], stored: Collection[str], chunk_size: int
) -> Iterator[list[Unit]]:
    """Fixed chunks of the full `units` list, each less its stored units; chunks with nothing left are
    skipped. Cutting the full list, not the missing rest, means a resumed run sends a model or judge
    exactly the chunks an uninterrupted run would (less what is stored), so a backend whose results
    depend on what it computes together gives the same results bit for bit."""
    for start in range(0, len(units), chunk_size):
        chunk = [u for u in units[start : start + chunk_size] if key(u) not in stored]
        if chunk:
            yield chunk


def generate_cached(
    store: ResultsStore,
    model: Model,
    requests: Sequence[GenerationRequest],
    samples: Sequence[EvalSample] | None = None,
    chunk_size: int = 16,
    progress: ProgressCallback | None = None,
) -> list[list[Completion]]:
    """`model.generate`, but every sample already in the store is read back instead of generated.

    Samples are cut into fixed chunks of the full sample list (`unstored_chunks`), each generated and
    committed at once, so a resumed run's results are the same, bit for bit, on a deterministic backend.
    """
    fingerprint = model.fingerprint
    units = [
        (i, k, generation_key(fingerprint, r, k)) for i, r in enumerate(requests) for k in r.sample_indices
    ]
    stored = store.get_generations([key for _, _, key in units])
    settle(store, "generate", fingerprint, list(stored), [])
    results: dict[str, Completion] = dict(stored)
    missing_total = len(units) - len(stored)
    done = 0
    failed: list[tuple[str, Failure]] = []
    report(progress, "generating", 0, missing_total)
    for chunk in unstored_chunks(units, lambda u: u[2], stored, chunk_size):
        single = [
            GenerationRequest(requests[i].prompt, _one_sample(requests[i].params), first_sample=k)
            for i, k, _ in chunk
        ]
        finished, failures = partial_results(partial(model.generate, single))
        completions = {j: c[0] for j, c in sorted(finished.items())}
        store.put_generations(
            fingerprint,
            [(chunk[j][2], single[j], c) for j, c in completions.items()],
            [samples[chunk[j][0]] for j in completions] if samples is not None else (),
        )
        chunk_failed = [(chunk[j][2], f) for j, f in sorted(failures.items())]
        failed += chunk_failed
        settle(store, "generate", fingerprint, [chunk[j][2] for j in completions], chunk_failed)
        results.update({chunk[j][2]: c for j, c in completions.items()})
        done += len(chunk)
        report(progress, "generating", done, missing_total)
    if samples is not None and stored:
        # Samples generated under another eval (or before the eval registry existed) join this one.
        store.put_generations(
            fingerprint,
            [(key, requests[i], stored[key]) for i, _, key in units if key in stored],
            [samples[i] for i, _, key in units if key in stored],
        )
    error = incomplete(store, "generate", len({key for _, _, key in units}), failed)
    if error is not None:
        raise error
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
    """`judge.judge`, but every judgement already in the store is read back; re-scoring costs nothing.

    Distinct items (identical items are judged once) are cut into fixed chunks of the full item list
    (`unstored_chunks`), each judged and committed at once, so a resumed run gives the judge the chunks
    an uninterrupted run would: that matters for a judge that reads a chunk in padded batches (a model
    judge on the `hf` backend; the offline judge reads each answer alone).
    """
    fingerprint = judge.fingerprint
    keys = [judgement_key(fingerprint, it) for it in items]
    results = store.get_judgements(keys)
    settle(store, "judge", fingerprint, list(results), [])
    failed: list[tuple[str, Failure]] = []
    distinct = list(dict(zip(keys, items, strict=True)).items())
    missing_total = sum(key not in results for key, _ in distinct)
    done = 0
    report(progress, "judging", 0, missing_total)
    for chunk in unstored_chunks(distinct, lambda unit: unit[0], set(results), chunk_size):
        judged, failures = partial_results(partial(judge.judge, [item for _, item in chunk]))
        judged = dict(sorted(judged.items()))
        store.put_judgements(fingerprint, [(*chunk[j], judgement) for j, judgement in judged.items()])
        chunk_failed = [(chunk[j][0], f) for j, f in sorted(failures.items())]
        failed += chunk_failed
        settle(store, "judge", fingerprint, [chunk[j][0] for j in judged], chunk_failed)
        results.update({chunk[j][0]: judgement for j, judgement in judged.items()})
        done += len(chunk)
        report(progress, "judging", done, missing_total)
    error = incomplete(store, "judge", len(set(keys)), failed)
    if error is not None:
        raise error
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
    settle(store, "loglikelihood", fingerprint, list(found), [])
    failed: list[tuple[str, Failure]] = []
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
        values, failures = partial_results(partial(model.loglikelihood, [r for _, r in chunk]))
        values = dict(sorted(values.items()))
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with store.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO loglikelihoods VALUES (?,?,?,?,?,?)",
                [
                    (k, fingerprint, prompt_to_json(r.context), r.continuation, values[j], now)
                    for j, (k, r) in enumerate(chunk)
                    if j in values
                ],
            )
        chunk_failed = [(chunk[j][0], f) for j, f in sorted(failures.items())]
        failed += chunk_failed
        settle(store, "loglikelihood", fingerprint, [chunk[j][0] for j in values], chunk_failed)
        found.update({chunk[j][0]: v for j, v in values.items()})
        report(progress, "scoring", start + len(chunk), len(todo))
    error = incomplete(store, "loglikelihood", len(set(keys)), failed)
    if error is not None:
        raise error
    return [found[k] for k in keys]


def _loglikelihood_key(model: str, request: LoglikelihoodRequest) -> str:
    body = "\x00".join(("loglikelihood", model, prompt_to_json(request.context), request.continuation))
    return hashlib.sha256(body.encode()).hexdigest()
