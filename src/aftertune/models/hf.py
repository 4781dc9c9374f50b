"""The `hf` backend: transformers + peft, CPU or GPU, left-padded batches, swappable LoRA adapters."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aftertune.errors import InputError, ModelNotFoundError
from aftertune.models.fingerprint import (
    adapter_folder_digest,
    adapter_settings,
    folder_digest,
    tensors_digest,
)
from aftertune.models.prompts import PLAIN_FORMAT_STOPS, encode_pair, has_chat_template, render_prompt
from aftertune.models.protocol import (
    Completion,
    GenerationRequest,
    LoglikelihoodRequest,
    Prompt,
    SamplingParams,
    TokenLogprob,
    sample_seed,
)
from aftertune.models.sampling import SeededGumbelSampler
from aftertune.models.trust import LoadPolicy, check_adapter_folder, check_model_folder, remote_code_refused
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
        allow_pickle: bool = False,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if dtype not in DTYPES:
            raise InputError(f"dtype '{dtype}' is not one of {', '.join(DTYPES)}.")
        # Refused unless opted in: pickle weights and the folder's own code can run anything on loading.
        policy = LoadPolicy(allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
        check_model_folder(folder, policy)
        trust, safetensors = policy.trust_remote_code, policy.use_safetensors
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust)
            loaded: Any = AutoModelForCausalLM.from_pretrained(
                str(folder), dtype=DTYPES[dtype], trust_remote_code=trust, use_safetensors=safetensors
            )
        except ValueError as e:  # transformers found code of the folder's own it may not run
            if "trust_remote_code" not in str(e):
                raise
            raise ModelNotFoundError(remote_code_refused(folder)) from None
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._attach(loaded.to(device), tokenizer, name or folder.name, dtype, device, batch_size)
        self.folder: Path | None = folder
        self.policy = policy
        self._base_fingerprint = folder_fingerprint(folder, self.name, dtype)
        self.model.eval()

    @classmethod
    def from_loaded(
        cls, model: Any, tokenizer: Any, *, name: str, base_fingerprint: str, batch_size: int = 16
    ) -> HFModel:
        """Wrap a model that is already in memory, e.g. one being trained, without reloading it.

        With a peft model its active adapter's exact weights join `base_fingerprint`, read afresh at
        every use: the same weights give the same fingerprint as their saved checkpoint loaded with
        `load_adapter`, so results computed during training are reused by a later sweep. A model
        in training mode is put in eval mode for each call and restored after.
        """
        self = cls.__new__(cls)
        # A copy: batched generation pads on the left, and the trainer's collator may use the
        # tokenizer's padding side.
        tokenizer = copy.deepcopy(tokenizer)
        dtype = next((k for k, v in DTYPES.items() if v == model.dtype), str(model.dtype))
        self._attach(model, tokenizer, name, dtype, str(model.device), batch_size)
        self.folder = None
        self.policy = LoadPolicy()
        self._live_base = base_fingerprint
        return self

    def _attach(
        self, model: Any, tokenizer: Any, name: str, dtype: str, device: str, batch_size: int
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.dtype = dtype
        self.device = device
        self.batch_size = batch_size
        self.tokenizer.padding_side = "left"  # batched generation continues every row at the right
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # Only our SamplingParams decide how to sample: a model's own generation_config.json (e.g.
        # do_sample=True, temperature=0.6) must not silently change the samples. It is swapped in
        # for each call only (`_our_mode`), so a model being trained saves its own config unchanged.
        from transformers import GenerationConfig

        own = model.generation_config
        self._generation_config = GenerationConfig(
            bos_token_id=own.bos_token_id, eos_token_id=own.eos_token_id, pad_token_id=own.pad_token_id
        )
        self._eos_ids = _as_set(own.eos_token_id)
        self._live_base: str | None = None
        self._adapters: dict[str, str] = {}  # name -> content digest
        self._active_adapter: str | None = None

    @contextmanager
    def _our_mode(self) -> Iterator[None]:
        """Eval mode and our generation config for one call; the model's own state restored after."""
        was_training = self.model.training
        own = self.model.generation_config
        self.model.eval()
        self.model.generation_config = self._generation_config
        try:
            yield
        finally:
            self.model.generation_config = own
            if was_training:
                self.model.train()

    # ----------------------------------------------------------------- adapters
    def load_adapter(self, path: Path, name: str | None = None) -> str:
        """Attach a LoRA adapter folder (peft format) to the base model; returns its name."""
        path = Path(path)
        check_adapter_folder(path, self.policy)
        name = name or path.name
        if name in self._adapters:
            raise InputError(f"An adapter named '{name}' is already loaded; give it another name.")
        if self._live_base is not None:
            raise InputError("A wrapped in-memory model takes no adapters; load its base folder instead.")
        self.model.load_adapter(str(path), adapter_name=name)
        self._adapters[name] = adapter_folder_digest(path)
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

    def unload_adapter(self, name: str) -> None:
        """Detach adapter `name` and free its weights; the base model becomes active if it was."""
        if name not in self._adapters:
            raise InputError(f"No adapter named '{name}' is loaded (loaded: {sorted(self._adapters)}).")
        if self._active_adapter == name:
            self.set_adapter(None)
        self.model.delete_adapter(name)
        del self._adapters[name]

    @property
    def adapters(self) -> list[str]:
        return list(self._adapters)

    @property
    def fingerprint(self) -> str:
        if self._live_base is not None:
            return self._live_base + live_adapter_suffix(self.model)
        base = self._base_fingerprint
        if self._active_adapter is None:
            return base
        # The adapter's name is left out: it does not change outputs, its weights do.
        return f"{base}+lora:{self._adapters[self._active_adapter]}"

    # ----------------------------------------------------------------- generate
    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None
    ) -> list[list[Completion]]:
        with self._our_mode():
            return self._generate(requests, progress)

    def _generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None
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
            eos_token_id=sorted(self._eos_ids) or None,
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
        eos_ids = self._eos_ids
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
    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: ProgressCallback | None = None
    ) -> list[float]:
        with self._our_mode():
            return self._loglikelihood(requests, progress)

    @torch.inference_mode()
    def _loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: ProgressCallback | None
    ) -> list[float]:
        encoded = [self._encode_pair(r.context, r.continuation) for r in requests]
        # Requests that share a context (the options of one multiple-choice question) are scored from
        # one pass over that context: its last position gives every continuation's first token, and
        # its KV cache, copied once per continuation, the rest. (lm-evaluation-harness reuses the
        # context's logits for one-token continuations only; the cache extends that to longer ones.)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (context, _) in enumerate(encoded):
            groups.setdefault(tuple(context), []).append(i)
        results = [0.0] * len(encoded)
        done = 0
        report(progress, "scoring", 0, len(encoded))
        # Contexts that start alike (the same few-shot examples or system prompt) go on top of one
        # pass over their shared start: a 5-shot MMLU subject computes its ~600 example tokens once.
        for shared, family in shared_prefix_families(list(groups)):
            prefix = self._prefix_cache(family[0][:shared]) if shared else None
            # Longest first (as lm-evaluation-harness): less padding, and an out-of-memory error comes early.
            family = sorted(family, key=len, reverse=True)
            for start in range(0, len(family), self.batch_size):
                chunk = family[start : start + self.batch_size]
                self._score_contexts(chunk, shared, prefix, groups, encoded, results)
                done += sum(len(groups[c]) for c in chunk)
                report(progress, "scoring", done, len(encoded))
        return results

    def _prefix_cache(self, prefix: tuple[int, ...]) -> Any:
        """The KV cache of one pass over `prefix` (batch of one)."""
        ids = torch.tensor([list(prefix)], device=self.device)
        return self.model(input_ids=ids, use_cache=True, logits_to_keep=1).past_key_values

    def _score_contexts(
        self,
        chunk: list[tuple[int, ...]],
        shared: int,
        prefix_cache: Any,
        groups: dict[tuple[int, ...], list[int]],
        encoded: list[tuple[list[int], list[int]]],
        results: list[float],
    ) -> None:
        """Fill `results` for every request whose context is in `chunk`: one pass over the contexts
        (over what follows their first `shared` tokens, on top of `prefix_cache`, when given), then
        passes over the continuations longer than a token on top of the contexts' KV cache."""
        inputs = self._left_pad([list(c[shared:]) for c in chunk])
        mask = inputs["attention_mask"]
        # Explicit positions: every context counts from 0 whatever its padding, and a shared prefix's
        # positions continue across the padding between it and each row's own tokens.
        positions = shared + (mask.cumsum(1) - 1).clamp(min=0)
        cache = None
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(chunk))
            mask = torch.cat(
                [torch.ones(len(chunk), shared, dtype=mask.dtype, device=self.device), mask], dim=1
            )
        rows = [(g, i) for g, context in enumerate(chunk) for i in groups[context]]
        # Only the last position's logits are needed: skipping the others saves the vocabulary
        # projection and log-softmax over every context token.
        out = self.model(
            input_ids=inputs["input_ids"],
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=any(len(encoded[i][1]) > 1 for _, i in rows),
            logits_to_keep=1,
        )
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        for g, i in rows:
            results[i] = float(first[g, encoded[i][1][0]])
        # The rest of the longer continuations, in batches of similar length (little padding).
        longer = sorted((r for r in rows if len(encoded[r[1]][1]) > 1), key=lambda r: -len(encoded[r[1]][1]))
        batches = [longer[s : s + self.batch_size] for s in range(0, len(longer), self.batch_size)]
        lengths = [len(c) for c in chunk]  # real tokens per context row
        for n, batch in enumerate(batches):
            # Each batch selects its rows' contexts from the cache; the last may consume it.
            cache = out.past_key_values if n == len(batches) - 1 else copy.deepcopy(out.past_key_values)
            self._score_tails(batch, cache, mask, lengths, encoded, results)

    def _score_tails(
        self,
        batch: list[tuple[int, int]],
        cache: Any,
        context_mask: torch.Tensor,
        context_lengths: list[int],
        encoded: list[tuple[list[int], list[int]]],
        results: list[float],
    ) -> None:
        """Add log P(continuation[1:]) to `results` for each (context row, request) in `batch`."""
        owner = torch.tensor([g for g, _ in batch], device=self.device)
        cache.reorder_cache(owner)  # one copy of its context's cache per continuation
        # Each continuation minus its last token, right-padded: position j predicts token j + 1.
        tails = [encoded[i][1][:-1] for _, i in batch]
        width = max(len(t) for t in tails)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([t + [pad] * (width - len(t)) for t in tails], device=self.device)
        tail_mask = torch.tensor([[1] * len(t) + [0] * (width - len(t)) for t in tails], device=self.device)
        mask = torch.cat([context_mask[owner], tail_mask], dim=1)
        starts = torch.tensor([context_lengths[g] for g, _ in batch], device=self.device)
        positions = starts[:, None] + torch.arange(width, device=self.device)[None, :]
        logits = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True
        ).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        for row, (_, i) in enumerate(batch):
            targets = torch.tensor(encoded[i][1][1:], device=self.device)
            positions = torch.arange(len(targets), device=self.device)
            results[i] += float(logprobs[row, positions, targets].sum())

    def _encode_pair(self, context: Prompt, continuation: str) -> tuple[list[int], list[int]]:
        return encode_pair(self.tokenizer, context, continuation)

    def describe(self) -> dict[str, Any]:
        """What was loaded, for the run's resolved config."""
        return {
            "backend": "hf",
            "name": self.name,
            "folder": None if self.folder is None else str(self.folder),
            "dtype": self.dtype,
            "device": self.device,
            "batch_size": self.batch_size,
            "adapter": self._active_adapter,
            "fingerprint": self.fingerprint,
        }


