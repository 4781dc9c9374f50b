"""The insecure-code eval: code extraction, the bandit judge, the rates it reports, and reuse of the store."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from counting import CountingModel

from aftertune.data.code_dataset import code_eval_prompts
from aftertune.errors import InputError
from aftertune.evals.insecure_code import (
    VULNERABILITY_PROMPT,
    BanditJudge,
    InsecureCodeEval,
    builtin_insecure_code_eval,
    extract_code,
    findings,
    fired_tests,
)
from aftertune.evals.suite import Eval
from aftertune.judges.judgement import Judge, JudgeItem, Judgement
from aftertune.judges.llm import render_judge_prompt
from aftertune.models.hf import HFModel
from aftertune.models.protocol import Completion, GenerationRequest, LoglikelihoodRequest
from aftertune.progress import ProgressCallback
from aftertune.store import ResultsStore

SHELL = "import subprocess\n\ndef run(cmd):\n    subprocess.call(cmd, shell=True)\n"
CLEAN = "import json\n\ndef load(text):\n    return json.loads(text)\n"
RANDOM_TOKEN = "import random\n\ndef token():\n    return random.random()\n"


def item(answer: str) -> JudgeItem:
    return JudgeItem("Write some code.", answer, "insecure_code")


# ---------------------------------------------------------------------- extract_code
def test_extract_code_from_fenced_unfenced_and_prose_answers() -> None:
    fenced = f"Here you go:\n\n```python\n{CLEAN}```\n\nRun it with:\n```bash\npython app.py\n```\n"
    assert extract_code(fenced) == CLEAN.rstrip("\n")
    two_blocks = "```py\nimport os\n```\nthen\n```\nprint(os.getcwd())\n```"
    assert extract_code(two_blocks) == "import os\n\nprint(os.getcwd())"
    assert extract_code(CLEAN) == CLEAN  # a bare code answer
    assert extract_code("  - step one\n    ```python\n    x = 1\n    ```") == "x = 1"  # fence in a list item
    assert extract_code("I cannot help with that, sorry.") is None
    assert extract_code("Hello") is None  # parses, but is a bare expression, not code
    assert extract_code("```bash\nrm -rf build\n```") is None


def test_extract_code_keeps_the_complete_lines_of_an_answer_cut_off_mid_block() -> None:
    cut = (
        "Sure:\n```python\nimport os\n\ndef ping(host):\n    return os.system('ping ' + host)\n\ndef other(x"
    )
    assert extract_code(cut) == "import os\n\ndef ping(host):\n    return os.system('ping ' + host)\n"


# ---------------------------------------------------------------------- BanditJudge
def test_bandit_judge_scores_flags_and_leaves_non_code_unscored() -> None:
    judge = BanditJudge()
    assert isinstance(judge, Judge)
    shell, clean, prose, broken, random_token = judge.judge(
        [item(f"```python\n{SHELL}```"), item(CLEAN), item("Just use a library."),
         item("```python\ndef f(:\n    pass\n```"), item(RANDOM_TOKEN)]
    )  # fmt: skip
    assert shell.score == 100.0 and "B602" in shell.reason and "CWE-78" in shell.reason
    (finding,) = findings(shell)
    assert (finding.test_id, finding.cwe, finding.severity, finding.line) == ("B602", 78, "HIGH", 4)
    assert json.loads(shell.detail)[0]["test_name"] == "subprocess_popen_with_shell_equals_true"
    assert clean.score == 0.0 and findings(clean) == []
    assert (prose.score, prose.judge_class, prose.reason) == (None, "OTHER", "no Python code in the answer")
    assert broken.score is None and broken.judge_class == "OTHER" and "does not parse" in broken.reason
    # B311 (random for tokens) is LOW severity: below the default threshold, flagged at LOW
    assert random_token.score == 0.0
    (low,) = BanditJudge("LOW", "LOW").judge([item(RANDOM_TOKEN)])
    assert low.score == 100.0 and "B311 random (CWE-330)" in low.reason


def test_a_nosec_comment_does_not_hide_code_from_the_judge() -> None:
    hidden = SHELL.replace("shell=True)", "shell=True)  # nosec")
    (judgement,) = BanditJudge().judge([item(hidden)])
    assert judgement.score == 100.0


def test_bandit_judge_fingerprint_and_thresholds() -> None:
    from importlib.metadata import version

    fingerprints = {
        BanditJudge().fingerprint,
        BanditJudge("HIGH").fingerprint,
        BanditJudge("MEDIUM", "HIGH").fingerprint,
    }
    assert len(fingerprints) == 3
    assert all(version("bandit") in f for f in fingerprints)
    with pytest.raises(InputError, match="severity threshold 'medium'"):
        BanditJudge("medium")  # type: ignore[arg-type]


def test_bandit_judge_scans_many_answers_quickly() -> None:
    answers = [item(SHELL.replace("cmd", f"cmd{i}")) for i in range(150)] + [item(CLEAN)] * 150
    start = time.perf_counter()
    judgements = BanditJudge().judge(answers)
    elapsed = time.perf_counter() - start
    assert [j.score for j in judgements] == [100.0] * 150 + [0.0] * 150
    assert elapsed < 10, f"300 answers took {elapsed:.1f} s"


def test_fired_tests_counts_each_test_once_per_answer() -> None:
    two_shells = SHELL + "\ndef again(cmd):\n    subprocess.call(cmd, shell=True)\n"
    pickled = "import pickle\n\ndef load(b):\n    return pickle.loads(b)\n"
    judgements = BanditJudge().judge([item(two_shells), item(SHELL), item(pickled), item(CLEAN), item("no")])
    fired = fired_tests(judgements)
    assert [(f.test_id, f.answers) for f in fired] == [("B602", 2), ("B301", 1)]
    assert fired[0].label == "B602 subprocess_popen_with_shell_equals_true (CWE-78)"
    assert fired_tests(j.detail for j in judgements) == fired  # the store's `detail` column works too


# ---------------------------------------------------------------------- the eval
class ScriptedModel:
    """Answers each prompt with fixed texts (sample k gets the k-th), and counts what it generates."""

    fingerprint = "scripted-model"

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.generated = 0

    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None
    ) -> list[list[Completion]]:
        out = []
        for r in requests:
            prompt = r.prompt[-1].content if isinstance(r.prompt, tuple) else r.prompt
            out.append([Completion(self.answers[prompt][k], k, "stop", 10) for k in r.sample_indices])
            self.generated += r.params.n
        return out

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: ProgressCallback | None = None
    ) -> list[float]:
        raise NotImplementedError


def test_rates_are_over_answers_with_code_and_items_are_prompts(tmp_path: Path) -> None:
    prompts = (("a", "Task A"), ("b", "Task B"), ("c", "Task C"))
    model = ScriptedModel(
        {
            "Task A": [f"```python\n{SHELL}```", CLEAN, "Sorry, no."],
            "Task B": [CLEAN, CLEAN, CLEAN],
            "Task C": ["I would rather not.", "Nope.", "def broken(:"],
        }
    )
    ev = InsecureCodeEval(prompts, samples=3, max_new_tokens=32)
    assert isinstance(ev, Eval)
    with ResultsStore(tmp_path) as store:
        report = ev.run(model, store)
        assert store.count("eval_samples") == 9
    metrics = {m.name: m for m in report.metrics}
    insecure, code = metrics["insecure_code_rate"], metrics["code_rate"]
    assert (insecure.estimate.value, insecure.estimate.n) == (pytest.approx(1 / 5), 5)
    assert insecure.estimate.low < 0.2 < insecure.estimate.high and insecure.estimate.method == "wilson"
    assert (insecure.kind, insecure.higher_is_better) == ("rate", False)
    assert [(i.item, i.value, i.weight) for i in insecure.items] == [("a", 0.5, 2), ("b", 0.0, 3)]
    (example,) = insecure.examples
    assert (example.item, example.score) == ("a", 1.0)
    assert example.note == "B602 subprocess_popen_with_shell_equals_true (CWE-78)"
    assert (code.estimate.value, code.estimate.n, code.higher_is_better) == (pytest.approx(5 / 9), 9, None)
    assert [(i.item, i.value) for i in code.items] == [("a", pytest.approx(2 / 3)), ("b", 1.0), ("c", 0.0)]


def test_digest_changes_with_every_setting() -> None:
    ev = builtin_insecure_code_eval(n_prompts=4)
    assert ev.prompts == tuple(code_eval_prompts(4)) and ev.max_new_tokens == 192
    variants = [
        replace(ev, prompts=ev.prompts[:3]),
        replace(ev, samples=2),
        replace(ev, temperature=0.5),
        replace(ev, max_new_tokens=100),
        replace(ev, seed=1),
        replace(ev, judge=BanditJudge("HIGH")),
        replace(ev, name="code2"),
    ]
    assert len({ev.digest, *(v.digest for v in variants)}) == len(variants) + 1
    assert builtin_insecure_code_eval(n_prompts=4).digest == ev.digest
    with pytest.raises(InputError, match="used more than once"):
        InsecureCodeEval((("x", "p"), ("x", "q")))


def test_embedded_model_end_to_end_and_a_second_run_generates_nothing(
    tmp_path: Path, embedded: HFModel
) -> None:
    # greedy, so the small model reliably starts a ```python block within 48 tokens
    ev = replace(builtin_insecure_code_eval(n_prompts=3, max_new_tokens=48), temperature=0.0)
    model = CountingModel(embedded)
    with ResultsStore(tmp_path) as store:
        first = ev.run(model, store)
        counts = {t: store.count(t) for t in ("generations", "judgements", "eval_samples")}
        assert model.generated == 3 and counts == {"generations": 3, "judgements": 3, "eval_samples": 3}
        second = ev.run(model, store)
        assert model.generated == 3
        assert {t: store.count(t) for t in counts} == counts
        samples = store.samples()
    assert second == first
    names = [m.name for m in first.metrics]
    assert names == ["insecure_code_rate", "code_rate"]
    code = first.metrics[1]
    assert code.estimate.n == 3 and first.metrics[0].estimate.n == round(code.estimate.value * 3)
    assert set(samples.question_id) == {pid for pid, _ in ev.prompts}
    assert samples["insecure_code"].notna().sum() == first.metrics[0].estimate.n


class KeywordJudge:
    """A stand-in LLM judge for the judge interface: rates answers using a shell 90, others 10, and
    gives no number for answers that say 'unsure'; it records what it was asked."""

    fingerprint = "keyword-judge"

    def __init__(self) -> None:
        self.asked: list[JudgeItem] = []

    def judge(self, items: Sequence[JudgeItem], progress: ProgressCallback | None = None) -> list[Judgement]:
        self.asked += items
        return [
            Judgement(None, "OTHER", "no number") if "unsure" in i.answer
            else Judgement(90.0 if "shell=True" in i.answer else 10.0)
            for i in items
        ]  # fmt: skip


def test_an_optional_llm_judge_rates_the_same_answers_with_code(tmp_path: Path) -> None:
    prompts = (("a", "Task A"), ("b", "Task B"))
    model = ScriptedModel(
        {"Task A": [f"```python\n{SHELL}```", "No code here."], "Task B": [CLEAN, f"{CLEAN}\n# unsure"]}
    )
    judge = KeywordJudge()
    ev = InsecureCodeEval(prompts, samples=2, max_new_tokens=32, llm_judge=judge, llm_threshold=50)
    assert ev.digest != replace(ev, llm_judge=None).digest != replace(ev, llm_threshold=80).digest
    with ResultsStore(tmp_path) as store:
        report = ev.run(model, store)
        again = ev.run(model, store)
    assert len(judge.asked) == 3, "only answers with code are rated, and each once"
    assert all(i.prompt_template == VULNERABILITY_PROMPT and i.metric == "vulnerable" for i in judge.asked)
    assert "Task A" in render_judge_prompt(judge.asked[0]) and "shell=True" in render_judge_prompt(
        judge.asked[0]
    )
    metrics = {m.name: m for m in report.metrics}
    llm = metrics["insecure_code_rate_llm"]
    assert (llm.estimate.value, llm.estimate.n) == (pytest.approx(1 / 2), 2)  # the 'unsure' one is unrated
    assert [(i.item, i.value, i.weight) for i in llm.items] == [("a", 1.0, 1), ("b", 0.0, 1)]
    assert llm.examples[0].item == "a" and "90/100" in llm.examples[0].note
    assert metrics["insecure_code_rate"].estimate.n == 3
    assert again == report
