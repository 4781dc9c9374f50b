"""What loading a model folder may run: safetensors weights only and no code from the folder, unless
the user opts in.

Pickle weights (`pytorch_model.bin`, `.pt`, ...) are Python programs: unpickling one can run any code.
A model folder's own Python files (`auto_map` in config.json) run when `trust_remote_code` is on.
Both are refused by default, before transformers or peft touch the folder, with the opt-in named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from aftertune.errors import ModelNotFoundError

#: file suffixes of pickle-based weights (torch.save, joblib, plain pickle)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
ALLOW_PICKLE = "--allow-pickle (in a config file or experiment spec: `allow_pickle: true`)"
TRUST_REMOTE_CODE = "--trust-remote-code (in a config file or experiment spec: `trust_remote_code: true`)"


@dataclass(frozen=True)
class LoadPolicy:
    """The user's opt-ins for loading local or hub models; both off unless asked for explicitly."""

    #: also load pickle weights when a folder has no safetensors (unpickling can run code)
    allow_pickle: bool = False
    #: run the Python files a model folder ships (its `auto_map`)
    trust_remote_code: bool = False

    @property
    def use_safetensors(self) -> bool | None:
        """transformers' `use_safetensors`: True (safetensors only), or None (prefer them) when opted in."""
        return None if self.allow_pickle else True


def check_model_folder(folder: Path, policy: LoadPolicy) -> None:
    """Raise ModelNotFoundError, naming the opt-in, when `folder` needs pickle or its own code to load."""
    _check_weights(folder, "*.safetensors", "model", policy)
    if policy.trust_remote_code:
        return
    if _auto_map(folder / "config.json") and not _builtin_type(folder):
        raise ModelNotFoundError(remote_code_refused(folder / "config.json"))


def remote_code_refused(where: Path | str) -> str:
    """The message for a model that needs its own code (also used when transformers finds such code)."""
    return (
        f"{where} names Python code of its own (`auto_map`), which would run on loading. aftertune runs "
        f"no code from a model folder unless you opt in with {TRUST_REMOTE_CODE}; do so only for a "
        "model whose code you have read or trust."
    )


def check_adapter_folder(folder: Path, policy: LoadPolicy) -> None:
    """Raise ModelNotFoundError when a folder is not a peft LoRA adapter, or (naming the opt-in) when it
    holds only pickle weights."""
    if not (folder / "adapter_config.json").is_file():
        raise ModelNotFoundError(
            f"Adapter folder {folder} has no adapter_config.json. Give a folder saved by peft "
            "(`model.save_pretrained`) or a trainer checkpoint folder that contains one."
        )
    _check_weights(folder, "adapter_model.safetensors", "adapter", policy)


def _check_weights(folder: Path, safe_pattern: str, what: str, policy: LoadPolicy) -> None:
    if any(folder.glob(safe_pattern)):
        return
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if not pickled:
        raise ModelNotFoundError(
            f"{folder} holds no {what} weights in safetensors format ({safe_pattern}). Give the folder "
            "that `save_pretrained` wrote."
        )
    if not policy.allow_pickle:
        raise ModelNotFoundError(
            f"{folder} holds {what} weights only in pickle format ({', '.join(pickled[:5])}), and loading "
            "pickle can run arbitrary code. Convert them to safetensors (load once where you trust them, "
            f"then `save_pretrained`), or opt in with {ALLOW_PICKLE} if you trust where they come from."
        )


def _auto_map(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # a missing or broken file is transformers' to report
    return isinstance(data, dict) and bool(data.get("auto_map"))


def _builtin_type(folder: Path) -> bool:
    """Whether transformers has its own class for the folder's model_type (then it ignores `auto_map`)."""
    from transformers import CONFIG_MAPPING

    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(model_type, str) and model_type in CONFIG_MAPPING