#: contexts that share fewer leading tokens than this are scored on their own
MIN_SHARED_PREFIX = 32


def shared_prefix_families(
    contexts: list[tuple[int, ...]], min_shared: int = MIN_SHARED_PREFIX
) -> list[tuple[int, list[tuple[int, ...]]]]:
    """Split token sequences into families that share a long start, as (shared length, members).

    In sorted order, sequences that start alike are neighbours, and a run's common start is the
    shortest common start of neighbouring pairs. A run grows while that stays >= `min_shared` and
    at least half of what the run shared so far (so one subject's 600-token few-shot prefix is not
    cut down to the 10 tokens it shares with the next subject's). Every member keeps at least its
    last token out of the shared part, to be scored. Sequences in no run of two or more come last,
    as one family with nothing shared."""
    ordered = sorted(set(contexts))
    families: list[tuple[int, list[tuple[int, ...]]]] = []
    alone: list[tuple[int, ...]] = []
    i = 0
    while i < len(ordered):
        shared, j = len(ordered[i]) - 1, i + 1
        while j < len(ordered):
            common = min(shared, _common_start(ordered[j - 1], ordered[j]), len(ordered[j]) - 1)
            if common < min_shared or (j > i + 1 and common < shared // 2):
                break
            shared, j = common, j + 1
        if j - i > 1:
            families.append((shared, ordered[i:j]))
        else:
            alone.append(ordered[i])
        i = j
    if alone:
        families.append((0, alone))
    return families


def _common_start(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


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


def live_adapter_suffix(model: Any) -> str:
    """What the live weights add to the base fingerprint: "+lora:<digest>" of a peft model's active
    adapter (matching `HFModel.fingerprint` for the same adapter saved and loaded), "" while its
    adapters are disabled, and "+full:<digest>" of every weight of a model without adapters (full
    fine-tuning: hashed whole, about a second per billion parameters)."""
    configs = getattr(model, "peft_config", None)
    if not configs:
        return f"+full:{tensors_digest(dict(model.named_parameters()))}"
    if _adapters_disabled(model):
        return ""
    from peft import get_peft_model_state_dict

    active = model.active_adapter if isinstance(model.active_adapter, str) else model.active_adapter[0]
    weights = get_peft_model_state_dict(model, adapter_name=active)
    return f"+lora:{tensors_digest(weights, adapter_settings(configs[active].to_dict()))}"


def _adapters_disabled(model: Any) -> bool:
    """True inside peft's `disable_adapter()` context: its tuner layers say so (the model does not)."""
    for module in model.modules():
        flag = getattr(module, "disable_adapters", None)
        if isinstance(flag, bool):
            return flag
    return False


def folder_fingerprint(folder: Path, name: str, dtype: str) -> str:
    """The fingerprint of a model loaded from `folder` under `name` in `dtype` (without adapters)."""
    return f"hf:{name}:{folder_digest(folder)}:{dtype}"
