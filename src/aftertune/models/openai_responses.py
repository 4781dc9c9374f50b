"""Reading OpenAI-compatible responses (chat and legacy completions) into `Completion`s, checked:
anything missing or malformed is an `EndpointError` that says what was missing."""

from __future__ import annotations

from typing import Any

import httpx

from aftertune.errors import EndpointError
from aftertune.models.protocol import Completion, TokenLogprob


def first_choice(data: dict[str, Any], url: str) -> dict[str, Any]:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise EndpointError(
            f"{url} answered without a 'choices' list (keys: {sorted(data)}).", "malformed answer"
        )
    return choices[0]


def _completion(
    data: dict[str, Any],
    choice: dict[str, Any],
    text: str,
    k: int,
    top: int,
    logprobs: tuple[TokenLogprob, ...],
    url: str,
) -> Completion:
    usage = data.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
        n_tokens = int(usage["completion_tokens"])
    elif logprobs:
        n_tokens = len(logprobs)
    else:
        raise EndpointError(
            f"{url} answered without usage.completion_tokens, so the sample's length is unknown."
        )
    if top and n_tokens and not logprobs:
        raise EndpointError(
            f"The endpoint {url} returned no logprobs; the LLM judge needs an endpoint that supports "
            "top_logprobs (OpenAI, vLLM and llama.cpp's server do).",
            "missing logprobs",
        )
    # Servers also say "eos", "stop_sequence", "content_filter", ...: all of them end before max_tokens.
    finish = "length" if choice.get("finish_reason") == "length" else "stop"
    return Completion(text, k, finish, n_tokens, logprobs)


def chat_completion(data: dict[str, Any], k: int, top: int, url: str) -> Completion:
    choice = first_choice(data, url)
    message = choice.get("message")
    if not isinstance(message, dict) or "content" not in message:
        raise EndpointError(f"{url} answered without choices[0].message.content.")
    logprobs: tuple[TokenLogprob, ...] = ()
    if top:
        try:
            logprobs = tuple(
                TokenLogprob(
                    str(t["token"]),
                    float(t["logprob"]),
                    _top([(str(a["token"]), float(a["logprob"])) for a in t.get("top_logprobs") or []], top),
                )
                for t in (choice.get("logprobs") or {}).get("content") or []
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise EndpointError(
                f"{url} answered with malformed choices[0].logprobs ({e!r}).", "malformed logprobs"
            ) from None
    return _completion(data, choice, message["content"] or "", k, top, logprobs, url)


def text_completion(data: dict[str, Any], k: int, top: int, url: str) -> Completion:
    choice = first_choice(data, url)
    if not isinstance(choice.get("text"), str):
        raise EndpointError(f"{url} answered without choices[0].text.")
    logprobs: tuple[TokenLogprob, ...] = ()
    if top and choice.get("logprobs"):
        tokens, _, values, tops = legacy_logprobs(choice, url, "")
        if None in values:
            raise EndpointError(f"{url} answered with a null logprob for a generated token.")
        logprobs = tuple(
            TokenLogprob(t, v or 0.0, _top(list(alternatives.items()), top))
            for t, v, alternatives in zip(tokens, values, tops, strict=True)
        )
    return _completion(data, choice, choice["text"], k, top, logprobs, url)


def legacy_logprobs(
    choice: dict[str, Any], url: str, hint: str, with_offsets: bool = False
) -> tuple[list[str], list[int], list[float | None], list[dict[str, float]]]:
    """tokens, text_offset, token_logprobs and top_logprobs of a /completions choice, checked."""
    lp = choice.get("logprobs")
    if not isinstance(lp, dict):
        raise EndpointError(f"{url} returned no logprobs. {hint}".strip(), "missing logprobs")
    try:
        tokens = [str(t) for t in lp["tokens"]]
        offsets = [int(o) for o in lp.get("text_offset") or []]
        values = [None if v is None else float(v) for v in lp["token_logprobs"]]
        tops = [{str(t): float(v) for t, v in (top or {}).items()} for top in lp.get("top_logprobs") or []]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise EndpointError(
            f"{url} answered with malformed choices[0].logprobs ({e!r}). {hint}".strip(), "malformed logprobs"
        ) from None
    if len(values) != len(tokens) or (with_offsets and len(offsets) != len(tokens)):
        raise EndpointError(
            f"{url} answered with logprobs whose tokens, token_logprobs and text_offset lists are "
            f"missing or differ in length. {hint}".strip()
        )
    return tokens, offsets, values, tops + [{}] * (len(tokens) - len(tops))


def _top(pairs: list[tuple[str, float]], k: int) -> tuple[tuple[str, float], ...]:
    # Some servers add the chosen token to the alternatives; keep the k most likely, most likely first.
    return tuple(sorted(pairs, key=lambda p: -p[1])[:k])


def server_message(response: httpx.Response) -> str:
    """The error message of an OpenAI-style, FastAPI-style or plain-text error body, on one line."""
    try:
        data = response.json()
    except ValueError:
        data = response.text or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            error = error["message"]
        data = error or data.get("message") or data.get("detail") or data
    return " ".join(str(data).split())[:500]


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header; the HTTP-date form is rare in APIs and waits by backoff instead."""
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None
