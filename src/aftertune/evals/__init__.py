"""One module per eval family; an eval is data + sampling + scoring."""

from aftertune.evals.code_execution import HumanEvalEval, pass_at_k
from aftertune.evals.deception import DeceptionEval
from aftertune.evals.differential import (
    PhraseRateEval,
    backdoor_differential,
    framing_differential,
    trigger_scan,
)
from aftertune.evals.freeform import FreeformResult, FreeformSettings, MisalignmentEval, run_freeform
from aftertune.evals.generation_tasks import BBHEval, DROPEval, GSM8KEval
from aftertune.evals.insecure_code import (
    BanditJudge,
    InsecureCodeEval,
    builtin_insecure_code_eval,
    fired_tests,
)
from aftertune.evals.multiple_choice import MultipleChoiceEval
from aftertune.evals.probes import ProbeEval, builtin_capability_probes, builtin_cyber_probes
from aftertune.evals.refusal import HarmfulComplianceEval, OverRefusalEval
from aftertune.evals.suite import Eval, EvalReport, ItemScore, MetricResult, SuiteResult, run_suite
from aftertune.evals.suite_config import build_suite, load_suite, named_suites
from aftertune.evals.task_loss import TaskLossEval

__all__ = [
    "DeceptionEval",
    "PhraseRateEval",
    "backdoor_differential",
    "framing_differential",
    "trigger_scan",
    "HarmfulComplianceEval",
    "OverRefusalEval",
    "BBHEval",
    "BanditJudge",
    "DROPEval",
    "GSM8KEval",
    "HumanEvalEval",
    "MultipleChoiceEval",
    "ProbeEval",
    "build_suite",
    "builtin_capability_probes",
    "builtin_cyber_probes",
    "load_suite",
    "named_suites",
    "pass_at_k",
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
