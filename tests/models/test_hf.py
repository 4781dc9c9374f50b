"""The hf backend on the embedded model: sampling, seeds, stops, logprobs, log-likelihood, adapters."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from aftertune.errors import InputError, ModelNotFoundError
from aftertune.models.hf import HFModel, shared_prefix_families
from aftertune.models.prompts import PLAIN_FORMAT_STOPS, render_plain, render_prompt
from aftertune.models.protocol import (
    GenerationRequest,
    LoglikelihoodRequest,
    Message,
    Model,
    SamplingParams,
    chat,
)

SHORT = SamplingParams(temperature=1.0, max_new_tokens=24, seed=7)


def test_meets_the_model_protocol(embedded: HFModel) -> None:
    assert isinstance(embedded, Model)
    assert embedded.fingerprint.startswith("hf:SmolLM2-135M-Instruct:")
    assert embedded.fingerprint.endswith(":float32")


def test_generates_n_numbered_samples_for_chat_and_raw_prompts(embedded: HFModel) -> None:
    params = SamplingParams(temperature=1.0, max_new_tokens=16, n=3, seed=1)
    out = embedded.generate(
        [
            GenerationRequest(chat("Name a fruit."), params),
            GenerationRequest("Once upon a time", params, first_sample=5),
        ]
    )
    assert [c.sample_index for c in out[0]] == [0, 1, 2]
    assert [c.sample_index for c in out[1]] == [5, 6, 7]
    for completions in out:
        assert all(c.text.strip() and 0 < c.n_tokens <= 16 for c in completions)
        assert len({c.text for c in completions}) > 1, "samples at temperature 1 should differ"


def test_a_sample_does_not_depend_on_its_batch(embedded: HFModel) -> None:
    """Sample k of a prompt is the same alone or in a batch with other prompts: resumes rely on it."""
    prompt = chat("Tell me something about the sea.")
    crowd = [GenerationRequest(chat(f"Question number {i}: what is {i} + {i}?"), SHORT) for i in range(5)]
    batched = embedded.generate(
        [*crowd, GenerationRequest(prompt, SamplingParams(**{**SHORT.__dict__, "n": 3}))]
    )
    alone = embedded.generate([GenerationRequest(prompt, SHORT, first_sample=2)])
    assert alone[0][0].text == batched[-1][2].text


def test_seed_changes_samples_and_greedy_is_deterministic(embedded: HFModel) -> None:
    prompt = chat("Write one sentence about cats.")
    a = embedded.generate([GenerationRequest(prompt, SHORT)])[0][0].text
    b = embedded.generate(
        [GenerationRequest(prompt, SamplingParams(temperature=1.0, max_new_tokens=24, seed=8))]
    )
    assert a != b[0][0].text
    greedy = SamplingParams(temperature=0.0, max_new_tokens=16)
    first, second = (
        embedded.generate([GenerationRequest(prompt, greedy, first_sample=k)])[0][0] for k in (0, 3)
    )
    assert first.text == second.text


def test_stop_strings_and_length_limit(embedded: HFModel) -> None:
    prompt = chat("Count from 1 to 20, separated by commas.")
    plain = embedded.generate(
        [GenerationRequest(prompt, SamplingParams(temperature=0.0, max_new_tokens=40))]
    )[0][0]
    assert "5" in plain.text
    stopped = embedded.generate(
        [GenerationRequest(prompt, SamplingParams(temperature=0.0, max_new_tokens=40, stop=("5",)))]
    )[0][0]
    assert "5" not in stopped.text and stopped.finish_reason == "stop"
    assert plain.text.startswith(stopped.text)
    short = embedded.generate([GenerationRequest(prompt, SamplingParams(temperature=0.0, max_new_tokens=3))])[
        0
    ][0]
    assert short.finish_reason == "length" and short.n_tokens == 3


def test_top_logprobs_agree_with_loglikelihood(embedded: HFModel) -> None:
    """The logprobs generate reports are the model's, the same that loglikelihood sums."""
    params = SamplingParams(temperature=0.0, max_new_tokens=6, top_logprobs=5)
    completion = embedded.generate([GenerationRequest("The capital of France is", params)])[0][0]
    assert len(completion.logprobs) == completion.n_tokens
    for token in completion.logprobs:
        assert len(token.top) == 5
        assert token.top[0][1] == pytest.approx(token.logprob)  # greedy picks the most likely
        assert sum(math.exp(lp) for _, lp in token.top) <= 1.0 + 1e-5
    generated = sum(t.logprob for t in completion.logprobs)
    scored = embedded.loglikelihood([LoglikelihoodRequest("The capital of France is", completion.text)])[0]
    assert scored == pytest.approx(generated, abs=0.05)


