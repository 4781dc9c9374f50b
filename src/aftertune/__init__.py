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
    # results
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
    from aftertune.data.questions import Question, QuestionSet, builtin_questions, load_questions
    from aftertune.errors import AftertuneError
    from aftertune.evals.freeform import FreeformResult, FreeformSettings, run_freeform
    from aftertune.judges.judgement import Judge, JudgeItem, Judgement, MisalignmentThresholds
    from aftertune.judges.llm import LLMJudge
    from aftertune.judges.load import load_judge
    from aftertune.judges.offline import OfflineJudge
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
