"""The openai backend against a real OpenAI-compatible server: llama-cpp-python's, on loopback."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from llama_server import MODEL, PLAIN_SAMPLING, free_port, running_llama_server
from tenacity import RetryCallState, Retrying, wait_none

from aftertune.errors import EndpointError, InputError
from aftertune.models.openai import OpenAIModel, _Transient, parse_endpoint
from aftertune.models.openai_responses import chat_completion, first_choice, retry_after
from aftertune.models.protocol import (
    GenerationRequest,
    LoglikelihoodRequest,
    Model,
    SamplingParams,
    chat,
)

pytestmark = pytest.mark.needs_server

POEM = chat("Write a short poem about the sea.")
#: No test reads the developer's real OPENAI_API_KEY; key tests set this variable themselves.
KEY_ENV = "AFTERTUNE_TEST_API_KEY"
SECRET = "sk-test-4f1c9e2b7a"

MakeModel = Callable[..., OpenAIModel]


@pytest.fixture
def make_model() -> Iterator[MakeModel]:
    """Builds OpenAIModels for the embedded model with plain sampling; closes them after the test."""
    made: list[OpenAIModel] = []

    def make(base_url: str, model: str = MODEL, **kwargs: Any) -> OpenAIModel:
        kwargs = {"api_key_env": KEY_ENV, "extra_body": PLAIN_SAMPLING, **kwargs}
        made.append(OpenAIModel(base_url, model, **kwargs))
        return made[-1]

    yield make
    for model in made:
        model.close()


@pytest.fixture
def smol(llama_server: str, make_model: MakeModel) -> OpenAIModel:
    return make_model(llama_server, concurrency=2)


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[str]:
    with running_llama_server("--api_key", SECRET) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def bos_server() -> Iterator[str]:
    """SmolLM2 with a BOS token prepended, so llama-cpp-python's echoed prompt logprobs line up."""
    with running_llama_server("--kv_overrides", "tokenizer.ggml.add_bos_token=bool:true") as base_url:
        yield base_url


def _one(model: OpenAIModel, prompt: Any, **params: Any) -> list[Any]:
    return model.generate([GenerationRequest(prompt, SamplingParams(**params))])[0]


# --------------------------------------------------------------------- parse_endpoint
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("http://localhost:8000/v1/gpt-4o-mini", ("http://localhost:8000/v1", "gpt-4o-mini")),
        (
            "https://host:8000/v1/meta-llama/Llama-3-8B",
            ("https://host:8000/v1", "meta-llama/Llama-3-8B"),
        ),
        ("http://h/openai/v1/org/m/", ("http://h/openai/v1", "org/m")),
        ("http://host:8000/api/my-model", ("http://host:8000/api", "my-model")),
    ],
)
def test_parse_endpoint_splits_base_url_and_model(spec: str, expected: tuple[str, str]) -> None:
    assert parse_endpoint(spec) == expected


@pytest.mark.parametrize("spec", ["http://localhost:8000/v1", "http://localhost:8000/v1/", "localhost/v1/m"])
def test_parse_endpoint_without_model_or_scheme_says_how(spec: str) -> None:
    with pytest.raises(InputError, match="e.g. http://localhost:8000/v1/"):
        parse_endpoint(spec)


# --------------------------------------------------------------------- generate
def test_chat_and_raw_prompts_generate(smol: OpenAIModel) -> None:
    assert isinstance(smol, Model)
    chat_out, raw_out = smol.generate(
        [
            GenerationRequest(chat("Say hello."), SamplingParams(temperature=0, max_new_tokens=64)),
            GenerationRequest("The capital of France is", SamplingParams(temperature=0, max_new_tokens=3)),
        ]
    )
    # the chat template was applied: the assistant turn ends by itself, well before 64 tokens
    assert chat_out[0].text.strip() and chat_out[0].finish_reason == "stop" and 0 < chat_out[0].n_tokens < 64
    assert raw_out[0].text.startswith(" Paris") and (raw_out[0].finish_reason, raw_out[0].n_tokens) == (
        "length",
        3,
    )


def test_samples_have_their_indices_and_differ(smol: OpenAIModel) -> None:
    samples = smol.generate(
        [GenerationRequest(POEM, SamplingParams(n=4, max_new_tokens=12), first_sample=3)]
    )[0]
    assert [s.sample_index for s in samples] == [3, 4, 5, 6]
    assert len({s.text for s in samples}) >= 3


