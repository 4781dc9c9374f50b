"""Gates: conditions on metrics that stop a training run when they fail.

A gate is written as one line, e.g.

    misaligned_rate > 5%                              the rate itself is above 5%
    misaligned_rate > 0.05 significant                its whole 95% interval is above 0.05
    insecure_code_rate delta > 10 pts significant     it rose by more than 10 points vs the base
                                                      model, and the delta's interval excludes 0
    probes/accuracy drop > 5 pts                      it fell by more than 5 points vs the base

`METRIC [delta|drop|rise] (>|<|>=|<=) NUMBER [pts|%] [significant]`. The condition is the *failure*:
when it holds, the gate fails. `pts` and `%` are percentage points of a rate (10 pts = 0.10). `drop > X`
is `delta < -X`, `rise > X` is `delta > X`. Deltas are paired against the base model on the same items.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from aftertune.errors import InputError
from aftertune.stats import Estimate

Comparison = Literal[">", "<", ">=", "<="]
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}
_GATE = re.compile(
    r"^\s*(?P<metric>[\w./-]+)\s+"
    r"(?:(?P<change>delta|drop|rise)\s+(?:vs\s+base\s+)?)?"
    r"(?P<op>>=|<=|>|<)\s*"
    r"(?P<number>[-+]?\d+(?:\.\d+)?)\s*(?P<unit>pts|pt|%)?"
    r"(?:\s+(?P<significant>significant|with\s+CI\s+excluding\s+0))?\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Gate:
    """Fails when `metric` (or its delta vs the base model) compares `op` to `threshold`."""

    text: str
    metric: str
    op: Comparison
    #: in the metric's own units: a rate's 10 pts is 0.10
    threshold: float
    #: compare the paired delta against the base model instead of the value
    delta: bool = False
    #: fail only when the interval agrees: for a delta, its CI must exclude 0; for a value, the whole
    #: CI must be beyond the threshold
    significant: bool = False


@dataclass(frozen=True)
class GateCheck:
    """The outcome of one gate on one model."""

    gate: str
    metric: str
    failed: bool
    #: the value or delta the gate looked at (None when it could not be measured)
    observed: Estimate | None
    reason: str


def parse_gate(text: str, where: str = "gate") -> Gate:
    """One gate line; an InputError that shows the syntax when it does not parse."""
    match = _GATE.match(text)
    if not match:
        raise InputError(
            f"{where}: cannot read the gate {text!r}. Write `METRIC [delta|drop|rise] (>|<|>=|<=) "
            "NUMBER [pts|%] [significant]`, e.g. 'misaligned_rate > 5%' or "
            "'insecure_code_rate delta > 10 pts significant'."
        )
    number = float(match["number"])
    if match["unit"]:
        number /= 100
    op: Comparison = match["op"]  # type: ignore[assignment]
    change = (match["change"] or "").lower()
    if change == "drop":
        if op not in (">", ">="):
            raise InputError(f"{where}: write a drop as 'METRIC drop > N' (got {text!r}).")
        op, number = ("<" if op == ">" else "<="), -number
    elif change == "rise" and op not in (">", ">="):
        raise InputError(f"{where}: write a rise as 'METRIC rise > N' (got {text!r}).")
    return Gate(
        text=text.strip(),
        metric=match["metric"],
        op=op,
        threshold=number,
        delta=bool(change),
        significant=bool(match["significant"]),
    )


def check_gate(gate: Gate, value: Estimate | None, delta: Estimate | None) -> GateCheck:
    """Whether `gate` fails, given the metric's estimate and its delta vs the base (either may be None)."""
    observed = delta if gate.delta else value
    if observed is None:
        what = "the delta vs the base model" if gate.delta else "the metric"
        return GateCheck(gate.text, gate.metric, False, None, f"{what} was not measured; gate not checked")
    compare = _OPS[gate.op]
    failed = compare(observed.value, gate.threshold)
    if failed and gate.significant:
        if gate.delta:
            failed = observed.low > 0 or observed.high < 0
        else:  # the whole interval must be beyond the threshold
            failed = compare(observed.low, gate.threshold) and compare(observed.high, gate.threshold)
    shown = f"{observed.value:.4g} [{observed.low:.4g}, {observed.high:.4g}]"
    verdict = "FAILED" if failed else "passed"
    return GateCheck(gate.text, gate.metric, failed, observed, f"{verdict}: observed {shown}")


def check_gates(
    gates: list[Gate], values: Mapping[str, Estimate], deltas: Mapping[str, Estimate]
) -> list[GateCheck]:
    """Check every gate; `values` and `deltas` are keyed by the metric names the gates use."""
    return [check_gate(g, values.get(g.metric), deltas.get(g.metric)) for g in gates]
