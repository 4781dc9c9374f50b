"""The results store: keys, reuse, transactions, foreign files, a full disk, exports."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest
from counting import CountingModel

from aftertune.cached import generate_cached, judge_cached
from aftertune.errors import StoreError
from aftertune.judges.judgement import JudgeItem, Judgement
from aftertune.models.hf import HFModel
from aftertune.models.protocol import GenerationRequest, SamplingParams, chat
from aftertune.progress import ProgressCallback
from aftertune.store import (
    EvalSample,
    ResultsStore,
    export_samples,
    generation_key,
    judgement_key,
)

PARAMS = SamplingParams(temperature=1.0, max_new_tokens=8, n=3, seed=0)


class LengthJudge:
    """A transparent judge for store tests: the score is the answer's length, capped at 100."""

    fingerprint = "length-judge"

    def __init__(self) -> None:
        self.calls = 0

    def judge(self, items: Sequence[JudgeItem], progress: ProgressCallback | None = None) -> list[Judgement]:
        self.calls += len(items)
        return [Judgement(float(min(100, len(i.answer)))) for i in items]


def test_keys_depend_on_everything_that_determines_a_result() -> None:
    request = GenerationRequest(chat("hi"), PARAMS)
    key = generation_key("m", request, 0)
    assert key == generation_key(
        "m", GenerationRequest(chat("hi"), SamplingParams(**{**PARAMS.__dict__, "n": 9})), 0
    )
    assert key != generation_key("m2", request, 0)
    assert key != generation_key("m", request, 1)
    assert key != generation_key("m", GenerationRequest(chat("hi", system="s"), PARAMS), 0)
    assert key != generation_key(
        "m", GenerationRequest(chat("hi"), SamplingParams(max_new_tokens=8, n=3, seed=1)), 0
    )
    item = JudgeItem("q", "a", "aligned", "{question} {answer}")
    assert judgement_key("j", item) != judgement_key("j2", item)
    assert judgement_key("j", item) != judgement_key(
        "j", JudgeItem("q", "a", "coherent", "{question} {answer}")
    )
    assert judgement_key("j", item) != judgement_key("j", JudgeItem("q", "a", "aligned", "other {answer}"))


def test_stored_samples_and_judgements_are_never_recomputed(tmp_path: Path, embedded: HFModel) -> None:
    model, judge = CountingModel(embedded), LengthJudge()
    requests = [
        GenerationRequest(chat("Name a colour."), PARAMS),
        GenerationRequest(chat("Name a city."), PARAMS),
    ]
    where = [EvalSample("e", "colour", 0, "Name a colour."), EvalSample("e", "city", 0, "Name a city.")]
    with ResultsStore(tmp_path) as store:
        first = generate_cached(store, model, requests, where, chunk_size=4)
        assert model.generated == 6
        again = generate_cached(store, model, requests, where, chunk_size=4)
        assert model.generated == 6 and again == first
        # asking for more samples generates only the new ones, and keeps the old ones
        more = [GenerationRequest(r.prompt, SamplingParams(**{**PARAMS.__dict__, "n": 4})) for r in requests]
        extended = generate_cached(store, model, more, where, chunk_size=4)
        assert model.generated == 8
        assert [c[:3] for c in extended] == first
        items = [
            JudgeItem(w.question, c.text, "aligned")
            for w, cs in zip(where, extended, strict=True)
            for c in cs
        ]
        judged = judge_cached(store, judge, items + items[:2])
        assert judge.calls == 8  # repeated items are judged once
        assert judge_cached(store, judge, items) == judged[:8] and judge.calls == 8
        assert store.count("generations") == 8 and store.count("eval_samples") == 8
        assert store.count("judgements") == 8


