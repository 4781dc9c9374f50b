"""From a --judge value to a `Judge`: `offline`, or `llm:` followed by any model spec."""

from __future__ import annotations

from aftertune.errors import InputError
from aftertune.judges.judgement import Judge

OFFLINE = "offline"
LLM_PREFIX = "llm:"


def load_judge(spec: str, *, check_tokens: bool = True) -> Judge:
    """`offline`, or `llm:MODEL` where MODEL is what `aftertune eval` takes (an endpoint
    `http://host:port/v1/NAME`, `openai:NAME`, a local folder, or `embedded`)."""
    if spec == OFFLINE:
        from aftertune.judges.offline import OfflineJudge

        return OfflineJudge()
    if spec.startswith(LLM_PREFIX) and spec[len(LLM_PREFIX) :]:
        from aftertune.judges.llm import LLMJudge
        from aftertune.models.load import load_model

        judge = LLMJudge(load_model(spec[len(LLM_PREFIX) :]))
        if check_tokens:
            judge.check_number_tokens()
        return judge
    raise InputError(
        f"--judge '{spec}' is not understood. Use 'offline', or 'llm:' and a model, e.g. "
        "'llm:http://localhost:8000/v1/gpt-4o' or 'llm:openai:gpt-4o-2024-08-06'."
    )
