"""The `openai` backend: any OpenAI-compatible HTTP endpoint (OpenAI, vLLM, llama.cpp's server, ...).

One HTTP request per sample, each with its own seed, so samples are reproducible one by one whatever
a server does with `n`. Requests run in a thread pool; transient failures (429, 5xx, timeouts, cut
connections, a body that is not JSON) are retried by tenacity. A request that still fails does not stop
the others: the batch ends with `RequestsFailed`, carrying the finished results and each failure's cause.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from aftertune.errors import EndpointError, InputError
from aftertune.failures import Failure, RequestsFailed, partial_results
from aftertune.models.openai_responses import (
    chat_completion,
    first_choice,
    legacy_logprobs,
    retry_after,
    server_message,
    text_completion,
)
from aftertune.models.protocol import (
    Completion,
    GenerationRequest,
    LoglikelihoodRequest,
    Prompt,
    SamplingParams,
    sample_seed,
)
from aftertune.names import refuse_secrets_in_url
from aftertune.progress import ProgressCallback, report

T = TypeVar("T")

#: Seeds are sent as 31-bit numbers: servers parse them as int32, uint32 or int64, and llama.cpp
#: reads 0xFFFFFFFF as "random"; 31 bits fit all of them and never hit that value.
_SEED_MASK = 0x7FFFFFFF
#: A server's Retry-After is honoured up to this many seconds, so a bad header cannot hang a run.
_MAX_RETRY_AFTER_S = 300.0
#: Prompt whose greedy next token checks that echoed prompt logprobs line up with their tokens.
_PROBE = "The capital of France is"
#: Nats by which one token's prompt logprob and sampled logprob may differ (numerics, batching).
_PROBE_TOLERANCE = 0.25
_LOGLIKELIHOOD_HINT = (
    "Log-likelihood scoring needs an endpoint that returns prompt logprobs (/completions with "
    "echo=true and logprobs), e.g. vLLM's OpenAI-compatible server."
)


def parse_endpoint(spec: str) -> tuple[str, str]:
    """Split `http://host:port/v1/MODEL` into (base URL ending at /v1, model); model names may hold '/'."""
    spec = spec.strip()
    refuse_secrets_in_url(spec)
    if "/v1/" in spec:
        base, _, model = spec.partition("/v1/")
        base += "/v1"
    else:
        parts = urlsplit(spec)
        head, _, model = parts.path.rstrip("/").rpartition("/")
        base = parts._replace(path=head, query="", fragment="").geturl()
        if model == "v1":  # "http://host/v1" is a base URL that names no model
            model = ""
    model = model.strip("/")
    if not model or not base.startswith(("http://", "https://")):
        raise InputError(
            f"Endpoint '{spec}' should be an http(s) base URL followed by the model name, e.g. "
            "http://localhost:8000/v1/meta-llama/Llama-3.1-8B-Instruct (base URL "
            "http://localhost:8000/v1, model meta-llama/Llama-3.1-8B-Instruct)."
        )
    return base, model


class _Transient(Exception):
    """A failure worth retrying (connection error, timeout, 429, 5xx, a body that is not JSON), with
    its cause in a few words and the server's wait if any."""

    def __init__(self, what: str, retry_after: float | None = None, kind: str = "transient") -> None:
        super().__init__(what)
        self.retry_after = retry_after
        self.kind = kind


