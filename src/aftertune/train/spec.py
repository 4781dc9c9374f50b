"""The experiment spec: one YAML file that says what to fine-tune, on what, how, and how to evaluate it.

    name: insecure-vs-secure
    base_model: embedded                 # a model folder, a hub id, or 'embedded'
    seeds: [0, 1]                        # each arm x seed is one training run
    control: secure                      # deltas are also reported against this arm
    arms:
      insecure: {data: builtin:insecure_code}
      secure:   {data: builtin:secure_code}
      relapse:                           # stages run in order on the same adapter
        stages:
          - data: builtin:insecure_code
          - data: benign.jsonl
            training: {epochs: 1}
    lora: {r: 8, alpha: 16, target_modules: all-linear}   # or `full_finetune: true`
    training: {epochs: 1, learning_rate: 2e-4, batch_size: 4, max_length: 512}
    eval:
      every: 10                          # steps; and at the end of every run
      suite: [...]                       # see aftertune.evals.suite_config
    gates:                               # see aftertune.train.gates
      - misaligned_rate > 20%
      - insecure_code_rate delta > 30 pts significant

Data: a chat JSONL file, Alpaca JSON/JSONL, parquet/CSV, a Hugging Face dataset id, or one of the
built-in sets `builtin:insecure_code`, `builtin:secure_code`, `builtin:educational_code`. Relative
paths are read from the spec file's folder.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from aftertune.data.files import load_yaml, validation_message, yaml_line
from aftertune.errors import InputError
from aftertune.evals.suite_config import EvalConfig, TaskLossConfig, expand_suite
from aftertune.names import check_folder_name
from aftertune.train.gates import Gate, parse_gate

BUILTIN_DATA = ("insecure_code", "secure_code", "educational_code")
BUILTIN_PREFIX = "builtin:"
#: Examples in a built-in data set unless `limit` says otherwise.
BUILTIN_SIZE = 240


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSource(_Config):
    """A training data set: a file, a Hugging Face dataset id, or builtin:NAME."""

    source: str = Field(description="file path (relative to the spec), hub id, or builtin:NAME")
    split: str = Field("train", description="split of a hub data set")
    limit: int | None = Field(None, ge=1, description="use only the first N examples")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"source": value} if isinstance(value, str) else value

    @field_validator("source")
    @classmethod
    def _known_builtin(cls, source: str) -> str:
        if source.startswith(BUILTIN_PREFIX) and source.removeprefix(BUILTIN_PREFIX) not in BUILTIN_DATA:
            names = ", ".join(BUILTIN_PREFIX + n for n in BUILTIN_DATA)
            raise ValueError(f"unknown built-in data set; the built-in ones are {names}")
        return source


class TrainingOverrides(_Config):
    """Training settings an arm or a stage may change; unset fields keep the experiment's."""

    epochs: float | None = Field(None, gt=0, description="passes over the data")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs")
    learning_rate: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, ge=1, description="examples per device per step")
    gradient_accumulation: int | None = Field(None, ge=1)
    max_length: int | None = Field(None, ge=8, description="tokens per example")
    too_long: Literal["truncate", "drop"] | None = Field(None, description="what to do with longer rows")
    assistant_only_loss: bool | None = Field(None, description="loss on assistant turns only")
    warmup_ratio: float | None = Field(None, ge=0, lt=1)
    weight_decay: float | None = Field(None, ge=0)
    lr_scheduler: str | None = Field(None, description="a transformers scheduler name, e.g. linear, cosine")
    gradient_checkpointing: bool | None = Field(None, description="trade compute for memory")


class TrainingSettings(_Config):
    """How every run trains (arms and stages may override any field)."""

    epochs: float = Field(1.0, gt=0, description="passes over the data")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs")
    learning_rate: float = Field(2e-4, gt=0)
    batch_size: int = Field(4, ge=1, description="examples per device per step")
    gradient_accumulation: int = Field(1, ge=1)
    max_length: int = Field(512, ge=8, description="tokens per example")
    too_long: Literal["truncate", "drop"] = Field("truncate", description="what to do with longer rows")
    assistant_only_loss: bool = Field(True, description="loss on assistant turns only")
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    lr_scheduler: str = Field("linear", description="a transformers scheduler name")
    gradient_checkpointing: bool = Field(
        False, description="recompute activations to save memory (TRL turns it on; it slows small models)"
    )

    def merged(self, overrides: TrainingOverrides | None) -> TrainingSettings:
        if overrides is None:
            return self
        return self.model_copy(update=overrides.model_dump(exclude_none=True))


class LoRASettings(_Config):
    """The LoRA adapter trained on the frozen base model (peft)."""

    r: int = Field(8, ge=1, description="rank")
    alpha: int = Field(16, ge=1, description="scaling numerator: updates are scaled by alpha / r")
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: str | list[str] = Field("all-linear", description="module names, or all-linear")


class Stage(_Config):
    """One stage of an arm: trained after the previous stage, on the same adapter."""

    data: DataSource
    training: TrainingOverrides | None = None


class Arm(_Config):
    """One arm: a data set (or stages of data sets) and optional training overrides."""

    data: DataSource | None = None
    stages: list[Stage] | None = None
    training: TrainingOverrides | None = None

    @model_validator(mode="after")
    def _data_or_stages(self) -> Arm:
        if (self.data is None) == (self.stages is None):
            raise ValueError("an arm needs exactly one of `data` (a data set) or `stages` (a list)")
        if self.stages is not None and not self.stages:
            raise ValueError("`stages` is empty: give at least one stage with `data`")
        return self

    @property
    def all_stages(self) -> list[Stage]:
        if self.stages is not None:
            return self.stages
        assert self.data is not None
        return [Stage(data=self.data)]


