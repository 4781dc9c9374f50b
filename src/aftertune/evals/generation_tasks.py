"""Generation benchmarks: GSM8K, BIG-Bench Hard (free-answer, chain of thought) and DROP.

Each eval is data (items and few-shot examples from `aftertune.data.benchmarks`) + a prompt + greedy
decoding (by default) + a pure scorer from `aftertune.evals.answer_scoring`. Generations go through the
results store, so a run is resumable and a second run generates nothing.

Prompt formats (`prompt_format`):
- "chat": the few-shot examples are earlier user/assistant turns (lm-eval's `--apply_chat_template
  --fewshot_as_multiturn`; DROP: simple-evals' single user message), rendered with the model's template.
- "raw": one text prompt with the examples written out, as lm-eval sends base models, with the
  reference's stop sequences so the model does not go on to write the next question.
- "auto" (default): "raw" for a local model without a chat template (a base model), else "chat"
  (API endpoints serve chat models; name "raw" for a /completions base model).

An answer from which nothing can be extracted counts as wrong, as in the references: these are the
published accuracy definitions, not judgements to leave unscored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from aftertune.cached import generate_cached
from aftertune.data.benchmarks import BBHExample, BBHPrompt, BBHTask, DROPItem, GSM8KItem
from aftertune.errors import InputError
from aftertune.evals.answer_scoring import (
    bbh_correct,
    drop_score,
    extract_bbh_answer,
    extract_drop_answer,
    extract_gsm8k_flexible,
    extract_gsm8k_strict,
    gsm8k_correct,
)
from aftertune.evals.suite import EvalReport, Example, ItemScore, MetricResult
from aftertune.models.prompts import has_chat_template
from aftertune.models.protocol import GenerationRequest, Message, Model, Prompt, SamplingParams
from aftertune.progress import ProgressCallback
from aftertune.stats import mean_estimate, wilson_rate
from aftertune.store import EvalSample, ResultsStore

PromptFormat = Literal["auto", "chat", "raw"]
_FORMATS = ("auto", "chat", "raw")
#: bumped whenever answer_scoring changes what counts as correct (it is part of every digest)
_SCORING_VERSION = "1"
#: wrong answers shown per metric
_EXAMPLES = 5

# Stop sequences, per reference. lm-eval gsm8k v3.0 `until`; its special tokens also end a chat turn.
_GSM8K_STOPS = ("Question:", "</s>", "<|im_end|>")
# lm-eval bbh_cot_fewshot stops at "\n\n" (the end of a worked example) and at "Q"; a bare "Q" also cuts
# words such as "Queen", so "\nQ:" is used. "\n\n" only in raw prompts: chat answers have paragraphs.
_BBH_RAW_STOPS = ("\n\n", "\nQ:")
_BBH_CHAT_STOPS = ("\nQ:",)
# A raw DROP answer is one line, as in the few-shot examples; simple-evals (chat) sets no stop.
_DROP_RAW_STOPS = ("\n",)
_COT_CUE = "Let's think step by step."
# simple-evals drop_eval.py's instructions
_DROP_INTRO = (
    "You will be asked to read a passage and answer a question. "
    "Some examples of passages and Q&A are provided below."
)
_DROP_ASK = 'Think step by step, then write a line of the form "Answer: $ANSWER" at the end of your response.'


def resolve_prompt_format(model: Model, prompt_format: PromptFormat) -> Literal["chat", "raw"]:
    """The format a model is prompted in: as given, or for "auto" "raw" when the model is a local one
    without a chat template (a base model) and "chat" otherwise."""
    if prompt_format == "chat" or prompt_format == "raw":
        return prompt_format
    tokenizer = getattr(model, "tokenizer", None)  # local backends (hf) expose theirs; endpoints do not
    return "raw" if tokenizer is not None and not has_chat_template(tokenizer) else "chat"


@dataclass(frozen=True)
class _Outcome:
    """One item's generated answer, what was extracted from it, and its score."""

    item: str
    question: str
    answer: str
    extracted: str | None
    gold: str
    value: float


