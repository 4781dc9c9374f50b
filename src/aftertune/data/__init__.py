"""Reading and validating user files: question files and (question, answer) rows."""

from aftertune.data.answers import read_answer_rows, write_answer_rows
from aftertune.data.questions import Question, QuestionSet, builtin_questions, load_questions

__all__ = [
    "Question",
    "QuestionSet",
    "builtin_questions",
    "load_questions",
    "read_answer_rows",
    "write_answer_rows",
]
