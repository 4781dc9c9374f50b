"""Model backends behind one protocol: `hf` (transformers + peft) and `openai` (any compatible endpoint)."""

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
    "Completion",
    "GenerationRequest",
    "LoglikelihoodRequest",
    "Message",
    "Model",
    "SamplingParams",
    "TokenLogprob",
    "chat",
]