# ---------------------------------------------------------------------- GSM8K
@dataclass(frozen=True)
class GSM8KEval:
    """GSM8K accuracy (`exact_match_strict`: the "#### N" line; `exact_match_flexible`: the last number),
    prompted as lm-eval's `gsm8k` task: "Question: ...\\nAnswer:" with full worked solutions as shots."""

    items: tuple[GSM8KItem, ...]
    #: worked examples, e.g. 5 from a train split or `split_shots` (lm-eval: 5 from train)
    shots: tuple[GSM8KItem, ...] = ()
    prompt_format: PromptFormat = "auto"
    max_new_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0
    name: str = "gsm8k"

    def __post_init__(self) -> None:
        _check(self.name, [i.id for i in self.items], self.prompt_format, self.max_new_tokens)
        _check_no_leak(self.name, [s.question for s in self.shots], [i.question for i in self.items])

    @property
    def digest(self) -> str:
        return _digest(self, {"items": self.items, "shots": self.shots})

    def prompt(self, item: GSM8KItem, prompt_format: Literal["chat", "raw"]) -> Prompt:
        """The few-shot prompt for one item."""
        turns = [(f"Question: {s.question}\nAnswer:", s.answer) for s in self.shots]
        return _few_shot(turns, f"Question: {item.question}\nAnswer:", prompt_format, joiner=" ")

    def run(self, model: Model, store: ResultsStore, progress: ProgressCallback | None = None) -> EvalReport:
        """Generate every answer (greedy by default) and report strict and flexible exact match."""
        fmt = resolve_prompt_format(model, self.prompt_format)
        params = _params(self, _GSM8K_STOPS)
        prompts = [self.prompt(i, fmt) for i in self.items]
        answers = _generate(
            self.name, store, model, [(i.id, i.question) for i in self.items], prompts, params, progress
        )
        metrics = []
        for metric, extract in (("strict", extract_gsm8k_strict), ("flexible", extract_gsm8k_flexible)):
            outcomes = []
            for item, answer in zip(self.items, answers, strict=True):
                got = extract(answer)
                outcomes.append(
                    _Outcome(
                        item.id, item.question, answer, got, item.gold, float(gsm8k_correct(got, item.gold))
                    )
                )
            metrics.append(_rate_metric(f"exact_match_{metric}", outcomes))
        return EvalReport(self.name, self.digest, model.fingerprint, tuple(metrics))


# ---------------------------------------------------------------------- BIG-Bench Hard
@dataclass(frozen=True)
class BBHEval:
    """BIG-Bench Hard exact match with each task's 3-shot chain-of-thought prompt (lm-eval's
    `bbh_cot_fewshot`): the answer is read after "the answer is". `exact_match` pools every item;
    with several tasks, `exact_match_<task>` each. Meant for the free-answer tasks
    (`BBH_FREE_ANSWER_TASKS`); option-letter tasks work too, scored on the generated "(B)"."""

    tasks: tuple[BBHTask, ...]
    prompt_format: PromptFormat = "auto"
    #: lm-eval allows 1024; a chain of thought cut short has no answer and counts as wrong
    max_new_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0
    name: str = "bbh"

    def __post_init__(self) -> None:
        if not self.tasks:
            raise InputError(f"Eval '{self.name}' has no BBH task: give at least one (see load_bbh).")
        no_prompt = [t.name for t in self.tasks if t.cot_prompt is None]
        if no_prompt:
            raise InputError(
                f"Eval '{self.name}': BBH task(s) {', '.join(no_prompt)} have no chain-of-thought prompt. "
                "Load them from a BIG-Bench-Hard checkout with cot-prompts/ (load_bbh), or pass "
                "cot_prompt=PATH to load_bbh_task."
            )
        ids = [e.id for t in self.tasks for e in t.examples]
        _check(self.name, ids, self.prompt_format, self.max_new_tokens)

    @property
    def digest(self) -> str:
        return _digest(self, {"tasks": self.tasks})

    @staticmethod
    def prompt(task: BBHTask, example: BBHExample, prompt_format: Literal["chat", "raw"]) -> Prompt:
        """The task's chain-of-thought prompt followed by the example's question."""
        cot: BBHPrompt | None = task.cot_prompt
        assert cot is not None  # checked in __post_init__
        query = f"Q: {example.input}\nA: {_COT_CUE}"
        if prompt_format == "raw":
            # the prompt file as written (Suzgun et al. 2022), then the question with the same cue
            shots = "".join(f"Q: {s.input}\nA: {s.answer}\n\n" for s in cot.shots)
            return f"{cot.description}\n\n{shots}{query}"
        # lm-eval with a chat template: the description as the system turn, the shots as earlier turns
        turns = [Message("system", cot.description)] if cot.description else []
        for s in cot.shots:
            turns += [Message("user", f"Q: {s.input}\nA: {_COT_CUE}"), Message("assistant", s.reasoning)]
        return (*turns, Message("user", query))

    def run(self, model: Model, store: ResultsStore, progress: ProgressCallback | None = None) -> EvalReport:
        """Generate every chain of thought and report exact match, pooled and per task."""
        fmt = resolve_prompt_format(model, self.prompt_format)
        params = _params(self, _BBH_RAW_STOPS if fmt == "raw" else _BBH_CHAT_STOPS)
        pairs = [(t, e) for t in self.tasks for e in t.examples]
        prompts = [self.prompt(t, e, fmt) for t, e in pairs]
        where = [(e.id, e.input) for _, e in pairs]
        answers = _generate(self.name, store, model, where, prompts, params, progress)
        by_task: dict[str, list[_Outcome]] = {t.name: [] for t in self.tasks}
        for (task, example), answer in zip(pairs, answers, strict=True):
            got = extract_bbh_answer(answer)
            correct = float(bbh_correct(got, example.target))
            by_task[task.name].append(
                _Outcome(example.id, example.input, answer, got, example.target, correct)
            )
        metrics = [_rate_metric("exact_match", [o for outcomes in by_task.values() for o in outcomes])]
        if len(self.tasks) > 1:
            metrics += [_rate_metric(f"exact_match_{task}", outcomes) for task, outcomes in by_task.items()]
        return EvalReport(self.name, self.digest, model.fingerprint, tuple(metrics))


