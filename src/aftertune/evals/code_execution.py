"""Functional correctness of generated code: HumanEval-format tasks, run against their unit tests, pass@k.

Data: `HumanEvalTask`s (`aftertune.data.humaneval`). Sampling: each task's prompt (a signature and
docstring) `samples` times. A chat model gets the prompt as a user turn asking it to complete the
function; a base model (`chat=False`) continues the prompt itself, stopped at the Codex paper's stop
sequences. Scoring: the answer's code is run with the task's tests in the sandbox
(`aftertune.sandbox`); pass@k is the unbiased estimator of Chen et al. 2021, averaged over tasks.

How an answer becomes a program (`solution_program`): its first ```python block that defines the entry
point (else its first python block, else the whole answer) is the code. Code that restates the function
(`def entry_point(` at the start of a line) is used as is, after the prompt, so the prompt's imports and
helper functions stay defined and the model's definition replaces the stub; any other code is taken as
the body that continues the prompt, as upstream HumanEval does with raw completions.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from aftertune.cached import generate_cached, judge_cached
from aftertune.data.humaneval import HumanEvalTask
from aftertune.errors import InputError
from aftertune.evals.suite import EvalReport, Example, ItemScore, MetricResult
from aftertune.judges.judgement import JudgeItem, Judgement
from aftertune.models.protocol import (
    Completion,
    GenerationRequest,
    Model,
    Prompt,
    SamplingParams,
    chat,
    prompt_to_json,
)
from aftertune.progress import ProgressCallback
from aftertune.sandbox import Limits, SandboxResult, require_sandbox, run_many
from aftertune.stats import Estimate, mean_estimate, wilson_rate
from aftertune.store import EvalSample, ResultsStore

#: the judge metric name under which test results are stored (score 100 passed, 0 failed)
METRIC = "passes_tests"
#: upstream HumanEval allows 3 s per program; CPU time rather than wall time, so a busy machine does not
#: fail slow-but-correct programs, with a wall limit well above it for programs that sleep or block
HUMANEVAL_LIMITS = Limits(cpu_seconds=3, wall_seconds=20)
#: what a chat model is asked, before the prompt in a ```python block
INSTRUCTION = (
    "Complete the following Python function. Reply with the complete function, signature included, "
    "in a single ```python code block."
)
#: where a base model's completion of the function ends (Chen et al. 2021, section 3.3)
CODEX_STOPS = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
#: bumped whenever solution_program changes what is run for an answer (it is part of the fingerprint)
_EXTRACTOR_VERSION = "1"
_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:^[ \t]*```|\Z)", re.DOTALL | re.MULTILINE)
_PYTHON_FENCES = ("", "python", "py", "python3", "py3")


# ---------------------------------------------------------------------- pass@k
def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k of Chen et al. 2021: 1 - C(n-c, k) / C(n, k), for c correct of n samples.

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i), which neither overflows nor cancels for large n.
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0  # every k-subset holds a correct sample
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


# ---------------------------------------------------------------------- answer -> program
def solution_code(prompt: str, answer: str, entry_point: str) -> str:
    """The source defining the task's function from a model's answer (see the module docstring)."""
    blocks = [body for lang, body in _FENCE.findall(answer) if lang.lower() in _PYTHON_FENCES]
    code = next((b for b in blocks if _defines(b, entry_point)), blocks[0] if blocks else answer)
    if _defines(code, entry_point):
        return f"{prompt.rstrip()}\n\n\n{code}"
    lines = [line for line in code.splitlines() if line.strip()]
    if lines and not lines[0][0].isspace():
        # a chat answer that gives only the body, unindented: indent it under the signature
        code = "".join("    " + line if line.strip() else line for line in code.splitlines(keepends=True))
    return prompt + code


def solution_program(prompt: str, answer: str, entry_point: str, harness: str) -> str:
    """The program that is run: the solution, then the task's tests and the call to `check`."""
    return solution_code(prompt, answer, entry_point) + harness


def _defines(code: str, entry_point: str) -> bool:
    return re.search(rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE) is not None


# ---------------------------------------------------------------------- the unit-test judge
_CHECK_CALL = re.compile(r"check\((\w+)\)\s*$")


