"""The examples run as a user would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from aftertune.store import ResultsStore
from aftertune.train.records import tracked_steps

ROOT = Path(__file__).resolve().parents[1]


def test_tracking_callback_in_a_plain_trl_script(tmp_path: Path) -> None:
    command = [
        sys.executable, str(ROOT / "examples" / "track_trl_training.py"),
        "--steps", "2", "--every", "1", "--examples", "16", "--prompts", "2", "--out", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode in (0, 5), done.stderr[-3000:]
    with ResultsStore(tmp_path) as store:
        steps = tracked_steps(store, "example")
        assert "base" in store.model_labels()
    evaluated = [s.step for s in steps]
    assert evaluated == ([1, 2] if done.returncode == 0 else [1])
    for step in evaluated:
        assert f"step {step}: insecure_code/" in done.stdout
