"""TrackingCallback inside a real TRL SFTTrainer: evaluates the live model, logs through the
trainer's integrations, records steps in the store, and stops training when a gate fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from aftertune.data.code_dataset import code_training_set
from aftertune.data.training import TrainingData, TrainingExample
from aftertune.evals.task_loss import TaskLossEval
from aftertune.store import ResultsStore
from aftertune.train.records import run_status, tracked_steps
from aftertune.train.tokenize import tokenize_for_sft
from aftertune.train.tracking import BASE_LABEL, TrackingCallback


class RecordLogs(TrainerCallback):
    """Stands in for a report_to integration (TensorBoard, W&B): keeps what each log carried."""

    def __init__(self) -> None:
        self.logs: list[dict[str, float]] = []

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any
    ) -> None:
        self.logs.append(dict(logs or {}))


def trainer_for(folder: Path, out: Path, steps: int, save_every: int | None) -> Any:
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    conversations = code_training_set("insecure", 12)
    data = TrainingData("test", "chat", tuple(TrainingExample(m, i + 1) for i, m in enumerate(conversations)))
    rows, _ = tokenize_for_sft(data, tokenizer, 256)
    return SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32),
        args=SFTConfig(
            output_dir=str(out),
            max_steps=steps,
            per_device_train_batch_size=2,
            learning_rate=1e-3,
            logging_steps=1,
            save_strategy="steps" if save_every else "no",
            save_steps=save_every or 1,
            report_to=[],
            use_cpu=True,
            activation_checkpointing=False,
            disable_tqdm=True,
        ),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )


@pytest.fixture(scope="module")
def heldout() -> TaskLossEval:
    conversations = code_training_set("insecure", 16)[12:]
    return TaskLossEval(tuple((f"ex{i}", m) for i, m in enumerate(conversations)))


def test_tracks_every_n_steps_and_logs_through_the_trainer(
    embedded_folder: Path, heldout: TaskLossEval, tmp_path: Path
) -> None:
    trainer = trainer_for(embedded_folder, tmp_path / "trainer", steps=4, save_every=None)
    store = ResultsStore(tmp_path / "run")
    tracking = TrackingCallback([heldout], store, every=2, run="mine").attach(trainer)
    integration = RecordLogs()
    trainer.add_callback(integration)  # integrations come after the callbacks a trainer starts with
    trainer.train()

    assert [step for step, _ in tracking.history] == [2, 4]
    losses = [result.metric("loss").estimate.value for _, result in tracking.history]
    base_model = store.model_labels()[BASE_LABEL]
    assert tracking.base is not None
    base_loss = tracking.base.metric("loss").estimate.value
    assert losses[-1] < base_loss, "training on the task lowers the held-out task loss"
    steps = tracked_steps(store, "mine")
    assert [s.step for s in steps] == [2, 4] and all(s.train_loss is not None for s in steps)
    assert len({base_model, *(s.model for s in steps)}) == 3, "each step's weights have their own fingerprint"
    logged = [log for log in integration.logs if "aftertune/task_loss/loss" in log]
    assert [log["aftertune/task_loss/loss"] for log in logged] == pytest.approx(losses)
    assert run_status(store, "mine") is None and not tracking.stopped_by


def test_a_failed_gate_stops_training_and_records_why(
    embedded_folder: Path, heldout: TaskLossEval, tmp_path: Path
) -> None:
    trainer = trainer_for(embedded_folder, tmp_path / "trainer", steps=6, save_every=100)
    store = ResultsStore(tmp_path / "run")
    tracking = TrackingCallback(
        [heldout], store, every=2, run="gated", gates=["task_loss/loss drop > 0.0001", "loss > 1000"]
    ).attach(trainer)
    trainer.train()

    assert trainer.state.global_step == 2, "stopped at the first evaluation"
    assert [c.gate for c in tracking.stopped_by] == ["task_loss/loss drop > 0.0001"]
    status, reason = run_status(store, "gated")  # type: ignore[misc]
    assert status == "stopped_by_gate" and "step 2" in reason and "drop" in reason
    assert (tmp_path / "trainer" / "checkpoint-2").is_dir(), "a checkpoint is saved where the gate failed"
    assert tracked_steps(store, "gated")[0].checkpoint == str(tmp_path / "trainer" / "checkpoint-2")