def test_loglikelihood_prefers_the_right_answer(embedded: HFModel) -> None:
    paris, berlin, empty_context = embedded.loglikelihood(
        [
            LoglikelihoodRequest("The capital of France is", " Paris"),
            LoglikelihoodRequest("The capital of France is", " Berlin"),
            LoglikelihoodRequest("", "Hello"),
        ]
    )
    assert paris > berlin
    assert paris < 0 and math.isfinite(empty_context)
    with pytest.raises(InputError):
        embedded.loglikelihood([LoglikelihoodRequest("x", "")])


def test_plain_format_for_models_without_a_chat_template(embedded: HFModel) -> None:
    messages = (Message("system", "Be brief."), Message("user", "Hi"))
    assert render_plain(messages) == "System: Be brief.\n\nUser: Hi\n\nAssistant:"
    text, special = render_prompt(embedded.tokenizer, messages)
    assert "<|im_start|>system\nBe brief.<|im_end|>" in text and special
    saved = embedded.tokenizer.chat_template
    embedded.tokenizer.chat_template = None
    try:
        assert render_prompt(embedded.tokenizer, messages) == (render_plain(messages), False)
        out = embedded.generate(
            [GenerationRequest(chat("Say hello."), SamplingParams(max_new_tokens=48, seed=3))]
        )
        assert not any(stop in out[0][0].text for stop in PLAIN_FORMAT_STOPS)
    finally:
        embedded.tokenizer.chat_template = saved


@pytest.fixture(scope="module")
def lora_adapter(tmp_path_factory: pytest.TempPathFactory, embedded_folder: Path) -> Path:
    """A small random LoRA adapter (non-zero B, so it changes outputs) saved in peft's format."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(embedded_folder), dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    folder = tmp_path_factory.mktemp("adapter") / "random-lora"
    get_peft_model(base, config).save_pretrained(folder)
    return folder


def test_adapters_swap_on_one_loaded_model(embedded_folder: Path, lora_adapter: Path) -> None:
    model = HFModel(embedded_folder, name="SmolLM2-135M-Instruct")
    request = [
        GenerationRequest(
            chat("What is your favourite colour?"), SamplingParams(temperature=0.0, max_new_tokens=12)
        )
    ]
    base_text = model.generate(request)[0][0].text
    base_fingerprint = model.fingerprint
    weights_id = id(model.model.get_input_embeddings().weight)

    assert model.load_adapter(lora_adapter) == "random-lora"
    adapted_text = model.generate(request)[0][0].text
    assert adapted_text != base_text
    assert model.fingerprint.startswith(base_fingerprint + "+lora:")

    model.set_adapter(None)
    assert model.generate(request)[0][0].text == base_text
    assert model.fingerprint == base_fingerprint
    model.set_adapter("random-lora")
    assert model.generate(request)[0][0].text == adapted_text
    assert id(model.model.get_input_embeddings().weight) == weights_id, "no reload"

    with pytest.raises(InputError, match="No adapter named"):
        model.set_adapter("missing")
    with pytest.raises(ModelNotFoundError, match="adapter_config.json"):
        model.load_adapter(embedded_folder)


def test_a_live_peft_model_matches_its_saved_adapter(embedded_folder: Path, lora_adapter: Path) -> None:
    """A model being trained, wrapped without reload, has the fingerprint and the outputs of the
    same adapter saved and loaded: results computed during training are reused by a sweep."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = HFModel(embedded_folder, name="SmolLM2-135M-Instruct")
    base_fingerprint = loaded.fingerprint
    loaded.load_adapter(lora_adapter)
    base = AutoModelForCausalLM.from_pretrained(str(embedded_folder), dtype=torch.float32)
    live = PeftModel.from_pretrained(base, str(lora_adapter), is_trainable=True)
    live.train()
    tokenizer = AutoTokenizer.from_pretrained(str(embedded_folder))
    wrapped = HFModel.from_loaded(live, tokenizer, name="live", base_fingerprint=base_fingerprint)

    assert wrapped.fingerprint == loaded.fingerprint
    request = [
        GenerationRequest(chat("Name a fruit."), SamplingParams(temperature=1.0, max_new_tokens=16, seed=5))
    ]
    assert wrapped.generate(request)[0][0].text == loaded.generate(request)[0][0].text
    assert live.training, "the wrapped model goes back to training mode after the call"
    assert tokenizer.padding_side == "right", "the caller's tokenizer is not changed"
    with live.disable_adapter():
        assert wrapped.fingerprint == base_fingerprint
    with torch.no_grad():
        next(p for n, p in live.named_parameters() if "lora_B" in n).add_(0.01)
    assert wrapped.fingerprint != loaded.fingerprint, "new weights, new fingerprint"


