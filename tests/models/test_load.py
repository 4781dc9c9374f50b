"""From a model spec to a model: the embedded conversion, hub ids, folders and endpoints."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from aftertune.errors import ModelNotFoundError
from aftertune.models import embedded
from aftertune.models.hf import HFModel
from aftertune.models.load import load_model, resolve_hf_folder


def test_a_crash_mid_conversion_leaves_no_half_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AFTERTUNE_CACHE", str(tmp_path))

    def crash(source: Path, out: Path) -> None:
        out.mkdir()
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(embedded, "_convert", crash)
    with pytest.raises(KeyboardInterrupt):
        embedded.embedded_model_folder()
    assert list((tmp_path / "models").iterdir()) == []


def test_stale_conversions_are_cleaned_and_a_finished_one_is_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedded_folder: Path
) -> None:
    monkeypatch.setenv("AFTERTUNE_CACHE", str(tmp_path))
    models = tmp_path / "models"
    models.mkdir()
    stale = models / ".SmolLM2.tmp-1-dead"
    stale.mkdir()
    old = time.time() - 7200
    os.utime(stale, (old, old))

    def copy(source: Path, out: Path) -> None:
        shutil.copytree(embedded_folder, out)

    monkeypatch.setattr(embedded, "_convert", copy)
    folder = embedded.embedded_model_folder()
    assert not stale.exists() and (folder / "config.json").is_file()
    monkeypatch.setattr(embedded, "_convert", lambda s, o: pytest.fail("converted twice"))
    assert embedded.embedded_model_folder() == folder


def test_a_hub_id_loads_from_the_hub_cache_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedded_folder: Path
) -> None:
    """The real hub-loading code, fed from a local hub cache (no network here)."""
    repo = tmp_path / "hub" / "models--local-org--smol"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for file in embedded_folder.iterdir():
        (snapshot / file.name).symlink_to(file)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    folder, name = resolve_hf_folder("local-org/smol")
    assert name == "local-org/smol" and folder == snapshot
    model = load_model("local-org/smol")
    assert isinstance(model, HFModel) and model.fingerprint.startswith("hf:local-org/smol:")
    with pytest.raises(
        ModelNotFoundError, match="Could not get 'local-org/missing' from the Hugging Face hub"
    ):
        resolve_hf_folder("local-org/missing")


@pytest.mark.parametrize("spec", ["./nope", "/no/such/dir", "a/b/c", "nope"])
def test_specs_that_are_neither_folders_nor_hub_ids(spec: str) -> None:
    with pytest.raises(ModelNotFoundError, match="neither a model folder on disk nor a Hugging Face hub id"):
        resolve_hf_folder(spec)


@pytest.mark.needs_server
def test_an_endpoint_spec_is_checked_when_loaded(llama_server: str) -> None:
    from aftertune.errors import EndpointError
    from aftertune.models.openai import OpenAIModel

    model = load_model(f"{llama_server}/SmolLM2-135M-Instruct")
    assert (
        isinstance(model, OpenAIModel) and model.fingerprint == f"openai:{llama_server}:SmolLM2-135M-Instruct"
    )
    with pytest.raises(EndpointError, match="does not list the model 'gpt-x'"):
        load_model(f"{llama_server}/gpt-x")
