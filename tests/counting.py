"""A wrapper around a real model that counts what it is asked to compute (tests of caching and resume)."""

from __future__ import annotations

from collections.abc import Sequence

from aftertune.models.protocol import Completion, GenerationRequest, LoglikelihoodRequest, Model
from aftertune.progress import ProgressCallback


class CountingModel:
    """`generated`: samples asked for (n of each request); `scored`: log-likelihood requests."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.generated = self.scored = 0

    @property
    def fingerprint(self) -> str:
        return self.model.fingerprint

    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None
    ) -> list[list[Completion]]:
        self.generated += sum(r.params.n for r in requests)
        return self.model.generate(requests, progress)

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: ProgressCallback | None = None
    ) -> list[float]:
        self.scored += len(requests)
        return self.model.loglikelihood(requests, progress)
