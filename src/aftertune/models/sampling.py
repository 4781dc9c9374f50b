"""Per-sample seeded sampling for batched generation.

`torch.multinomial` draws from one global random stream shared by the whole batch, so a sample's text
would depend on which other prompts shared its batch, and a resumed eval could not reproduce the
samples an interrupted one never stored. Instead each row gets its own generator, seeded from
(prompt, seed, sample index), and samples by the Gumbel-max trick: argmax(logits/T + Gumbel noise) is
an exact draw from softmax(logits/T) (Gumbel 1954; Maddison et al. 2014, "A* Sampling"). Generation
then runs greedy over the perturbed scores.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor, TemperatureLogitsWarper, TopPLogitsWarper


class SeededGumbelSampler(LogitsProcessor):
    """Turns greedy decoding into sampling with temperature and top-p, one random stream per row."""

    def __init__(self, row_seeds: list[int], temperature: float, top_p: float) -> None:
        if temperature <= 0:
            raise ValueError("use greedy decoding for temperature 0")
        self._generators = [torch.Generator(device="cpu").manual_seed(s) for s in row_seeds]
        self._temperature = TemperatureLogitsWarper(temperature)
        self._top_p = TopPLogitsWarper(top_p) if top_p < 1.0 else None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = self._temperature(input_ids, scores.float())
        if self._top_p is not None:
            scores = self._top_p(input_ids, scores)
        vocab = scores.shape[-1]
        # Every row draws one noise vector per step whether or not it has finished, so its stream
        # depends only on its own seed and the step number.
        uniform = torch.stack([torch.rand(vocab, generator=g) for g in self._generators])
        tiny = torch.finfo(torch.float32).tiny
        gumbel = -torch.log(-torch.log(uniform.clamp(min=tiny, max=1.0 - 1e-7)))
        return scores + gumbel.to(scores.device)  # type: ignore[return-value]
