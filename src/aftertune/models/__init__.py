"""Model backends behind one protocol: `hf` (transformers + peft) and `openai` (any compatible endpoint);
`framing.FramedModel` edits every prompt (triggers, system-prompt framings)."""

from aftertune.models.framing import FramedModel, PromptEdit
from aftertune.models.protocol import (
    Completion,
    GenerationRequest,
    LoglikelihoodRequest,
    Message,
    Model,
    SamplingParams,
    TokenLogprob,
    chat,
)

__all__ = [
    "FramedModel",
    "PromptEdit",
    "Completion",
    "GenerationRequest",
    "LoglikelihoodRequest",
    "Message",
    "Model",
    "SamplingParams",
    "TokenLogprob",
    "chat",
]
