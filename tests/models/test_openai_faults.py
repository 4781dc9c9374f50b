"""The openai backend through the store behind a fault-injecting proxy: every request ends stored or
recorded as a failure with its reason, and a re-run computes exactly the failed ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_mix import SCRIPT, TIMEOUT_S, check_accounting, faulty_model, script
from fault_proxy import FaultProxy, running_fault_proxy
from llama_server import running_llama_server

from aftertune.cached import _loglikelihood_key, generate_cached, loglikelihood_cached
from aftertune.failures import IncompleteWork, stored_failures
from aftertune.models.protocol import GenerationRequest, LoglikelihoodRequest, SamplingParams, chat
from aftertune.store import ResultsStore, generation_key

pytestmark = pytest.mark.needs_server


@pytest.fixture
def proxy(llama_server: str) -> Iterator[FaultProxy]:
    with running_fault_proxy(llama_server, hang_s=TIMEOUT_S + 5) as proxy:
        yield proxy


@pytest.mark.slow  # ~40 s: the hung request waits out the client's 20 s timeout
def test_generation_faults_end_stored_or_recorded_and_a_rerun_does_the_rest(
    proxy: FaultProxy, tmp_path: Path
) -> None:
    params = SamplingParams(temperature=0, max_new_tokens=2, top_logprobs=2)
    requests = [GenerationRequest(chat(f"{marker}: name a colour."), params) for marker in SCRIPT]
    script(proxy)
    model = faulty_model(proxy.url)
    with ResultsStore(tmp_path) as store:
        with pytest.raises(IncompleteWork) as error:
            generate_cached(store, model, requests, chunk_size=4)
        failed = sum(1 for *_, f in SCRIPT.values() if f)
        assert f"{failed} of {len(SCRIPT)} requests failed" in str(error.value)
        assert "generate: HTTP 500" in str(error.value) and "Run the same command again" in str(error.value)
        keys = {m: generation_key(model.fingerprint, r, 0) for m, r in zip(SCRIPT, requests, strict=True)}
        stored = {str(k) for (k,) in store.query("SELECT key FROM generations")}
        check_accounting(proxy, store, "generate", keys, stored)
        # The 429 asked for a wait of retry_after_s; the backoff alone would wait ~0.05-0.1 s.
        first, second = [e.at for e in proxy.events if e.marker == "item0:"]
        assert second - first >= proxy.retry_after_s

        proxy.heal()
        results = generate_cached(store, model, requests, chunk_size=4)
        # Only the failed ones were asked again, once each; the rest came from the store.
        assert sorted(e.marker for e in proxy.events) == sorted(f"{m}:" for m, s in SCRIPT.items() if s[2])
        assert store.count("generations") == len(SCRIPT) and not stored_failures(store)
        assert all(len(r) == 1 and r[0].text and len(r[0].logprobs) == r[0].n_tokens for r in results)
    model.close()


@pytest.fixture(scope="module")
def bos_server() -> Iterator[str]:
    """SmolLM2 with a BOS token, so llama-cpp-python's echoed prompt logprobs line up (see test_openai)."""
    with running_llama_server("--kv_overrides", "tokenizer.ggml.add_bos_token=bool:true") as base_url:
        yield base_url


@pytest.mark.slow  # ~60 s on two loaded cores: a hang waits out the 20 s timeout; echoes are slow
def test_loglikelihood_faults_end_stored_or_recorded_and_a_rerun_does_the_rest(
    bos_server: str, tmp_path: Path
) -> None:
    requests = [LoglikelihoodRequest(f"{marker}: The sky is", " blue") for marker in SCRIPT]
    with running_fault_proxy(bos_server, hang_s=TIMEOUT_S + 5) as proxy:
        script(proxy)
        model = faulty_model(proxy.url)
        with ResultsStore(tmp_path) as store:
            with pytest.raises(IncompleteWork, match="loglikelihood: missing logprobs"):
                loglikelihood_cached(store, model, requests, chunk_size=4)
            first_values = dict(store.query("SELECT key, logprob FROM loglikelihoods"))
            keys = {
                m: _loglikelihood_key(model.fingerprint, r) for m, r in zip(SCRIPT, requests, strict=True)
            }
            check_accounting(proxy, store, "loglikelihood", keys, set(first_values))

            proxy.heal()
            values = loglikelihood_cached(store, model, requests, chunk_size=4)
            assert sorted(e.marker for e in proxy.events) == sorted(
                f"{m}:" for m, s in SCRIPT.items() if s[2]
            )
            assert not stored_failures(store) and len(values) == len(SCRIPT)
            assert all(v < 0 for v in values)
            # What was stored in the first run is read back, not recomputed.
            assert (
                dict(store.query("SELECT key, logprob FROM loglikelihoods")).items() >= first_values.items()
            )
        model.close()
