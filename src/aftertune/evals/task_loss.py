"""Held-out task loss: how well a model predicts the assistant turns of examples it was not trained on.

The task metric of a fine-tuning run: the training loss says how well the model fits what it saw,
this says whether it learned the task. It is the mean negative log-likelihood of each held-out
example's final assistant turn given the conversation before it, per UTF-8 byte of that turn (nats
per byte), so it does not depend on the tokenizer and long answers do not dominate.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from aftertune.errors import InputError
from aftertune.evals.suite import EvalReport, Example, ItemScore, MetricResult
from aftertune.models.protocol import LoglikelihoodRequest, Message, Model
from aftertune.progress import ProgressCallback
from aftertune.stats import mean_estimate
from aftertune.store import ResultsStore


@dataclass(frozen=True)
class TaskLossEval:
    """Mean held-out loss (nats per byte of the final assistant turn) over `examples` (id, messages)."""

    examples: tuple[tuple[str, tuple[Message, ...]], ...]
    name: str = "task_loss"

    def __post_init__(self) -> None:
        if len(self.examples) < 2:
            raise InputError(
                f"The task-loss eval '{self.name}' needs at least 2 held-out examples, got "
                f"{len(self.examples)}. Raise `holdout` or give a larger data set."
            )
        for item, messages in self.examples:
            if not messages or messages[-1].role != "assistant" or not messages[-1].content:
                raise InputError(f"Held-out example {item} does not end with a non-empty assistant turn.")

    @property
    def digest(self) -> str:
        body = json.dumps([[i, [asdict(m) for m in ms]] for i, ms in self.examples], ensure_ascii=False)
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def run(self, model: Model, store: ResultsStore, progress: ProgressCallback | None = None) -> EvalReport:
        requests = [
            LoglikelihoodRequest(context=messages[:-1], continuation=messages[-1].content)
            for _, messages in self.examples
        ]
        logprobs = model.loglikelihood(requests, progress)
        losses = [
            -lp / len(messages[-1].content.encode())
            for lp, (_, messages) in zip(logprobs, self.examples, strict=True)
        ]
        estimate = mean_estimate(losses)
        assert estimate is not None  # at least 2 examples, checked above
        worst = sorted(zip(losses, self.examples, strict=True), key=lambda x: -x[0])[:5]
        metric = MetricResult(
            "loss",
            estimate,
            "loss",
            higher_is_better=False,
            items=tuple(ItemScore(i, loss) for loss, (i, _) in zip(losses, self.examples, strict=True)),
            examples=tuple(
                Example(i, _last_user(ms), ms[-1].content, loss, f"{loss:.3f} nats/byte")
                for loss, (i, ms) in worst
            ),
        )
        return EvalReport(self.name, self.digest, model.fingerprint, (metric,))


def _last_user(messages: Sequence[Message]) -> str:
    return next((m.content for m in reversed(messages) if m.role == "user"), "")
