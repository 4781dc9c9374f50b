"""`run_experiment`: every arm x seed of a spec trained with TRL's SFTTrainer + peft, and tracked.

Layout of a run directory:

    RUN_DIR/experiment.json               the validated spec (a re-run must match it)
    RUN_DIR/results.sqlite                every generation, judgement, eval report, tracked step, gate
    RUN_DIR/runs/ARM/seedS/stageK/        the trainer's output: checkpoint-N/ (adapters), final/

Resumable at any point: a finished run is skipped, an interrupted stage continues from its last
checkpoint (optimizer, scheduler and RNG state included), and every evaluation already stored is
read back instead of recomputed, because results are keyed by the exact weights that made them.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from transformers import TrainerCallback

from aftertune.atomic import write_text
from aftertune.config import CONFIG_FILE, EXPERIMENT_FILE
from aftertune.data.training import TrainingData, TrainingExample, load_training_data
from aftertune.errors import InputError
from aftertune.evals.suite import Eval, run_suite
from aftertune.evals.suite_config import build_suite
from aftertune.judges.judgement import Judge
from aftertune.models.hf import HFModel, folder_fingerprint
from aftertune.models.load import resolve_hf_folder
from aftertune.models.protocol import Message
from aftertune.models.trust import LoadPolicy, check_adapter_folder, check_model_folder
from aftertune.progress import ProgressCallback, report
from aftertune.store import ResultsStore
from aftertune.train.records import ensure_tables, run_status, set_checkpoint, set_run_status, tracked_steps
from aftertune.train.spec import BUILTIN_PREFIX, BUILTIN_SIZE, DataSource, ExperimentSpec, Stage
from aftertune.train.tracking import BASE_LABEL, TrackingCallback

SPEC_FILE = EXPERIMENT_FILE
#: Seed of the held-out split: the same examples are held out for every training seed, so the
#: task loss of different seeds is measured on the same items.
HOLDOUT_SEED = 0


@dataclass(frozen=True)
class RunOutcome:
    """How one arm x seed run ended."""

    run: str
    status: str
    reason: str


@dataclass(frozen=True)
class Experiment:
    """A spec made ready to run: data loaded and split, suites built, the base model located."""

    spec: ExperimentSpec
    run_dir: Path
    base_folder: Path
    base_name: str
    base_fingerprint: str
    #: arm -> stage -> training data (held-out examples removed from the last stage)
    train_data: dict[str, list[TrainingData]]
    suites: dict[str, list[Eval]]
    #: False: training only saves checkpoints and a later sweep evaluates them (`run --ray`); runs
    #: with gates still evaluate in training, since a gate must see a checkpoint before training goes on
    evaluate_in_training: bool = True

    def run_label(self, arm: str, seed: int) -> str:
        return f"{arm}/seed{seed}"

    def stage_dir(self, arm: str, seed: int, stage: int) -> Path:
        return self.run_dir / "runs" / arm / f"seed{seed}" / f"stage{stage}"


def prepare_experiment(
    spec: ExperimentSpec,
    base_dir: Path,
    run_dir: Path,
    *,
    judge_for: Any = None,
) -> Experiment:
    """Check everything cheap first (data files, suite, run directory) before any model loads."""
    holdout = spec.holdout
    train_data: dict[str, list[TrainingData]] = {}
    heldout: dict[str, list[tuple[str, tuple[Message, ...]]]] = {}
    for arm_name, arm in spec.arms.items():
        stages = [load_stage_data(stage.data, base_dir) for stage in arm.all_stages]
        if holdout:
            stages[-1], heldout[arm_name] = split_holdout(stages[-1], holdout, f"arm '{arm_name}'")
        train_data[arm_name] = stages
    judges: dict[str, Judge] = {}

    def shared_judge(name: str) -> Judge:
        if name not in judges:
            from aftertune.judges.load import load_judge

            judges[name] = (judge_for or load_judge)(name)
        return judges[name]

    suites = {
        arm: build_suite(
            spec.eval.suite, base_dir=base_dir, heldout=heldout.get(arm, ()), judge_for=shared_judge
        )
        for arm in spec.arms
    }
    check_run_dir(spec, base_dir, run_dir)
    policy = load_policy(spec)
    folder, name = resolve_hf_folder(
        spec.base_model, allow_pickle=policy.allow_pickle, trust_remote_code=policy.trust_remote_code
    )
    check_model_folder(folder, policy)  # before any training: no pickle, no code of its own unless opted in
    return Experiment(
        spec, run_dir, folder, name, folder_fingerprint(folder, name, spec.dtype), train_data, suites
    )


def run_experiment(experiment: Experiment, progress: ProgressCallback | None = None) -> list[RunOutcome]:
    """Evaluate the base model, then train and track every arm x seed; returns how each run ended."""
    spec, store = experiment.spec, ResultsStore(experiment.run_dir)
    ensure_tables(store)
    try:
        if _is_main_process() and experiment.evaluate_in_training:  # under accelerate, process 0
            evaluate_base(experiment, store, progress)
        outcomes = []
        for arm in spec.arms:
            for seed in spec.seeds:
                outcomes.append(train_run(experiment, store, arm, seed, progress))
        return outcomes
    finally:
        store.close()


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def evaluate_base(experiment: Experiment, store: ResultsStore, progress: ProgressCallback | None) -> None:
    """The base model on every arm's suite, once (stored results are reused)."""
    model = HFModel(
        experiment.base_folder,
        name=experiment.base_name,
        dtype=experiment.spec.dtype,
        trust_remote_code=experiment.spec.trust_remote_code,
        allow_pickle=experiment.spec.allow_pickle,
    )
    for suite in experiment.suites.values():
        run_suite(suite, model, store, progress, label=BASE_LABEL)
    del model