def test_a_sample_is_reproducible_alone_from_its_seed_and_index(smol: OpenAIModel) -> None:
    # llama.cpp reuses the KV cache of the previous request's common prefix, which moves logprobs by
    # ~0.003 nats and can change a sampled token; here every request follows one with the same prompt.
    params = SamplingParams(n=3, max_new_tokens=16, seed=7)
    batch = smol.generate([GenerationRequest(POEM, params)])[0]
    alone = smol.generate([GenerationRequest(POEM, SamplingParams(n=1, max_new_tokens=16, seed=7), 2)])[0]
    assert alone[0].text == batch[2].text and alone[0].sample_index == 2
    other_seed = smol.generate([GenerationRequest(POEM, SamplingParams(n=3, max_new_tokens=16, seed=8))])[0]
    assert [s.text for s in other_seed] != [s.text for s in batch]


def test_temperature_zero_is_greedy_whatever_the_seed(smol: OpenAIModel) -> None:
    texts = {_one(smol, POEM, temperature=0, max_new_tokens=16, seed=seed)[0].text for seed in (1, 2, 3)}
    assert len(texts) == 1


def test_stop_strings_end_the_text_before_them(smol: OpenAIModel) -> None:
    full = _one(smol, POEM, temperature=0, max_new_tokens=40)[0].text
    stop = full.split()[3]
    cut = _one(smol, POEM, temperature=0, max_new_tokens=40, stop=(stop,))[0]
    assert cut.finish_reason == "stop"
    assert stop not in cut.text and cut.text.rstrip() == full[: full.index(stop)].rstrip()


@pytest.mark.parametrize("prompt", [POEM, "The capital of France is"], ids=["chat", "raw"])
def test_top_logprobs_are_twenty_sensible_alternatives(smol: OpenAIModel, prompt: Any) -> None:
    completion = _one(smol, prompt, temperature=0, max_new_tokens=8, top_logprobs=20)[0]
    assert len(completion.logprobs) == completion.n_tokens == 8
    for token in completion.logprobs:
        values = [lp for _, lp in token.top]
        assert len(token.top) == 20 and values == sorted(values, reverse=True)
        assert sum(math.exp(lp) for lp in values) <= 1 + 1e-6 and all(lp <= 0 for lp in values)
        # greedy decoding picks the most likely alternative
        assert token.top[0] == (token.token, pytest.approx(token.logprob, abs=1e-6))
    assert "".join(t.token for t in completion.logprobs).startswith(completion.text[:5])


def test_concurrent_samples_come_back_in_request_order(llama_server: str, make_model: MakeModel) -> None:
    capitals = {"France": " Paris", "Germany": " Berlin", "Japan": " Tokyo", "England": " London"}
    params = SamplingParams(temperature=0, max_new_tokens=2, n=2)
    requests = [GenerationRequest(f"The capital of {country} is", params, 5) for country in capitals]
    calls: list[tuple[str, int, int]] = []
    results = make_model(llama_server, concurrency=4).generate(requests, lambda *a: calls.append(a))
    for samples, capital in zip(results, capitals.values(), strict=True):
        assert [(s.sample_index, s.text.startswith(capital)) for s in samples] == [(5, True), (6, True)]
    assert calls[0] == ("generating", 0, 8) and calls[-1] == ("generating", 8, 8)


# --------------------------------------------------------------------- loglikelihood
def test_loglikelihood_prefers_the_right_answer(bos_server: str, make_model: MakeModel) -> None:
    model = make_model(bos_server)
    paris, berlin, spaced = model.loglikelihood(
        [
            LoglikelihoodRequest("The capital of France is", " Paris"),
            LoglikelihoodRequest("The capital of France is", " Berlin"),
            LoglikelihoodRequest("The capital of France is ", "Paris"),
        ]
    )
    assert paris > berlin and paris < 0
    assert spaced == pytest.approx(paris)


def test_loglikelihood_equals_the_logprobs_of_a_greedy_continuation(
    bos_server: str, make_model: MakeModel
) -> None:
    model = make_model(bos_server)
    context = "The capital of France is"
    # two tokens (" Paris", "."): longer greedy text can end in "\n", "\n", which re-tokenizes as "\n\n"
    sampled = _one(model, context, temperature=0, max_new_tokens=2, top_logprobs=1)[0]
    [scored] = model.loglikelihood([LoglikelihoodRequest(context, sampled.text)])
    assert scored == pytest.approx(sum(t.logprob for t in sampled.logprobs), abs=1e-3)


def test_misaligned_prompt_logprobs_are_refused(smol: OpenAIModel) -> None:
    # Without a BOS token, llama-cpp-python's server shifts echoed logprobs by one position.
    with pytest.raises(EndpointError, match="prompt logprobs") as error:
        smol.loglikelihood([LoglikelihoodRequest("The capital of France is", " Paris")])
    assert "/completions" in str(error.value)


