"""The results store: one SQLite database per run directory.

Every generation and every judgement is keyed by what determines it (model fingerprint incl. adapter,
prompt, sampling params, sample index, seed; judge fingerprint, metric, judge prompt, question,
answer). Work is committed in chunks, each in one transaction, so a run killed at any moment (even
SIGKILL) keeps every finished chunk, and re-running recomputes only what is missing, never twice:
rows are inserted with their key as primary key.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from aftertune.atomic import replacing
from aftertune.errors import StoreError
from aftertune.judges.judgement import JudgeItem, Judgement
from aftertune.models.protocol import (
    Completion,
    GenerationRequest,
    SamplingParams,
    TokenLogprob,
    prompt_to_json,
)

STORE_FILE = "results.sqlite"
_FORMAT = "aftertune-results"
_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    prompt TEXT NOT NULL,
    params TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    n_tokens INTEGER NOT NULL,
    logprobs TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS judgements (
    key TEXT PRIMARY KEY,
    judge TEXT NOT NULL,
    metric TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    score REAL,
    judge_class TEXT,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS eval_samples (
    eval TEXT NOT NULL,
    model TEXT NOT NULL,
    question_id TEXT NOT NULL,
    paraphrase_index INTEGER NOT NULL,
    sample_index INTEGER NOT NULL,
    question TEXT NOT NULL,
    generation_key TEXT NOT NULL REFERENCES generations(key),
    PRIMARY KEY (eval, model, question_id, paraphrase_index, sample_index)
);
CREATE TABLE IF NOT EXISTS eval_reports (
    model TEXT NOT NULL,
    eval TEXT NOT NULL,
    digest TEXT NOT NULL,
    report TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (model, eval, digest)
);
CREATE TABLE IF NOT EXISTS model_labels (
    label TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""


#: table -> (its CREATE statement, column names, rows): what `new_rows` returns and `merge` takes
StoreRows = dict[str, tuple[str, list[str], list[tuple[Any, ...]]]]

_TABLES = {"generations", "judgements", "eval_samples", "eval_reports", "model_labels"}


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()


def params_json(params: SamplingParams) -> str:
    """Sampling params that determine a sample; `n` does not (sample k is the same whatever n is)."""
    fields = asdict(params)
    fields.pop("n")
    return json.dumps(fields, sort_keys=True)


def generation_key(model: str, request: GenerationRequest, sample_index: int) -> str:
    return _digest(
        "gen", model, prompt_to_json(request.prompt), params_json(request.params), str(sample_index)
    )


def judgement_key(judge: str, item: JudgeItem) -> str:
    return _digest("judge", judge, item.metric, item.prompt_template or "", item.question, item.answer)


@dataclass(frozen=True)
class EvalSample:
    """Where a generation belongs in an eval, recorded with it so results can be exported later."""

    eval: str
    question_id: str
    paraphrase_index: int
    question: str


class ResultsStore:
    """The SQLite results database of one run directory (WAL mode)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / STORE_FILE
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"Cannot create the run directory {self.path.parent}: {e.strerror}.") from e
        existed = self.path.exists() and self.path.stat().st_size > 0
        db = None
        try:
            self._db = db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            if existed:
                # Before anything is written (even the journal mode): another program's file is left
                # as it was.
                self._check_format()
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable against a killed process (the WAL survives); only an OS crash
            # could lose the last commits.
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._transaction():
                # Every statement is IF NOT EXISTS: a store from an earlier version gains new tables.
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self._db.execute(statement)
                if not existed:
                    self._db.executemany(
                        "INSERT OR IGNORE INTO meta VALUES (?, ?)",
                        [("format", _FORMAT), ("version", _VERSION)],
                    )
        except (sqlite3.DatabaseError, StoreError) as e:
            if db is not None:
                db.close()  # closed now, not when the error is collected: SQLite leaves no -wal beside it
            if isinstance(e, StoreError):
                raise
            raise StoreError(
                f"{self.path} is not an aftertune results store ({e}). It may be corrupt or another "
                "program's file: move it away or choose another --out directory. Nothing was changed."
            ) from e

    def _check_format(self) -> None:
        try:
            rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as e:
            raise StoreError(
                f"{self.path} is an SQLite file but not an aftertune results store (no meta table). "
                "Choose another --out directory or move the file away. Nothing was changed."
            ) from e
        if rows.get("format") != _FORMAT:
            raise StoreError(
                f"{self.path} is not an aftertune results store (format {rows.get('format')!r}). Choose "
                "another --out directory or move the file away. Nothing was changed."
            )
        if rows.get("version") != _VERSION:
            raise StoreError(
                f"{self.path} was written by a store format version {rows.get('version')}, this aftertune "
                f"reads version {_VERSION}. Use the aftertune version that wrote it or another --out."
            )
        # A damaged page (a truncated copy, a disk error) would otherwise surface mid-run as
        # "database disk image is malformed"; SQLite's structural check reads ~500 MB/s.
        problems = [str(row[0]) for row in self._db.execute("PRAGMA quick_check(3)").fetchall()]
        if problems != ["ok"]:
            raise StoreError(
                f"{self.path} is damaged (SQLite's check: {'; '.join(problems)}). Move it away and run "
                "the command again (everything is recomputed), or choose another --out directory. "
                "Nothing was changed."
            )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # SQLite has already rolled back after some errors
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as e:
            if "full" in str(e).lower():
                raise StoreError(
                    f"The disk holding {self.path} is full. Free some space and run the same command "
                    "again: every result stored so far is kept and will not be recomputed."
                ) from e
            raise StoreError(f"Cannot write the results store {self.path}: {e}.") from e

    # ------------------------------------------------------------------ other modules' tables
    def ensure_schema(self, schema: str) -> None:
        """Create another module's tables (statements with IF NOT EXISTS, separated by ';')."""
        with self._transaction() as db:
            for statement in filter(str.strip, schema.split(";")):
                db.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT); a full disk is a StoreError."""
        with self._transaction() as db:
            yield db

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query."""
        return [tuple(row) for row in self._db.execute(sql, tuple(params)).fetchall()]

    # ------------------------------------------------------------------ generations
    def get_generations(self, keys: Sequence[str]) -> dict[str, Completion]:
        found: dict[str, Completion] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for key, text, sample_index, finish, n_tokens, logprobs in self._db.execute(
                "SELECT key, text, sample_index, finish_reason, n_tokens, logprobs "
                f"FROM generations WHERE key IN ({marks})",
                chunk,
            ):
                found[key] = Completion(text, sample_index, finish, n_tokens, _logprobs_from_json(logprobs))
        return found

    def put_generations(
        self,
        model: str,
        rows: Sequence[tuple[str, GenerationRequest, Completion]],
        samples: Sequence[EvalSample | None] = (),
    ) -> None:
        """Store (key, request, completion) rows, and where each belongs in an eval, in one transaction."""
        now = _now()
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO generations VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        key,
                        model,
                        prompt_to_json(req.prompt),
                        params_json(req.params),
                        c.sample_index,
                        req.params.seed,
                        c.text,
                        c.finish_reason,
                        c.n_tokens,
                        _logprobs_to_json(c.logprobs),
                        now,
                    )
                    for key, req, c in rows
                ],
            )
            db.executemany(
                "INSERT OR IGNORE INTO eval_samples VALUES (?,?,?,?,?,?,?)",
                [
                    (s.eval, model, s.question_id, s.paraphrase_index, c.sample_index, s.question, key)
                    for (key, _, c), s in zip(rows, samples, strict=False)
                    if s is not None
                ],
            )

    # ------------------------------------------------------------------ judgements
    def get_judgements(self, keys: Sequence[str]) -> dict[str, Judgement]:
        found: dict[str, Judgement] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for key, score, judge_class, reason, detail in self._db.execute(
                f"SELECT key, score, judge_class, reason, detail FROM judgements WHERE key IN ({marks})",
                chunk,
            ):
                found[key] = Judgement(score, judge_class, reason, detail)
        return found

    def put_judgements(self, judge: str, rows: Sequence[tuple[str, JudgeItem, Judgement]]) -> None:
        now = _now()
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO judgements VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        key,
                        judge,
                        it.metric,
                        it.question,
                        it.answer,
                        j.score,
                        j.judge_class,
                        j.reason,
                        j.detail,
                        now,
                    )
                    for key, it, j in rows
                ],
            )

    # ------------------------------------------------------------------ eval reports
    def get_eval_report(self, model: str, eval_name: str, digest: str) -> str | None:
        """The stored report (JSON) of eval `eval_name` with settings `digest` on `model`, if any."""
        row = self._db.execute(
            "SELECT report FROM eval_reports WHERE model = ? AND eval = ? AND digest = ?",
            (model, eval_name, digest),
        ).fetchone()
        return None if row is None else str(row[0])

    def put_eval_report(self, model: str, eval_name: str, digest: str, report: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO eval_reports VALUES (?,?,?,?,?)",
                (model, eval_name, digest, report, _now()),
            )

    def eval_reports(self, model: str | None = None) -> list[tuple[str, str, str, str]]:
        """(model, eval, digest, report JSON) rows, oldest first; of one model when given."""
        query = "SELECT model, eval, digest, report FROM eval_reports"
        rows = self._db.execute(
            query + (" WHERE model = ? ORDER BY rowid" if model else " ORDER BY rowid"),
            (model,) if model else (),
        ).fetchall()
        return [(str(a), str(b), str(c), str(d)) for a, b, c, d in rows]

    def put_model_label(self, label: str, model: str) -> None:
        """Name a model fingerprint (e.g. "base", "insecure/seed0/step20") for reports."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO model_labels VALUES (?,?,?)", (label, model, _now()))

    def model_labels(self) -> dict[str, str]:
        """label -> model fingerprint."""
        return {str(a): str(b) for a, b in self._db.execute("SELECT label, model FROM model_labels")}

    # ------------------------------------------------------------------ merging (distributed work)
    def snapshot(self) -> bytes:
        """The whole store as one SQLite file's bytes (a consistent copy, taken under a read lock)."""
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / STORE_FILE
            with sqlite3.connect(copy) as target:
                self._db.backup(target)
            target.close()
            return copy.read_bytes()

    def merge(self, rows: StoreRows) -> int:
        """Insert rows computed elsewhere (another process's copy of this store) in one transaction.

        Every row is inserted only when the store lacks it (by primary key, or for a table without
        one, by its whole content), so a unit of work merged twice, or computed twice by a retried
        worker, is stored exactly once. Tables the store lacks are created from the sender's schema.
        Returns how many rows were new.
        """
        added = 0
        with self._transaction() as db:
            for name, (schema, columns, values) in rows.items():
                db.execute(schema.replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", 1))
                cols = ",".join(f'"{c}"' for c in columns)
                marks = ",".join("?" * len(columns))
                keyed = any(r[5] for r in db.execute(f'PRAGMA table_info("{name}")'))
                before = db.total_changes
                if keyed:
                    db.executemany(f'INSERT OR IGNORE INTO "{name}" ({cols}) VALUES ({marks})', values)
                else:
                    match = " AND ".join(f'"{c}" IS ?' for c in columns)
                    for row in values:
                        db.execute(
                            f'INSERT INTO "{name}" ({cols}) SELECT {marks} '
                            f'WHERE NOT EXISTS (SELECT 1 FROM "{name}" WHERE {match})',
                            (*row, *row),
                        )
                added += db.total_changes - before
        return added

    # ------------------------------------------------------------------ export
    def table(self, name: str) -> pd.DataFrame:
        """One table of the store as a DataFrame: generations, judgements or eval_samples."""
        if name not in _TABLES:
            raise ValueError(f"no table {name!r}")
        return pd.read_sql_query(f"SELECT * FROM {name}", self._db)

    def samples(self, judge: str | None = None) -> pd.DataFrame:
        """Every eval sample with its answer and, per metric, its judgement (score and class)."""
        frame = pd.read_sql_query(
            "SELECT s.eval, s.model, s.question_id, s.paraphrase_index, s.sample_index, s.question, "
            "g.text AS answer, g.finish_reason, g.n_tokens, g.seed, g.params, g.key AS generation_key "
            "FROM eval_samples s JOIN generations g ON g.key = s.generation_key "
            "ORDER BY s.eval, s.model, s.question_id, s.paraphrase_index, s.sample_index",
            self._db,
        )
        query = "SELECT judge, metric, question, answer, score, judge_class, reason FROM judgements"
        judged = pd.read_sql_query(
            query + (" WHERE judge = ?" if judge else ""), self._db, params=(judge,) if judge else None
        )
        for metric, part in judged.groupby("metric"):
            part = part.drop(columns="metric").rename(
                columns={
                    "score": metric,
                    "judge_class": f"{metric}_class",
                    "reason": f"{metric}_reason",
                    "judge": f"{metric}_judge",
                }
            )
            frame = frame.merge(
                part.drop_duplicates(["question", "answer"]), on=["question", "answer"], how="left"
            )
        return frame

    def count(self, name: str) -> int:
        if name not in _TABLES:
            raise ValueError(f"no table {name!r}")
        return int(self._db.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0])


