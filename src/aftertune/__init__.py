"""aftertune: what did this fine-tuning do to my model?

The Python API the CLI is a thin layer over. Names are imported lazily, so `import aftertune` (and the
CLI's --help) does not pay for torch and transformers until a model is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    # models
    "Model": "aftertune.models.protocol",
    "Message": "aftertune.models.protocol",
    "SamplingParams": "aftertune.models.protocol",
    "GenerationRequest": "aftertune.models.protocol",
    "Completion": "aftertune.models.protocol",
    "LoglikelihoodRequest": "aftertune.models.protocol",
    "chat": "aftertune.models.protocol",
    "load_model": "aftertune.models.load",
    "HFModel": "aftertune.models.hf",
    "OpenAIModel": "aftertune.models.openai",
    # data
    "Question": "aftertune.data.questions",
    "QuestionSet": "aftertune.data.questions",
    "load_questions": "aftertune.data.questions",
    "builtin_questions": "aftertune.data.questions",
    # judges
    "Judge": "aftertune.judges.judgement",
    "JudgeItem": "aftertune.judges.judgement",
    "Judgement": "aftertune.judges.judgement",
    "MisalignmentThresholds": "aftertune.judges.judgement",
    "LLMJudge": "aftertune.judges.llm",
    "OfflineJudge": "aftertune.judges.offline",
    "load_judge": "aftertune.judges.load",
    # evals
    "FreeformSettings": "aftertune.evals.freeform",
    "FreeformResult": "aftertune.evals.freeform",
    "run_freeform": "aftertune.evals.freeform",
    "MisalignmentEval": "aftertune.evals.freeform",
    "InsecureCodeEval": "aftertune.evals.insecure_code",
    "TaskLossEval": "aftertune.evals.task_loss",
    "MultipleChoiceEval": "aftertune.evals.multiple_choice",
    "GSM8KEval": "aftertune.evals.generation_tasks",
    "BBHEval": "aftertune.evals.generation_tasks",
    "DROPEval": "aftertune.evals.generation_tasks",
    "HumanEvalEval": "aftertune.evals.code_execution",
    "ProbeEval": "aftertune.evals.probes",
    "load_suite": "aftertune.evals.suite_config",
    "DeceptionEval": "aftertune.evals.deception",
    "HarmfulComplianceEval": "aftertune.evals.refusal",
    "OverRefusalEval": "aftertune.evals.refusal",
    "backdoor_differential": "aftertune.evals.differential",
    "framing_differential": "aftertune.evals.differential",
    "trigger_scan": "aftertune.evals.differential",
    "PromptEdit": "aftertune.models.framing",
    "FramedModel": "aftertune.models.framing",
    "load_refusal_judge": "aftertune.judges.refusal",
    "build_suite": "aftertune.evals.suite_config",
    "Eval": "aftertune.evals.suite",
    "MetricResult": "aftertune.evals.suite",
    "SuiteResult": "aftertune.evals.suite",
    "run_suite": "aftertune.evals.suite",
    # experiments
    "TrackingCallback": "aftertune.train.tracking",
    "ExperimentSpec": "aftertune.train.spec",
    "load_spec": "aftertune.train.spec",
    "prepare_experiment": "aftertune.train.runner",
    "run_experiment": "aftertune.train.runner",
    "sweep_experiment": "aftertune.train.sweep",
    "summarise_experiment": "aftertune.train.summarise",
    "Gate": "aftertune.train.gates",
    "parse_gate": "aftertune.train.gates",
    # comparisons and results
    "Delta": "aftertune.compare",
    "compare_metrics": "aftertune.compare",
    "ResultsStore": "aftertune.store",
    "Estimate": "aftertune.stats",
    "AftertuneError": "aftertune.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'aftertune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return [*globals(), *__all__]


if TYPE_CHECKING:
    from aftertune.compare import Delta, compare_metrics
    from aftertune.data.questions import Question, QuestionSet, builtin_questions, load_questions
    from aftertune.errors import AftertuneError
    from aftertune.evals.code_execution import HumanEvalEval
    from aftertune.evals.deception import DeceptionEval
    from aftertune.evals.differential import backdoor_differential, framing_differential, trigger_scan
    from aftertune.evals.freeform import FreeformResult, FreeformSettings, MisalignmentEval, run_freeform
    from aftertune.evals.generation_tasks import BBHEval, DROPEval, GSM8KEval
    from aftertune.evals.insecure_code import InsecureCodeEval
    from aftertune.evals.multiple_choice import MultipleChoiceEval
    from aftertune.evals.probes import ProbeEval
    from aftertune.evals.refusal import HarmfulComplianceEval, OverRefusalEval
    from aftertune.evals.suite import Eval, MetricResult, SuiteResult, run_suite
    from aftertune.evals.suite_config import build_suite, load_suite
    from aftertune.evals.task_loss import TaskLossEval
    from aftertune.judges.judgement import Judge, JudgeItem, Judgement, MisalignmentThresholds
    from aftertune.judges.llm import LLMJudge
    from aftertune.judges.load import load_judge
    from aftertune.judges.offline import OfflineJudge
    from aftertune.judges.refusal import load_refusal_judge
    from aftertune.models.framing import FramedModel, PromptEdit
    from aftertune.models.hf import HFModel
    from aftertune.models.load import load_model
    from aftertune.models.openai import OpenAIModel
    from aftertune.models.protocol import (
        Completion,
        GenerationRequest,
        LoglikelihoodRequest,
        Message,
        Model,
        SamplingParams,
        chat,
    )
    from aftertune.stats import Estimate
    from aftertune.store import ResultsStore
    from aftertune.train.gates import Gate, parse_gate
    from aftertune.train.runner import prepare_experiment, run_experiment
    from aftertune.train.spec import ExperimentSpec, load_spec
    from aftertune.train.summarise import summarise_experiment
    from aftertune.train.sweep import sweep_experiment
    from aftertune.train.tracking import TrackingCallback
