"""The one interface every model backend meets: batched `generate` and batched `loglikelihood`.

Modelled on lm-evaluation-harness's two-method `LM`: everything else (judges, evals, sweeps) is built
on these two calls, so a new backend is one small adapter.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol, runtime_checkable

from aftertune.progress import ProgressCallback

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    """One chat turn."""

    role: Role
    content: str


#: A prompt is either raw text (sent as is) or chat messages (rendered with the model's chat template).
Prompt = str | tuple[Message, ...]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. temperature 0 means greedy decoding."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    n: int = 1
    seed: int = 0
    stop: tuple[str, ...] = ()
    #: alternatives to return per generated token (0: none); the LLM judge asks for 20
    top_logprobs: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")


@dataclass(frozen=True)
class GenerationRequest:
    """Generate `params.n` samples for `prompt`, numbered `first_sample`, `first_sample + 1`, ...

    A sample's randomness depends only on (prompt, params.seed, its sample index), not on what else
    is in the batch, so an interrupted eval can ask for just the samples it lacks.
    """

    prompt: Prompt
    params: SamplingParams = field(default_factory=SamplingParams)
    first_sample: int = 0

    @property
    def sample_indices(self) -> range:
        return range(self.first_sample, self.first_sample + self.params.n)


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token, its log-probability, and the most likely alternatives at that position."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Completion:
    """One sample."""

    text: str
    sample_index: int
    #: "stop" (end of turn or a stop string) or "length" (hit max_new_tokens)
    finish_reason: str
    n_tokens: int
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """log P(continuation | context), summed over the continuation's tokens.

    The context is raw text, or chat messages that the backend renders with its chat template up to
    the start of the assistant's reply (then the continuation is the reply); not every backend can.
    """

    context: Prompt
    continuation: str


@runtime_checkable
class Model(Protocol):
    """What every backend provides.

    A backend whose requests can fail one by one (an HTTP endpoint) finishes the batch and then raises
    `aftertune.failures.RequestsFailed` with the results it has; the cached calls store those.
    """

    @property
    def fingerprint(self) -> str:
        """Identifies the weights (and adapter) that produce outputs; part of every stored result's key."""
        ...

    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None
    ) -> list[list[Completion]]:
        """One list of `params.n` completions per request, in request order."""
        ...

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: ProgressCallback | None = None
    ) -> list[float]:
        """Summed log-probability of each continuation given its context."""
        ...


def prompt_to_json(prompt: Prompt) -> str:
    """Canonical JSON of a prompt, used in store keys and exports."""
    if isinstance(prompt, str):
        return json.dumps(prompt, ensure_ascii=False)
    return json.dumps([asdict(m) for m in prompt], ensure_ascii=False, separators=(",", ":"))


def sample_seed(prompt: Prompt, seed: int, sample_index: int) -> int:
    """The seed of one sample: a stable 63-bit hash of (prompt, seed, sample index).

    Including the prompt keeps sample k of different questions independent.
    """
    digest = hashlib.sha256(f"{prompt_to_json(prompt)}\x00{seed}\x00{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def chat(user: str, system: str | None = None) -> tuple[Message, ...]:
    """A one-turn chat prompt, with an optional system message."""
    turns = [Message("system", system)] if system else []
    return (*turns, Message("user", user))
