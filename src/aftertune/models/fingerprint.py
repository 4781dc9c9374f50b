"""Cheap, stable identities for weight files, so stored results are keyed by the weights that made them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: Weight files are hashed by size plus three 1 MiB windows (start, middle, end): hashing a 140 GB
#: checkpoint in full on every load would cost minutes, and any retraining changes these bytes.
_WINDOW = 1 << 20
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")


def file_digest(path: Path) -> str:
    """Size plus start, middle and end windows of one file."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        for offset in sorted({0, max(0, size // 2 - _WINDOW // 2), max(0, size - _WINDOW)}):
            f.seek(offset)
            h.update(f.read(_WINDOW))
    return h.hexdigest()


def folder_digest(folder: Path, also: Iterable[str] = ("config.json", "adapter_config.json")) -> str:
    """Digest of a model or adapter folder: its weight files and its config, by name and content."""
    h = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.is_file() and (path.suffix in WEIGHT_SUFFIXES or path.name in also):
            h.update(path.name.encode())
            h.update(file_digest(path).encode())
    return h.hexdigest()[:16]


#: The adapter settings that change a LoRA adapter's outputs besides its tensors (the scaling
#: alpha/r and the variants); the tensors' names already say which modules it targets.
_ADAPTER_FIELDS = ("r", "lora_alpha", "use_rslora", "use_dora", "rank_pattern", "alpha_pattern", "bias")


def tensors_digest(tensors: Mapping[str, Any], settings: Mapping[str, Any] | None = None) -> str:
    """Digest of named tensors' exact contents (and of `settings`): equal for equal weights however
    they were obtained, e.g. an adapter in training and the same adapter read back from its checkpoint."""
    import torch

    h = hashlib.sha256(json.dumps(dict(settings or {}), sort_keys=True, default=str).encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{tuple(tensors[name].shape)}:{tensor.dtype}".encode())
        h.update(tensor.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def adapter_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a peft adapter config that `tensors_digest` covers."""
    return {k: config.get(k) for k in _ADAPTER_FIELDS}


def adapter_folder_digest(folder: Path) -> str:
    """Content digest of a saved LoRA adapter (adapter_model.safetensors + its scaling settings);
    falls back to the file digest for other weight formats."""
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        return folder_digest(folder)
    from safetensors.torch import load_file

    config = json.loads((folder / "adapter_config.json").read_text())
    return tensors_digest(load_file(str(weights)), adapter_settings(config))


#: Elements read per tensor by `sampled_tensors_digest`.
_SAMPLE = 4096


def sampled_tensors_digest(tensors: Mapping[str, Any]) -> str:
    """Digest of named tensors from their shapes and an evenly strided sample of each one's elements:
    cheap for billions of weights, and enough to tell one set of base weights from another."""
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        flat = tensors[name].detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // _SAMPLE)][:_SAMPLE].cpu().contiguous()
        h.update(f"{name}:{tuple(tensors[name].shape)}:{flat.dtype}".encode())
        h.update(sample.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]