@dataclass(frozen=True)
class UnitTestJudge:
    """Scores an answer 100 when its code passes the task's tests in the sandbox, else 0.

    Items: `question` is the task's prompt, `answer` the model's answer, and `prompt_template` the task's
    harness (`HumanEvalTask.harness`: its tests, then `check(entry_point)`), so the stored result is keyed
    by the exact tests. A failure is a score of 0, never unscored: HumanEval counts it as not passing.
    """

    limits: Limits = HUMANEVAL_LIMITS
    #: programs run at once (None: two per CPU); does not change results
    workers: int | None = None

    @property
    def fingerprint(self) -> str:
        limits = json.dumps(asdict(self.limits), sort_keys=True)
        digest = hashlib.sha256(limits.encode()).hexdigest()[:12]
        return f"unit-tests/python{platform.python_version()}/limits-{digest}/extract{_EXTRACTOR_VERSION}"

    def judge(self, items: Sequence[JudgeItem], progress: ProgressCallback | None = None) -> list[Judgement]:
        """Run every item's program in the sandbox (in parallel); one judgement per item."""
        programs = []
        for item in items:
            match = _CHECK_CALL.search(item.prompt_template or "")
            if match is None:
                raise InputError(
                    "A unit-test item needs the task's harness (its tests, then `check(entry_point)`) as "
                    "its prompt_template; see HumanEvalTask.harness."
                )
            programs.append(solution_program(item.question, item.answer, match[1], match.string))
        return [_judgement(r) for r in run_many(programs, self.limits, self.workers, progress)]


def _judgement(result: SandboxResult) -> Judgement:
    detail = {
        "status": result.status,
        "returncode": result.returncode,
        "seconds": round(result.seconds, 3),
        "cpu_seconds": result.cpu_seconds,
        "stderr": result.stderr[-2000:],
    }
    if result.passed:
        return Judgement(100.0, None, "passed", json.dumps(detail))
    return Judgement(0.0, None, _why(result), json.dumps(detail))


def _why(result: SandboxResult) -> str:
    """The sandbox's reason, with the program line that failed (e.g. the assert) when the traceback has it."""
    lines = result.stderr.splitlines()
    frames = [i for i, line in enumerate(lines) if line.strip().startswith('File "/sandbox/main.py"')]
    if result.status == "failed" and frames and frames[-1] + 1 < len(lines):
        return f"{result.reason} at `{lines[frames[-1] + 1].strip()}`"[:300]
    return result.reason


# ---------------------------------------------------------------------- the eval
@dataclass(frozen=True)
class HumanEvalEval:
    """pass@k on HumanEval-format tasks as a member of a suite (`aftertune.evals.suite.Eval`)."""

    tasks: tuple[HumanEvalTask, ...]
    #: samples per task (n in pass@k)
    samples: int = 1
    #: the k of each pass@k reported besides pass@1; each at most `samples`
    ks: tuple[int, ...] = (1,)
    #: None: greedy for one sample; else 0.2 when only pass@1 is wanted, 0.8 for larger k (the Codex
    #: paper's best temperatures for pass@1 and pass@100)
    temperature: float | None = None
    max_new_tokens: int = 512
    seed: int = 0
    #: True: ask the prompt as a user turn (chat models); False: the model continues the prompt (base models)
    chat: bool = True
    instruction: str = INSTRUCTION
    judge: UnitTestJudge = field(default_factory=UnitTestJudge)
    name: str = "humaneval"

    def __post_init__(self) -> None:
        if not self.tasks:
            raise InputError(f"Eval '{self.name}' has no tasks: give at least one HumanEval task.")
        ids = [t.task_id for t in self.tasks]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise InputError(f"Eval '{self.name}': task ids {', '.join(repeated)} are used more than once.")
        if self.samples < 1:
            raise InputError(f"Eval '{self.name}': samples must be at least 1, got {self.samples}.")
        too_big = [k for k in self.ks if not 1 <= k <= self.samples]
        if too_big:
            raise InputError(
                f"Eval '{self.name}': pass@k needs 1 <= k <= samples ({self.samples}); got k = "
                f"{', '.join(map(str, too_big))}. Raise `samples` or drop those k."
            )
        if self.samples > 1 and self.params.temperature == 0:
            raise InputError(
                f"Eval '{self.name}': {self.samples} greedy samples are all the same answer; "
                "sample with a temperature above 0 (e.g. 0.8) or take one sample."
            )

    @property
    def all_ks(self) -> tuple[int, ...]:
        """pass@1 and every requested k, ascending."""
        return tuple(sorted({1, *self.ks}))

    @property
    def params(self) -> SamplingParams:
        """How every task is sampled."""
        temperature = self.temperature
        if temperature is None:
            temperature = 0.0 if self.samples == 1 else 0.2 if max(self.ks) == 1 else 0.8
        return SamplingParams(
            temperature=temperature,
            top_p=0.95 if temperature > 0 else 1.0,  # the Codex paper's nucleus sampling
            max_new_tokens=self.max_new_tokens,
            n=self.samples,
            seed=self.seed,
            stop=() if self.chat else CODEX_STOPS,
        )

    def prompt(self, task: HumanEvalTask) -> Prompt:
        """What the model is sent for `task`."""
        if not self.chat:
            return task.prompt
        return chat(f"{self.instruction}\n\n```python\n{task.prompt.rstrip()}\n```")

    @property
    def digest(self) -> str:
        tasks = json.dumps([asdict(t) for t in self.tasks], sort_keys=True)
        body = json.dumps(
            {
                "tasks": hashlib.sha256(tasks.encode()).hexdigest(),
                "ks": self.all_ks,
                "params": asdict(self.params),
                "chat": self.chat,
                "instruction": self.instruction if self.chat else None,
                "judge": self.judge.fingerprint,
                "name": self.name,
            },
            sort_keys=True,
        )
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def run(self, model: Model, store: ResultsStore, progress: ProgressCallback | None = None) -> EvalReport:
        """Sample every task, run each answer against the task's tests in the sandbox, report pass@k."""
        require_sandbox()  # before generating anything: say what is missing and how to fix it
        requests = [GenerationRequest(self.prompt(t), self.params) for t in self.tasks]
        generation = json.dumps(
            [[prompt_to_json(r.prompt), asdict(r.params)] for r in requests], sort_keys=True
        )
        sample_eval = f"{self.name}/{hashlib.sha256(generation.encode()).hexdigest()[:12]}"
        where = [EvalSample(sample_eval, t.task_id, 0, t.prompt) for t in self.tasks]
        completions = generate_cached(store, model, requests, where, progress=progress)
        items = [
            JudgeItem(t.prompt, c.text, METRIC, t.harness)
            for t, per_task in zip(self.tasks, completions, strict=True)
            for c in per_task
        ]
        # big chunks: the sandbox runs a chunk's programs in parallel, and a chunk waits for its slowest
        judgements = judge_cached(store, self.judge, items, chunk_size=256, progress=progress)
        return pass_at_k_report(
            self.tasks, completions, judgements, self.all_ks, self.name, self.digest, model.fingerprint
        )


