"""Loading a model runs no code from its folder: safetensors only and no `auto_map` code, unless the
user opts in (--allow-pickle, --trust-remote-code, or the same fields in a config file or spec)."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from aftertune.cli import app
from aftertune.errors import ModelNotFoundError
from aftertune.models import load as load_module
from aftertune.models.hf import HFModel
from aftertune.models.load import load_model, resolve_hf_folder
from aftertune.models.protocol import GenerationRequest, SamplingParams, chat
from aftertune.train.runner import check_run_dir, prepare_experiment
from aftertune.train.spec import ExperimentSpec

runner = CliRunner()


class _Payload:
    """Unpickling this writes a file: what a hostile pickle would do (any code could run instead)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "pickle code ran"))


def _tiny_llama(folder: Path, embedded_folder: Path) -> torch.nn.Module:
    """A 1-layer Llama with the embedded model's tokenizer, saved by `save_pretrained` (safetensors)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=49152, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (embedded_folder / name).is_file():
            shutil.copy(embedded_folder / name, folder / name)
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, embedded_folder: Path) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    _tiny_llama(folder, embedded_folder)
    return folder


def _pickle_only(tiny: Path, target: Path, weights: Any) -> Path:
    """A copy of `tiny` whose weights are only a pickle file (`pytorch_model.bin`) holding `weights`."""
    shutil.copytree(tiny, target)
    (target / "model.safetensors").unlink()
    with (target / "pytorch_model.bin").open("wb") as f:
        pickle.dump(weights, f)
    return target


def test_pickle_weights_are_refused_unless_opted_in_and_never_unpickled(tmp_path: Path, tiny: Path) -> None:
    marker = tmp_path / "pwned"
    hostile = _pickle_only(tiny, tmp_path / "hostile", _Payload(marker))
    for load in (lambda: HFModel(hostile), lambda: load_model(str(hostile))):
        with pytest.raises(ModelNotFoundError, match="only in pickle format") as e:
            load()
        assert "--allow-pickle" in str(e.value) and "pytorch_model.bin" in str(e.value)
    assert not marker.exists()
    # the CLI says it in one paragraph, exits 2, shows no traceback, and still ran nothing
    result = runner.invoke(app, ["eval", str(hostile), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "--allow-pickle" in result.output and "Traceback" not in result.output
    assert not marker.exists()


def test_allow_pickle_loads_a_trusted_pickle_folder(tmp_path: Path, tiny: Path) -> None:
    from safetensors.torch import load_file

    weights = load_file(str(tiny / "model.safetensors"))
    folder = _pickle_only(tiny, tmp_path / "pickled", weights)
    torch.save(weights, folder / "pytorch_model.bin")  # what older `save_pretrained` wrote
    model = load_model(str(folder), allow_pickle=True)
    assert isinstance(model, HFModel)
    loaded = dict(model.model.named_parameters())["model.layers.0.mlp.up_proj.weight"]
    assert torch.equal(loaded, weights["model.layers.0.mlp.up_proj.weight"])
    out = model.generate([GenerationRequest(chat("Hi"), SamplingParams(max_new_tokens=3, temperature=0))])
    assert out[0][0].n_tokens >= 1


def test_safetensors_are_read_and_a_pickle_beside_them_is_not(tmp_path: Path, tiny: Path) -> None:
    folder = tmp_path / "both"
    shutil.copytree(tiny, folder)
    marker = tmp_path / "pwned"
    with (folder / "pytorch_model.bin").open("wb") as f:
        pickle.dump(_Payload(marker), f)
    for allow in (False, True):  # allow_pickle is a fallback: safetensors still win when present
        model = HFModel(folder, allow_pickle=allow)
        assert model.policy.allow_pickle is allow
    assert not marker.exists()


def _remote_code_folder(tiny: Path, target: Path, marker: Path) -> Path:
    """`tiny` relabelled as a custom model type whose code (named in `auto_map`) writes `marker`."""
    shutil.copytree(tiny, target)
    config = json.loads((target / "config.json").read_text())
    config.update(
        model_type="tiny-custom",
        architectures=["TinyCustomForCausalLM"],
        auto_map={
            "AutoConfig": "modeling_tiny.TinyCustomConfig",
            "AutoModelForCausalLM": "modeling_tiny.TinyCustomForCausalLM",
        },
    )
    (target / "config.json").write_text(json.dumps(config))
    (target / "modeling_tiny.py").write_text(
        "from pathlib import Path\n"
        "from transformers import LlamaConfig, LlamaForCausalLM\n"
        f"Path({str(marker)!r}).write_text('remote code ran')\n"
        "class TinyCustomConfig(LlamaConfig):\n"
        "    model_type = 'tiny-custom'\n"
        "class TinyCustomForCausalLM(LlamaForCausalLM):\n"
        "    config_class = TinyCustomConfig\n"
    )
    return target


def test_a_folders_own_code_runs_only_with_trust_remote_code(tmp_path: Path, tiny: Path) -> None:
    marker = tmp_path / "pwned"
    folder = _remote_code_folder(tiny, tmp_path / "custom", marker)
    with pytest.raises(ModelNotFoundError, match="auto_map") as e:
        load_model(str(folder))
    assert "--trust-remote-code" in str(e.value)
    result = runner.invoke(app, ["eval", str(folder), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "--trust-remote-code" in result.output, result.output
    assert not marker.exists()
    # opting in is honoured: the folder's code runs (which is what the user asked for)
    model = load_model(str(folder), trust_remote_code=True)
    assert isinstance(model, HFModel) and type(model.model).__name__ == "TinyCustomForCausalLM"
    assert marker.read_text() == "remote code ran"


def test_pickle_adapters_are_refused(tmp_path: Path, tiny: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    marker = tmp_path / "pwned"
    with (adapter / "adapter_model.bin").open("wb") as f:
        pickle.dump(_Payload(marker), f)
    model = HFModel(tiny)
    with pytest.raises(ModelNotFoundError, match="adapter weights only in pickle format") as e:
        model.load_adapter(adapter)
    assert "--allow-pickle" in str(e.value) and model.adapters == []
    assert not marker.exists()


def test_hub_downloads_fetch_pickle_and_code_only_when_opted_in(
    monkeypatch: pytest.MonkeyPatch, tiny: Path
) -> None:
    asked: list[list[str]] = []

    def fake_snapshot(repo_id: str, allow_patterns: list[str]) -> str:
        asked.append(list(allow_patterns))
        return str(tiny)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot)
    assert resolve_hf_folder("org/model") == (tiny, "org/model")
    resolve_hf_folder("org/model", allow_pickle=True, trust_remote_code=True)
    assert "*.safetensors" in asked[0] and not {"*.bin", "*.py"} & set(asked[0])
    assert {"*.bin", "*.py"} <= set(asked[1])
    assert tuple(asked[0]) == load_module._HUB_FILES


SPEC = {
    "name": "tiny",
    "arms": {"a": {"data": {"source": "builtin:secure_code", "limit": 8}}},
    "training": {"max_steps": 1, "batch_size": 2, "max_length": 64},
    "eval": {"suite": [{"kind": "task_loss", "holdout": 2}]},
}


def test_an_experiment_refuses_a_pickle_base_model_before_training(tmp_path: Path, tiny: Path) -> None:
    marker = tmp_path / "pwned"
    hostile = _pickle_only(tiny, tmp_path / "hostile", _Payload(marker))
    spec = ExperimentSpec.model_validate({**SPEC, "base_model": str(hostile)})
    assert spec.allow_pickle is False and spec.trust_remote_code is False
    with pytest.raises(ModelNotFoundError, match="allow_pickle: true"):
        prepare_experiment(spec, tmp_path, tmp_path / "run")
    assert not marker.exists()
    opted = ExperimentSpec.model_validate({**SPEC, "base_model": str(tiny), "allow_pickle": True})
    assert prepare_experiment(opted, tmp_path, tmp_path / "run2").base_folder == tiny


def test_a_run_directory_from_before_the_opt_in_fields_still_resumes(tmp_path: Path) -> None:
    spec = ExperimentSpec.model_validate(SPEC)
    old = spec.model_dump(mode="json")
    del old["allow_pickle"], old["trust_remote_code"]  # an experiment.json written before they existed
    (tmp_path / "experiment.json").write_text(json.dumps({"spec": old, "base_dir": str(tmp_path)}))
    check_run_dir(spec, tmp_path, tmp_path)  # the same experiment: no "holds another experiment"
    changed = ExperimentSpec.model_validate({**SPEC, "allow_pickle": True})
    with pytest.raises(Exception, match="holds another experiment"):
        check_run_dir(changed, tmp_path, tmp_path)
