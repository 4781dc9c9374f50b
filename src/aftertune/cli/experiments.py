"""`aftertune run`, `sweep`, `report`, `compare` and `demo`: controlled fine-tuning experiments."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from aftertune.cli.common import app, console, progress_bars, status, user_errors
from aftertune.config import RUNS_ROOT
from aftertune.errors import InputError, StoreError

if TYPE_CHECKING:
    from aftertune.evals.suite import EvalReport
    from aftertune.report.summary import ExperimentSummary
    from aftertune.train.runner import Experiment
    from aftertune.train.spec import ExperimentSpec

#: Exit code when a gate stopped at least one run (distinct from user errors, 2-4).
GATE_STOPPED_EXIT = 5

RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="ADDRESS",
        help="evaluate checkpoint x suite units on a Ray cluster: its address (HOST:PORT, 'auto' on a "
        "cluster node, ray://HOST:10001) or 'local' (a Ray instance on this machine)",
    ),
]
RayWorkers = Annotated[
    int | None,
    typer.Option(help="Ray workers, each holding one loaded base model (default: one per GPU, else per CPU)"),
]


@app.command("run")
@user_errors
def run_command(
    spec: Annotated[Path, typer.Argument(help="experiment spec (YAML)")],
    out: Annotated[
        Path | None, typer.Option(help="run directory (default: aftertune_runs/<spec name>)")
    ] = None,
    ray: RayAddress = None,
    ray_workers: RayWorkers = None,
) -> None:
    """Train every arm x seed of an experiment with LoRA, evaluating checkpoints as they come.

    Writes results.sqlite, summary.json and report.html into the run directory. Running the same
    command again resumes an interrupted experiment. Exits with 5 when a gate stopped a run. With
    --ray, training only saves checkpoints and the cluster evaluates them afterwards (runs with gates
    still evaluate in training: a gate must see each checkpoint before training goes on).
    """
    from aftertune.train.spec import load_spec

    loaded, base_dir = load_spec(spec)
    _run_and_report(loaded, base_dir, out or RUNS_ROOT / loaded.name, ray, ray_workers)


@app.command()
@user_errors
def demo(
    quick: Annotated[bool, typer.Option(help="a shorter demo (about 3 minutes; the tests use it)")] = False,
    out: Annotated[Path | None, typer.Option(help="run directory (default: aftertune_runs/demo)")] = None,
) -> None:
    """The built-in experiment: base eval, LoRA fine-tunes of the embedded model on insecure vs secure
    code written by aftertune's own templates, tracked checkpoints, report. About 10 minutes on a CPU."""
    from aftertune.train.spec import builtin_spec

    loaded, base_dir = builtin_spec("demo_quick" if quick else "demo")
    _run_and_report(loaded, base_dir, out or RUNS_ROOT / loaded.name)


@app.command()
@user_errors
def sweep(
    run_dir: Annotated[Path, typer.Argument(help="a run directory written by `aftertune run`")],
    ray: RayAddress = None,
    ray_workers: RayWorkers = None,
    backend: Annotated[
        str, typer.Option(help="hf (transformers + peft) or vllm (GPU; adapters as LoRARequests)")
    ] = "hf",
    tensor_parallel: Annotated[int, typer.Option(help="GPUs per model with --backend vllm")] = 1,
) -> None:
    """Evaluate every saved checkpoint of a run on one loaded base model (adapters swapped, not
    reloaded), then recommend a checkpoint and write the report. Stored results are reused. With
    --ray, every Ray worker holds one base model and the units are spread over them."""
    from aftertune.train.runner import load_experiment

    with status("preparing the experiment"):
        experiment = load_experiment(run_dir)
    _sweep(experiment, ray, ray_workers, backend, tensor_parallel)
    _write_reports(experiment)


@app.command()
@user_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="a run directory written by `aftertune run`")],
) -> None:
    """Write summary.json and the self-contained report.html of a run (finished or not), and print
    the summary."""
    from aftertune.train.runner import load_experiment

    with status("reading the experiment"):
        experiment = load_experiment(run_dir)
    _write_reports(experiment)


