"""Distributed sweeps with Ray: checkpoint x suite work units fanned out to a cluster.

Each Ray worker (an actor) loads the experiment's base model once and evaluates units by attaching a
checkpoint's LoRA adapter, running the arm's suite, and detaching it again (no weight reload). A
worker runs on its own copy of the run's results store, so it reuses every result already stored, and
sends back only the rows it added; the driver merges them into the one store as each unit finishes,
in one transaction per unit. Rows are merged by primary key, so a unit that Ray retries after a lost
worker, or that an interrupted sweep runs again, is stored exactly once.

Workers read the run directory (experiment.json, the training data, the checkpoint folders): on
several machines it must be on a shared filesystem at the same path (see the README's multi-node
recipe). The results store itself is written only by the driver.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aftertune.errors import InputError
from aftertune.progress import ProgressCallback, report
from aftertune.store import STORE_FILE, ResultsStore, StoreRows, new_rows
from aftertune.train.records import ensure_tables
from aftertune.train.runner import Experiment
from aftertune.train.sweep import (
    SavedCheckpoint,
    SweepUnit,
    check_sweepable,
    record_checkpoint,
    sweep_units,
)

#: `--ray local` starts a Ray instance inside this process instead of joining a cluster.
LOCAL = "local"


@dataclass(frozen=True)
class UnitResult:
    """What a worker sends back for one unit: the evaluated model's fingerprint and the new rows."""

    unit: SweepUnit
    fingerprint: str
    rows: StoreRows


@dataclass(frozen=True)
class WorkerShape:
    """How many workers to start and what each one reserves on the cluster."""

    workers: int
    cpus: float
    gpus: float


def worker_shape(
    resources: dict[str, float], units: int, workers: int | None, cpus_per_worker: float
) -> WorkerShape:
    """One worker per GPU when the cluster has GPUs, else one per `cpus_per_worker` CPUs; never more
    workers than units. `workers` overrides the count."""
    gpus = int(resources.get("GPU", 0))
    if workers is None:
        workers = gpus if gpus else int(resources.get("CPU", 1) // cpus_per_worker)
    if workers < 1:
        raise InputError(
            f"--ray-workers must be at least 1 (the cluster offers {resources.get('CPU', 0):g} CPUs and "
            f"{gpus} GPUs; each worker asks for {cpus_per_worker:g} CPUs)."
        )
    return WorkerShape(max(1, min(workers, units)), cpus_per_worker, 1.0 if gpus else 0.0)


class SweepWorker:
    """A Ray actor: one loaded base model, adapters swapped per unit."""

    def __init__(self, run_dir: str, snapshot: bytes, backend: str = "hf") -> None:
        from aftertune.train.runner import load_experiment
        from aftertune.train.sweep import load_base

        self.experiment = load_experiment(Path(run_dir))
        self.model = load_base(self.experiment, backend)
        self.folder = Path(tempfile.mkdtemp(prefix="aftertune-ray-worker-"))
        self.start = self.folder / "start.sqlite"
        self.start.write_bytes(snapshot)

    def evaluate(self, unit: SweepUnit) -> UnitResult:
        from aftertune.train.sweep import evaluate_unit

        work = Path(tempfile.mkdtemp(dir=self.folder))
        try:
            shutil.copyfile(self.start, work / STORE_FILE)
            store = ResultsStore(work)
            try:
                ensure_tables(store)
                fingerprint = evaluate_unit(self.experiment, self.model, store, unit)
            finally:
                store.close()
            return UnitResult(unit, fingerprint, new_rows(work / STORE_FILE, self.start))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def pid(self) -> int:
        return os.getpid()


def ray_sweep(
    experiment: Experiment,
    address: str,
    progress: ProgressCallback | None = None,
    *,
    workers: int | None = None,
    cpus_per_worker: float = 1.0,
    backend: str = "hf",
) -> list[tuple[SavedCheckpoint, str]]:
    """`sweep_experiment` on a Ray cluster: the same units, the same store, the same results.

    `address` is what `ray.init` takes ("auto", "HOST:PORT", "ray://HOST:10001"), or "local".
    Returns (checkpoint, fingerprint) pairs in unit order.
    """
    check_sweepable(experiment)
    ray = _import_ray()
    store = ResultsStore(experiment.run_dir)
    done: dict[SweepUnit, str] = {}
    try:
        ensure_tables(store)
        units = sweep_units(experiment)
        checkpoints = sum(u.checkpoint is not None for u in units)
        with _connected(ray, address):
            from ray.util import ActorPool

            shape = worker_shape(ray.cluster_resources(), len(units), workers, cpus_per_worker)
            actor = ray.remote(num_cpus=shape.cpus, num_gpus=shape.gpus, max_restarts=1, max_task_retries=1)(
                SweepWorker
            )
            snapshot = ray.put(store.snapshot())
            pool = ActorPool(
                [
                    actor.remote(str(experiment.run_dir.resolve()), snapshot, backend)
                    for _ in range(shape.workers)
                ]
            )
            report(progress, "checkpoints (ray)", 0, checkpoints)
            results: Iterator[UnitResult] = pool.map_unordered(lambda a, u: a.evaluate.remote(u), units)
            for result in results:
                store.merge(result.rows)
                record_checkpoint(store, result.unit, result.fingerprint)
                done[result.unit] = result.fingerprint
                finished = sum(u.checkpoint is not None for u in done)
                report(progress, "checkpoints (ray)", finished, checkpoints)
    finally:
        store.close()
    return [(u.checkpoint, done[u]) for u in units if u.checkpoint is not None]


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise InputError(
            "--ray needs Ray, which is not installed: pip install 'aftertune[ray]' (on every node of "
            "the cluster, in the same environment as aftertune)."
        ) from e
    return ray


@contextmanager
def _connected(ray: Any, address: str) -> Iterator[None]:
    """Join the cluster at `address` (or start a local one) for the block, then leave it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports from an offline tool
    already = ray.is_initialized()
    if not already:
        try:
            ray.init(
                address=None if address == LOCAL else address,
                include_dashboard=False,
                log_to_driver=False,
                logging_level="WARNING",
                configure_logging=True,
            )
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise InputError(
                f"Cannot join the Ray cluster at '{address}': {e}. Start one with `ray start --head` and "
                "give its address (HOST:PORT, or 'auto' on a cluster node), or use --ray local."
            ) from e
    try:
        yield
    finally:
        if not already:
            ray.shutdown()