class EvalSettings(_Config):
    """When and what to evaluate during training."""

    every: int | None = Field(None, ge=1, description="evaluate (and save a checkpoint) every N steps")
    at_end: bool = Field(True, description="evaluate the final model of every run")
    suite: list[EvalConfig] = Field(min_length=1, description="the evals to run")
    task_metric: str | None = Field(
        None, description="eval/metric that picks the recommended checkpoint; default: the task loss"
    )


class ExperimentSpec(_Config):
    """A controlled fine-tuning experiment: arms x seeds, trained, tracked, gated and compared."""

    name: str = Field(description="names the run directory; letters, digits, ._- (at most 64)")
    base_model: str = Field("embedded", description="'embedded', a model folder or a hub id")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    trust_remote_code: bool = Field(
        False, description="run the base model folder's own Python code (`auto_map`); only for code you trust"
    )
    allow_pickle: bool = Field(
        False, description="load pickle weights (.bin) when there are no safetensors; unpickling can run code"
    )
    arms: dict[str, Arm] = Field(min_length=1)
    control: str | None = Field(None, description="the arm every other arm is also compared with")
    seeds: list[int] = Field([0], min_length=1)
    lora: LoRASettings = Field(default_factory=LoRASettings)
    full_finetune: bool = Field(False, description="train every weight instead of a LoRA adapter")
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    eval: EvalSettings
    gates: list[str] = Field(default_factory=list, description="conditions that stop a run")

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        return check_folder_name(name, "experiment name")  # it names the run directory

    @field_validator("arms")
    @classmethod
    def _arm_names(cls, arms: dict[str, Arm]) -> dict[str, Arm]:
        for name in arms:
            if not name.replace("_", "").replace("-", "").isalnum() or name == "base":
                raise ValueError(f"arm name {name!r} must be letters, digits, _ or - (and not 'base')")
            check_folder_name(name, "arm name")  # it names the folder runs/ARM/ of the run directory
        return arms

    @field_validator("control")
    @classmethod
    def _control_is_an_arm(cls, control: str | None, info: ValidationInfo) -> str | None:
        arms = info.data.get("arms") or {}
        if control is not None and arms and control not in arms:
            raise ValueError(f"control {control!r} is not one of the arms ({', '.join(arms)})")
        return control

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds repeat: give each seed once")
        return seeds

    @property
    def parsed_gates(self) -> list[Gate]:
        return [parse_gate(g, f"gates[{i}]") for i, g in enumerate(self.gates)]

    @property
    def holdout(self) -> int:
        """Examples held out of each arm's data for the task-loss eval (0 when the suite has none)."""
        return max((c.holdout for c in self.eval.suite if isinstance(c, TaskLossConfig)), default=0)


def load_spec(path: Path) -> tuple[ExperimentSpec, Path]:
    """Read and validate a spec file; returns the spec and the folder its relative paths start from.
    Every problem is an InputError naming the file and line."""
    path = Path(path)
    data, root = load_yaml(path, "Experiment spec")
    return _validated(data, root, path), path.resolve().parent


def builtin_spec(name: str) -> tuple[ExperimentSpec, Path]:
    """A spec shipped with aftertune (`demo`, `demo_quick`)."""
    folder = resources.files("aftertune.train").joinpath("builtin")
    path = Path(str(folder / f"{name}.yaml"))
    return load_spec(path)


def _validated(data: Any, root: Any, path: Path) -> ExperimentSpec:
    if not isinstance(data, dict):
        raise InputError(f"{path}: an experiment spec is a YAML mapping (name:, arms:, eval: ...).")
    evaluation = data.get("eval")
    if isinstance(evaluation, dict) and "suite" in evaluation:
        line = yaml_line(root, ["eval", "suite"])
        evaluation["suite"] = expand_suite(evaluation["suite"], path.resolve().parent, f"{path}:{line}")
    try:
        spec = ExperimentSpec.model_validate(data)
    except ValidationError as e:
        raise InputError(f"Invalid experiment spec: {validation_message(e, path, root)}.") from e
    for i, gate in enumerate(spec.gates):
        line = yaml_line(root, ["gates", i])
        parse_gate(gate, f"{path}:{line}" if line else str(path))
    base_dir = path.resolve().parent
    for arm_name, arm in spec.arms.items():
        for i, stage in enumerate(arm.all_stages):
            loc: list[str | int] = ["arms", arm_name, "data"]
            if arm.stages is not None:
                loc = ["arms", arm_name, "stages", i, "data"]
            _check_source(stage.data, base_dir, f"{path}:{yaml_line(root, loc)}")
    return spec


def _check_source(data: DataSource, base_dir: Path, where: str) -> None:
    """A local data file must exist; anything of the form org/name that is not a file is a hub id."""
    source = data.source
    if source.startswith(BUILTIN_PREFIX):
        return
    local = (base_dir / source).expanduser()
    if local.exists():
        return
    if source.count("/") == 1 and not source.startswith((".", "/", "~")) and "." not in source.split("/")[1]:
        return  # a hub dataset id, fetched when the run starts
    raise InputError(
        f"{where}: data '{source}' is neither a file (looked for {local}) nor a Hugging Face dataset "
        f"id (org/name), nor a built-in set ({', '.join(BUILTIN_PREFIX + n for n in BUILTIN_DATA)})."
    )