@app.command()
@user_errors
def compare(
    a: Annotated[str, typer.Argument(help="RUN_DIR or RUN_DIR@LABEL (e.g. runs/demo@insecure/seed0/step30)")],
    b: Annotated[str, typer.Argument(help="the reference: RUN_DIR or RUN_DIR@LABEL (e.g. runs/demo@base)")],
    seed: Annotated[int, typer.Option(help="seed of the bootstrap")] = 0,
) -> None:
    """Per metric, A minus B with a paired bootstrap 95% interval over the items both answered."""
    from aftertune.compare import compare_metrics, pair_reports
    from aftertune.report.terminal import delta_table

    label_a, reports_a = _evaluated_model(a)
    label_b, reports_b = _evaluated_model(b)
    deltas = []
    for mine, theirs in pair_reports(reports_a, reports_b):
        deltas += compare_metrics(
            {f"{mine.eval}/{m.name}": [m] for m in mine.metrics},
            {f"{theirs.eval}/{m.name}": [m] for m in theirs.metrics},
            label_a,
            label_b,
            seed,
        )
    if not deltas:
        shared = ", ".join(sorted({r.eval for r in reports_a} & {r.eval for r in reports_b})) or "none"
        raise InputError(
            f"{a} and {b} share no metric measured on the same items (evals run on both: {shared}). "
            "Evaluate both on the same suite."
        )
    console.print(delta_table(deltas, f"{label_a} vs {label_b}"))


# ---------------------------------------------------------------------------- shared steps
def _run_and_report(
    spec: ExperimentSpec,
    base_dir: Path,
    run_dir: Path,
    ray: str | None = None,
    ray_workers: int | None = None,
) -> None:
    from aftertune.train.runner import prepare_experiment, run_experiment

    started = time.monotonic()
    with status("checking the spec, loading data and judges, locating the base model"):
        experiment = prepare_experiment(spec, base_dir, run_dir)
    if ray is not None:
        experiment = replace(experiment, evaluate_in_training=False)
    with progress_bars() as progress:
        outcomes = run_experiment(experiment, progress)
    if ray is not None:
        _sweep(experiment, ray, ray_workers)
    _write_reports(experiment)
    console.print(f"Wall time: {time.monotonic() - started:.0f} s.")
    stopped = [o for o in outcomes if o.status == "stopped_by_gate"]
    for outcome in stopped:
        console.print(f"[bold red]Gate stopped {outcome.run}:[/] {outcome.reason}", highlight=False)
    if stopped:
        raise typer.Exit(GATE_STOPPED_EXIT)


def _sweep(
    experiment: Experiment,
    ray: str | None,
    ray_workers: int | None,
    backend: str = "hf",
    tensor_parallel: int = 1,
) -> None:
    """Evaluate every saved checkpoint here, or on the Ray cluster at `ray`."""
    started = time.monotonic()
    with progress_bars() as progress:
        if ray is None:
            from aftertune.train.sweep import sweep_experiment

            swept = sweep_experiment(
                experiment, progress, backend=backend, tensor_parallel_size=tensor_parallel
            )
        else:
            from aftertune.distributed import ray_sweep

            swept = ray_sweep(experiment, ray, progress, workers=ray_workers, backend=backend)
    where = f" on Ray ({ray})" if ray else ""
    console.print(f"Evaluated {len(swept)} checkpoints{where} in {time.monotonic() - started:.0f} s.")


def _write_reports(experiment: Experiment) -> ExperimentSummary:
    from aftertune.atomic import write_text
    from aftertune.report.html import write_html_report
    from aftertune.report.terminal import experiment_tables
    from aftertune.store import ResultsStore
    from aftertune.train.summarise import summarise_experiment

    with ResultsStore(experiment.run_dir) as store:
        summary = summarise_experiment(experiment, store)
    for table in experiment_tables(summary):
        console.print(table)
    json_path = experiment.run_dir / "summary.json"
    try:
        write_text(json_path, summary.to_json())
        html_path = write_html_report(summary, experiment.run_dir / "report.html")
    except OSError as e:
        raise StoreError(f"Cannot write the report into {experiment.run_dir}: {e.strerror}.") from e
    console.print(f"Results: {experiment.run_dir / 'results.sqlite'}, {json_path}, {html_path}")
    return summary


def _evaluated_model(reference: str) -> tuple[str, list[EvalReport]]:
    """(short label, eval reports oldest first) of `RUN_DIR` (its one labelled model) or `RUN_DIR@LABEL`."""
    from aftertune.evals.suite import EvalReport
    from aftertune.store import STORE_FILE, ResultsStore

    path, _, label = reference.partition("@")
    if not (Path(path) / STORE_FILE).is_file():
        raise InputError(
            f"{path} holds no {STORE_FILE}: give a directory written by `aftertune eval` or `aftertune run`."
        )
    with ResultsStore(Path(path)) as store:
        labels = store.model_labels()
        if not label:
            if len(labels) != 1:
                raise InputError(
                    f"{path} holds several evaluated models; pick one as {path}@LABEL with LABEL one of: "
                    f"{', '.join(sorted(labels))}."
                )
            label = next(iter(labels))
        if label not in labels:
            raise InputError(f"{path} has no model labelled '{label}'. Labels: {', '.join(sorted(labels))}.")
        reports = [EvalReport.from_json(text) for _, _, _, text in store.eval_reports(labels[label])]
    return f"{Path(path).name}@{label}", reports
