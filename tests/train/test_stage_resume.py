"""A run killed while saving a stage's final adapter resumes without training past max_steps: the
state on disk at that moment is made here (stage 0 without `final` and stage.json, stage 1 not
begun, the run still "running"), so the check does not depend on when a kill lands
(tests/test_kill_points.py does that)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from aftertune.cli import app

runner = CliRunner()

SPEC = """\
name: stage-resume
seeds: [0]
arms:
  a:
    stages:
      - data: {source: "builtin:insecure_code", limit: 16}
      - data: {source: "builtin:secure_code", limit: 16}
training: {max_steps: 4, batch_size: 2, max_length: 64, learning_rate: 1.0e-3}
lora: {r: 4, alpha: 8, target_modules: [q_proj]}
eval:
  every: 2
  suite:
    - {kind: task_loss, holdout: 2}
"""


def test_a_kill_while_saving_the_final_adapter_resumes_to_the_same_run(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "run"
    first = runner.invoke(app, ["run", str(spec), "--out", str(out)])
    assert first.exit_code == 0, first.output
    summary = json.loads((out / "summary.json").read_text())
    stage = out / "runs" / "a" / "seed0" / "stage0"
    weights = (stage / "final" / "adapter_model.safetensors").read_bytes()

    # killed while stage 0 saved its final adapter: stage 1 had not started
    shutil.rmtree(stage / "final")
    (stage / "stage.json").unlink()
    shutil.rmtree(stage.parent / "stage1")
    with sqlite3.connect(out / "results.sqlite") as db:
        db.execute("UPDATE runs SET status = 'running', detail = '{}'")
    db.close()
    again = runner.invoke(app, ["run", str(spec), "--out", str(out)])
    assert again.exit_code == 0, again.output

    assert json.loads((stage / "stage.json").read_text())["steps"] == 4
    assert sorted(p.name for p in stage.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert (stage / "final" / "adapter_model.safetensors").read_bytes() == weights
    resumed = json.loads((out / "summary.json").read_text())
    assert {k: v for k, v in resumed.items() if k != "environment"} == {
        k: v for k, v in summary.items() if k != "environment"
    }
