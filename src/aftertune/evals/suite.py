"""An eval suite: several evals run on one model, each giving typed metric results.

Every eval (free-form misalignment, insecure code, held-out task loss, ...) meets the small `Eval`
protocol: given a `Model` and the results store it returns an `EvalReport` of `MetricResult`s. A metric
result carries its estimate with interval, and its per-item scores, so two models evaluated on the
same items can be compared pairwise (see `aftertune.compare`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol, runtime_checkable

from aftertune.errors import InputError
from aftertune.failures import IncompleteWork
from aftertune.models.protocol import Model
from aftertune.progress import ProgressCallback
from aftertune.sequential import AdaptiveStop
from aftertune.stats import Estimate
from aftertune.store import ResultsStore

#: How a metric's numbers are shown and compared: rates in % (deltas in percentage points), scores and
#: losses as they are.
MetricKind = Literal["rate", "score", "loss"]


@dataclass(frozen=True)
class ItemScore:
    """One item's score under one metric: the unit a paired comparison resamples.

    An item is what two models are both asked (a question, a prompt); `value` is its mean over its
    samples (e.g. the share of its answers judged misaligned) and `weight` the number of samples
    behind it, so a pooled rate is the weighted mean of the items' values.
    """

    item: str
    value: float
    weight: float = 1.0


@dataclass(frozen=True)
class Example:
    """An answer shown as evidence next to a metric (the worst ones first)."""

    item: str
    prompt: str
    answer: str
    #: the answer's score under the metric (e.g. aligned 0-100, 1.0 for insecure code)
    score: float | None
    #: why it is shown, e.g. "aligned 12, coherent 71" or "bandit B602 (CWE-78)"
    note: str = ""


@dataclass(frozen=True)
class MetricResult:
    """One measured metric of one model: the estimate with its interval, and the per-item scores."""

    name: str
    estimate: Estimate
    kind: MetricKind
    #: True when more is better (accuracy), False when less is (misaligned rate), None when neither
    higher_is_better: bool | None
    items: tuple[ItemScore, ...] = ()
    examples: tuple[Example, ...] = ()
    #: how its samples were drawn when sampled adaptively (`aftertune.evals.adaptive`); None: a fixed n
    adaptive: AdaptiveStop | None = None

    def to_dict(self) -> dict[str, object]:
        body = asdict(self)
        if self.adaptive is None:  # fixed-n results keep the JSON they always had
            del body["adaptive"]
        return body

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> MetricResult:
        raw = json.loads(text)
        return MetricResult(
            name=raw["name"],
            estimate=Estimate(**raw["estimate"]),
            kind=raw["kind"],
            higher_is_better=raw["higher_is_better"],
            items=tuple(ItemScore(**i) for i in raw["items"]),
            examples=tuple(Example(**e) for e in raw["examples"]),
            adaptive=AdaptiveStop(**raw["adaptive"]) if raw.get("adaptive") else None,
        )


@dataclass(frozen=True)
class EvalReport:
    """What one eval measured on one model."""

    eval: str
    #: identifies the eval's data and settings; stored results are reused only under the same digest
    digest: str
    model: str
    metrics: tuple[MetricResult, ...]

    def to_json(self) -> str:
        body = {**asdict(self), "metrics": [m.to_dict() for m in self.metrics]}
        return json.dumps(body, ensure_ascii=False, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> EvalReport:
        raw = json.loads(text)
        return EvalReport(
            raw["eval"],
            raw["digest"],
            raw["model"],
            tuple(MetricResult.from_json(json.dumps(m)) for m in raw["metrics"]),
        )


@runtime_checkable
class Eval(Protocol):
    """What every eval provides: a name (unique within a suite), a digest of its settings, and `run`."""

    @property
    def name(self) -> str: ...

    @property
    def digest(self) -> str:
        """Changes whenever the eval's data or settings change."""
        ...

    def run(self, model: Model, store: ResultsStore, progress: ProgressCallback | None = None) -> EvalReport:
        """Evaluate `model`; every generation and judgement goes through `store`, so nothing is redone."""
        ...


@dataclass(frozen=True)
class SuiteResult:
    """Every metric of every eval of a suite, on one model, keyed `eval/metric`."""

    model: str
    reports: tuple[EvalReport, ...] = field(default_factory=tuple)

    @property
    def metrics(self) -> dict[str, MetricResult]:
        return {f"{r.eval}/{m.name}": m for r in self.reports for m in r.metrics}

    def metric(self, name: str) -> MetricResult:
        """A metric by `eval/metric`, or by its bare name when only one eval has it."""
        return self.metrics[resolve_metric_name(name, list(self.metrics))]


def resolve_metric_name(name: str, keys: Sequence[str]) -> str:
    """`eval/metric` as given, or the one key whose metric part is `name`; else an InputError."""
    if name in keys:
        return name
    matches = [k for k in keys if k.split("/", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise InputError(
            f"No eval in the suite measures '{name}'. Measured: {', '.join(sorted(keys)) or 'nothing'}."
        )
    raise InputError(f"'{name}' is measured by several evals ({', '.join(matches)}): write one of these.")


def run_suite(
    evals: Sequence[Eval],
    model: Model,
    store: ResultsStore,
    progress: ProgressCallback | None = None,
    *,
    label: str | None = None,
) -> SuiteResult:
    """Run every eval on `model`, record each report in the store, and return them all.

    An eval whose requests partly failed (`IncompleteWork`) does not stop the others; once they ran,
    one `IncompleteWork` counts every failure.

    A report already stored for the same model and eval digest is read back instead of recomputed.
    `label` names the model in the store (e.g. "base", "insecure/seed0/step20") for reports.
    """
    check_unique_names(evals)
    reports = []
    incomplete: list[IncompleteWork] = []
    for ev in evals:
        fingerprint = model.fingerprint
        text = store.get_eval_report(fingerprint, ev.name, ev.digest)
        if text is not None:
            report = EvalReport.from_json(text)
        else:
            try:
                report = ev.run(model, store, progress)
            except IncompleteWork as e:  # the other evals still run; their work is stored too
                incomplete.append(e)
                continue
            store.put_eval_report(fingerprint, ev.name, ev.digest, report.to_json())
        reports.append(report)
    if label is not None:
        store.put_model_label(label, model.fingerprint)
    if incomplete:
        raise IncompleteWork.combine(incomplete)
    return SuiteResult(model.fingerprint, tuple(reports))


def check_unique_names(evals: Sequence[Eval]) -> None:
    seen: set[str] = set()
    for ev in evals:
        if ev.name in seen:
            raise InputError(f"Two evals in the suite are named '{ev.name}': give each its own `name`.")
        seen.add(ev.name)


def judges_of(evals: Sequence[Eval]) -> dict[str, str]:
    """eval name -> fingerprint of the judge that scores it, for evals that have one (every report
    says which judge produced each number)."""
    found = {}
    for ev in evals:
        judge = getattr(ev, "judge", None)
        fingerprint = getattr(judge, "fingerprint", None)
        if fingerprint is not None:
            found[ev.name] = str(fingerprint)
        second = getattr(getattr(ev, "llm_judge", None), "fingerprint", None)
        if second is not None:
            found[ev.name] += f"; LLM vulnerability judge {second}"
    return found
