"""Checkpoint sweeps: evaluate every saved checkpoint of a run on one loaded base model.

Each LoRA checkpoint is attached to the base model, made active with `set_adapter` (no weights
reload), evaluated, and detached again. Results are keyed by the adapter's exact weights, so the
base model and every checkpoint already evaluated during training are read back, not recomputed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from aftertune.errors import InputError
from aftertune.evals.suite import run_suite
from aftertune.models.hf import HFModel
from aftertune.progress import ProgressCallback, report
from aftertune.store import ResultsStore
from aftertune.train.records import TrackedStep, ensure_tables, record_step, tracked_steps
from aftertune.train.runner import Experiment, is_complete_checkpoint
from aftertune.train.tracking import BASE_LABEL


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


def sweep_experiment(
    experiment: Experiment, progress: ProgressCallback | None = None
) -> list[tuple[SavedCheckpoint, str]]:
    """Evaluate the base model and every saved checkpoint of every run; returns (checkpoint,
    fingerprint) pairs. Only what is not in the store yet is computed."""
    if experiment.spec.full_finetune:
        raise InputError(
            "Sweeps swap LoRA adapters on one base model; this experiment trains every weight "
            "(full_finetune: true), so each checkpoint is a whole model: evaluate them with "
            "`aftertune eval CHECKPOINT_FOLDER` instead."
        )
    store = ResultsStore(experiment.run_dir)
    ensure_tables(store)
    model = HFModel(
        experiment.base_folder,
        name=experiment.base_name,
        dtype=experiment.spec.dtype,
        trust_remote_code=experiment.spec.trust_remote_code,
        allow_pickle=experiment.spec.allow_pickle,
    )
    done: list[tuple[SavedCheckpoint, str]] = []
    try:
        for suite in experiment.suites.values():
            run_suite(suite, model, store, progress, label=BASE_LABEL)
        todo = [
            (arm, c) for arm in experiment.spec.arms for s in experiment.spec.seeds
            for c in saved_checkpoints(experiment, arm, s)
        ]  # fmt: skip
        for n, (arm, checkpoint) in enumerate(todo):
            report(progress, "checkpoints", n, len(todo))
            name = f"{checkpoint.run}/step{checkpoint.step}"
            model.load_adapter(checkpoint.folder, name=name)
            result = run_suite(experiment.suites[arm], model, store, progress, label=name)
            model.unload_adapter(name)
            known = {s.step for s in tracked_steps(store, checkpoint.run)}
            if checkpoint.step not in known:
                record_step(
                    store,
                    TrackedStep(
                        checkpoint.run,
                        checkpoint.step,
                        result.model,
                        checkpoint.train_loss,
                        str(checkpoint.folder),
                    ),
                )
            done.append((checkpoint, result.model))
        report(progress, "checkpoints", len(todo), len(todo))
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
