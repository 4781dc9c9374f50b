"""Requests that failed, accounted for: none is dropped silently, none costs the finished ones.

A backend whose requests fail one by one (an HTTP endpoint) finishes the whole batch and then raises
`RequestsFailed` with the results it has and each failure's cause. The cached calls store those
results, record each failure in the store's `failures` table under the key its result would have, and
raise `IncompleteWork` once every chunk was tried. A re-run computes only what is missing (the failed
ones) and forgets a failure as soon as its result is stored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aftertune.errors import EndpointError

if TYPE_CHECKING:  # the backends raise RequestsFailed without loading the store (pandas)
    from aftertune.store import ResultsStore

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS failures (
    key TEXT PRIMARY KEY,
    stage TEXT NOT NULL,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    runs INTEGER NOT NULL,
    created_at TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class Failure:
    """Why one request ended without a result (its retries ran out, or retrying could not help)."""

    #: the cause in a few words, for counting: "HTTP 429", "timeout", "missing logprobs", ...
    kind: str
    #: the whole message, naming the URL and what came back
    reason: str

    @staticmethod
    def of(error: EndpointError) -> Failure:
        return Failure(error.kind, str(error))


class RequestsFailed(EndpointError):
    """Some requests of a batch failed; `completed` holds the others' results by request index."""

    def __init__(self, completed: Mapping[int, Any], failures: Mapping[int, Failure], total: int) -> None:
        first = next(iter(failures.values()))
        super().__init__(
            f"{len(failures)} of {total} requests failed ({count_kinds(failures.values())}); the first: "
            f"{first.reason}",
            first.kind,
        )
        self.completed = dict(completed)
        self.failures = dict(failures)
        self.total = total


def partial_results(call: Callable[[], Sequence[T]]) -> tuple[dict[int, T], dict[int, Failure]]:
    """Run a batch call: its results by request index, and the failed requests' causes, if any."""
    try:
        return dict(enumerate(call())), {}
    except RequestsFailed as e:
        return dict(e.completed), dict(e.failures)


class IncompleteWork(EndpointError):
    """Requests failed after the rest were stored; running the same command again retries only them."""

    def __init__(self, counts: Mapping[tuple[str, str], int], total: int, example: str, store: Path) -> None:
        failed = sum(counts.values())
        stages = Counter[str]()
        for (stage, _), n in counts.items():
            stages[stage] += n
        by_kind = ", ".join(f"{n} {stage}: {kind}" for (stage, kind), n in sorted(counts.items()))
        super().__init__(
            f"{failed} of {total} requests failed ({by_kind}); the other {total - failed} are stored in "
            f"{store}, and each failure with its reason in its `failures` table. For example: {example} "
            "Run the same command again to retry only the failed ones (stored results are not redone).",
            "incomplete",
        )
        self.counts = dict(counts)
        self.total = total
        self.example = example
        self.store = store

    @staticmethod
    def combine(errors: Sequence[IncompleteWork]) -> IncompleteWork:
        """One error for several stages or evals that each left work undone."""
        counts = Counter[tuple[str, str]]()
        for e in errors:
            counts.update(e.counts)
        return IncompleteWork(counts, sum(e.total for e in errors), errors[0].example, errors[0].store)


def count_kinds(failures: Sequence[Failure] | Any) -> str:
    """'2× HTTP 500, 1× timeout': failures counted by cause, most common first."""
    counts = Counter(f.kind for f in failures)
    return ", ".join(f"{n}× {kind}" for kind, n in counts.most_common())


# ---------------------------------------------------------------------- the store's failures table
@dataclass(frozen=True)
class StoredFailure:
    """A request that has no stored result yet, with why it failed last time."""

    key: str
    #: what failed: generate, judge or loglikelihood
    stage: str
    #: fingerprint of the model or judge that was asked
    model: str
    kind: str
    reason: str
    #: how many runs it failed in
    runs: int
    created_at: str


def settle(
    store: ResultsStore, stage: str, model: str, stored: Sequence[str], failed: Sequence[tuple[str, Failure]]
) -> None:
    """In one transaction: keys whose results are now `stored` lose their failure records, and each
    (key, failure) is recorded (a key that failed before gets the new reason and one more run)."""
    store.ensure_schema(_SCHEMA)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    with store.transaction() as db:
        for start in range(0, len(stored), 500):  # SQLite caps the number of parameters of one query
            some = list(stored[start : start + 500])
            db.execute(f"DELETE FROM failures WHERE key IN ({','.join('?' * len(some))})", some)
        db.executemany(
            "INSERT INTO failures VALUES (?,?,?,?,?,1,?) ON CONFLICT(key) DO UPDATE SET "
            "stage=excluded.stage, model=excluded.model, kind=excluded.kind, reason=excluded.reason, "
            "runs=runs+1, created_at=excluded.created_at",
            [(key, stage, model, f.kind, f.reason, now) for key, f in failed],
        )


def stored_failures(store: ResultsStore) -> list[StoredFailure]:
    """Every recorded failure, by stage then cause."""
    store.ensure_schema(_SCHEMA)
    rows = store.query(
        "SELECT key, stage, model, kind, reason, runs, created_at FROM failures ORDER BY stage, kind, key"
    )
    return [StoredFailure(*row) for row in rows]


def incomplete(
    store: ResultsStore, stage: str, total: int, failed: Sequence[tuple[str, Failure]]
) -> IncompleteWork | None:
    """The error a cached call raises once it tried all `total` requests and `failed` ones failed."""
    if not failed:
        return None
    counts = Counter((stage, f.kind) for _, f in failed)
    return IncompleteWork(counts, total, failed[0][1].reason, store.path)