class OpenAIModel:
    """An OpenAI-compatible endpoint behind the `Model` protocol.

    The API key is read from the environment variable `api_key_env` at each request, never kept.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 120,
        max_retries: int = 6,
        retry_wait: float = 1.0,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise InputError(
                f"base_url '{base_url}' should start with http(s)://, e.g. http://localhost:8000/v1"
            )
        refuse_secrets_in_url(base_url)
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        #: Server-specific fields added to every request (e.g. llama.cpp's top_k, min_p, repeat_penalty).
        self.extra_body = dict(extra_body or {})
        # Backoff doubles from retry_wait seconds up to a minute; the jitter spreads concurrent retries.
        self._backoff = wait_exponential(multiplier=retry_wait, max=60) + wait_random(0, retry_wait)
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self._prompt_logprobs_checked = False
        self._probe_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenAIModel(base_url={self.base_url!r}, model={self.model!r})"

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    @property
    def fingerprint(self) -> str:
        return f"openai:{self.base_url}:{self.model}"

    def describe(self) -> dict[str, Any]:
        """What is called, for the run's resolved config (the key's variable name, never its value)."""
        return {
            "backend": "openai",
            "base_url": self.base_url,
            "model": self.model,
            "concurrency": self.concurrency,
            "api_key_env": self.api_key_env,
            "extra_body": self.extra_body,
            "fingerprint": self.fingerprint,
        }

    def check(self) -> None:
        """Fail early: EndpointError unless the endpoint answers and lists `model` under /models.

        One retry only: this runs before any work, where a wrong URL should fail in seconds.
        """
        data = self._request("/models", None, retries=1)
        listed = [str(m.get("id")) for m in data.get("data") or [] if isinstance(m, dict)]
        if self.model not in listed:
            raise EndpointError(
                f"{self.base_url}/models does not list the model '{self.model}'; it lists: "
                f"{', '.join(listed[:20]) or 'nothing'}. Use one of those names, e.g. "
                f"{self.base_url}/{listed[0] if listed else 'MODEL'}."
            )

    # ----------------------------------------------------------------- generate
    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None
    ) -> list[list[Completion]]:
        owners = [i for i, r in enumerate(requests) for _ in r.sample_indices]
        jobs = [partial(self._sample, r.prompt, r.params, k) for r in requests for k in r.sample_indices]
        done, failed = partial_results(partial(self._run, jobs, "generating", progress))
        results: list[list[Completion]] = [[] for _ in requests]
        for j in sorted(done):
            results[owners[j]].append(done[j])
        # A request fails with its first failed sample; its other samples are dropped with it (the
        # cached calls send one sample per request, so there nothing finished is lost).
        lost: dict[int, Failure] = {}
        for j in sorted(failed):
            lost.setdefault(owners[j], failed[j])
        if lost:
            finished = {i: r for i, r in enumerate(results) if i not in lost}
            raise RequestsFailed(finished, lost, len(requests))
        return results

    def _sample(self, prompt: Prompt, params: SamplingParams, k: int) -> Completion:
        seed = sample_seed(prompt, params.seed, k) & _SEED_MASK
        body = self._body(temperature=params.temperature, top_p=params.top_p, seed=seed)
        body["max_tokens"] = params.max_new_tokens
        if params.stop:
            body["stop"] = list(params.stop)
        top = params.top_logprobs
        if isinstance(prompt, str):
            body["prompt"] = prompt
            if top:
                body["logprobs"] = top
            return text_completion(self._request("/completions", body), k, top, self._url("/completions"))
        body["messages"] = [{"role": m.role, "content": m.content} for m in prompt]
        if top:
            body["logprobs"], body["top_logprobs"] = True, top
        url = self._url("/chat/completions")
        return chat_completion(self._request("/chat/completions", body), k, top, url)

    # ----------------------------------------------------------------- loglikelihood
    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: ProgressCallback | None = None
    ) -> list[float]:
        if any(not isinstance(r.context, str) for r in requests):
            raise InputError(
                f"{self.model}: log-likelihood of a chat-formatted context needs the model's chat "
                "template, which an OpenAI-compatible endpoint does not expose. Use a local model "
                "folder (hf backend), or give the context as raw text."
            )
        pairs = [_move_trailing_spaces(str(r.context), r.continuation) for r in requests]
        if pairs:
            self._check_prompt_logprobs()
        return self._run([partial(self._score, c, x) for c, x in pairs], "scoring", progress)

    def _score(self, context: str, continuation: str) -> float:
        """Sum the echoed prompt logprobs of the tokens that overlap the continuation."""
        text = context + continuation
        tokens, offsets, logprobs = self._echo(text)
        # A token spans from its offset to the next one's; the last prompt token ends with the text.
        ends = [*offsets[1:], len(text)]
        picked = [
            lp for s, e, lp in zip(offsets, ends, logprobs, strict=True) if s < len(text) and e > len(context)
        ]
        if not picked:
            raise EndpointError(
                f"{self._url('/completions')} echoed no tokens for the continuation {continuation!r} "
                f"(echoed: {tokens[:50]}). {_LOGLIKELIHOOD_HINT}"
            )
        if None in picked:
            raise EndpointError(f"{self._url('/completions')} gave a continuation token no logprob.")
        return sum(lp or 0.0 for lp in picked)

    def _echo(self, text: str) -> tuple[list[str], list[int], list[float | None]]:
        """Tokens, text offsets and logprobs of `text` as the endpoint echoes them back."""
        url = self._url("/completions")
        # max_tokens=1, not 0: llama.cpp's server reads 0 as "until the context is full".
        body = self._body(prompt=text, max_tokens=1, echo=True, logprobs=1, temperature=0)
        choice = first_choice(self._request("/completions", body, _LOGLIKELIHOOD_HINT), url)
        tokens, offsets, logprobs, _ = legacy_logprobs(choice, url, _LOGLIKELIHOOD_HINT, with_offsets=True)
        if not str(choice.get("text", "")).startswith(text) or not offsets or offsets[0] != 0:
            raise EndpointError(
                f"{url} did not echo the prompt with its logprobs. {_LOGLIKELIHOOD_HINT}", "missing logprobs"
            )
        return tokens, offsets, logprobs

    def _check_prompt_logprobs(self) -> None:
        """Once per model: a token's echoed prompt logprob must equal its logprob when it is sampled.

        llama-cpp-python's server pairs each echoed token with the next position's distribution when
        the model adds no BOS token (SmolLM2, Qwen, ...): its scores would be silently wrong.
        """
        with self._probe_lock:
            if self._prompt_logprobs_checked:
                return
            url = self._url("/completions")
            body = self._body(prompt=_PROBE, max_tokens=1, logprobs=1, temperature=0)
            choice = first_choice(self._request("/completions", body, _LOGLIKELIHOOD_HINT), url)
            sampled_tokens, _, sampled, _ = legacy_logprobs(choice, url, _LOGLIKELIHOOD_HINT)
            if sampled_tokens and sampled_tokens[0] and sampled[0] is not None:
                token, expected = sampled_tokens[0], sampled[0]
                tokens, offsets, echoed = self._echo(_PROBE + token)
                at = offsets.index(len(_PROBE)) if len(_PROBE) in offsets else -1
                got = echoed[at] if at >= 0 and tokens[at] == token else None
                if got is not None and abs(got - expected) > _PROBE_TOLERANCE:
                    raise EndpointError(
                        f"{url} echoes prompt logprobs that disagree with its sampled logprobs (token "
                        f"{token!r} after {_PROBE!r}: {got:.3f} echoed, {expected:.3f} sampled), so "
                        "log-likelihoods from it would be wrong; llama-cpp-python's server does this for "
                        f"models without a BOS token. {_LOGLIKELIHOOD_HINT}"
                    )
            self._prompt_logprobs_checked = True

    # ----------------------------------------------------------------- HTTP
    def _run(self, jobs: Sequence[Callable[[], T]], stage: str, progress: ProgressCallback | None) -> list[T]:
        """Run jobs `concurrency` at a time, results in job order. A job that fails (EndpointError, after
        its retries) does not stop the others; then `RequestsFailed` carries what finished and why each
        other one failed. Anything else (a bug, Ctrl-C) cancels the jobs not yet started."""
        done: dict[int, T] = {}
        failed: dict[int, Failure] = {}
        report(progress, stage, 0, len(jobs))
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            futures: dict[Future[T], int] = {pool.submit(job): j for j, job in enumerate(jobs)}
            for future in as_completed(futures):
                try:
                    done[futures[future]] = future.result()
                except EndpointError as e:
                    failed[futures[future]] = Failure.of(e)
                report(progress, stage, len(done) + len(failed), len(jobs))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if failed:
            raise RequestsFailed(done, failed, len(jobs))
        return [done[j] for j in range(len(jobs))]

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _body(self, **fields: Any) -> dict[str, Any]:
        return {**self.extra_body, "model": self.model, **fields}

    def _request(
        self, path: str, body: dict[str, Any] | None, hint: str = "", retries: int | None = None
    ) -> dict[str, Any]:
        """POST `body` (GET without one), retried on transient failures; EndpointError once they run out."""
        method = "GET" if body is None else "POST"
        retries = self.max_retries if retries is None else retries
        retrying = Retrying(
            stop=stop_after_attempt(retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            reraise=True,
        )
        try:
            return retrying(self._send, method, self._url(path), body, hint)
        except _Transient as e:
            raise EndpointError(
                self._redact(
                    f"Gave up on {method} {self._url(path)} after {retries + 1} attempt(s); the "
                    f"last one failed with: {e}. Check that the server is running and reachable from here "
                    f"(`curl {self.base_url}/models` should answer); if it is only slow or rate-limited, "
                    "raise the timeout or max_retries, or lower the concurrency."
                ),
                e.kind,
            ) from None

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Transient) and error.retry_after is not None:
            return min(error.retry_after, _MAX_RETRY_AFTER_S)
        return float(self._backoff(state))

    def _send(self, method: str, url: str, body: dict[str, Any] | None, hint: str) -> dict[str, Any]:
        key = os.environ.get(self.api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        try:
            response = self._client.request(method, url, json=body, headers=headers)
        except httpx.TimeoutException:
            raise _Transient(f"no answer within {self.timeout:g} s", kind="timeout") from None
        except httpx.ConnectError as e:
            raise _Transient(f"could not connect ({type(e).__name__}: {e})", kind="no connection") from None
        except httpx.TransportError as e:
            # e.g. RemoteProtocolError: the server or a proxy closed the connection mid-answer
            raise _Transient(f"connection lost ({type(e).__name__}: {e})", kind="connection lost") from None
        status = response.status_code
        if status == 429 or status >= 500:
            message = f"HTTP {status}: {server_message(response)}"
            raise _Transient(message, retry_after(response), kind=f"HTTP {status}")
        if status >= 400:
            message = f"{url} refused the request with HTTP {status}: {server_message(response)}."
            raise EndpointError(self._redact(f"{message} {self._fix_for(status, hint)}"), f"HTTP {status}")
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            # Retried: a proxy or an overloaded server can garble one answer; a base URL that is not
            # an API at all is caught before any work by `check`, which retries only once.
            raise _Transient(
                f"{url} answered HTTP {status} with something that is not a JSON object (it starts "
                f"{response.text[:200]!r}); check that {self.base_url} is the base URL (usually ending "
                "in /v1) of an OpenAI-compatible API",
                kind="invalid JSON",
            )
        return data

    def _fix_for(self, status: int, hint: str) -> str:
        if status in (401, 403):
            state = "it is set" if os.environ.get(self.api_key_env) else "it is not set"
            return (
                f"Check the API key: it is read from the environment variable {self.api_key_env} "
                f"({state} here) and sent as a Bearer token."
            )
        if status == 404:
            return (
                f"Check the base URL (usually ending in /v1; `curl {self.base_url}/models` should list "
                f"models) and the model name '{self.model}'. {hint}"
            ).strip()
        return hint or f"Check the model name '{self.model}' and the sampling parameters."

    def _redact(self, text: str) -> str:
        """The message with the API key masked, in case a server quotes it back."""
        key = os.environ.get(self.api_key_env)
        return text.replace(key, "***") if key else text


def _move_trailing_spaces(context: str, continuation: str) -> tuple[str, str]:
    """As lm-evaluation-harness does: a context's trailing spaces go to the continuation's first token."""
    if not continuation:
        raise InputError("loglikelihood needs a non-empty continuation.")
    spaces = len(context) - len(context.rstrip(" "))
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    if not context:
        raise InputError(
            "loglikelihood over an HTTP endpoint needs a non-empty context: endpoints give the first "
            "token of a prompt no logprob."
        )
    return context, continuation
