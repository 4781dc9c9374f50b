"""Cheap, stable identities for weight files, so stored results are keyed by the weights that made them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

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
