"""`run --ray` and `sweep --ray` on a real local Ray cluster of 2 workers: the results equal a
single-process sweep's, and every row reaches the one store exactly once."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aftertune.distributed import worker_shape
from aftertune.errors import InputError
from aftertune.store import ResultsStore, new_rows

SPEC = """\
name: ray_equality
base_model: embedded
seeds: [0]
arms:
  insecure:
    data: {source: "builtin:insecure_code", limit: 24}
  secure:
    data: {source: "builtin:secure_code", limit: 24}
lora: {r: 8, alpha: 16, target_modules: all-linear}
training: {max_steps: 4, learning_rate: 5.0e-4, batch_size: 2, max_length: 192}
eval:
  every: 2
  suite:
    - {kind: insecure_code, n_prompts: 2, max_new_tokens: 24}
    - {kind: misalignment, samples: 1, max_new_tokens: 16}
    - {kind: task_loss, holdout: 4}
"""
#: base on each arm's suite + 2 arms x checkpoints at steps 2 and 4
UNITS = 2 + 2 * 2
TIMEOUT_S = 1200
RESULT_TABLES = ("generations", "judgements", "eval_samples", "eval_reports", "model_labels")


def aftertune(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "aftertune", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    return done


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local Ray head node with 2 CPUs: two 1-CPU workers."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed: pip install 'aftertune[ray]'")
    ray_cli = Path(sys.executable).parent / "ray"
    temp = tmp_path_factory.mktemp("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    port = _free_port()
    start = [
        str(ray_cli), "start", "--head", f"--port={port}", "--num-cpus=2", "--num-gpus=0",
        "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
    ]  # fmt: skip
    started = subprocess.run(start, capture_output=True, text=True, timeout=180, env=env)
    assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(ray_cli), "stop", "--force"], capture_output=True, timeout=120, env=env)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rows(run_dir: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        return sorted(tuple(r) for r in db.execute(sql).fetchall())


def results_of(run_dir: Path) -> dict[str, list[tuple[object, ...]]]:
    """Everything a result depends on, without timestamps or the run directory's own path."""
    return {
        "generations": rows(
            run_dir, "SELECT key, model, prompt, params, sample_index, seed, text FROM generations"
        ),
        "judgements": rows(run_dir, "SELECT key, judge, metric, score, judge_class FROM judgements"),
        "eval_samples": rows(run_dir, "SELECT * FROM eval_samples"),
        "eval_reports": rows(run_dir, "SELECT model, eval, digest, report FROM eval_reports"),
        "model_labels": rows(run_dir, "SELECT label, model FROM model_labels"),
        "tracked_steps": rows(run_dir, "SELECT run, step, model FROM tracked_steps"),
    }


@pytest.mark.slow
def test_ray_run_and_sweep_equal_a_single_process_sweep(ray_cluster: str, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    on_ray = tmp_path / "on_ray"
    # training saves checkpoints only; the 2 Ray workers evaluate base + every checkpoint
    done = aftertune("run", str(spec), "--out", str(on_ray), "--ray", ray_cluster)
    assert f"Evaluated {UNITS - 2} checkpoints on Ray" in done.stdout

    # the same checkpoints, evaluated in one process. Ray runs each 1-CPU worker with one thread
    # (OMP_NUM_THREADS=1), and float results depend on the thread count in the last bits (a loss
    # differed at 1e-7 with two threads): one thread here too, so equal means bit for bit.
    local = tmp_path / "local"
    local.mkdir()
    shutil.copy(on_ray / "experiment.json", local / "experiment.json")
    shutil.copytree(on_ray / "runs", local / "runs")
    aftertune("sweep", str(local), env={"OMP_NUM_THREADS": "1"})

    ray_results, local_results = results_of(on_ray), results_of(local)
    assert len(ray_results["model_labels"]) == UNITS - 1  # one base label, 4 checkpoints
    assert len(ray_results["tracked_steps"]) == UNITS - 2
    assert len(ray_results["eval_reports"]) > 0 and len(ray_results["generations"]) > 0
    for table, expected in local_results.items():
        assert ray_results[table] == expected, f"{table} differs between the Ray and the local sweep"

    # a second Ray sweep finds everything stored and adds nothing
    before = {t: len(r) for t, r in ray_results.items()}
    again = aftertune("sweep", str(on_ray), "--ray", ray_cluster)
    assert f"Evaluated {UNITS - 2} checkpoints on Ray" in again.stdout
    assert {t: len(r) for t, r in results_of(on_ray).items()} == before
    summary = json.loads((on_ray / "summary.json").read_text())
    assert {r["arm"] for r in summary["runs"]} == {"insecure", "secure"}


def test_merged_rows_are_stored_exactly_once(tmp_path: Path) -> None:
    driver = ResultsStore(tmp_path / "driver")
    driver.put_model_label("base", "fingerprint-a")
    (tmp_path / "worker").mkdir()
    start = tmp_path / "start.sqlite"
    start.write_bytes(driver.snapshot())
    shutil.copy(start, tmp_path / "worker" / "results.sqlite")
    with ResultsStore(tmp_path / "worker") as worker:
        worker.put_model_label("step2", "fingerprint-b")
        worker.ensure_schema("CREATE TABLE IF NOT EXISTS notes (text TEXT NOT NULL)")
        with worker.transaction() as db:
            db.execute("INSERT INTO notes VALUES ('a')")
    sent = new_rows(tmp_path / "worker" / "results.sqlite", start)
    assert set(sent) == {"model_labels", "notes"}  # the label the driver had is not sent back
    assert driver.merge(sent) == 2
    assert driver.merge(sent) == 0  # a unit merged twice (a retried worker) adds nothing
    assert driver.model_labels() == {"base": "fingerprint-a", "step2": "fingerprint-b"}
    assert driver.query("SELECT text FROM notes") == [("a",)]
    driver.close()


def test_worker_shape() -> None:
    assert worker_shape({"CPU": 2.0}, units=6, workers=None, cpus_per_worker=1.0).workers == 2
    assert worker_shape({"CPU": 16.0, "GPU": 4.0}, units=6, workers=None, cpus_per_worker=1.0).gpus == 1.0
    assert worker_shape({"CPU": 16.0, "GPU": 4.0}, units=3, workers=None, cpus_per_worker=1.0).workers == 3
    with pytest.raises(InputError, match="at least 1"):
        worker_shape({"CPU": 2.0}, units=6, workers=0, cpus_per_worker=1.0)
