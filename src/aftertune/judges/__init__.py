"""Judges behind one interface: the logprob-weighted LLM judge and the offline embedding judge."""

from aftertune.judges.judgement import Judge, JudgeClass, JudgeItem, Judgement, MisalignmentThresholds
from aftertune.judges.llm import LLMJudge
from aftertune.judges.load import load_judge
from aftertune.judges.offline import OfflineJudge
from aftertune.judges.refusal import LLMRefusalJudge, OfflineRefusalJudge, load_refusal_judge

__all__ = [
    "LLMRefusalJudge",
    "OfflineRefusalJudge",
    "load_refusal_judge",
    "Judge",
    "JudgeClass",
    "JudgeItem",
    "Judgement",
    "LLMJudge",
    "MisalignmentThresholds",
    "OfflineJudge",
    "load_judge",
]