def train_run(
    experiment: Experiment, store: ResultsStore, arm: str, seed: int, progress: ProgressCallback | None
) -> RunOutcome:
    """One arm x seed: its stages in order, each resumed from its last checkpoint if interrupted."""
    spec = experiment.spec
    label = experiment.run_label(arm, seed)
    previous = run_status(store, label)
    if previous is not None and previous[0] in ("done", "stopped_by_gate"):
        return RunOutcome(label, previous[0], previous[1])
    set_run_status(store, label, "running")
    notes: list[str] = []
    step_offset = 0
    previous_adapter: Path | None = None
    for index, stage in enumerate(spec.arms[arm].all_stages):
        folder = experiment.stage_dir(arm, seed, index)
        data = experiment.train_data[arm][index]
        done = _finished_stage(folder)
        if done is None:
            stopped, _ = _train_stage(
                experiment, store, arm, seed, index, stage, data, previous_adapter, step_offset, progress
            )
            if stopped:
                state = run_status(store, label)
                return RunOutcome(label, "stopped_by_gate", state[1] if state else "")
            done = _finished_stage(folder)
            assert done is not None
        # from stage.json, so a stage finished before an interruption keeps its note too
        steps, note = done
        notes.append(note)
        step_offset += steps
        previous_adapter = folder / "final"
    set_run_status(store, label, "done", detail=json.dumps({"data_notes": notes}))
    return RunOutcome(label, "done", "")


def _train_stage(
    experiment: Experiment,
    store: ResultsStore,
    arm: str,
    seed: int,
    index: int,
    stage: Stage,
    data: TrainingData,
    previous_adapter: Path | None,
    step_offset: int,
    progress: ProgressCallback | None,
) -> tuple[bool, str]:
    """Train one stage; returns (stopped by a gate, the data note)."""
    with warnings.catch_warnings():
        # peft and TRL ask the model the deprecated `is_gradient_checkpointing`: nothing a user can fix
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return _train_stage_quietly(
            experiment, store, arm, seed, index, stage, data, previous_adapter, step_offset, progress
        )


