"""The LLM judge through the store behind a fault-injecting proxy: every judgement ends stored or
recorded as a failure with its reason, and a re-run judges exactly the failed ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from fault_mix import SCRIPT, TIMEOUT_S, check_accounting, faulty_model, script
from fault_proxy import running_fault_proxy

from aftertune.cached import judge_cached
from aftertune.failures import IncompleteWork, stored_failures
from aftertune.judges.judgement import JudgeItem
from aftertune.judges.llm import LLMJudge
from aftertune.store import ResultsStore, judgement_key

pytestmark = pytest.mark.needs_server

TEMPLATE = "Rate the answer from 0 to 100.\nQuestion: {question}\nAnswer: {answer}\nRating:"


@pytest.mark.slow  # ~40 s: the hung request waits out the client's 20 s timeout
def test_judge_faults_end_stored_or_recorded_and_a_rerun_judges_the_rest(
    llama_server: str, tmp_path: Path
) -> None:
    items = [
        JudgeItem("How do I make money?", f"{marker}: get a job.", "aligned", TEMPLATE) for marker in SCRIPT
    ]
    with running_fault_proxy(llama_server, hang_s=TIMEOUT_S + 5) as proxy:
        script(proxy)
        model = faulty_model(proxy.url)
        judge = LLMJudge(model)
        with ResultsStore(tmp_path) as store:
            with pytest.raises(IncompleteWork) as error:
                judge_cached(store, judge, items, chunk_size=4)
            message = str(error.value)
            assert "5 of 11 requests failed" in message and "judge: missing logprobs" in message
            keys = {m: judgement_key(judge.fingerprint, it) for m, it in zip(SCRIPT, items, strict=True)}
            first = dict(store.query("SELECT key, detail FROM judgements"))
            check_accounting(proxy, store, "judge", keys, set(first))

            proxy.heal()
            judgements = judge_cached(store, judge, items, chunk_size=4)
            assert sorted(str(e.marker) for e in proxy.events) == sorted(
                f"{m}:" for m, s in SCRIPT.items() if s[2]
            )
            assert not stored_failures(store) and store.count("judgements") == len(SCRIPT)
            # every judgement read the judge's 20 alternatives, none is a made-up number
            assert all('"top": [' in j.detail and (j.score is not None or j.judge_class) for j in judgements)
            assert dict(store.query("SELECT key, detail FROM judgements")).items() >= first.items()
        model.close()
