"""From what the user typed to a loaded `Model`.

embedded                          the embedded SmolLM2-135M-Instruct (the default)
./path/to/folder                  a local Hugging Face model folder (hf backend)
org/name                          a Hugging Face hub id, downloaded once (hf backend)
http://host:port/v1/MODEL         an OpenAI-compatible endpoint (openai backend)
openai:MODEL                      the OpenAI API, or $OPENAI_BASE_URL when set
vllm:FOLDER_OR_HUB_ID             a Hugging Face model served by vLLM's offline engine (GPU)
"""

from __future__ import annotations

import os
from pathlib import Path

from aftertune.errors import ModelNotFoundError
from aftertune.models.embedded import EMBEDDED_NAME, embedded_model_folder
from aftertune.models.hf import HFModel
from aftertune.models.protocol import Model

EMBEDDED = "embedded"
OPENAI_DEFAULT_URL = "https://api.openai.com/v1"


def load_model(
    spec: str = EMBEDDED,
    *,
    adapter: Path | None = None,
    dtype: str = "float32",
    device: str | None = None,
    batch_size: int = 16,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    concurrency: int = 8,
    tensor_parallel_size: int = 1,
) -> Model:
    """Load the model `spec` names (see the module docstring). Local and hub models load from
    safetensors with no code of their own unless `allow_pickle` / `trust_remote_code` opt in."""
    if spec.startswith(("http://", "https://")) or spec.startswith("openai:"):
        if adapter is not None:
            raise ModelNotFoundError(
                "--adapter works with local hf models only; an endpoint serves its own adapters "
                "(e.g. vLLM's --lora-modules): name the adapter as the model instead."
            )
        from aftertune.models.openai import OpenAIModel, parse_endpoint

        if spec.startswith("openai:"):
            base_url, name = (
                os.environ.get("OPENAI_BASE_URL", OPENAI_DEFAULT_URL),
                spec.removeprefix("openai:"),
            )
        else:
            base_url, name = parse_endpoint(spec)
        endpoint = OpenAIModel(base_url, name, concurrency=concurrency)
        endpoint.check()  # a wrong URL or model name fails here, in seconds, before any work
        return endpoint
    if spec.startswith("vllm:"):
        from aftertune.models.vllm_engine import VLLMModel

        folder, name = resolve_hf_folder(
            spec.removeprefix("vllm:"), allow_pickle=allow_pickle, trust_remote_code=trust_remote_code
        )
        served = VLLMModel(
            folder,
            name=name,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            trust_remote_code=trust_remote_code,
            allow_pickle=allow_pickle,
        )
        if adapter is not None:
            served.load_adapter(adapter)
        return served
    folder, name = resolve_hf_folder(spec, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    model = HFModel(
        folder,
        name=name,
        dtype=dtype,
        device=device,
        batch_size=batch_size,
        trust_remote_code=trust_remote_code,
        allow_pickle=allow_pickle,
    )
    if adapter is not None:
        model.load_adapter(adapter)
    return model


def resolve_hf_folder(
    spec: str, *, allow_pickle: bool = False, trust_remote_code: bool = False
) -> tuple[Path, str]:
    """A local folder for `spec`: the embedded model, a folder on disk, or a hub snapshot (with pickle
    weights and Python files only when opted in)."""
    if spec == EMBEDDED:
        return embedded_model_folder(), EMBEDDED_NAME
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"{path} is a folder but holds no config.json, so it is not a Hugging Face model folder. "
                "Give the folder that `save_pretrained` wrote (config.json + *.safetensors)."
            )
        return path, path.resolve().name
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise ModelNotFoundError(
            f"Model '{spec}' is neither a model folder on disk nor a Hugging Face hub id (org/name). "
            f"Check the path, or use '{EMBEDDED}' for the embedded default model."
        )
    patterns = [*_HUB_FILES, *(("*.bin",) if allow_pickle else ()), *(("*.py",) if trust_remote_code else ())]
    return _hub_snapshot(spec, patterns), spec


#: what is fetched of a hub model: config, tokenizer and safetensors weights (no pickle, no code)
_HUB_FILES = ("*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken")


def _hub_snapshot(repo_id: str, patterns: list[str]) -> Path:
    """Download (or find in the local hub cache) the files of a hub model that match `patterns`."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        folder = snapshot_download(repo_id, allow_patterns=patterns)
    except HFValidationError as e:
        raise ModelNotFoundError(f"'{repo_id}' is not a valid Hugging Face model id: {e}") from e
    except Exception as e:  # offline, 404, gated, auth: all mean "cannot get it from here"
        raise ModelNotFoundError(
            f"Could not get '{repo_id}' from the Hugging Face hub ({type(e).__name__}: {str(e)[:200]}). "
            "Without internet, download it elsewhere and pass the local folder; for gated models set "
            "HF_TOKEN; or use 'embedded' for the embedded default model."
        ) from e
    return Path(folder)
