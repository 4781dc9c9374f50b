"""Multiple-choice accuracy by log-likelihood, with lm-evaluation-harness's MMLU prompts and metrics.

Two ways to ask, as in lm-evaluation-harness (`lm_eval/tasks/mmlu/default` and `.../continuation`):

- `letter` (task `mmlu`): the prompt lists the options as "A. ..", "B. .." and ends "Answer:"; each
  option's score is log P(" A" | prompt), ... The letters are single tokens for most tokenizers, so
  the hf backend scores a question from one forward pass.
- `cloze` (task `mmlu_continuation`): the prompt is "Question: ..\\nAnswer:" and each option's own text
  " {choice}" is scored. `accuracy_norm` divides each score by the option's length in characters
  first, as lm-evaluation-harness's `acc_norm` does (`len(choice)`: bytes for ASCII text).

Few-shot examples are the first k worked examples of the question's subject (MMLU's dev split;
lm-evaluation-harness's `first_n` sampler), each followed by its answer, joined by blank lines. A data
set without such a pool draws k of the subject's other questions with the eval's seed.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Literal

import numpy as np

from aftertune.cached import loglikelihood_cached
from aftertune.data.multiple_choice import LETTERS, MCDataset, MCItem
from aftertune.errors import InputError
from aftertune.evals.suite import EvalReport, Example, ItemScore, MetricResult
from aftertune.models.protocol import LoglikelihoodRequest, Message, Model, Prompt
from aftertune.progress import ProgressCallback
from aftertune.stats import Estimate, wilson_rate
from aftertune.store import ResultsStore

MCMode = Literal["letter", "cloze"]

#: Part of the digest: bump it when the prompt text changes, so stored reports are not reused.
PROMPT_VERSION = 1


def description(subject: str | None, mode: MCMode) -> str:
    """The line before the questions: lm-evaluation-harness's MMLU `description` for each task."""
    if subject is None:
        return ""
    topic = subject.replace("_", " ")
    if mode == "letter":
        return f"The following are multiple choice questions (with answers) about {topic}.\n\n"
    return f"The following are questions (with answers) about {topic}.\n\n"


def question_text(item: MCItem, mode: MCMode) -> str:
    """One question as asked, up to "Answer:" (lm-evaluation-harness's `doc_to_text`)."""
    if mode == "letter":
        options = "".join(f"{LETTERS[i]}. {choice}\n" for i, choice in enumerate(item.choices))
        return f"{item.question.strip()}\n{options}Answer:"
    return f"Question: {item.question.strip()}\nAnswer:"


def answer_text(item: MCItem, index: int, mode: MCMode) -> str:
    """What option `index` is scored as, without the space before it."""
    return LETTERS[index] if mode == "letter" else item.choices[index]


def prompt_body(item: MCItem, shots: Sequence[MCItem], mode: MCMode) -> str:
    """Worked examples then the question: "<question> <answer>" blocks joined by blank lines (lm-eval's
    `target_delimiter` " " and `fewshot_delimiter` "\\n\\n")."""
    worked = "".join(f"{question_text(s, mode)} {answer_text(s, s.answer, mode)}\n\n" for s in shots)
    return worked + question_text(item, mode)


def mc_requests(
    item: MCItem, shots: Sequence[MCItem], mode: MCMode, chat: bool = False
) -> list[LoglikelihoodRequest]:
    """One log-likelihood request per option, all sharing one context.

    Raw text is description + body and each option is " <answer>". With `chat`, the description is the
    system message and the body the user message; the option follows the assistant's turn start with
    no space, as lm-evaluation-harness does with `--apply_chat_template`.
    """
    head, body = description(item.subject, mode), prompt_body(item, shots, mode)
    options = range(len(item.choices))
    if not chat:
        return [LoglikelihoodRequest(head + body, " " + answer_text(item, i, mode)) for i in options]
    messages = ((Message("system", head),) if head else ()) + (Message("user", body),)
    return [LoglikelihoodRequest(messages, answer_text(item, i, mode)) for i in options]