def export_samples(frame: pd.DataFrame, out_dir: Path, stem: str = "samples") -> list[Path]:
    """Write a samples DataFrame as parquet and JSONL; returns the paths."""
    paths = [out_dir / f"{stem}.parquet", out_dir / f"{stem}.jsonl"]
    try:
        # Each file whole or not at all: a run killed while exporting leaves no torn parquet behind.
        with replacing(paths[0]) as temp:
            frame.to_parquet(temp, index=False)
        with replacing(paths[1]) as temp:
            frame.to_json(temp, orient="records", lines=True, force_ascii=False)
    except OSError as e:
        raise StoreError(
            f"Cannot write {out_dir}: {e.strerror}. The results store still holds every result; free "
            "space and run the same command again to write the exports."
        ) from e
    return paths


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _logprobs_to_json(logprobs: tuple[TokenLogprob, ...]) -> str | None:
    if not logprobs:
        return None
    return json.dumps([[t.token, t.logprob, [list(p) for p in t.top]] for t in logprobs], ensure_ascii=False)


def _logprobs_from_json(text: str | None) -> tuple[TokenLogprob, ...]:
    if not text:
        return ()
    return tuple(TokenLogprob(tok, lp, tuple((a, b) for a, b in top)) for tok, lp, top in json.loads(text))


def new_rows(store_path: Path, since: Path | None) -> StoreRows:
    """Rows of the store at `store_path` that the store file `since` (its starting copy) lacks.

    A worker runs on a copy of the driver's store, so it reuses every stored result; it sends back
    only what it added, and the driver `merge`s that into the one store.
    """
    db = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)
    try:
        if since is not None:
            db.execute("ATTACH DATABASE ? AS since", (f"file:{since}?mode=ro",))
            known = {r[0] for r in db.execute("SELECT name FROM since.sqlite_master WHERE type='table'")}
        else:
            known = set()
        found: StoreRows = {}
        tables = db.execute(
            "SELECT name, sql FROM main.sqlite_master WHERE type='table' AND name != 'meta' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name"
        ).fetchall()
        for name, schema in tables:
            query = f'SELECT * FROM main."{name}"'
            if name in known:
                query += f' EXCEPT SELECT * FROM since."{name}"'
            cursor = db.execute(query)
            values = [tuple(r) for r in cursor.fetchall()]
            if values:
                found[name] = (schema, [d[0] for d in cursor.description], values)
        return found
    finally:
        db.close()
