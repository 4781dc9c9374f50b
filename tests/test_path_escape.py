"""Crafted names and paths cannot make aftertune write outside the run directory: experiment, arm and
eval names, model names and data paths that pick a default run directory, and NUL or very long values.
Each is refused with a one-paragraph error naming the field, or kept inside the run directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from aftertune.cli import app
from aftertune.config import RUNS_ROOT, AuditConfig, EvalConfig
from aftertune.errors import InputError
from aftertune.train.spec import load_spec

runner = CliRunner()

#: names that would lead out of a folder, or that no file system takes
CRAFTED = ["..", ".", "../../escaped", "/tmp/escaped", "a\x00b", "x" * 300, "runs/../../escaped"]


def _tree(root: Path) -> set[str]:
    """Every path under `root`, relative to it."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def sandbox_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory two levels below `tmp_path`, so that '../..' still lands in `tmp_path`."""
    cwd = tmp_path / "home" / "work"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    return cwd


def _spec(name: str = "ok", arm: str = "a", eval_name: str = "task_loss") -> dict[str, object]:
    return {
        "name": name,
        "arms": {arm: {"data": {"source": "builtin:secure_code", "limit": 8}}},
        "training": {"max_steps": 1},
        "eval": {"suite": [{"kind": "task_loss", "name": eval_name, "holdout": 2}]},
    }


def _write_spec(folder: Path, spec: dict[str, object]) -> Path:
    path = folder / "spec.yaml"
    # YAML's double-quoted "\0" is a NUL: a spec file can carry one
    path.write_text(yaml.safe_dump(spec, allow_unicode=True, width=1000))
    return path


@pytest.mark.parametrize("name", CRAFTED)
def test_crafted_experiment_names_are_refused_before_anything_is_written(
    sandbox_cwd: Path, tmp_path: Path, name: str
) -> None:
    spec = _write_spec(sandbox_cwd, _spec(name=name))
    before = _tree(tmp_path)
    result = runner.invoke(app, ["run", str(spec)])  # no --out: the run directory comes from the name
    assert result.exit_code == 2, result.output
    assert "experiment name" in result.output and "Traceback" not in result.output
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("name", [n for n in CRAFTED if n != "."] + ["base"])
def test_crafted_arm_names_are_refused(tmp_path: Path, name: str) -> None:
    spec = _write_spec(tmp_path, _spec(arm=name))
    with pytest.raises(InputError, match="arm name"):
        load_spec(spec)


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/escaped", "a\x00b", "a/b", "x" * 300, "a\nb"])
def test_crafted_eval_names_are_refused_in_specs_and_suite_files(
    sandbox_cwd: Path, tmp_path: Path, name: str
) -> None:
    with pytest.raises(InputError, match="eval name"):
        load_spec(_write_spec(sandbox_cwd, _spec(eval_name=name)))
    suite = sandbox_cwd / "suite.yaml"
    suite.write_text(yaml.safe_dump([{"kind": "task_loss", "name": name, "holdout": 2}]))
    before = _tree(tmp_path)
    result = runner.invoke(app, ["eval", "embedded", "--suite", str(suite)])
    assert result.exit_code == 2 and "eval name" in result.output, result.output
    assert "Traceback" not in result.output and _tree(tmp_path) == before


def test_a_valid_experiment_name_still_names_its_run_directory(tmp_path: Path) -> None:
    spec, _ = load_spec(_write_spec(tmp_path, _spec(name="em.v2-small_1", arm="in-secure_2")))
    assert spec.name == "em.v2-small_1" and list(spec.arms) == ["in-secure_2"]


@pytest.mark.parametrize("model", ["../../escaped", "/tmp/escaped", "..", "http://h:1/v1/../../x", "x" * 300])
def test_a_model_name_picks_a_default_run_directory_inside_aftertune_runs(model: str) -> None:
    run_dir = EvalConfig(model=model).run_dir()
    assert run_dir.parent == RUNS_ROOT and len(run_dir.name) <= 90
    assert run_dir.name not in (".", "..") and "/" not in run_dir.name


@pytest.mark.parametrize("data", ["../../escaped.jsonl", "/tmp/x/../../escaped.jsonl", "..", "a" * 300])
def test_a_data_path_picks_a_default_audit_directory_inside_aftertune_runs(data: str) -> None:
    run_dir = AuditConfig(data=data).run_dir()
    assert run_dir.parent == RUNS_ROOT and run_dir.name.startswith("audit-")
    assert "/" not in run_dir.name and len(run_dir.name) <= 90


def test_auditing_data_outside_the_working_directory_writes_only_into_the_run_directory(
    sandbox_cwd: Path, tmp_path: Path
) -> None:
    data = tmp_path / "elsewhere" / "rows.jsonl"
    data.parent.mkdir()
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        for i in range(5)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = _tree(tmp_path)
    relative = os.path.relpath(data, sandbox_cwd)  # ../../elsewhere/rows.jsonl
    result = runner.invoke(app, ["audit", relative, "--profile-rows", "0"])
    assert result.exit_code == 0, result.output
    new = _tree(tmp_path) - before
    runs = Path("home/work") / RUNS_ROOT
    assert new and all(Path(p).is_relative_to(runs) for p in new), sorted(new)
    written = {p.name for p in (sandbox_cwd / RUNS_ROOT / "audit-rows").iterdir()}
    assert written >= {"audit.json", "audit.html", "config.json"}


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (["eval", "embedded"], "out"),
        (["eval", "embedded"], "questions"),
        (["eval", "embedded"], "adapter"),
        (["audit", "data.jsonl"], "out"),
        (["audit", "data.jsonl"], "write_filtered"),
        (["judge", "answers.csv", "--out", "judged.csv"], "run_dir"),
    ],
)
def test_a_nul_in_a_config_file_path_is_a_clear_error(
    sandbox_cwd: Path, tmp_path: Path, command: list[str], field: str
) -> None:
    config = sandbox_cwd / "config.yaml"
    config.write_text(f'{field}: "run\\0dir"\n')  # YAML's "\0" is a NUL character
    before = _tree(tmp_path)
    result = runner.invoke(app, [*command, "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert f"field '{field}'" in result.output and "NUL character" in result.output
    assert "Traceback" not in result.output and _tree(tmp_path) == before


def test_a_run_directory_name_too_long_for_the_file_system_is_a_clear_error(sandbox_cwd: Path) -> None:
    result = runner.invoke(app, ["eval", "embedded", "--out", "x" * 300])
    assert result.exit_code == 4, result.output
    assert "File name too long" in result.output and "Traceback" not in result.output
