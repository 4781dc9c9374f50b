"""`aftertune demo --quick`, `sweep`, `compare`, `report` and `run` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aftertune.cli import app
from aftertune.cli.experiments import GATE_STOPPED_EXIT

runner = CliRunner()
TIMEOUT_S = 900
#: the quick demo: 2 arms x 1 seed, 6 steps, evaluated every 3
QUICK_STEPS = [3, 6]


def demo_command(out: Path) -> list[str]:
    return [sys.executable, "-m", "aftertune", "demo", "--quick", "--out", str(out)]


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("demo") / "run"
    done = subprocess.run(demo_command(out), capture_output=True, text=True, timeout=TIMEOUT_S)
    return out, done


def count(out: Path, table: str) -> int:
    with sqlite3.connect(out / "results.sqlite") as db:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def test_quick_demo_trains_both_arms_and_writes_the_report(
    quick_demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, done = quick_demo
    assert done.returncode in (0, GATE_STOPPED_EXIT), done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    summary = json.loads((out / "summary.json").read_text())
    runs = {r["arm"]: r for r in summary["runs"]}
    assert set(runs) == {"insecure", "secure"}
    stopped = [r for r in runs.values() if r["status"] == "stopped_by_gate"]
    assert (done.returncode == GATE_STOPPED_EXIT) == bool(stopped)
    for run in runs.values():
        steps = [c["step"] for c in run["checkpoints"]]
        assert steps == (QUICK_STEPS if run["status"] == "done" else steps[:1])
        assert all("task_loss/loss" in c["metrics"] for c in run["checkpoints"])
    assert {"insecure_code/code_rate", "misalignment/misaligned_rate"} <= set(summary["base"]["metrics"])
    references = {d["reference"] for d in summary["deltas"]}
    assert "base" in references and any(r.startswith("secure/step") for r in references)
    assert summary["recommendations"] and summary["judges"]["misalignment"].startswith("offline:")
    html = (out / "report.html").read_text()
    assert html.count("<svg") >= 3 and "<script" not in html
    assert "Recommend" in done.stdout or "recommend" in done.stdout


def test_sweep_swaps_adapters_and_recomputes_nothing(
    quick_demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, _ = quick_demo
    before = {t: count(out, t) for t in ("generations", "judgements", "eval_reports", "tracked_steps")}
    result = runner.invoke(app, ["sweep", str(out)])
    assert result.exit_code == 0, result.output
    assert "Evaluated" in result.output
    after = {t: count(out, t) for t in before}
    assert after == before, "every checkpoint was evaluated during training: the sweep reuses it all"


def test_compare_any_two_evaluated_models(quick_demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = quick_demo
    result = runner.invoke(app, ["compare", f"{out}@secure/seed0/step3", f"{out}@base"])
    assert result.exit_code == 0, result.output
    assert "insecure_code" in result.output and "misaligned_rate" in result.output
    result = runner.invoke(app, ["compare", str(out), f"{out}@base"])
    assert result.exit_code == 2 and "several evaluated models" in result.output
    result = runner.invoke(app, ["compare", f"{out}@nobody", f"{out}@base"])
    assert result.exit_code == 2 and "no model labelled 'nobody'" in result.output


def test_report_rewrites_the_files(quick_demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = quick_demo
    (out / "report.html").unlink()
    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "report.html").stat().st_size > 10_000


def test_run_input_errors(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\narms:\n  a: {data: nowhere.jsonl}\neval: {suite: [{kind: task_loss}]}\n")
    result = runner.invoke(app, ["run", str(spec), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and f"{spec}:3" in result.output and "nowhere.jsonl" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["sweep", str(tmp_path)])
    assert result.exit_code == 2 and "experiment.json" in result.output
    data = tmp_path / "d.jsonl"
    data.write_text(
        '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}]}\n'
    )
    spec.write_text("name: x\narms:\n  a: {data: d.jsonl}\neval: {suite: [{kind: task_loss}]}\n")
    result = runner.invoke(app, ["run", str(spec), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "d.jsonl:1" in result.output, result.output


@pytest.mark.slow
def test_kill_9_mid_training_then_resume_gives_the_same_results(
    quick_demo: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    reference, _ = quick_demo
    out = tmp_path / "run"
    first_checkpoint = out / "runs" / "insecure" / "seed0" / "stage0" / "checkpoint-3" / "trainer_state.json"
    second_arm = out / "runs" / "secure" / "seed0" / "stage0"
    for marker in (first_checkpoint, second_arm):  # mid-training in the first arm, then as the second starts
        process = subprocess.Popen(demo_command(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + TIMEOUT_S
        while not marker.exists():
            assert process.poll() is None, f"the demo ended before {marker} appeared"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert not (out / "summary.json").exists()
    resumed = subprocess.run(demo_command(out), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert resumed.returncode in (0, GATE_STOPPED_EXIT), resumed.stderr[-3000:]

    got, want = (json.loads((d / "summary.json").read_text()) for d in (out, reference))
    for section in ("base", "runs", "deltas", "recommendations"):
        assert json.dumps(got[section]).replace(str(out), "RUN") == json.dumps(want[section]).replace(
            str(reference), "RUN"
        ), section
    with sqlite3.connect(out / "results.sqlite") as db:
        steps = db.execute("SELECT run, step, COUNT(*) FROM tracked_steps GROUP BY run, step").fetchall()
        assert sorted((r, s) for r, s, _ in steps) == [
            (a, s) for a in ("insecure/seed0", "secure/seed0") for s in QUICK_STEPS
        ]
        assert all(n == 1 for _, _, n in steps)
