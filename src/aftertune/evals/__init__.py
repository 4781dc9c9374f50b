"""One module per eval family; an eval is data + sampling + scoring.

Names are imported lazily: evals depend on aftertune.compare, which depends on evals.suite, so an
eager package import would be circular (and slow)."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AdaptiveSettings": "aftertune.evals.adaptive",
    "BBHEval": "aftertune.evals.generation_tasks",
    "BanditJudge": "aftertune.evals.insecure_code",
    "DROPEval": "aftertune.evals.generation_tasks",
    "DeceptionEval": "aftertune.evals.deception",
    "Eval": "aftertune.evals.suite",
    "EvalReport": "aftertune.evals.suite",
    "FreeformResult": "aftertune.evals.freeform",
    "FreeformSettings": "aftertune.evals.freeform",
    "GSM8KEval": "aftertune.evals.generation_tasks",
    "HarmfulComplianceEval": "aftertune.evals.refusal",
    "HumanEvalEval": "aftertune.evals.code_execution",
    "InsecureCodeEval": "aftertune.evals.insecure_code",
    "ItemScore": "aftertune.evals.suite",
    "MetricResult": "aftertune.evals.suite",
    "MisalignmentEval": "aftertune.evals.freeform",
    "MultipleChoiceEval": "aftertune.evals.multiple_choice",
    "OverRefusalEval": "aftertune.evals.refusal",
    "PhraseRateEval": "aftertune.evals.differential",
    "ProbeEval": "aftertune.evals.probes",
    "SuiteResult": "aftertune.evals.suite",
    "TaskLossEval": "aftertune.evals.task_loss",
    "backdoor_differential": "aftertune.evals.differential",
    "build_suite": "aftertune.evals.suite_config",
    "builtin_capability_probes": "aftertune.evals.probes",
    "builtin_cyber_probes": "aftertune.evals.probes",
    "builtin_insecure_code_eval": "aftertune.evals.insecure_code",
    "fired_tests": "aftertune.evals.insecure_code",
    "framing_differential": "aftertune.evals.differential",
    "load_suite": "aftertune.evals.suite_config",
    "named_suites": "aftertune.evals.suite_config",
    "pass_at_k": "aftertune.evals.code_execution",
    "run_freeform": "aftertune.evals.freeform",
    "run_suite": "aftertune.evals.suite",
    "trigger_scan": "aftertune.evals.differential",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'aftertune.evals' has no attribute {name!r}")


def __dir__() -> list[str]:
    return [*globals(), *__all__]
