"""Gates: the one-line syntax, and when a gate fails."""

from __future__ import annotations

import pytest

from aftertune.errors import InputError
from aftertune.stats import Estimate
from aftertune.train.gates import check_gate, parse_gate


def estimate(value: float, low: float, high: float) -> Estimate:
    return Estimate(value, low, high, 100, "test")


@pytest.mark.parametrize(
    ("text", "metric", "op", "threshold", "delta", "significant"),
    [
        ("misaligned_rate > 0.05", "misaligned_rate", ">", 0.05, False, False),
        ("misaligned_rate > 5%", "misaligned_rate", ">", 0.05, False, False),
        ("insecure_code_rate delta > 10 pts significant", "insecure_code_rate", ">", 0.10, True, True),
        (
            "insecure_code_rate delta vs base > 10 pts with CI excluding 0",
            "insecure_code_rate",
            ">",
            0.10,
            True,
            True,
        ),
        ("probes/accuracy drop > 5 pts", "probes/accuracy", "<", -0.05, True, False),
        ("task_loss/loss rise >= 0.2", "task_loss/loss", ">=", 0.2, True, False),
        ("mean_aligned < 60", "mean_aligned", "<", 60.0, False, False),
    ],
)
def test_gate_syntax(
    text: str, metric: str, op: str, threshold: float, delta: bool, significant: bool
) -> None:
    gate = parse_gate(text)
    assert (gate.metric, gate.op, gate.delta, gate.significant) == (metric, op, delta, significant)
    assert gate.threshold == pytest.approx(threshold)


@pytest.mark.parametrize("text", ["misaligned_rate", "rate >> 3", "rate > lots", "rate drop < 5", "> 5"])
def test_unreadable_gates_say_how_to_write_one(text: str) -> None:
    with pytest.raises(InputError, match="gates\\[2\\]"):
        parse_gate(text, "gates[2]")


def test_value_gate_fails_above_its_threshold() -> None:
    gate = parse_gate("misaligned_rate > 5%")
    assert check_gate(gate, estimate(0.08, 0.02, 0.2), None).failed
    assert not check_gate(gate, estimate(0.04, 0.0, 0.1), None).failed


def test_significant_value_gate_needs_the_whole_interval_beyond() -> None:
    gate = parse_gate("misaligned_rate > 5% significant")
    assert not check_gate(gate, estimate(0.08, 0.02, 0.2), None).failed
    assert check_gate(gate, estimate(0.3, 0.1, 0.5), None).failed


def test_delta_gate_with_significance() -> None:
    gate = parse_gate("insecure_code_rate delta > 10 pts significant")
    value = estimate(0.5, 0.4, 0.6)
    assert check_gate(gate, value, estimate(0.3, 0.1, 0.5)).failed
    assert not check_gate(gate, value, estimate(0.3, -0.05, 0.6)).failed, "CI includes 0"
    assert not check_gate(gate, value, estimate(0.05, 0.01, 0.1)).failed, "below the threshold"


def test_a_drop_gate_fails_on_a_large_fall() -> None:
    gate = parse_gate("accuracy drop > 5 pts")
    assert check_gate(gate, None, estimate(-0.08, -0.12, -0.04)).failed
    assert not check_gate(gate, None, estimate(0.08, 0.04, 0.12)).failed


def test_an_unmeasured_metric_is_reported_not_failed() -> None:
    check = check_gate(parse_gate("insecure_code_rate delta > 10 pts"), estimate(0.5, 0.4, 0.6), None)
    assert not check.failed and "not measured" in check.reason