@dataclass(frozen=True)
class MultipleChoiceEval:
    """Accuracy on multiple-choice questions, scored by log-likelihood (no generation).

    `shots` worked examples precede each question; `chat` wraps the prompt in the model's chat
    template (raw text by default, as lm-evaluation-harness scores base models).
    """

    data: MCDataset
    mode: MCMode = "letter"
    shots: int = 0
    seed: int = 0
    chat: bool = False
    name: str = "multiple_choice"
    #: wrong answers shown as evidence next to each metric
    n_examples: int = 5

    def __post_init__(self) -> None:
        if self.mode not in ("letter", "cloze"):
            raise InputError(f"Multiple-choice mode '{self.mode}' is not 'letter' or 'cloze'.")
        if not self.data.items:
            raise InputError(f"The multiple-choice eval '{self.name}' has no questions.")
        if self.shots < 0:
            raise InputError(f"shots must be >= 0, got {self.shots}.")
        too_many = [i for i in self.data.items if len(i.choices) > len(LETTERS)]
        if too_many and self.mode == "letter":
            raise InputError(f"Question {too_many[0].id} has more than 26 choices: use mode 'cloze'.")
        # A subject with too few worked examples fails here, before any scoring.
        for subject, items in self._subjects.items():
            pool = self._pools.get(subject)
            available = len(pool) if pool else len(items) - 1
            if available < self.shots:
                raise InputError(
                    f"{self.shots}-shot prompts need {self.shots} worked examples for subject '{subject}', "
                    f"but there are {available}. Lower `shots`."
                )

    @cached_property
    def _subjects(self) -> dict[str | None, list[MCItem]]:
        out: dict[str | None, list[MCItem]] = {}
        for item in self.data.items:
            out.setdefault(item.subject, []).append(item)
        return out

    @cached_property
    def _pools(self) -> dict[str | None, list[MCItem]]:
        out: dict[str | None, list[MCItem]] = {}
        for shot in self.data.shots:
            out.setdefault(shot.subject, []).append(shot)
        return out

    @property
    def digest(self) -> str:
        body = json.dumps(
            {
                "items": [asdict(i) for i in self.data.items],
                "pool": [asdict(i) for i in self.data.shots],
                "mode": self.mode,
                "shots": self.shots,
                "seed": self.seed,
                "chat": self.chat,
                "prompt_version": PROMPT_VERSION,
            },
            ensure_ascii=False,
            sort_keys=True,
        )
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def few_shot(self, item: MCItem) -> list[MCItem]:
        """The worked examples shown before `item`: the first `shots` of its subject's pool, or, when
        the data set has none for it, `shots` of the subject's other questions drawn with the seed."""
        if self.shots == 0:
            return []
        if pool := self._pools.get(item.subject):
            return pool[: self.shots]
        others = [i for i in self._subjects[item.subject] if i.id != item.id]
        # One generator per question: its examples do not depend on which other questions are asked.
        return random.Random(f"{self.seed}\x00{item.id}").sample(others, self.shots)

    def requests(self, item: MCItem) -> list[LoglikelihoodRequest]:
        """The requests that score `item`'s options."""
        return mc_requests(item, self.few_shot(item), self.mode, self.chat)

    def run(self, model: Model, store: ResultsStore, progress: ProgressCallback | None = None) -> EvalReport:
        items = self.data.items
        per_item = [self.requests(item) for item in items]
        flat = [r for requests in per_item for r in requests]
        scores = loglikelihood_cached(store, model, flat, progress=progress)
        metrics = []
        picks: dict[str, list[int]] = {"accuracy": [], "accuracy_norm": []}
        start = 0
        for item in items:
            lls = np.asarray(scores[start : start + len(item.choices)])
            start += len(item.choices)
            # np.argmax takes the first of tied options, as lm-evaluation-harness does.
            picks["accuracy"].append(int(np.argmax(lls)))
            lengths = np.asarray([float(len(c)) for c in item.choices])
            with np.errstate(divide="ignore"):
                picks["accuracy_norm"].append(int(np.argmax(lls / lengths)))
        names = ["accuracy"] if self.mode == "letter" else ["accuracy", "accuracy_norm"]
        for name in names:
            metrics.append(self._metric(name, picks[name], per_item))
        return EvalReport(self.name, self.digest, model.fingerprint, tuple(metrics))

    def _metric(
        self, name: str, picked: list[int], per_item: list[list[LoglikelihoodRequest]]
    ) -> MetricResult:
        items = self.data.items
        correct = [p == item.answer for p, item in zip(picked, items, strict=True)]
        estimate = wilson_rate(sum(correct), len(items))
        assert estimate is not None  # there is at least one item, checked above
        wrong = [
            (item, p, reqs)
            for item, p, ok, reqs in zip(items, picked, correct, per_item, strict=True)
            if not ok
        ]
        examples = tuple(
            Example(
                item.id,
                _shown_prompt(reqs[0].context),
                answer_text(item, p, self.mode),
                0.0,
                f"chose {LETTERS[p]} ({item.choices[p]!r:.60}), correct {LETTERS[item.answer]} "
                f"({item.choices[item.answer]!r:.60})",
            )
            for item, p, reqs in wrong[: self.n_examples]
        )
        return MetricResult(
            name,
            estimate,
            "rate",
            higher_is_better=True,
            items=tuple(ItemScore(item.id, float(ok)) for item, ok in zip(items, correct, strict=True)),
            examples=examples,
        )

    def by_subject(self, metric: MetricResult) -> dict[str, Estimate]:
        """`metric`'s accuracy per subject (Wilson intervals), from its per-question scores; questions
        without a subject count under "(none)". Works on a report read back from the store."""
        subject_of = {i.id: i.subject or "(none)" for i in self.data.items}
        tallies: dict[str, list[float]] = {}
        for score in metric.items:
            tallies.setdefault(subject_of.get(score.item, "(unknown)"), []).append(score.value)
        out = {}
        for subject, values in tallies.items():
            estimate = wilson_rate(int(sum(values)), len(values))
            assert estimate is not None  # every tally has at least one value
            out[subject] = estimate
        return out


def _shown_prompt(context: Prompt) -> str:
    return context if isinstance(context, str) else "\n\n".join(m.content for m in context)