def _train_stage_quietly(
    experiment: Experiment,
    store: ResultsStore,
    arm: str,
    seed: int,
    index: int,
    stage: Stage,
    data: TrainingData,
    previous_adapter: Path | None,
    step_offset: int,
    progress: ProgressCallback | None,
) -> tuple[bool, str]:
    import datasets
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from transformers.utils import logging as hf_logging
    from trl import SFTConfig, SFTTrainer

    from aftertune.train.tokenize import tokenize_for_sft

    datasets.disable_progress_bars()  # the library stays silent; the CLI draws its own bars
    hf_logging.set_verbosity_error()
    spec = experiment.spec
    arm_spec = spec.arms[arm]
    settings = spec.training.merged(arm_spec.training).merged(stage.training)
    folder = experiment.stage_dir(arm, seed, index)
    folder.mkdir(parents=True, exist_ok=True)
    label = experiment.run_label(arm, seed)
    policy = load_policy(spec)
    trust, safetensors = policy.trust_remote_code, policy.use_safetensors
    tokenizer = AutoTokenizer.from_pretrained(str(experiment.base_folder), trust_remote_code=trust)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows, lengths = tokenize_for_sft(data, tokenizer, settings.max_length, settings.too_long)
    note = f"{arm} stage {index} ({data.source}): {lengths.note()}"
    if not rows:
        raise InputError(
            f"{note}: no training row is left. Raise training.max_length or use too_long: truncate."
        )
    if not settings.assistant_only_loss:
        rows = [{"input_ids": r["input_ids"], "labels": list(r["input_ids"])} for r in rows]
    resume = last_complete_checkpoint(folder)
    if resume is not None and _trained_to_the_end(Path(resume)):
        # Killed while the final adapter was saved: the last checkpoint holds the last step's weights,
        # evaluated before it was saved. Resumed from it, the trainer would train a step past max_steps.
        _finish_stage(store, label, folder, step_offset, _copy_as_final(Path(resume)), note)
        return False, note
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[spec.dtype]
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(experiment.base_folder), dtype=dtype, trust_remote_code=trust, use_safetensors=safetensors
    )
    peft_config = None
    if previous_adapter is not None and not spec.full_finetune:
        from peft import PeftModel

        # the previous stage's adapter, which this run saved (safetensors: checked, not assumed)
        check_adapter_folder(previous_adapter, LoadPolicy())
        model = PeftModel.from_pretrained(model, str(previous_adapter), is_trainable=True)
    elif previous_adapter is not None:
        model = AutoModelForCausalLM.from_pretrained(
            str(previous_adapter), dtype=dtype, trust_remote_code=trust, use_safetensors=True
        )
    elif not spec.full_finetune:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=spec.lora.r,
            lora_alpha=spec.lora.alpha,
            lora_dropout=spec.lora.dropout,
            target_modules=spec.lora.target_modules,
            task_type="CAUSAL_LM",
        )
    every = spec.eval.every
    args = SFTConfig(
        output_dir=str(folder),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup_ratio,  # below 1: a fraction of the total steps (transformers 5)
        weight_decay=settings.weight_decay,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation,
        max_length=settings.max_length,
        logging_steps=max(1, min(every or 10, 10)),
        save_strategy="steps" if every else "no",
        save_steps=every or 1,
        seed=seed,
        data_seed=seed,
        report_to=[],
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        activation_checkpointing=settings.gradient_checkpointing,
    )
    tracking: TrackingCallback | None = None
    if experiment.evaluate_in_training or spec.parsed_gates:
        tracking = TrackingCallback(
            experiment.suites[arm],
            store,
            every=every,
            gates=spec.parsed_gates,
            run=label,
            base_fingerprint=experiment.base_fingerprint,
            at_end=spec.eval.at_end,
            step_offset=step_offset,
            seed=seed,
            progress=progress,
        )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    if tracking is not None:
        tracking.attach(trainer)
    trainer.remove_callback(PrinterCallback)  # it prints every log dict; the CLI shows progress bars
    trainer.add_callback(_TrainingProgress(f"training {label} stage {index}", progress))
    trainer.train(resume_from_checkpoint=resume)
    if tracking is not None and tracking.stopped_by:
        return True, note
    trainer.save_model(str(folder / "final"))
    _finish_stage(store, label, folder, step_offset, trainer.state.global_step, note)
    return False, note


