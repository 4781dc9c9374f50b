"""The vllm backend.

Without a GPU (CPU CI) vLLM cannot run: the unit tests drive the backend through a stand-in `vllm`
module and engine that record what the backend asks for, and check how answers come back (seeds per
sample, LoRA requests, prompt-logprob sums, fingerprints). The real-engine tests run only where vLLM
is installed and a CUDA GPU is present, and skip with that reason elsewhere.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from aftertune.errors import ModelNotFoundError
from aftertune.models.hf import HFModel
from aftertune.models.prompts import encode_pair
from aftertune.models.protocol import (
    GenerationRequest,
    LoglikelihoodRequest,
    SamplingParams,
    chat,
    sample_seed,
)


# ---------------------------------------------------------------- a stand-in vllm
@dataclass
class FakeLogprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class FakeSampling:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16
    seed: int | None = None
    stop: list[str] | None = None
    logprobs: int | None = None
    prompt_logprobs: int | None = None


@dataclass(frozen=True)
class FakeLoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str


def fake_logprob(position: int, token: int) -> float:
    """The stand-in model's log P(token at position | before): any fixed function will do."""
    return -0.1 * ((token * 31 + position) % 17 + 1)


@dataclass
class FakeEngine:
    tokenizer: Any
    calls: list[dict[str, Any]] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.llm_engine = types.SimpleNamespace(remove_lora=self.removed.append)

    def get_tokenizer(self) -> Any:
        return self.tokenizer

    def generate(
        self, prompts: list[dict[str, Any]], params: Any, lora_request: Any, use_tqdm: bool
    ) -> list[Any]:
        params_list = params if isinstance(params, list) else [params] * len(prompts)
        self.calls.append({"prompts": prompts, "params": params_list, "lora": lora_request})
        outputs = []
        for prompt, p in zip(prompts, params_list, strict=True):
            ids = prompt["prompt_token_ids"]
            tokens = [(p.seed or 0) % 1000 + 100, 200][: p.max_tokens]
            logprobs = None
            if p.logprobs:
                logprobs = [
                    {t: FakeLogprob(-0.5, 1), t + 1: FakeLogprob(-1.5, 2), t + 2: FakeLogprob(-2.5, 3)}
                    for t in tokens
                ]
            out = types.SimpleNamespace(
                text=f"seed={p.seed}", token_ids=tokens, finish_reason="length", logprobs=logprobs
            )
            prompt_lp = [None] + [{t: FakeLogprob(fake_logprob(i, t))} for i, t in enumerate(ids) if i > 0]
            outputs.append(types.SimpleNamespace(outputs=[out], prompt_logprobs=prompt_lp))
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    vllm = types.ModuleType("vllm")
    vllm.SamplingParams = FakeSampling  # type: ignore[attr-defined]
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = dict  # type: ignore[attr-defined]
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = FakeLoRARequest  # type: ignore[attr-defined]
    for name, module in {
        "vllm": vllm,
        "vllm.inputs": inputs,
        "vllm.lora": lora,
        "vllm.lora.request": request,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)


@pytest.fixture
def served(fake_vllm: None, embedded_folder: Path) -> Any:
    from transformers import AutoTokenizer

    from aftertune.models.vllm_engine import VLLMModel

    engine = FakeEngine(AutoTokenizer.from_pretrained(str(embedded_folder)))
    return VLLMModel(embedded_folder, name="embedded", dtype="float32", engine=engine)


def make_adapter(folder: Path, value: float) -> Path:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text('{"r": 8, "lora_alpha": 16, "target_modules": ["q_proj"]}')
    save_file({"lora_A.weight": torch.full((8, 4), value)}, str(folder / "adapter_model.safetensors"))
    return folder


# ---------------------------------------------------------------- unit tests (no GPU)
def test_every_sample_is_its_own_prompt_with_its_own_seed(served: Any) -> None:
    params = SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=2, n=3, seed=5, stop=("END",))
    prompt = chat("Hello?")
    [completions] = served.generate([GenerationRequest(prompt, params, first_sample=4)])
    call = served.engine.calls[-1]
    assert [c.sample_index for c in completions] == [4, 5, 6]
    assert [p.seed for p in call["params"]] == [sample_seed(prompt, 5, k) for k in (4, 5, 6)]
    assert all(
        p.n == 1 and p.temperature == 0.7 and p.top_p == 0.9 and p.stop == ["END"] for p in call["params"]
    )
    assert [c.text for c in completions] == [f"seed={sample_seed(prompt, 5, k)}" for k in (4, 5, 6)]
    # the chat template's tokens, exactly as the hf backend would see them
    expected = served.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hello?"}], tokenize=False, add_generation_prompt=True
    )
    assert (
        call["prompts"][0]["prompt_token_ids"]
        == served.tokenizer(expected, add_special_tokens=False)["input_ids"]
    )
    assert call["lora"] is None