def test_a_resumed_judging_sends_the_judge_the_chunks_an_uninterrupted_one_would(tmp_path: Path) -> None:
    """A judge that reads a chunk in padded batches gives floats that depend on the chunk, so a run
    killed between chunks must, when resumed, give it the same chunks (less those stored), not re-cut
    the rest."""

    class RecordingJudge(LengthJudge):
        def __init__(self, stop_after: int | None = None) -> None:
            super().__init__()
            self.chunks: list[list[str]] = []
            self.stop_after = stop_after

        def judge(
            self, items: Sequence[JudgeItem], progress: ProgressCallback | None = None
        ) -> list[Judgement]:
            if self.stop_after is not None and len(self.chunks) == self.stop_after:
                raise KeyboardInterrupt  # the kill, after `stop_after` chunks were committed
            self.chunks.append([i.answer for i in items])
            return super().judge(items, progress)

    items = [JudgeItem("q", f"answer {i}", "aligned") for i in range(10)]
    items = items[:3] + items[:1] + items[3:]  # a repeated item is judged once, where it first appears
    uninterrupted = RecordingJudge()
    with ResultsStore(tmp_path / "a") as store:
        judge_cached(store, uninterrupted, items, chunk_size=4)
    killed, resumed = RecordingJudge(stop_after=1), RecordingJudge()
    with ResultsStore(tmp_path / "b") as store:
        with pytest.raises(KeyboardInterrupt):
            judge_cached(store, killed, items, chunk_size=4)
        judged = judge_cached(store, resumed, items, chunk_size=4)
    assert uninterrupted.chunks == [[f"answer {i}" for i in c] for c in ([0, 1, 2, 3], [4, 5, 6, 7], [8, 9])]
    assert killed.chunks + resumed.chunks == uninterrupted.chunks
    assert [j.score for j in judged] == [float(len(i.answer)) for i in items]


def test_a_failed_chunk_keeps_the_chunks_before_it(tmp_path: Path, embedded: HFModel) -> None:
    class FailsOnSecondCall(CountingModel):
        def generate(self, requests, progress=None):  # type: ignore[no-untyped-def]
            if self.generated:
                raise RuntimeError("boom")
            return super().generate(requests, progress)

    requests = [GenerationRequest(chat("Say a number."), SamplingParams(max_new_tokens=4, n=4))]
    with ResultsStore(tmp_path) as store:
        with pytest.raises(RuntimeError):
            generate_cached(store, FailsOnSecondCall(embedded), requests, chunk_size=2)
        assert store.count("generations") == 2
        counting = CountingModel(embedded)
        generate_cached(store, counting, requests, chunk_size=2)
        assert counting.generated == 2 and store.count("generations") == 4


def test_foreign_and_corrupt_files_are_refused_untouched(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "results.sqlite").write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="not an aftertune results store"):
        ResultsStore(corrupt)
    assert (corrupt / "results.sqlite").read_bytes().startswith(b"this is not")

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    db = sqlite3.connect(foreign / "results.sqlite")
    db.execute("CREATE TABLE users (name TEXT)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="not an aftertune results store"):
        ResultsStore(foreign)

    ResultsStore(tmp_path / "ok").close()
    db = sqlite3.connect(tmp_path / "ok" / "results.sqlite")
    db.execute("UPDATE meta SET value = '99' WHERE key = 'version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="version 99"):
        ResultsStore(tmp_path / "ok")


def test_a_full_disk_is_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    judge = LengthJudge()
    judge_cached(store, judge, [JudgeItem("q", "kept", "aligned")])
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    # SQLite's page limit stands in for a full disk: the same SQLITE_FULL error.
    store._db.execute(f"PRAGMA max_page_count = {pages}")
    big = [JudgeItem("q", "x" * 5000 + str(i), "aligned") for i in range(50)]
    with pytest.raises(StoreError, match="disk holding .* is full"):
        judge_cached(store, judge, big)
    store.close()
    with ResultsStore(tmp_path) as reopened:
        assert reopened.count("judgements") == 1


def test_export_to_pandas_parquet_and_jsonl(tmp_path: Path, embedded: HFModel) -> None:
    requests = [GenerationRequest(chat("Name an animal."), SamplingParams(max_new_tokens=6, n=2))]
    with ResultsStore(tmp_path) as store:
        completions = generate_cached(
            store, embedded, requests, [EvalSample("e", "animal", 0, "Name an animal.")]
        )
        judge_cached(
            store, LengthJudge(), [JudgeItem("Name an animal.", c.text, "aligned") for c in completions[0]]
        )
        frame = store.samples()
    assert list(frame["sample_index"]) == [0, 1]
    assert list(frame["answer"]) == [c.text for c in completions[0]]
    assert list(frame["aligned"]) == [float(min(100, len(c.text))) for c in completions[0]]
    parquet, jsonl = export_samples(frame, tmp_path)
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), frame)
    assert len(pd.read_json(jsonl, lines=True)) == 2
