"""One module per eval family; an eval is data + sampling + scoring."""

from aftertune.evals.freeform import FreeformResult, FreeformSettings, MisalignmentEval, run_freeform
from aftertune.evals.insecure_code import (
    BanditJudge,
    InsecureCodeEval,
    builtin_insecure_code_eval,
    fired_tests,
)
from aftertune.evals.suite import Eval, EvalReport, ItemScore, MetricResult, SuiteResult, run_suite
from aftertune.evals.task_loss import TaskLossEval

__all__ = [
    "BanditJudge",
    "Eval",
    "EvalReport",
    "FreeformResult",
    "FreeformSettings",
    "InsecureCodeEval",
    "ItemScore",
    "MetricResult",
    "MisalignmentEval",
    "SuiteResult",
    "TaskLossEval",
    "builtin_insecure_code_eval",
    "fired_tests",
    "run_freeform",
    "run_suite",
]