def test_top_logprobs_come_back_ranked(served: Any) -> None:
    params = SamplingParams(temperature=0, max_new_tokens=2, top_logprobs=2)
    [[completion]] = served.generate([GenerationRequest("Hi", params)])
    assert len(completion.logprobs) == 2
    first = completion.logprobs[0]
    assert first.logprob == -0.5 and [lp for _, lp in first.top] == [-0.5, -1.5]


def test_loglikelihood_sums_the_continuations_prompt_logprobs(served: Any) -> None:
    requests = [
        LoglikelihoodRequest("The capital of France is", " Paris"),
        LoglikelihoodRequest(chat("2+2?"), "4"),
    ]
    scores = served.loglikelihood(requests)
    for request, score in zip(requests, scores, strict=True):
        context, continuation = encode_pair(served.tokenizer, request.context, request.continuation)
        ids = context + continuation
        expected = sum(fake_logprob(i, ids[i]) for i in range(len(context), len(ids)))
        assert math.isclose(score, expected)
    [params] = {id(p): p for p in served.engine.calls[-1]["params"]}.values()
    assert params.prompt_logprobs == 0 and params.max_tokens == 1


def test_adapters_are_lora_requests_and_name_the_fingerprint(served: Any, tmp_path: Path) -> None:
    base = served.fingerprint
    assert base.startswith("vllm:")  # never the hf backend's key: the samplers differ
    a = make_adapter(tmp_path / "a", 0.5)
    b = make_adapter(tmp_path / "b", 1.5)
    served.load_adapter(a, name="step2")
    with_a = served.fingerprint
    served.generate([GenerationRequest("Hi", SamplingParams(max_new_tokens=1))])
    assert served.engine.calls[-1]["lora"] == FakeLoRARequest("step2", 1, str(a.resolve()))
    served.load_adapter(b, name="step4")
    assert served.fingerprint not in (base, with_a)
    served.unload_adapter("step4")
    assert served.fingerprint == base and served.engine.removed == [2]
    served.set_adapter("step2")
    assert served.fingerprint == with_a
    served.set_adapter(None)
    assert served.fingerprint == base
    (tmp_path / "not_an_adapter").mkdir()
    with pytest.raises(ModelNotFoundError, match="adapter_config.json"):
        served.load_adapter(tmp_path / "not_an_adapter")


def test_a_missing_vllm_is_a_clear_error(embedded_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aftertune.errors import ModelNotFoundError
    from aftertune.models.vllm_engine import VLLMModel

    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    with pytest.raises(ModelNotFoundError, match=r"pip install 'aftertune\[vllm\]'"):
        VLLMModel(embedded_folder)


# ---------------------------------------------------------------- the real engine (GPU only)
def _gpu_and_vllm() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install 'aftertune[vllm]' on a machine with an NVIDIA GPU)"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU here: vLLM's engine needs one"
    return None


@pytest.mark.slow
def test_real_vllm_matches_the_hf_backend(embedded_folder: Path, tmp_path: Path) -> None:
    reason = _gpu_and_vllm()
    if reason:
        pytest.skip(reason)
    from aftertune.models.vllm_engine import VLLMModel

    served = VLLMModel(embedded_folder, name="embedded", dtype="float32", gpu_memory_utilization=0.3)
    hf = HFModel(embedded_folder, name="embedded", dtype="float32", device="cuda")
    requests = [
        LoglikelihoodRequest(chat("What is the capital of France?"), "The capital of France is Paris."),
        LoglikelihoodRequest("The quick brown fox", " jumps over the lazy dog"),
    ]
    for ours, theirs in zip(served.loglikelihood(requests), hf.loglikelihood(requests), strict=True):
        assert math.isclose(ours, theirs, rel_tol=1e-3, abs_tol=1e-2)
    greedy = SamplingParams(temperature=0, max_new_tokens=24)
    prompts = [chat(q) for q in ("Name a colour.", "What is 2+2?", "Say hello.", "Name a fruit.")]
    ours = served.generate([GenerationRequest(p, greedy) for p in prompts])
    theirs = hf.generate([GenerationRequest(p, greedy) for p in prompts])
    same = sum(a[0].text == b[0].text for a, b in zip(ours, theirs, strict=True))
    assert same >= 3, [(a[0].text, b[0].text) for a, b in zip(ours, theirs, strict=True)]