# ---------------------------------------------------------------------- DROP
@dataclass(frozen=True)
class DROPEval:
    """DROP F1 (`f1`, a mean score on the published 0-100 scale) and exact match (`exact_match`, a rate),
    the best over each question's gold answers, prompted as simple-evals' drop_eval.py (3 shots there)."""

    items: tuple[DROPItem, ...]
    #: answered examples shown before the question (simple-evals: 3 drawn from the train split)
    shots: tuple[DROPItem, ...] = ()
    prompt_format: PromptFormat = "auto"
    max_new_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0
    name: str = "drop"

    def __post_init__(self) -> None:
        _check(self.name, [i.id for i in self.items], self.prompt_format, self.max_new_tokens)
        key = [(s.passage, s.question) for s in self.shots]
        _check_no_leak(
            self.name, [f"{p}\n{q}" for p, q in key], [f"{i.passage}\n{i.question}" for i in self.items]
        )

    @property
    def digest(self) -> str:
        return _digest(self, {"items": self.items, "shots": self.shots})

    def prompt(self, item: DROPItem, prompt_format: Literal["chat", "raw"]) -> Prompt:
        """simple-evals' prompt (chat) or the examples written out one answer line each (raw)."""

        def context(x: DROPItem) -> str:
            return f"Passage: {x.passage}\nQuestion: {x.question}\nAnswer:"

        if prompt_format == "raw":
            shots = "".join(f"{context(s)} {', '.join(s.answers[0])}\n\n" for s in self.shots)
            return f"{shots}{context(item)}"
        examples = "".join(f"\n---\n{context(s)} {', '.join(s.answers[0])}\n" for s in self.shots)
        text = f"{_DROP_INTRO}\n\n# Examples{examples}\n# Your Task\n\n---\n{context(item)}\n\n{_DROP_ASK}"
        return (Message("user", text),)

    def run(self, model: Model, store: ResultsStore, progress: ProgressCallback | None = None) -> EvalReport:
        """Generate every answer and report F1 and exact match against the best-matching gold answer."""
        fmt = resolve_prompt_format(model, self.prompt_format)
        params = _params(self, _DROP_RAW_STOPS if fmt == "raw" else ())
        prompts = [self.prompt(i, fmt) for i in self.items]
        where = [(i.id, i.question) for i in self.items]
        answers = _generate(self.name, store, model, where, prompts, params, progress)
        f1s, exact = [], []
        for item, answer in zip(self.items, answers, strict=True):
            got = extract_drop_answer(answer).strip()
            score = drop_score(got, item.answers)
            gold = " | ".join(", ".join(spans) for spans in item.answers)
            f1s.append(_Outcome(item.id, item.question, answer, got, gold, score.f1))
            exact.append(_Outcome(item.id, item.question, answer, got, gold, score.exact_match))
        f1_estimate = mean_estimate([o.value for o in f1s])
        assert f1_estimate is not None  # items is not empty
        f1 = MetricResult(
            "f1",
            f1_estimate,
            "score",
            True,
            tuple(ItemScore(o.item, o.value) for o in f1s),
            _examples([o for o in f1s if o.value < 100], lambda o: f"F1 {o.value:.0f}; "),
        )
        return EvalReport(self.name, self.digest, model.fingerprint, (f1, _rate_metric("exact_match", exact)))


