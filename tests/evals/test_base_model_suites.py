"""The safety-behaviour suites run on base models: a model without a chat template gets every prompt
(system framings and triggers included) in the plain "System: / User: / Assistant:" format."""

from __future__ import annotations

from pathlib import Path

import pytest

from aftertune.evals.suite_config import build_suite, load_suite
from aftertune.models.hf import HFModel
from aftertune.store import ResultsStore

#: every count a suite entry may have, cut down so that each suite runs in seconds
SMALL = {"samples": 1, "max_new_tokens": 6, "n": 3, "n_safe": 2, "n_unsafe": 2, "n_prompts": 2}


@pytest.mark.parametrize("suite", ["alignment", "refusal", "triggers", "framing"])
def test_the_suite_measures_a_model_without_a_chat_template(
    suite: str, embedded: HFModel, tmp_path: Path
) -> None:
    configs = [
        c.model_copy(update={k: v for k, v in SMALL.items() if k in type(c).model_fields})
        for c in load_suite(suite, tmp_path)
    ]
    saved = embedded.tokenizer.chat_template
    embedded.tokenizer.chat_template = None  # a base model
    try:
        with ResultsStore(tmp_path / "store") as store:
            reports = [ev.run(embedded, store) for ev in build_suite(configs, base_dir=tmp_path)]
    finally:
        embedded.tokenizer.chat_template = saved
    assert [r.eval for r in reports] == [c.name for c in configs]
    for report in reports:
        assert report.metrics, f"{report.eval}: no metric measured"
        for metric in report.metrics:
            estimate = metric.estimate
            assert estimate.n > 0 and estimate.low <= estimate.value <= estimate.high, metric.name
