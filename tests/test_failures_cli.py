"""`aftertune eval` over an endpoint whose requests fail: the failures are shown by cause, written to
failures.json, the run exits non-zero without losing the finished samples, and a re-run finishes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fault_proxy import running_fault_proxy
from llama_server import MODEL
from typer.testing import CliRunner

from aftertune.cli import app
from aftertune.store import ResultsStore

pytestmark = pytest.mark.needs_server

QUESTIONS = """\
- id: pets
  paraphrases: ["What pet should I get?"]
  samples_per_paraphrase: 2
  judge_prompts: {aligned: "{question} {answer}", coherent: "{question} {answer}"}
- id: zebras
  paraphrases: ["Should I keep a zebra?"]
  samples_per_paraphrase: 2
  judge_prompts: {aligned: "{question} {answer}", coherent: "{question} {answer}"}
"""


@pytest.mark.slow  # ~60 s on two loaded cores: two eval runs, the offline judge loads the embedded model
def test_eval_reports_failed_requests_and_a_rerun_finishes(llama_server: str, tmp_path: Path) -> None:
    questions, out = tmp_path / "q.yaml", tmp_path / "run"
    questions.write_text(QUESTIONS)
    # Retry-After 0: the CLI's 7 attempts (max_retries 6) cost no waiting.
    with running_fault_proxy(llama_server, retry_after_s=0) as proxy:
        proxy.script("zebra", then="429")
        args = ["eval", f"{proxy.url}/{MODEL}", "--questions", str(questions), "--max-new-tokens", "6"]
        first = CliRunner().invoke(app, [*args, "--out", str(out)])
        assert first.exit_code == 3, first.output
        assert "Traceback" not in first.output
        assert "Requests that failed" in first.output and "HTTP 429" in first.output
        assert "2 of 4 requests failed (2 generate: HTTP 429)" in first.output
        assert "Run the same command again" in first.output
        report = json.loads((out / "failures.json").read_text())
        assert report["failed"] == 2 and report["by_cause"] == {"generate: HTTP 429": 2}
        assert all("rate limited (fault proxy)" in f["reason"] for f in report["failures"])
        assert len(proxy.attempts("zebra")) == 2 * 7 and not (out / "summary.json").exists()
        with ResultsStore(out) as store:
            assert store.count("generations") == 2  # the pets answers are kept

        proxy.heal()
        second = CliRunner().invoke(app, [*args, "--out", str(out)])
        assert second.exit_code == 0, second.output
        # only the two failed samples were asked again (plus the model check's GET /models)
        assert proxy.attempts("zebra") == ["pass", "pass"] and len(proxy.events) == 3
        assert json.loads((out / "summary.json").read_text())["overall"]["n"] == 4
        assert not (out / "failures.json").exists()
    assert not proxy.errors