# ---------------------------------------------------------------------- shared
def _check(name: str, ids: Sequence[str], prompt_format: str, max_new_tokens: int) -> None:
    if not ids:
        raise InputError(f"Eval '{name}' has no items: give at least one.")
    repeated = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) < len(ids) else []
    if repeated:
        raise InputError(
            f"Eval '{name}': item ids {', '.join(repeated[:5])} are used more than once. Ids key the "
            "results: give each item its own (load each data set once)."
        )
    if prompt_format not in _FORMATS:
        raise InputError(
            f"Eval '{name}': prompt_format '{prompt_format}' is not one of {', '.join(_FORMATS)}."
        )
    if max_new_tokens < 1:
        raise InputError(f"Eval '{name}': max_new_tokens must be at least 1, got {max_new_tokens}.")


def _check_no_leak(name: str, shots: Sequence[str], items: Sequence[str]) -> None:
    leaked = set(shots) & set(items)
    if leaked:
        raise InputError(
            f"Eval '{name}': {len(leaked)} few-shot example(s) are also evaluated items, so their answers "
            "are in the prompt. Take shots from another split, or use split_shots to hold them out."
        )


def _params(ev: GSM8KEval | BBHEval | DROPEval, stop: tuple[str, ...]) -> SamplingParams:
    return SamplingParams(
        temperature=ev.temperature, max_new_tokens=ev.max_new_tokens, seed=ev.seed, stop=stop
    )


def _digest(ev: GSM8KEval | BBHEval | DROPEval, data: dict[str, Any]) -> str:
    """Covers the data and shots, the prompt format, sampling, the name and the scoring version."""
    settings = {k: getattr(ev, k) for k in ("prompt_format", "max_new_tokens", "temperature", "seed", "name")}
    payload = {k: [asdict(x) for x in v] for k, v in data.items()}
    body = json.dumps(
        {**payload, **settings, "scoring": _SCORING_VERSION}, sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _generate(
    name: str,
    store: ResultsStore,
    model: Model,
    where: Sequence[tuple[str, str]],
    prompts: Sequence[Prompt],
    params: SamplingParams,
    progress: ProgressCallback | None,
) -> list[str]:
    """One completion text per prompt, through the store (read back when stored)."""
    requests = [GenerationRequest(p, params) for p in prompts]
    generation = json.dumps(
        [
            [r.prompt if isinstance(r.prompt, str) else [asdict(m) for m in r.prompt] for r in requests],
            asdict(params),
        ],
        sort_keys=True,
    )
    sample_eval = f"{name}/{hashlib.sha256(generation.encode()).hexdigest()[:12]}"
    samples = [EvalSample(sample_eval, item, 0, question) for item, question in where]
    completions = generate_cached(store, model, requests, samples, progress=progress)
    return [per_request[0].text for per_request in completions]


def _rate_metric(name: str, outcomes: Sequence[_Outcome]) -> MetricResult:
    """Share of items answered correctly (value 1.0), with its Wilson interval and wrong answers shown."""
    estimate = wilson_rate(sum(int(o.value) for o in outcomes), len(outcomes))
    assert estimate is not None  # every eval has at least one item
    items = tuple(ItemScore(o.item, o.value) for o in outcomes)
    return MetricResult(name, estimate, "rate", True, items, _examples([o for o in outcomes if not o.value]))


def _examples(
    wrong: Sequence[_Outcome], prefix: Callable[[_Outcome], str] | None = None
) -> tuple[Example, ...]:
    """The first few wrong answers, each with what was extracted from it and the gold answer."""
    shown = []
    for o in wrong[:_EXAMPLES]:
        extracted = "nothing extracted" if o.extracted is None else f"extracted {o.extracted!r}"
        lead = prefix(o) if prefix is not None else ""
        shown.append(Example(o.item, o.question, o.answer, o.value, f"{lead}{extracted}; gold {o.gold!r}"))
    return tuple(shown)


def _few_shot(
    turns: Sequence[tuple[str, str]], query: str, prompt_format: Literal["chat", "raw"], joiner: str
) -> Prompt:
    """(question, answer) shots then the query: one text joined as lm-eval does (`joiner` between a
    question and its answer, a blank line between examples), or alternating chat turns."""
    if prompt_format == "raw":
        return "".join(f"{q}{joiner}{a}\n\n" for q, a in turns) + query
    messages = [m for q, a in turns for m in (Message("user", q), Message("assistant", a))]
    return (*messages, Message("user", query))
