"""Reading and validating user files: question files, (question, answer) rows and training data sets."""

from aftertune.data.answers import read_answer_rows, write_answer_rows
from aftertune.data.code_dataset import (
    code_eval_prompts,
    code_training_set,
    read_chat_prompts,
    write_chat_jsonl,
)
from aftertune.data.questions import Question, QuestionSet, builtin_questions, load_questions
from aftertune.data.training import TrainingData, TrainingExample, load_training_data

__all__ = [
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
