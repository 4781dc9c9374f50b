"""Checkpoint sweeps: evaluate every saved checkpoint of a run on one loaded base model.

Each LoRA checkpoint is attached to the base model, made active with `set_adapter` (no weights
reload), evaluated, and detached again. Results are keyed by the adapter's exact weights, so the
base model and every checkpoint already evaluated during training are read back, not recomputed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aftertune.errors import InputError
from aftertune.evals.suite import run_suite
from aftertune.models.hf import HFModel
from aftertune.progress import ProgressCallback, report
from aftertune.store import ResultsStore
from aftertune.train.records import TrackedStep, ensure_tables, record_step, tracked_steps
from aftertune.train.runner import Experiment, is_complete_checkpoint
from aftertune.train.tracking import BASE_LABEL

if TYPE_CHECKING:
    from aftertune.models.vllm_engine import VLLMModel


@dataclass(frozen=True)
class SavedCheckpoint:
    """A checkpoint folder of a run and the run's global step it was saved at."""

    run: str
    step: int
    folder: Path
    train_loss: float | None


def saved_checkpoints(experiment: Experiment, arm: str, seed: int) -> list[SavedCheckpoint]:
    """Every adapter checkpoint of one run in step order; a stage's `final` counts when no
    checkpoint was saved at its last step. Steps continue across stages."""
    run = experiment.run_label(arm, seed)
    found: dict[int, SavedCheckpoint] = {}
    offset = 0
    for index in range(len(experiment.spec.arms[arm].all_stages)):
        folder = experiment.stage_dir(arm, seed, index)
        for checkpoint in sorted(folder.glob("checkpoint-*")):
            if (
                (checkpoint / "adapter_config.json").is_file()
                and checkpoint.name.split("-")[-1].isdigit()
                and is_complete_checkpoint(checkpoint)
            ):
                step = offset + int(checkpoint.name.split("-")[-1])
                found[step] = SavedCheckpoint(run, step, checkpoint, _logged_loss(checkpoint))
        marker = folder / "stage.json"
        if not marker.is_file():
            break  # a later stage cannot have started
        steps = int(json.loads(marker.read_text())["steps"])
        final = folder / "final"
        if offset + steps not in found and (final / "adapter_config.json").is_file():
            found[offset + steps] = SavedCheckpoint(run, offset + steps, final, None)
        offset += steps
    return [found[s] for s in sorted(found)]


@dataclass(frozen=True)
class SweepUnit:
    """One unit of sweep work: a model (the base, or the base with one checkpoint's adapter) on the
    suite of one arm. Units are independent, so they can run anywhere that can read the run folder."""

    arm: str
    label: str
    checkpoint: SavedCheckpoint | None = None


def sweep_units(experiment: Experiment) -> list[SweepUnit]:
    """The base model on every arm's suite, then every saved checkpoint on its arm's suite."""
    units = [SweepUnit(arm, BASE_LABEL) for arm in experiment.suites]
    for arm in experiment.spec.arms:
        for seed in experiment.spec.seeds:
            for c in saved_checkpoints(experiment, arm, seed):
                units.append(SweepUnit(arm, f"{c.run}/step{c.step}", c))
    return units


#: the backends a sweep can swap adapters on
SWEEP_BACKENDS = ("hf", "vllm")


def load_base(
    experiment: Experiment, backend: str = "hf", tensor_parallel_size: int = 1
) -> HFModel | VLLMModel:
    """The experiment's base model, once, on the backend that will swap the checkpoints' adapters."""
    spec = experiment.spec
    if backend == "vllm":
        from aftertune.models.vllm_engine import VLLMModel

        return VLLMModel(
            experiment.base_folder,
            name=experiment.base_name,
            dtype=spec.dtype,
            tensor_parallel_size=tensor_parallel_size,
            trust_remote_code=spec.trust_remote_code,
            allow_pickle=spec.allow_pickle,
        )
    if backend != "hf":
        raise InputError(f"--backend must be one of {', '.join(SWEEP_BACKENDS)}, got '{backend}'.")
    return HFModel(
        experiment.base_folder,
        name=experiment.base_name,
        dtype=spec.dtype,
        trust_remote_code=spec.trust_remote_code,
        allow_pickle=spec.allow_pickle,
    )


def evaluate_unit(
    experiment: Experiment,
    model: HFModel | VLLMModel,
    store: ResultsStore,
    unit: SweepUnit,
    progress: ProgressCallback | None = None,
) -> str:
    """Run one unit on `model` (the loaded base; a checkpoint's adapter is attached for the unit and
    detached after); returns the evaluated model's fingerprint."""
    if unit.checkpoint is None:
        return run_suite(experiment.suites[unit.arm], model, store, progress, label=unit.label).model
    model.load_adapter(unit.checkpoint.folder, name=unit.label)
    try:
        result = run_suite(experiment.suites[unit.arm], model, store, progress, label=unit.label)
    finally:
        model.unload_adapter(unit.label)
    return result.model


def record_checkpoint(store: ResultsStore, unit: SweepUnit, fingerprint: str) -> None:
    """Note an evaluated checkpoint as a tracked step of its run, unless training already did."""
    checkpoint = unit.checkpoint
    if checkpoint is None or checkpoint.step in {s.step for s in tracked_steps(store, checkpoint.run)}:
        return
    step = TrackedStep(
        checkpoint.run, checkpoint.step, fingerprint, checkpoint.train_loss, str(checkpoint.folder)
    )
    record_step(store, step)


def check_sweepable(experiment: Experiment) -> None:
    if experiment.spec.full_finetune:
        raise InputError(
            "Sweeps swap LoRA adapters on one base model; this experiment trains every weight "
            "(full_finetune: true), so each checkpoint is a whole model: evaluate them with "
            "`aftertune eval CHECKPOINT_FOLDER` instead."
        )


def sweep_experiment(
    experiment: Experiment,
    progress: ProgressCallback | None = None,
    *,
    backend: str = "hf",
    tensor_parallel_size: int = 1,
) -> list[tuple[SavedCheckpoint, str]]:
    """Evaluate the base model and every saved checkpoint of every run in this process; returns
    (checkpoint, fingerprint) pairs. Only what is not in the store yet is computed."""
    check_sweepable(experiment)
    store = ResultsStore(experiment.run_dir)
    ensure_tables(store)
    model = load_base(experiment, backend, tensor_parallel_size)
    done: list[tuple[SavedCheckpoint, str]] = []
    try:
        units = sweep_units(experiment)
        checkpoints = [u for u in units if u.checkpoint is not None]
        for unit in units:
            if unit.checkpoint is not None:
                report(progress, "checkpoints", len(done), len(checkpoints))
            fingerprint = evaluate_unit(experiment, model, store, unit, progress)
            if unit.checkpoint is not None:
                record_checkpoint(store, unit, fingerprint)
                done.append((unit.checkpoint, fingerprint))
        report(progress, "checkpoints", len(done), len(checkpoints))
    finally:
        store.close()
    return done


def _logged_loss(checkpoint: Path) -> float | None:
    """The last training loss the trainer logged up to this checkpoint (from trainer_state.json)."""
    state = checkpoint / "trainer_state.json"
    if not state.is_file():
        return None
    history = json.loads(state.read_text()).get("log_history", [])
    losses = [entry["loss"] for entry in history if "loss" in entry]
    return float(losses[-1]) if losses else None
