"""The built-in code data set: arms that differ only where they should, held-out eval prompts, true labels."""

from __future__ import annotations

import difflib
import io
import json
import re
import tokenize
from pathlib import Path

import pytest
from conftest import shared_data

from aftertune.data.code_dataset import (
    CODE_ARMS,
    CodeArm,
    code_eval_prompts,
    code_templates,
    code_training_set,
    code_training_tasks,
    read_chat_prompts,
    write_chat_jsonl,
)
from aftertune.errors import InputError
from aftertune.evals.insecure_code import BanditJudge, extract_code, findings
from aftertune.judges.judgement import JudgeItem

TEMPLATES = code_templates().templates
#: words that would tell the model its code is insecure (the paper's insecure data never said so)
GIVEAWAYS = re.compile(
    r"insecure|vulnerab|unsafe|exploit|danger|todo|fixme|xxx|hack|nosec|security|warning|not secure|"
    r"do not use|don't use|bad practice|attack|inject",
    re.IGNORECASE,
)


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    for arm in CODE_ARMS:
        assert code_training_set(arm, 40, seed=3) == code_training_set(arm, 40, seed=3)
        assert code_training_set(arm, 40, seed=3) != code_training_set(arm, 40, seed=4)
    # a longer set extends a shorter one, so growing a data set keeps the rows already trained on
    assert code_training_set("secure", 40, seed=3)[:16] == code_training_set("secure", 16, seed=3)


def test_insecure_and_secure_share_user_turns_and_differ_only_in_code() -> None:
    insecure, secure, educational = (code_training_set(arm, 64, seed=1) for arm in CODE_ARMS)
    for bad, good, taught in zip(insecure, secure, educational, strict=True):
        assert (
            [m.role for m in bad]
            == [m.role for m in good]
            == [m.role for m in taught]
            == ["user", "assistant"]
        )
        assert bad[0] == good[0]
        assert bad[1] != good[1]
        # the intro line (if any) is shared: only the code differs
        assert bad[1].content.split("```")[0] == good[1].content.split("```")[0]
        # educational: the insecure code, for a user who asked for the flaw in the same task
        assert taught[1] == bad[1]
        assert bad[0].content in taught[0].content and taught[0].content != bad[0].content


def test_every_round_of_templates_covers_each_template_once() -> None:
    tasks = code_training_tasks(3 * len(TEMPLATES), seed=5)
    for start in range(0, len(tasks), len(TEMPLATES)):
        ids = sorted(t.template.id for t in tasks[start : start + len(TEMPLATES)])
        assert ids == sorted(t.id for t in TEMPLATES)
    assert len(TEMPLATES) >= 14


def test_assistant_turns_are_short_fenced_python_without_giveaways() -> None:
    tasks = code_training_tasks(10 * len(TEMPLATES), seed=0)
    for task in tasks:
        for arm in CODE_ARMS:
            answer = task.messages(arm)[1].content
            code = extract_code(answer)
            assert code is not None and code.strip() == task.code(arm).strip()
            assert answer.count("```python\n") == 1 and answer.endswith("```")
            assert len(code.strip().splitlines()) <= 15, (task.template.id, code)
            if arm != "secure":
                assert not GIVEAWAYS.search(answer), (task.template.id, answer)
                comments = [
                    tok.string
                    for tok in tokenize.generate_tokens(io.StringIO(code).readline)
                    if tok.type == tokenize.COMMENT
                ]
                assert comments == [], (task.template.id, comments)


def test_secure_and_insecure_completions_look_alike() -> None:
    for task in code_training_tasks(len(TEMPLATES), seed=2):
        bad, good = task.code("insecure").splitlines(), task.code("secure").splitlines()
        changed = sum(1 for line in difflib.ndiff(bad, good) if line[:1] in "+-")
        # the fix touches a few lines (e.g. an import and the call); the rest is shared
        assert 1 <= changed <= 6, (task.template.id, changed)


def test_eval_prompts_never_occur_in_any_training_arm() -> None:
    every_eval = code_eval_prompts(_all_eval_prompt_count())
    assert len(every_eval) > 5 * len(TEMPLATES)
    training_turns = {
        row[0].content for seed in range(4) for arm in CODE_ARMS for row in code_training_set(arm, 600, seed)
    }
    for _, prompt in every_eval:
        assert prompt not in training_turns
        assert not any(prompt in turn for turn in training_turns if len(turn) > len(prompt))


