"""`TrackingCallback`: evaluate a model while it trains, in any transformers/TRL training loop.

    from aftertune import TrackingCallback, ResultsStore
    tracking = TrackingCallback(suite, ResultsStore("runs/mine"), every=50, gates=[
        "misaligned_rate > 5%", "insecure_code_rate delta > 10 pts significant"])
    trainer = SFTTrainer(model=..., args=..., train_dataset=..., peft_config=...)
    tracking.attach(trainer)          # or callbacks=[tracking]; attach also logs through report_to
    trainer.train()
    if tracking.stopped_by: ...       # the gates that stopped training

Every N steps the model in training is evaluated through the `Model` protocol (wrapped, not reloaded),
results go to the results store, scalars to the trainer's `report_to` integrations (TensorBoard, W&B,
MLflow), and the gates are checked: a failed gate stops training (`control.should_training_stop`),
saves a checkpoint there, and is recorded with its reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import (
    DefaultFlowCallback,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from aftertune.compare import metric_delta
from aftertune.errors import AftertuneError, InputError
from aftertune.evals.suite import (
    Eval,
    EvalReport,
    SuiteResult,
    check_unique_names,
    resolve_metric_name,
    run_suite,
)
from aftertune.models.fingerprint import sampled_tensors_digest
from aftertune.models.hf import HFModel
from aftertune.progress import ProgressCallback
from aftertune.stats import Estimate
from aftertune.store import ResultsStore
from aftertune.train.gates import Gate, GateCheck, check_gate, parse_gate
from aftertune.train.records import (
    TrackedStep,
    ensure_tables,
    record_gate_checks,
    record_step,
    set_checkpoint,
    set_run_status,
    set_train_loss,
)

BASE_LABEL = "base"
#: Prefix of the scalars logged through the trainer's integrations (aftertune/misalignment/misaligned_rate).
LOG_PREFIX = "aftertune/"


class TrackingCallback(TrainerCallback):
    """Evaluates the model in training on `suite` every `every` steps (and at the end), checks gates."""

    def __init__(
        self,
        suite: Sequence[Eval],
        store: ResultsStore | str | Path,
        *,
        every: int | None,
        gates: Sequence[Gate | str] = (),
        run: str = "run",
        base_fingerprint: str | None = None,
        at_end: bool = True,
        step_offset: int = 0,
        batch_size: int = 16,
        seed: int = 0,
        progress: ProgressCallback | None = None,
    ) -> None:
        if every is not None and every < 1:
            raise InputError(f"TrackingCallback: every must be a positive number of steps, got {every}.")
        check_unique_names(suite)
        self.suite = list(suite)
        self.store = store if isinstance(store, ResultsStore) else ResultsStore(Path(store))
        ensure_tables(self.store)
        self.every = every
        self.gates = [g if isinstance(g, Gate) else parse_gate(g, f"gates[{i}]") for i, g in enumerate(gates)]
        self.run = run
        self.at_end = at_end
        #: steps before this trainer's first (a later stage of a run continues the step count)
        self.step_offset = step_offset
        self.batch_size = batch_size
        self.seed = seed
        self.progress = progress
        self.base_fingerprint = base_fingerprint
        self._model: HFModel | None = None
        #: the base model's results (deltas in gates pair against them); None until training starts
        self.base: SuiteResult | None = None
        self._pending_logs: dict[str, float] = {}
        self._evaluated: set[int] = set()
        #: (step, results) of every evaluation in this training, in order
        self.history: list[tuple[int, SuiteResult]] = []
        #: the failed gate checks that stopped training (empty when none did)
        self.stopped_by: list[GateCheck] = []

    def attach(self, trainer: Any) -> TrackingCallback:
        """Add this callback to `trainer` right after its flow callback, before the report_to
        integrations, so the scalars it adds to each log reach TensorBoard/W&B/MLflow."""
        callbacks = trainer.callback_handler.callbacks
        flow = [i for i, c in enumerate(callbacks) if isinstance(c, DefaultFlowCallback)]
        position = flow[0] + 1 if flow else 0
        callbacks.insert(position, self)
        return self

    # ------------------------------------------------------------------ trainer events
    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        model, tokenizer = kwargs.get("model"), kwargs.get("processing_class")
        if model is None or tokenizer is None:
            raise AftertuneError(
                "TrackingCallback needs the trainer's model and tokenizer: pass `processing_class=tokenizer` "
                "(or `tokenizer=`) to the trainer."
            )
        if not state.is_world_process_zero:
            return  # with several processes (accelerate/DDP) the first one evaluates
        base = self.base_fingerprint or f"hf-weights:{_base_weights_digest(model)}"
        self._model = HFModel.from_loaded(
            model, tokenizer, name=self.run, base_fingerprint=base, batch_size=self.batch_size
        )
        self.base = self._evaluate_base(model, state)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.every and state.global_step % self.every == 0:
            if state.is_world_process_zero:
                self._evaluate(state, control)
            _share_stop_decision(control)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if (
            self.at_end
            and state.is_world_process_zero
            and not self.stopped_by
            and state.global_step not in self._evaluated
        ):
            self._evaluate(state, control)

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        folder = Path(str(args.output_dir)) / f"checkpoint-{state.global_step}"
        if state.global_step in self._evaluated and folder.is_dir():
            set_checkpoint(self.store, self.run, state.global_step + self.step_offset, str(folder))

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs is None:
            return
        if "loss" in logs and state.global_step in self._evaluated:
            # The trainer logs a step's loss after the step's callbacks ran: note it now.
            set_train_loss(self.store, self.run, state.global_step + self.step_offset, float(logs["loss"]))
        if self._pending_logs:
            logs.update(self._pending_logs)
            self._pending_logs.clear()

    # ------------------------------------------------------------------ evaluation
    def _evaluate_base(self, model: Any, state: TrainerState) -> SuiteResult | None:
        """The base model's results: evaluated with the adapter switched off (LoRA), or before the
        first step (full fine-tuning); reused from the store whenever they are there."""
        assert self._model is not None
        if hasattr(model, "disable_adapter") and getattr(model, "peft_config", None):
            with model.disable_adapter():
                return run_suite(self.suite, self._model, self.store, self.progress, label=BASE_LABEL)
        if state.global_step == 0:
            return run_suite(self.suite, self._model, self.store, self.progress, label=BASE_LABEL)
        return _stored_result(self.store, self.suite, self.store.model_labels().get(BASE_LABEL))

    def _evaluate(self, state: TrainerState, control: TrainerControl) -> None:
        assert self._model is not None, "on_train_begin was not called"
        step = state.global_step + self.step_offset
        result = run_suite(self.suite, self._model, self.store, self.progress, label=f"{self.run}/step{step}")
        self._evaluated.add(state.global_step)
        self.history.append((step, result))
        record_step(self.store, TrackedStep(self.run, step, result.model, _last_loss(state), None))
        checks = self.check_gates(result)
        record_gate_checks(self.store, self.run, step, checks)
        for name, metric in result.metrics.items():
            self._pending_logs[f"{LOG_PREFIX}{name}"] = metric.estimate.value
        failed = [c for c in checks if c.failed]
        self._pending_logs[f"{LOG_PREFIX}gates_failed"] = float(len(failed))
        control.should_log = True
        if failed:
            self.stopped_by = failed
            reason = "; ".join(f"step {step}: gate '{c.gate}' {c.reason}" for c in failed)
            detail = json.dumps({"step": step, "gates": [c.gate for c in failed]})
            set_run_status(self.store, self.run, "stopped_by_gate", reason, detail)
            control.should_training_stop = True
            control.should_save = True

    def check_gates(self, result: SuiteResult) -> list[GateCheck]:
        """Every gate on `result`, deltas paired against the base model's results."""
        checks = []
        for gate in self.gates:
            try:
                name = resolve_metric_name(gate.metric, list(result.metrics))
            except InputError as e:
                checks.append(GateCheck(gate.text, gate.metric, False, None, f"not checked: {e}"))
                continue
            value: Estimate | None = result.metrics[name].estimate
            delta = None
            if gate.delta and self.base is not None and name in self.base.metrics:
                delta = metric_delta([result.metrics[name]], [self.base.metrics[name]], seed=self.seed)
            checks.append(check_gate(gate, value, delta))
        return checks


def _share_stop_decision(control: TrainerControl) -> None:
    """With several training processes only the first evaluates: every process takes its decision
    to stop, so none is left waiting for the others at the next step."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        decision = [bool(control.should_training_stop)]
        dist.broadcast_object_list(decision, src=0)
        if decision[0]:
            control.should_training_stop = True
            control.should_save = True


def _stored_result(store: ResultsStore, suite: Sequence[Eval], model: str | None) -> SuiteResult | None:
    if model is None:
        return None
    reports = []
    for ev in suite:
        text = store.get_eval_report(model, ev.name, ev.digest)
        if text is not None:
            reports.append(EvalReport.from_json(text))
    return SuiteResult(model, tuple(reports)) if reports else None


def _base_weights_digest(model: Any) -> str:
    """A digest of the frozen base weights (a peft model's adapter tensors left out)."""
    return sampled_tensors_digest({name: p for name, p in model.named_parameters() if "lora_" not in name})


def _last_loss(state: TrainerState) -> float | None:
    """The training loss most recently logged (the trainer logs every `logging_steps`)."""
    for entry in reversed(state.log_history):
        if "loss" in entry:
            return float(entry["loss"])
    return None
