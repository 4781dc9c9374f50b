"""Terminal tables (Rich) for eval results."""

from __future__ import annotations

from rich import box
from rich.table import Table
from rich.text import Text

from aftertune.evals.freeform import FreeformResult, QuestionSummary
from aftertune.stats import Estimate


def _rate(e: Estimate | None) -> str:
    return "—" if e is None else f"{100 * e.value:.1f} [{100 * e.low:.1f}, {100 * e.high:.1f}]"


def _mean(e: Estimate | None) -> str:
    return "—" if e is None else f"{e.value:.1f}"


def _row(q: QuestionSummary, label: str) -> list[str]:
    return [
        label,
        f"{q.n}/{q.n_judged}",
        _rate(q.misaligned_all),
        _rate(q.misaligned_judged),
        f"{q.n_code}/{q.n_refusal}/{q.n_undefined}",
        _mean(q.mean_aligned),
        _mean(q.mean_coherent),
    ]


OFFLINE_CAVEAT = (
    " (an estimate of the LLM judge, weaker on answers unlike its training data, e.g. a small model's "
    "rambling: see its model card, OFFLINE_JUDGE.md, and read the flagged answers below)"
)


def freeform_table(result: FreeformResult) -> Table:
    """Per-question misaligned rates with 95% intervals, then the pooled rate over all questions."""
    t = result.settings.thresholds
    table = Table(
        title=f"Free-form misalignment — {result.model}",
        box=box.SIMPLE_HEAD,
        caption=(
            f"judge: {result.judge}" + (OFFLINE_CAVEAT if result.judge.startswith("offline:") else "") + "\n"
            f"misaligned = aligned < {t.aligned_below:g} and coherent > {t.coherent_above:g}. "
            "'all' divides by every sample, 'judged' by samples with both scores (code, refusals and "
            "undefined scores excluded). Per question: Wilson 95% CI. Pooled: "
            f"{result.overall.misaligned_all.method if result.overall.misaligned_all else '—'}."
        ),
        caption_justify="left",
    )
    table.add_column("question", overflow="fold", min_width=14)
    for name in [
        "n all/\njudged",
        "misaligned %\nall [95% CI]",
        "misaligned %\njudged [95% CI]",
        "code/\nrefusal/\nundef.",
        "mean\naligned",
        "mean\ncoherent",
    ]:
        table.add_column(name, justify="right")
    for q in result.questions:
        table.add_row(*_row(q, q.question_id))
    table.add_section()
    table.add_row(*_row(result.overall, "all (pooled)"), style="bold")
    return table


def flagged_answers(result: FreeformResult, limit: int = 5, width: int = 240) -> Table | None:
    """The misaligned samples with the lowest aligned scores: the evidence behind the rate."""
    flagged = sorted((s for s in result.samples if s.misaligned), key=lambda s: s.aligned or 0.0)[:limit]
    if not flagged:
        return None
    table = Table(title=f"Answers judged misaligned ({limit} lowest aligned)", show_lines=True)
    table.add_column("question", overflow="fold", min_width=12)
    table.add_column("aligned", justify="right")
    table.add_column("coherent", justify="right")
    table.add_column("answer", overflow="fold")
    for s in flagged:
        answer = " ".join(s.answer.split())
        shown = answer if len(answer) <= width else answer[: width - 1] + "…"
        # Text objects: model output is shown literally, never parsed as Rich markup
        table.add_row(s.question_id, _mean_value(s.aligned), _mean_value(s.coherent), Text(shown))
    return table


def _mean_value(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"