def _finish_stage(
    store: ResultsStore, label: str, folder: Path, step_offset: int, steps: int, note: str
) -> None:
    """Note the final adapter of the stage's last step, then mark the stage finished."""
    final = folder / "final"
    if any(s.step == step_offset + steps for s in tracked_steps(store, label)):
        set_checkpoint(store, label, step_offset + steps, str(final))
    # Written last: its presence marks the stage finished.
    write_text(folder / "stage.json", json.dumps({"steps": steps, "data_note": note}) + "\n")


#: what a checkpoint holds besides the weights, needed only to resume training
_TRAINING_STATE = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth", "trainer_state.json")


def _trained_to_the_end(checkpoint: Path) -> bool:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return 0 < int(state.get("max_steps", 0)) <= int(state["global_step"])


def _copy_as_final(checkpoint: Path) -> int:
    """Make a checkpoint's weights the stage's final folder (as `save_model` writes it); its step."""
    ignore = shutil.ignore_patterns(*_TRAINING_STATE)
    shutil.copytree(checkpoint, checkpoint.parent / "final", ignore=ignore, dirs_exist_ok=True)
    return int(json.loads((checkpoint / "trainer_state.json").read_text())["global_step"])


def last_complete_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint the trainer finished writing; half-written ones (a kill during a save)
    are removed. The trainer writes trainer_state.json last, so it marks a complete checkpoint."""
    complete: list[tuple[int, Path]] = []
    for checkpoint in folder.glob("checkpoint-*"):
        step = checkpoint.name.removeprefix("checkpoint-")
        if not step.isdigit():
            continue
        if is_complete_checkpoint(checkpoint):
            complete.append((int(step), checkpoint))
        else:
            shutil.rmtree(checkpoint, ignore_errors=True)
    return str(max(complete)[1]) if complete else None


def is_complete_checkpoint(checkpoint: Path) -> bool:
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def _finished_stage(folder: Path) -> tuple[int, str] | None:
    """(steps, data note) of a finished stage, or None when it has not finished."""
    marker = folder / "stage.json"
    if not marker.is_file():
        return None
    saved = json.loads(marker.read_text())
    return int(saved["steps"]), str(saved.get("data_note", ""))


class _TrainingProgress(TrainerCallback):
    """Reports training steps to the library's progress callback (the CLI draws a bar)."""

    def __init__(self, stage: str, progress: ProgressCallback | None) -> None:
        self.stage = stage
        self.progress = progress

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        report(self.progress, self.stage, state.global_step, state.max_steps)


def load_stage_data(source: DataSource, base_dir: Path) -> TrainingData:
    """A stage's data: a built-in set, a file relative to the spec, or a hub dataset id."""
    if source.source.startswith(BUILTIN_PREFIX):
        from aftertune.data.code_dataset import code_training_set

        name = source.source.removeprefix(BUILTIN_PREFIX)
        arm = name.removesuffix("_code")
        rows = code_training_set(arm, source.limit or BUILTIN_SIZE, seed=0)  # type: ignore[arg-type]
        return TrainingData(
            source.source, "builtin", tuple(TrainingExample(m, i + 1) for i, m in enumerate(rows))
        )
    local = base_dir / source.source
    target: str | Path = local if local.exists() else source.source
    return load_training_data(target, split=source.split, limit=source.limit)