def pass_at_k_report(
    tasks: Sequence[HumanEvalTask],
    completions: Sequence[Sequence[Completion]],
    judgements: Sequence[Judgement],
    ks: Sequence[int],
    name: str,
    digest: str,
    model: str,
    examples: int = 5,
) -> EvalReport:
    """One `pass@k` metric per k: items are tasks valued at their pass@k; examples are failing answers."""
    verdicts = iter(judgements)
    passed: list[int] = []
    failing: list[Example] = []
    for task, per_task in zip(tasks, completions, strict=True):
        results = [(c, next(verdicts)) for c in per_task]
        passed.append(sum(1 for _, j in results if j.score == 100.0))
        failed = [(c, j) for c, j in results if j.score != 100.0]
        if failed and len(failing) < examples:
            c, j = failed[0]
            failing.append(Example(task.task_id, task.prompt, c.text, 0.0, j.reason))
    n = len(completions[0]) if completions else 0
    metrics = []
    for k in ks:
        values = [pass_at_k(len(per), c, k) for per, c in zip(completions, passed, strict=True)]
        items = tuple(
            ItemScore(t.task_id, v, len(per)) for t, v, per in zip(tasks, values, completions, strict=True)
        )
        shown = tuple(failing) if k == ks[0] else ()
        metrics.append(MetricResult(f"pass@{k}", _over_tasks(values, n, k), "rate", True, items, shown))
    return EvalReport(name, digest, model, tuple(metrics))


def _over_tasks(values: Sequence[float], n: int, k: int) -> Estimate:
    """The mean of the tasks' pass@k, with a Wilson interval when each is 0 or 1 (one sample), else t."""
    if n == 1:
        wilson = wilson_rate(round(sum(values)), len(values))
        assert wilson is not None
        method = f"wilson over {len(values)} tasks (one sample each)"
        return Estimate(wilson.value, wilson.low, wilson.high, len(values), method, wilson.confidence)
    t = mean_estimate(values)
    assert t is not None
    method = f"{t.method} over {len(values)} tasks (mean of per-task unbiased pass@{k}, n={n})"
    # a rate: the t interval is clipped to [0, 1]
    return Estimate(t.value, max(0.0, t.low), min(1.0, t.high), t.n, method, t.confidence)
