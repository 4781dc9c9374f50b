"""`aftertune run` on small specs: stages continue the step count, seeds pool, gates stop runs with
exit code 5, full fine-tuning works, and every length decision is counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aftertune.cli import app
from aftertune.cli.experiments import GATE_STOPPED_EXIT

runner = CliRunner()

SPEC = """\
name: small
seeds: [0, 1]
control: b
arms:
  a:
    stages:
      - data: {{source: "builtin:insecure_code", limit: 16}}
      - data: {{source: "builtin:secure_code", limit: 16}}
  b:
    data: {{source: "builtin:secure_code", limit: 16}}
{extra}
training: {{max_steps: 2, batch_size: 2, max_length: 96, learning_rate: 1.0e-3}}
lora: {{r: 4, alpha: 8, target_modules: [q_proj, v_proj]}}
eval:
  every: 2
  suite:
    - {{kind: task_loss, holdout: 4}}
gates:
  - {gate}
"""


def run(tmp_path: Path, gate: str, extra: str = "") -> tuple[int, str, dict]:  # type: ignore[type-arg]
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(gate=gate, extra=extra))
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(spec), "--out", str(out)])
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    return result.exit_code, result.output, summary


def test_stages_seeds_and_pooled_deltas(tmp_path: Path) -> None:
    code, output, summary = run(tmp_path, "task_loss/loss rise > 5")
    assert code == 0, output
    runs = {(r["arm"], r["seed"]): r for r in summary["runs"]}
    assert set(runs) == {("a", 0), ("a", 1), ("b", 0), ("b", 1)}
    assert [c["step"] for c in runs["a", 0]["checkpoints"]] == [2, 4], "stage 2 continues at step 3"
    assert [c["step"] for c in runs["b", 1]["checkpoints"]] == [2]
    assert all(r["status"] == "done" for r in runs.values())
    # 12 training rows of at most 96 tokens: the built-in rows are longer, so they are truncated and counted
    assert any("truncated" in note for note in runs["a", 0]["data_notes"]), runs["a", 0]["data_notes"]
    pooled = [
        d for d in summary["deltas"] if d["subject"] == "a/step4 (2 seeds)" and d["reference"] == "base"
    ]
    assert pooled and "2 x 1 seeds" in pooled[0]["estimate"]["method"]
    assert {r["run"] for r in summary["recommendations"]} == {"a/seed0", "a/seed1", "b/seed0", "b/seed1"}


def test_a_failed_gate_stops_runs_and_the_command_says_so(tmp_path: Path) -> None:
    code, output, summary = run(tmp_path, "task_loss/loss < 100")  # a loss is always below 100
    assert code == GATE_STOPPED_EXIT, output
    assert "Gate stopped a/seed0" in output and "task_loss/loss < 100" in output
    runs = {(r["arm"], r["seed"]): r for r in summary["runs"]}
    assert all(r["status"] == "stopped_by_gate" for r in runs.values())
    assert [c["step"] for c in runs["a", 0]["checkpoints"]] == [2], "the second stage never ran"
    assert all(not rec["checkpoint"] for rec in summary["recommendations"])
    again = runner.invoke(app, ["run", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "run")])
    assert again.exit_code == GATE_STOPPED_EXIT, "a stopped run stays stopped: nothing is retrained"


@pytest.mark.slow
def test_full_fine_tuning(tmp_path: Path) -> None:
    code, output, summary = run(tmp_path, "task_loss/loss rise > 5", extra="full_finetune: true")
    assert code == 0, output
    a0 = next(r for r in summary["runs"] if r["arm"] == "a" and r["seed"] == 0)
    assert [c["step"] for c in a0["checkpoints"]] == [2, 4]
    assert "+full:" in a0["checkpoints"][0]["model"]
    result = runner.invoke(app, ["sweep", str(tmp_path / "run")])
    assert result.exit_code == 2 and "full_finetune" in result.output


@pytest.mark.parametrize("name", ["a", "b"])
def test_a_changed_spec_does_not_reuse_a_run_directory(tmp_path: Path, name: str) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "experiment.json").write_text(json.dumps({"spec": {"name": name}, "base_dir": "."}))
    code, output, _ = run(tmp_path, "task_loss/loss rise > 5")
    assert code == 2 and "holds another experiment" in output