def test_contexts_with_a_shared_start_score_as_one_pass_each(embedded: HFModel) -> None:
    """Few-shot prompts share their examples: those are computed once and the rest of each context
    runs on top of their KV cache. Numbers must equal a plain pass per request, whatever the
    batch size, with short and long continuations, beside contexts that share nothing."""
    shots = "".join(f"Q: What is {a} plus {a}?\nA: {2 * a}\n\n" for a in range(1, 7))
    other = (
        "You are a careful assistant who answers questions about geography. Answer in as few words as"
        " you can, name places by their common English names, and say so when you do not know.\n\n"
    )
    contexts = [shots + "Q: What is 7 plus 7?\nA:", shots + "Q: Name a colour of the sky on a clear day.\nA:"]
    contexts += [
        other + "Q: The capital of France?\nA:",
        other + "Q: The longest river of Africa, by most counts?\nA:",
    ]
    contexts += ["Q: 2 + 2 =", shots[:40]]
    options = [" 14", " blue, or light blue on most days", " Paris"]
    requests = [LoglikelihoodRequest(c, o) for c in contexts for o in options]
    families = shared_prefix_families([tuple(embedded._encode_pair(c, " x")[0]) for c in contexts])
    assert sorted(len(members) for shared, members in families if shared) == [2, 2], "two shared starts found"
    expected = [_reference_loglikelihood(embedded, r) for r in requests]
    original = embedded.batch_size
    for batch_size in (1, 2, 8):
        embedded.batch_size = batch_size
        try:
            scored = embedded.loglikelihood(requests)
        finally:
            embedded.batch_size = original
        assert scored == pytest.approx(expected, abs=2e-3), f"batch size {batch_size}"


def test_shared_prefix_families_keep_long_starts_and_a_last_token_to_score() -> None:
    a = tuple(range(100))
    subject_one = [a + (1, 2), a + (1, 3, 4), a + (5,)]
    subject_two = [(0, 1, 2) + tuple(range(500, 560)) + (7,), (0, 1, 2) + tuple(range(500, 560)) + (8, 9)]
    loners = [(900, 1), (901,)]
    families = dict((tuple(m), s) for s, m in shared_prefix_families(subject_one + subject_two + loners))
    assert families[tuple(sorted(subject_one))] == 100
    assert families[tuple(sorted(subject_two))] == 63, "the two subjects share 3 tokens: not one family"
    assert families[tuple(sorted(loners))] == 0
    # a context that is the shared start itself keeps its last token to be scored
    assert shared_prefix_families([a, a + (1,)]) == [(99, [a, a + (1,)])]
    assert shared_prefix_families([a[:10], a[:10] + (1,)], min_shared=32) == [(0, [a[:10], a[:10] + (1,)])]


def _reference_loglikelihood(model: HFModel, request: LoglikelihoodRequest) -> float:
    """One unpadded forward pass over context + continuation: the plain definition."""
    context, continuation = model._encode_pair(request.context, request.continuation)
    ids = torch.tensor([context + continuation])
    with torch.no_grad():
        logprobs = torch.log_softmax(model.model(input_ids=ids).logits.float(), dim=-1)
    positions = torch.arange(len(context) - 1, len(context) + len(continuation) - 1)
    return float(logprobs[0, positions, torch.tensor(continuation)].sum())


def test_shared_context_scoring_equals_one_pass_per_request(embedded: HFModel) -> None:
    """Requests sharing a context are scored from one pass over it plus its KV cache; the numbers
    must equal a plain forward pass over each request, whatever the batch, padding and lengths."""
    questions = [
        "Question: Which planet is known as the red planet?\nAnswer:",
        "Q: 2 + 2 =",
        "The following is a list of colours: red, green,",
    ]
    options = [" Mars", " Jupiter, the largest planet of all", " 4", " blue and yellow and purple", "x"]
    requests = [LoglikelihoodRequest(q, o) for q in questions for o in options]
    requests.append(LoglikelihoodRequest(chat("Say hello."), "Hello there! How are you today?"))
    original = embedded.batch_size
    for batch_size in (1, 2, 8):
        embedded.batch_size = batch_size
        try:
            scored = embedded.loglikelihood(requests)
        finally:
            embedded.batch_size = original
        expected = [_reference_loglikelihood(embedded, r) for r in requests]
        assert scored == pytest.approx(expected, abs=2e-3), f"batch size {batch_size}"
