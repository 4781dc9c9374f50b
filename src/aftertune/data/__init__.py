"""Reading and validating user files: question files, (question, answer) rows, training data sets,
benchmarks (MMLU, BBH, GSM8K, DROP, HumanEval, MC JSONL) and generated probes."""

from aftertune.data.answers import read_answer_rows, write_answer_rows
from aftertune.data.benchmarks import load_bbh, load_drop, load_gsm8k
from aftertune.data.code_dataset import (
    code_eval_prompts,
    code_training_set,
    read_chat_prompts,
    write_chat_jsonl,
)
from aftertune.data.deception import builtin_deception, load_deception
from aftertune.data.harmful_prompts import builtin_refusal_prompts, load_harmful_prompts
from aftertune.data.humaneval import HumanEvalTask, load_humaneval, load_humaneval_hub
from aftertune.data.multiple_choice import MCDataset, MCItem, load_mmlu, load_multiple_choice
from aftertune.data.probes import ProbeItem
from aftertune.data.questions import Question, QuestionSet, builtin_questions, load_questions
from aftertune.data.training import TrainingData, TrainingExample, load_training_data

__all__ = [
    "builtin_deception",
    "load_deception",
    "builtin_refusal_prompts",
    "load_harmful_prompts",
    "HumanEvalTask",
    "MCDataset",
    "MCItem",
    "ProbeItem",
    "load_bbh",
    "load_drop",
    "load_gsm8k",
    "load_humaneval",
    "load_humaneval_hub",
    "load_mmlu",
    "load_multiple_choice",
    "Question",
    "QuestionSet",
    "TrainingData",
    "TrainingExample",
    "builtin_questions",
    "code_eval_prompts",
    "code_training_set",
    "load_questions",
    "load_training_data",
    "read_answer_rows",
    "read_chat_prompts",
    "write_answer_rows",
    "write_chat_jsonl",
]
