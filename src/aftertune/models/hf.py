"""The `hf` backend: transformers + peft, CPU or GPU, left-padded batches, swappable LoRA adapters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aftertune.errors import InputError, ModelNotFoundError
from aftertune.models.fingerprint import folder_digest
from aftertune.models.prompts import PLAIN_FORMAT_STOPS, has_chat_template, render_prompt
from aftertune.models.protocol import (
    Completion,
    GenerationRequest,
    LoglikelihoodRequest,
    SamplingParams,
    TokenLogprob,
    sample_seed,
)
from aftertune.models.sampling import SeededGumbelSampler
from aftertune.progress import ProgressCallback, report

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class _Row:
    """One sample to generate: which request it answers and its own seed."""

    request: int
    sample_index: int
    text: str
    special_tokens_included: bool
    seed: int


class HFModel:
    """A transformers causal LM behind the `Model` protocol.

    LoRA adapters are attached to the one loaded base model and switched with `set_adapter`,
    without reloading weights (transformers' built-in peft integration).
    """

    def __init__(
        self,
        folder: Path,
        *,
        name: str | None = None,
        dtype: str = "float32",
        device: str | None = None,
        batch_size: int = 16,
        trust_remote_code: bool = False,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if dtype not in DTYPES:
            raise InputError(f"dtype '{dtype}' is not one of {', '.join(DTYPES)}.")
        self.folder = folder
        self.name = name or folder.name
        self.dtype = dtype
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        loaded: Any = AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=DTYPES[dtype], trust_remote_code=trust_remote_code, use_safetensors=None
        )
        self.model = loaded.to(self.device)
        self.model.eval()
        # Only our SamplingParams decide how to sample: a model's own generation_config.json (e.g.
        # do_sample=True, temperature=0.6) must not silently change the samples.
        own = self.model.generation_config
        self.model.generation_config = GenerationConfig(
            bos_token_id=own.bos_token_id, eos_token_id=own.eos_token_id, pad_token_id=own.pad_token_id
        )
        self._base_digest = folder_digest(folder)
        self._adapters: dict[str, str] = {}  # name -> digest
        self._active_adapter: str | None = None

    # ----------------------------------------------------------------- adapters
    def load_adapter(self, path: Path, name: str | None = None) -> str:
        """Attach a LoRA adapter folder (peft format) to the base model; returns its name."""
        path = Path(path)
        if not (path / "adapter_config.json").is_file():
            raise ModelNotFoundError(
                f"Adapter folder {path} has no adapter_config.json. Give a folder saved by peft "
                "(`model.save_pretrained`) or a trainer checkpoint folder that contains one."
            )
        name = name or path.name
        if name in self._adapters:
            raise InputError(f"An adapter named '{name}' is already loaded; give it another name.")
        self.model.load_adapter(str(path), adapter_name=name)
        self._adapters[name] = folder_digest(path)
        self.set_adapter(name)
        return name

    def set_adapter(self, name: str | None) -> None:
        """Make adapter `name` active, or use the bare base model with None. No weights reload."""
        if name is None:
            if self._adapters:
                self.model.disable_adapters()
        else:
            if name not in self._adapters:
                raise InputError(f"No adapter named '{name}' is loaded (loaded: {sorted(self._adapters)}).")
            if self._active_adapter is None:
                self.model.enable_adapters()
            self.model.set_adapter(name)
        self._active_adapter = name

    @property
    def adapters(self) -> list[str]:
        return list(self._adapters)

    @property
    def fingerprint(self) -> str:
        base = f"hf:{self.name}:{self._base_digest}:{self.dtype}"
        if self._active_adapter is None:
            return base
        return f"{base}+lora:{self._active_adapter}:{self._adapters[self._active_adapter]}"

    # ----------------------------------------------------------------- generate
    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None
    ) -> list[list[Completion]]:
        results: list[list[Completion | None]] = [[None] * r.params.n for r in requests]
        batches = self._plan_batches(requests)
        total = sum(len(rows) for _, rows in batches)
        done = 0
        report(progress, "generating", 0, total)
        for params, rows in batches:
            for row, completion in zip(rows, self._generate_batch(params, rows), strict=True):
                first = requests[row.request].first_sample
                results[row.request][row.sample_index - first] = completion
            done += len(rows)
            report(progress, "generating", done, total)
        return [[c for c in per_request if c is not None] for per_request in results]

    def _plan_batches(self, requests: Sequence[GenerationRequest]) -> list[tuple[SamplingParams, list[_Row]]]:
        """Rows grouped by sampling params, sorted by prompt length (less padding), cut into batches.

        The plan depends only on the requests, so the same requests always form the same batches.
        """
        groups: dict[SamplingParams, list[_Row]] = {}
        for i, request in enumerate(requests):
            text, special = render_prompt(self.tokenizer, request.prompt)
            key = _batch_key(request.params)
            for k in request.sample_indices:
                seed = sample_seed(request.prompt, request.params.seed, k)
                groups.setdefault(key, []).append(_Row(i, k, text, special, seed))
        batches = []
        for key, rows in groups.items():
            rows.sort(key=lambda r: len(r.text))
            for start in range(0, len(rows), self.batch_size):
                batches.append((key, rows[start : start + self.batch_size]))
        return batches

    @torch.inference_mode()
    def _generate_batch(self, params: SamplingParams, rows: list[_Row]) -> list[Completion]:
        from transformers import GenerationConfig, LogitsProcessorList

        inputs = self._tokenize([r.text for r in rows], [r.special_tokens_included for r in rows])
        stops = tuple(params.stop) + (() if has_chat_template(self.tokenizer) else PLAIN_FORMAT_STOPS)
        config = GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            do_sample=False,  # sampling happens in SeededGumbelSampler, per row
            eos_token_id=self.model.generation_config.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
            stop_strings=list(stops) or None,
            return_dict_in_generate=True,
            output_logits=params.top_logprobs > 0,
        )
        processors = LogitsProcessorList()
        if params.temperature > 0:
            processors.append(SeededGumbelSampler([r.seed for r in rows], params.temperature, params.top_p))
        out = self.model.generate(
            **inputs,
            generation_config=config,
            logits_processor=processors,
            tokenizer=self.tokenizer if stops else None,
        )
        prompt_len = inputs["input_ids"].shape[1]
        new_tokens = out.sequences[:, prompt_len:].tolist()
        step_logprobs = (
            [torch.log_softmax(step.float(), dim=-1) for step in out.logits] if params.top_logprobs else []
        )
        return [
            self._completion(row, i, new_tokens[i], step_logprobs, params, stops)
            for i, row in enumerate(rows)
        ]

    def _completion(
        self,
        row: _Row,
        i: int,
        tokens: list[int],
        step_logprobs: list[torch.Tensor],
        params: SamplingParams,
        stops: tuple[str, ...],
    ) -> Completion:
        eos_ids = _as_set(self.model.generation_config.eos_token_id)
        n_tokens = len(tokens)
        finish = "length"
        for pos, token in enumerate(tokens):
            if token in eos_ids:
                n_tokens, finish = pos + 1, "stop"
                break
        kept = [t for t in tokens[:n_tokens] if t not in eos_ids]
        text = str(self.tokenizer.decode(kept, skip_special_tokens=True))
        cut = min((text.find(s) for s in stops if s in text), default=-1)
        if cut >= 0:
            text, finish = text[:cut], "stop"
        logprobs: list[TokenLogprob] = []
        for pos in range(min(n_tokens, len(step_logprobs))):
            lp = step_logprobs[pos][i]
            top = torch.topk(lp, params.top_logprobs)
            logprobs.append(
                TokenLogprob(
                    token=str(self.tokenizer.decode([tokens[pos]])),
                    logprob=float(lp[tokens[pos]]),
                    top=tuple(
                        (str(self.tokenizer.decode([t])), float(v))
                        for t, v in zip(top.indices.tolist(), top.values.tolist(), strict=True)
                    ),
                )
            )
        return Completion(text, row.sample_index, finish, n_tokens, tuple(logprobs))

    def _tokenize(self, texts: list[str], special_included: list[bool]) -> dict[str, torch.Tensor]:
        ids = [
            self.tokenizer(t, add_special_tokens=not inc)["input_ids"]
            for t, inc in zip(texts, special_included, strict=True)
        ]
        return self._left_pad(ids)

    def _left_pad(self, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        width = max(len(x) for x in ids)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=self.device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=self.device)
        return {"input_ids": input_ids, "attention_mask": mask}

    # ----------------------------------------------------------------- loglikelihood
    @torch.inference_mode()
    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: ProgressCallback | None = None
    ) -> list[float]:
        encoded = [self._encode_pair(r.context, r.continuation) for r in requests]
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]) - len(encoded[i][1]))
        results = [0.0] * len(encoded)
        report(progress, "scoring", 0, len(order))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            # The model sees context + continuation minus the last token and predicts each next token.
            sequences = [(encoded[i][0] + encoded[i][1])[:-1] for i in chunk]
            inputs = self._left_pad(sequences)
            logits = self.model(**inputs).logits.float()
            logprobs = torch.log_softmax(logits, dim=-1)
            width = inputs["input_ids"].shape[1]
            for row, i in enumerate(chunk):
                continuation = encoded[i][1]
                positions = torch.arange(width - len(continuation), width, device=self.device)
                target = torch.tensor(continuation, device=self.device)
                results[i] = float(logprobs[row, positions, target].sum())
            report(progress, "scoring", min(start + len(chunk), len(order)), len(order))
        return results

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Tokens of context and continuation, split as lm-evaluation-harness does: encode the whole
        string and take the continuation as what follows the context's tokens, with trailing spaces of
        the context moved to the continuation."""
        if not continuation:
            raise InputError("loglikelihood needs a non-empty continuation.")
        spaces = len(context) - len(context.rstrip(" "))
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = self.tokenizer(context + continuation)["input_ids"]
        ctx = self.tokenizer(context)["input_ids"]
        if not ctx:  # an empty context still needs one token to predict from
            start = self.tokenizer.bos_token_id or self.tokenizer.eos_token_id
            return [start], whole
        return ctx, whole[len(ctx) :]

    def describe(self) -> dict[str, Any]:
        """What was loaded, for the run's resolved config."""
        return {
            "backend": "hf",
            "name": self.name,
            "folder": str(self.folder),
            "dtype": self.dtype,
            "device": self.device,
            "batch_size": self.batch_size,
            "adapter": self._active_adapter,
            "fingerprint": self.fingerprint,
        }


def _batch_key(params: SamplingParams) -> SamplingParams:
    """Rows that may share a batch: same params apart from n (and seed, which is per row)."""
    return SamplingParams(
        temperature=params.temperature,
        top_p=params.top_p,
        max_new_tokens=params.max_new_tokens,
        n=1,
        seed=0,
        stop=params.stop,
        top_logprobs=params.top_logprobs,
    )


def _as_set(ids: int | list[int] | None) -> set[int]:
    if ids is None:
        return set()
    return {ids} if isinstance(ids, int) else set(ids)