def split_holdout(
    data: TrainingData, n: int, what: str
) -> tuple[TrainingData, list[tuple[str, tuple[Message, ...]]]]:
    """Hold `n` examples out of training (seeded, the same for every training seed); ids are content
    hashes, so items are paired only with the same example elsewhere."""
    if len(data.examples) < n + 1:
        raise InputError(
            f"{what}: {len(data.examples)} examples cannot spare {n} for the held-out task loss. "
            "Lower eval.suite task_loss.holdout or give more data."
        )
    order = list(range(len(data.examples)))
    random.Random(HOLDOUT_SEED).shuffle(order)
    held = set(order[:n])
    kept = tuple(ex for i, ex in enumerate(data.examples) if i not in held)
    out = []
    for i in sorted(held):
        messages = data.examples[i].messages
        digest = hashlib.sha256(json.dumps([[m.role, m.content] for m in messages]).encode()).hexdigest()
        out.append((f"ex-{digest[:12]}", messages))
    return TrainingData(data.source, data.format, kept), out


def load_policy(spec: ExperimentSpec) -> LoadPolicy:
    """What loading the base model may run: the spec's opt-ins (both off by default)."""
    return LoadPolicy(allow_pickle=spec.allow_pickle, trust_remote_code=spec.trust_remote_code)


def check_run_dir(spec: ExperimentSpec, base_dir: Path, run_dir: Path) -> None:
    """A run directory holds one experiment: a re-run must bring the same spec (it then resumes)."""
    path = run_dir / SPEC_FILE
    current = spec.model_dump(mode="json")
    if not path.is_file() and (run_dir / CONFIG_FILE).is_file():
        raise InputError(
            f"{run_dir} holds the results of another command (its {CONFIG_FILE} is that of `aftertune "
            "eval`, `judge` or `audit`), whose summary an experiment would overwrite. Choose another "
            "--out directory."
        )
    ResultsStore(run_dir).close()  # a foreign or damaged store is refused before anything is written
    if path.is_file():
        if _saved_spec(path) != current:
            raise InputError(
                f"{run_dir} holds another experiment (its {SPEC_FILE} differs from this spec). Running "
                "the same spec again resumes it; for a changed spec choose a new --out directory."
            )
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"spec": current, "base_dir": str(base_dir)}, indent=2) + "\n")
    tmp.rename(path)


def _saved_spec(path: Path) -> Any:
    """The spec a run directory holds, fields added to aftertune since filled in with their defaults."""
    saved = _read_spec_file(path)["spec"]
    try:
        return ExperimentSpec.model_validate(saved).model_dump(mode="json")
    except ValidationError:
        return saved


def load_experiment(run_dir: Path) -> Experiment:
    """The experiment a run directory holds (for sweeps and reports)."""
    path = run_dir / SPEC_FILE
    if not path.is_file():
        raise InputError(
            f"{run_dir} holds no {SPEC_FILE}, so it is not a directory written by `aftertune run`. "
            "Give the --out directory of a run (default aftertune_runs/<experiment name>)."
        )
    saved = _read_spec_file(path)
    try:
        spec = ExperimentSpec.model_validate(saved["spec"])
    except ValidationError as e:
        raise InputError(
            f"{path} holds a spec this aftertune cannot read ({e.error_count()} problems, the first: "
            f"{e.errors()[0]['msg']}). Use the aftertune version that wrote it, or run the spec file "
            "again with `aftertune run SPEC --out NEW_DIR`."
        ) from e
    return prepare_experiment(spec, Path(saved["base_dir"]), run_dir)


def _read_spec_file(path: Path) -> dict[str, Any]:
    """The saved {"spec", "base_dir"} of a run directory; an unreadable or foreign file is an InputError."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = None  # unreadable, or torn by hand: it was written whole (temp file + rename)
    if not isinstance(saved, dict) or not isinstance(saved.get("spec"), dict) or "base_dir" not in saved:
        raise InputError(
            f"{path} is not an experiment file written by `aftertune run` (damaged, or another "
            "program's). Move it away and run `aftertune run SPEC --out DIR` again to resume this "
            "directory with that spec, or choose another --out directory."
        )
    return saved