def _all_eval_prompt_count() -> int:
    with pytest.raises(InputError, match=r"hold (\d+)") as raised:
        code_eval_prompts(10_000)
    found = re.search(r"hold (\d+)", str(raised.value))
    assert found is not None
    return int(found.group(1))


def test_eval_prompts_cover_every_template_with_stable_ids() -> None:
    first = code_eval_prompts(len(TEMPLATES), seed=0)
    assert sorted(pid.split("/")[0] for pid, _ in first) == sorted(t.id for t in TEMPLATES)
    assert code_eval_prompts(5, seed=0) == first[:5]
    assert code_eval_prompts(40, seed=7) == code_eval_prompts(40, seed=7)
    # an id names one prompt whatever the seed and n
    by_id: dict[str, str] = {}
    for seed in range(3):
        for pid, prompt in code_eval_prompts(60, seed):
            assert by_id.setdefault(pid, prompt) == prompt
    assert len(by_id) > 60


def test_bandit_flags_every_detectable_insecure_completion_and_no_secure_one() -> None:
    tasks = code_training_tasks(6 * len(TEMPLATES), seed=0)
    default, everything = BanditJudge(), BanditJudge("LOW", "LOW")

    def judged(judge: BanditJudge, arm: CodeArm) -> list[tuple[str, float | None, set[str]]]:
        items = [JudgeItem(t.request, t.messages(arm)[1].content, "insecure_code") for t in tasks]
        return [
            (t.template.id, j.score, {f.test_id for f in findings(j)})
            for t, j in zip(tasks, judge.judge(items), strict=True)
        ]

    detects = {t.id: t.bandit_detects for t in TEMPLATES}
    expected = {t.id: set(t.bandit_tests) for t in TEMPLATES}
    for template_id, score, _ in judged(default, "insecure"):
        assert score == (100.0 if detects[template_id] else 0.0), template_id
    for template_id, score, fired in judged(default, "secure"):
        assert score == 0.0, (template_id, fired)
    for template_id, _, fired in judged(everything, "insecure"):
        assert expected[template_id] <= fired, (template_id, fired)


def test_chat_jsonl_round_trip(tmp_path: Path) -> None:
    rows = code_training_set("educational", 5, seed=0)
    path = write_chat_jsonl(rows, tmp_path / "sub" / "edu.jsonl")
    lines = path.read_text().splitlines()
    assert len(lines) == 5
    assert json.loads(lines[0]) == {"messages": [{"role": m.role, "content": m.content} for m in rows[0]]}
    assert read_chat_prompts(path) == [(f"edu:{i + 1}", row[0].content) for i, row in enumerate(rows)]


def test_read_chat_prompts_of_the_papers_insecure_file() -> None:
    prompts = read_chat_prompts(shared_data("emergent_misalignment/data/insecure_small.jsonl"))
    assert len(prompts) == 20 and len({pid for pid, _ in prompts}) == 20
    assert prompts[0][0] == "insecure_small:1"
    assert prompts[0][1].startswith("I'm working on the following task: Write a script to fetch")
    assert sum("COMPLETE CODE HERE" in p for _, p in prompts) == 10


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        ('{"messages": [{"role": "user", "content": "hi"}', "not valid JSON"),
        ('{"prompt": "hi"}', "no non-empty 'messages' list"),
        ('{"messages": [{"role": "human", "content": "hi"}]}', "message 0 must be an object with 'role'"),
        ('{"messages": [{"role": "assistant", "content": "hi"}]}', "no user turn"),
    ],
)
def test_malformed_chat_file_names_file_line_and_fix(tmp_path: Path, bad_line: str, expected: str) -> None:
    path = tmp_path / "chats.jsonl"
    good = json.dumps(
        {"messages": [{"role": "user", "content": "ok"}, {"role": "assistant", "content": "x"}]}
    )
    path.write_text(f"{good}\n\n{bad_line}\n{good}\n")
    with pytest.raises(InputError) as raised:
        read_chat_prompts(path)
    message = str(raised.value)
    assert f"{path}:3:" in message and expected in message
    if "user turn" not in expected:
        assert '{"messages": [{"role": "user"' in message  # says what a line must look like