# --------------------------------------------------------------------- errors
def test_unreachable_endpoint_fails_fast_naming_the_url(make_model: MakeModel) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    model = make_model(url, max_retries=2, retry_wait=0.05, timeout=5)
    start = time.monotonic()
    with pytest.raises(EndpointError, match="after 3 attempt") as error:
        _one(model, POEM)
    assert time.monotonic() - start < 5
    assert f"{url}/chat/completions" in str(error.value) and "curl" in str(error.value)


def test_wrong_path_is_a_clear_error_without_retries(llama_server: str, make_model: MakeModel) -> None:
    model = make_model(llama_server.replace("/v1", "/v2"), retry_wait=5)
    start = time.monotonic()
    with pytest.raises(EndpointError, match="HTTP 404") as error:
        _one(model, "Hello")
    assert time.monotonic() - start < 3
    assert "/v2/completions" in str(error.value) and "base URL" in str(error.value)


def test_server_errors_are_retried_then_reported_in_one_paragraph(smol: OpenAIModel) -> None:
    # llama-cpp-python answers a request it cannot validate with HTTP 500 (a real 5xx, retried)
    model = OpenAIModel(smol.base_url, MODEL, api_key_env=KEY_ENV, extra_body={"logprobs": -1}, max_retries=2)
    model._backoff = wait_none()  # the backoff itself is tested below
    sent: list[httpx.Request] = []
    model._client.event_hooks["request"] = [sent.append]
    with pytest.raises(EndpointError, match=r"after 3 attempt\(s\).*HTTP 500.*validation error") as error:
        _one(model, "Hello", max_new_tokens=2)
    model.close()
    assert len(sent) == 3 and "\n" not in str(error.value)


def test_backoff_grows_and_retry_after_wins() -> None:
    model = OpenAIModel("http://127.0.0.1:9/v1", MODEL, retry_wait=1.0)
    waits = []
    for attempt, error in [(1, _Transient("x")), (3, _Transient("x")), (3, _Transient("x", retry_after=7.0))]:
        state = RetryCallState(Retrying(), None, (), {})
        state.attempt_number = attempt
        state.set_exception((_Transient, error, None))
        waits.append(model._wait(state))
    model.close()
    assert 1 <= waits[0] <= 2 and 4 <= waits[1] <= 5 and waits[2] == 7.0
    for header, seconds in [("3", 3.0), ("0.5", 0.5), ("Wed, 21 Oct 2015 07:28:00 GMT", None), (None, None)]:
        headers = {"Retry-After": header} if header else {}
        assert retry_after(httpx.Response(429, headers=headers)) == seconds


def test_check_names_the_models_a_server_offers(llama_server: str, make_model: MakeModel) -> None:
    make_model(llama_server).check()
    with pytest.raises(EndpointError, match=f"does not list the model 'no-such-model'.*{MODEL}"):
        make_model(llama_server, "no-such-model").check()


def test_a_prompt_longer_than_the_context_is_refused_with_the_servers_reason(smol: OpenAIModel) -> None:
    with pytest.raises(EndpointError, match="HTTP 400.*maximum context length"):
        _one(smol, "word " * 3000, max_new_tokens=4)


def test_missing_logprobs_or_choices_are_reported(llama_server: str) -> None:
    url = f"{llama_server}/chat/completions"
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    answer = httpx.post(url, json=body, timeout=60).json()  # a real answer, without logprobs
    with pytest.raises(EndpointError, match="returned no logprobs; the LLM judge needs"):
        chat_completion(answer, 0, 20, url)
    with pytest.raises(EndpointError, match="without a 'choices' list"):
        first_choice({"object": "error"}, url)


# --------------------------------------------------------------------- API key
def test_api_key_is_sent_as_bearer_and_never_shown(
    keyed_server: str, make_model: MakeModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_model(keyed_server)
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(EndpointError, match=f"HTTP 401.*{KEY_ENV} \\(it is not set here\\)"):
        _one(model, "Hello", max_new_tokens=2)

    monkeypatch.setenv(KEY_ENV, SECRET + "-wrong")
    with pytest.raises(EndpointError, match=f"HTTP 401.*{KEY_ENV} \\(it is set here\\)") as error:
        _one(model, "Hello", max_new_tokens=2)
    assert SECRET not in str(error.value)

    monkeypatch.setenv(KEY_ENV, SECRET)
    assert _one(model, "Hello", max_new_tokens=2)[0].n_tokens == 2
    for shown in (repr(model), model.fingerprint, str(model.describe()), str(vars(model))):
        assert SECRET not in shown
    assert model.fingerprint == f"openai:{keyed_server}:{MODEL}"
