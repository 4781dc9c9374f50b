"""The `vllm` backend: vLLM's offline `LLM` engine behind the `Model` protocol, for GPUs.

- LoRA checkpoints are served through `LoRARequest`s on the one loaded base model, so a sweep over
  checkpoints never reloads weights (`load_adapter` / `set_adapter` / `unload_adapter`, as in `hf`).
- Tensor parallelism for models larger than one GPU (`tensor_parallel_size`).
- Log-likelihoods come from prompt logprobs (`SamplingParams(prompt_logprobs=0)`): the log-probability
  of every prompt token given the ones before it, summed over the continuation's tokens. Context and
  continuation are tokenized exactly as the `hf` backend does (`prompts.encode_pair`).
- Prompts are rendered and tokenized by aftertune (chat template, or the plain format for base
  models) and sent as token ids, so both backends see the same tokens.
- Every sample carries its own seed (`protocol.sample_seed`), so a sample does not depend on what
  else is in the batch. vLLM's sampler is not the `hf` backend's, so the same seed gives different
  samples there: the fingerprint names the backend, and stored `hf` samples are never reused as
  vLLM's. Rates agree between the backends within sampling error, not sample by sample.

vLLM needs a GPU; it is an optional dependency (`pip install 'aftertune[vllm]'`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aftertune.errors import InputError, ModelNotFoundError
from aftertune.models.fingerprint import adapter_folder_digest
from aftertune.models.hf import folder_fingerprint
from aftertune.models.prompts import PLAIN_FORMAT_STOPS, encode_pair, has_chat_template, render_prompt
from aftertune.models.protocol import (
    Completion,
    GenerationRequest,
    LoglikelihoodRequest,
    TokenLogprob,
    sample_seed,
)
from aftertune.models.trust import LoadPolicy, check_adapter_folder, check_model_folder
from aftertune.progress import ProgressCallback, report

#: vLLM's dtype names for aftertune's
_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise ModelNotFoundError(
            "The vllm backend needs vLLM, which is not installed: pip install 'aftertune[vllm]' on a "
            "machine with an NVIDIA GPU (or use the hf backend: give the folder without 'vllm:')."
        ) from e
    return vllm


class VLLMModel:
    """A Hugging Face model folder served by vLLM's offline engine."""

    def __init__(
        self,
        folder: Path,
        *,
        name: str | None = None,
        dtype: str = "bfloat16",
        tensor_parallel_size: int = 1,
        max_lora_rank: int = 64,
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.85,
        trust_remote_code: bool = False,
        allow_pickle: bool = False,
        engine: Any = None,
    ) -> None:
        if dtype not in _DTYPES:
            raise InputError(f"dtype '{dtype}' is not one of {', '.join(_DTYPES)}.")
        if tensor_parallel_size < 1:
            raise InputError(f"tensor_parallel_size must be at least 1, got {tensor_parallel_size}.")
        self.policy = LoadPolicy(allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
        check_model_folder(folder, self.policy)
        self.folder = folder
        self.name = name or folder.name
        self.dtype = dtype
        self.tensor_parallel_size = tensor_parallel_size
        if engine is None:
            vllm = _import_vllm()
            engine = vllm.LLM(
                model=str(folder),
                tokenizer=str(folder),
                dtype=_DTYPES[dtype],
                tensor_parallel_size=tensor_parallel_size,
                enable_lora=True,
                max_lora_rank=max_lora_rank,
                max_model_len=max_model_len,
                gpu_memory_utilization=gpu_memory_utilization,
                trust_remote_code=trust_remote_code,
                load_format="auto" if allow_pickle else "safetensors",
                seed=0,
            )
        self.engine = engine
        self.tokenizer = engine.get_tokenizer()
        self._base_fingerprint = "vllm:" + folder_fingerprint(folder, self.name, dtype)
        #: adapter name -> (content digest, its LoRARequest)
        self._adapters: dict[str, tuple[str, Any]] = {}
        self._active: str | None = None
        self._next_lora_id = 1

    # ------------------------------------------------------------------ adapters
    def load_adapter(self, path: Path, name: str | None = None) -> str:
        """Register a LoRA adapter folder (peft format); vLLM loads it on first use, no reload."""
        path = Path(path)
        check_adapter_folder(path, self.policy)
        name = name or path.name
        if name in self._adapters:
            raise InputError(f"An adapter named '{name}' is already loaded; give it another name.")
        from vllm.lora.request import LoRARequest

        request = LoRARequest(name, self._next_lora_id, str(path.resolve()))
        self._next_lora_id += 1
        self._adapters[name] = (adapter_folder_digest(path), request)
        self._active = name
        return name

    def set_adapter(self, name: str | None) -> None:
        if name is not None and name not in self._adapters:
            raise InputError(f"No adapter named '{name}' is loaded (loaded: {sorted(self._adapters)}).")
        self._active = name

    def unload_adapter(self, name: str) -> None:
        if name not in self._adapters:
            raise InputError(f"No adapter named '{name}' is loaded (loaded: {sorted(self._adapters)}).")
        _, request = self._adapters.pop(name)
        if self._active == name:
            self._active = None
        remove = getattr(self.engine.llm_engine, "remove_lora", None)
        if remove is not None:  # frees its GPU slot now instead of when the LRU cache evicts it
            remove(request.lora_int_id)

    @property
    def adapters(self) -> list[str]:
        return list(self._adapters)

    @property
    def fingerprint(self) -> str:
        if self._active is None:
            return self._base_fingerprint
        return f"{self._base_fingerprint}+lora:{self._adapters[self._active][0]}"

    def _lora(self) -> Any:
        return None if self._active is None else self._adapters[self._active][1]

    # ------------------------------------------------------------------ the protocol
    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None
    ) -> list[list[Completion]]:
        from vllm import SamplingParams as VSamplingParams
        from vllm.inputs import TokensPrompt

        prompts, params, where = [], [], []
        for i, request in enumerate(requests):
            text, special = render_prompt(self.tokenizer, request.prompt)
            ids = self.tokenizer(text, add_special_tokens=not special)["input_ids"]
            p = request.params
            stops = tuple(p.stop) + (() if has_chat_template(self.tokenizer) else PLAIN_FORMAT_STOPS)
            for k in request.sample_indices:
                prompts.append(TokensPrompt(prompt_token_ids=ids))
                params.append(
                    VSamplingParams(
                        n=1,
                        temperature=p.temperature,
                        top_p=p.top_p,
                        max_tokens=p.max_new_tokens,
                        seed=sample_seed(request.prompt, p.seed, k),
                        stop=list(stops) or None,
                        logprobs=p.top_logprobs or None,
                    )
                )
                where.append((i, k))
        report(progress, "generating", 0, len(prompts))
        outputs = self.engine.generate(prompts, params, lora_request=self._lora(), use_tqdm=False)
        report(progress, "generating", len(prompts), len(prompts))
        results: list[list[Completion]] = [[] for _ in requests]
        for (i, k), output in zip(where, outputs, strict=True):
            results[i].append(self._completion(output.outputs[0], k, requests[i].params.top_logprobs))
        return results

    def _completion(self, out: Any, sample_index: int, top_k: int) -> Completion:
        finish = "length" if out.finish_reason == "length" else "stop"
        logprobs = []
        for token_id, alternatives in zip(out.token_ids, out.logprobs or [], strict=False):
            chosen = alternatives[token_id]
            ranked = sorted(alternatives.items(), key=lambda item: -item[1].logprob)
            logprobs.append(
                TokenLogprob(
                    token=chosen.decoded_token or self.tokenizer.decode([token_id]),
                    logprob=float(chosen.logprob),
                    top=tuple(
                        (lp.decoded_token or self.tokenizer.decode([t]), float(lp.logprob))
                        for t, lp in ranked[:top_k]
                    ),
                )
            )
        return Completion(out.text, sample_index, finish, len(out.token_ids), tuple(logprobs))

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: ProgressCallback | None = None
    ) -> list[float]:
        from vllm import SamplingParams as VSamplingParams
        from vllm.inputs import TokensPrompt

        pairs = [encode_pair(self.tokenizer, r.context, r.continuation) for r in requests]
        prompts = [TokensPrompt(prompt_token_ids=ctx + cont) for ctx, cont in pairs]
        # one generated token is the least vLLM allows; only the prompt's logprobs are read
        params = VSamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        report(progress, "scoring", 0, len(prompts))
        outputs = self.engine.generate(prompts, params, lora_request=self._lora(), use_tqdm=False)
        report(progress, "scoring", len(prompts), len(prompts))
        return [
            continuation_logprob(output.prompt_logprobs, ctx, cont)
            for output, (ctx, cont) in zip(outputs, pairs, strict=True)
        ]

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "vllm",
            "name": self.name,
            "folder": str(self.folder),
            "dtype": self.dtype,
            "tensor_parallel_size": self.tensor_parallel_size,
            "adapter": self._active,
            "fingerprint": self.fingerprint,
        }


def continuation_logprob(
    prompt_logprobs: Sequence[Any], context: list[int], continuation: list[int]
) -> float:
    """Sum of log P(token | tokens before it) over the continuation's positions.

    vLLM's `prompt_logprobs` has one entry per prompt token (None for the first), each a dict from
    token id to its Logprob that always holds the prompt's own token.
    """
    ids = context + continuation
    if len(prompt_logprobs) != len(ids):
        raise ValueError(f"vLLM returned {len(prompt_logprobs)} prompt logprobs for {len(ids)} tokens")
    return float(sum(prompt_logprobs[i][ids[i]].logprob for i in range(len(context), len(ids))))
