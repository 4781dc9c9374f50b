"""The scripted mix of faults that the fault tests of the openai backend and the LLM judge share, and
the check that every request of it was accounted for."""

from __future__ import annotations

from fault_proxy import Fault, FaultProxy
from llama_server import MODEL, PLAIN_SAMPLING

from aftertune.failures import stored_failures
from aftertune.models.openai import OpenAIModel
from aftertune.store import ResultsStore

#: Client timeout in seconds: a real answer takes 0.1-2 s here (more on loaded cores); a hung one never comes.
TIMEOUT_S = 20.0
MAX_RETRIES = 2
#: marker -> (the faults its attempts get, what every later attempt gets, the failure kind or None if
#: it ends stored). Markers are unique words put into the prompts.
SCRIPT: dict[str, tuple[tuple[Fault, ...], Fault, str | None]] = {
    "item0": (("429",), "pass", None),
    "item1": (("500", "500"), "pass", None),
    "item2": (("hang",), "pass", None),
    "item3": (("cut",), "pass", None),
    "item4": (("invalid_json",), "pass", None),
    "item5": ((), "pass", None),
    "item6": ((), "500", "HTTP 500"),
    "item7": ((), "429", "HTTP 429"),
    "item8": ((), "cut", "connection lost"),
    "item9": ((), "invalid_json", "invalid JSON"),
    "item10": ((), "strip_logprobs", "missing logprobs"),
}
#: Words each failure's reason must contain, by kind.
NAMED_IN_REASON = {
    "HTTP 500": "HTTP 500: internal error (fault proxy)",
    "HTTP 429": "HTTP 429: rate limited (fault proxy)",
    "connection lost": "RemoteProtocolError",
    "invalid JSON": "not a JSON object",
    "missing logprobs": "returned no logprobs",
}


def faulty_model(url: str) -> OpenAIModel:
    """The openai backend with short retry waits, for a proxy's URL."""
    return OpenAIModel(
        url, MODEL, extra_body=PLAIN_SAMPLING, concurrency=2, timeout=TIMEOUT_S,
        max_retries=MAX_RETRIES, retry_wait=0.05, api_key_env="AFTERTUNE_TEST_API_KEY",
    )  # fmt: skip


def script(proxy: FaultProxy) -> None:
    """Give the proxy SCRIPT's faults; a request carries its marker followed by a colon."""
    for marker, (faults, then, _) in SCRIPT.items():
        proxy.script(f"{marker}:", *faults, then=then)


def expected_attempts(marker: str) -> int:
    """How many requests the backend sends for `marker` under SCRIPT."""
    faults, _, failure = SCRIPT[marker]
    if failure is None:
        return len(faults) + 1
    return 1 if failure == "missing logprobs" else MAX_RETRIES + 1  # a permanent fault is not retried


def check_accounting(
    proxy: FaultProxy, store: ResultsStore, stage: str, keys: dict[str, str], stored: set[str]
) -> None:
    """Every scripted request (marker -> its result's key) is stored or recorded as failed with a
    reason naming its fault, never both; the proxy saw exactly the attempts the retries imply."""
    failures = {f.key: f for f in stored_failures(store)}
    assert len(stored & set(keys.values())) + len(failures) == len(SCRIPT) == len(set(keys.values()))
    for marker, key in keys.items():
        kind = SCRIPT[marker][2]
        if kind is None:
            assert key in stored and key not in failures, marker
        else:
            failure = failures[key]
            assert key not in stored and (failure.stage, failure.kind, failure.runs) == (stage, kind, 1)
            assert NAMED_IN_REASON[kind] in failure.reason, (marker, failure.reason)
        assert len(proxy.attempts(f"{marker}:")) == expected_attempts(marker), (marker, proxy.events)
    assert not proxy.errors
