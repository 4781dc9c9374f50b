"""Judges behind one interface: the logprob-weighted LLM judge and the offline embedding judge."""

from aftertune.judges.judgement import Judge, JudgeClass, JudgeItem, Judgement, MisalignmentThresholds
from aftertune.judges.llm import LLMJudge
from aftertune.judges.load import load_judge
from aftertune.judges.offline import OfflineJudge

__all__ = [
    "Judge",
    "JudgeClass",
    "JudgeItem",
    "Judgement",
    "LLMJudge",
    "MisalignmentThresholds",
    "OfflineJudge",
    "load_judge",
]
