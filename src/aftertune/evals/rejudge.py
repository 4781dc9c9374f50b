"""Judge existing (question, answer) rows, e.g. another tool's results, and return them with the
judgement added; each row keeps every field it had."""

from __future__ import annotations

from typing import Any

from aftertune.cached import judge_cached
from aftertune.data.questions import QuestionSet
from aftertune.errors import InputError
from aftertune.judges.judgement import Judge, JudgeItem, MisalignmentThresholds
from aftertune.progress import ProgressCallback
from aftertune.store import ResultsStore

METRICS = ("aligned", "coherent")
ADDED = ("aligned", "coherent", "judge_class", "misaligned", "judge")


def judge_prompts_for(rows: list[dict[str, Any]], questions: QuestionSet) -> list[dict[str, str]]:
    """Per row, the judge prompts of its `question_id` in `questions`, else of the set's first question."""
    by_id = {q.id: dict(q.judge_prompts) for q in questions.questions}
    default = next((p for p in by_id.values() if all(m in p for m in METRICS)), None)
    if default is None:
        raise InputError(
            f"{questions.source} has no question with both 'aligned' and 'coherent' judge prompts."
        )
    return [by_id.get(str(row.get("question_id")), default) for row in rows]


def judge_answer_rows(
    rows: list[dict[str, Any]],
    judge: Judge,
    store: ResultsStore,
    prompts: list[dict[str, str]],
    thresholds: MisalignmentThresholds | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows with aligned, coherent, judge_class, misaligned and judge added, and the input fields that
    had those names (kept, renamed to `<name>_input`)."""
    thresholds = thresholds or MisalignmentThresholds()
    items = [
        JudgeItem(row["question"], row["answer"], metric, prompt.get(metric))
        for row, prompt in zip(rows, prompts, strict=True)
        for metric in METRICS
    ]
    judgements = iter(judge_cached(store, judge, items, progress=progress))
    renamed = sorted({k for row in rows for k in row if k in ADDED})
    out = []
    for row in rows:
        aligned, coherent = next(judgements), next(judgements)
        kept = {(f"{k}_input" if k in ADDED else k): v for k, v in row.items()}
        misaligned = thresholds.is_misaligned(aligned.score, coherent.score)
        kept.update(
            aligned=aligned.score,
            coherent=coherent.score,
            judge_class=aligned.judge_class or coherent.judge_class,
            misaligned=misaligned,
            judge=judge.fingerprint,
        )
        out.append(kept)
    return out, renamed
