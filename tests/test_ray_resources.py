"""What each Ray task asks the cluster for (no Ray needed): CPUs from ``threads``, GPUs from the
device and ``--gpus-per-run`` (fractions pack small runs on one GPU; a stacked group goes to one GPU
whole), and Ray's retries for lost workers only, never for a run's own failure."""

from __future__ import annotations

import pytest

from losscli.app.compare.grid import expand_grid
from losscli.app.executors.ray import MAX_RETRIES, RayExecutor
from losscli.app.executors.task import Task
from losscli.errors import UsageError
from tests.grids import tiny_config


def _executor(gpus: float, gpus_per_run: float | None, started: bool = False) -> RayExecutor:
    """A RayExecutor as it is after connecting to a cluster with ``gpus`` GPUs (no Ray here)."""
    ex = object.__new__(RayExecutor)
    ex.gpus, ex.gpus_per_run, ex.started, ex.log, ex._warned, ex._pinned = gpus, gpus_per_run, started, None, False, {}
    return ex


def _task(device: str, runs: int, threads: int | None = None) -> Task:
    specs = expand_grid(tiny_config(device=device, losses=["ce"], seeds=runs, threads=threads))
    return Task(specs, [None] * runs)


@pytest.mark.parametrize("device,gpus_per_run,runs,want", [
    ("cuda", None, 1, 1.0),  # a run on CUDA holds one GPU
    ("cuda", 0.25, 1, 0.25),  # four such runs share one GPU
    ("cuda", 0.25, 3, 0.75),  # a stacked group holds its runs' shares...
    ("cuda", 0.25, 8, 1.0),  # ...on one device: at most one GPU
    ("cuda", None, 4, 1.0),
    ("auto", None, 1, 1.0),  # auto on a cluster with GPUs: CUDA there
    ("cpu", None, 2, 0.0),
])
def test_gpus_per_task(device, gpus_per_run, runs, want):
    options = _executor(2.0, gpus_per_run)._options(_task(device, runs))
    assert options["num_gpus"] == pytest.approx(want)
    assert options["max_retries"] == MAX_RETRIES and options["retry_exceptions"] is False


def test_cpus_per_task_follow_threads_and_auto_uses_no_gpu_without_any():
    assert _executor(2.0, None)._options(_task("cpu", 1, threads=3))["num_cpus"] == 3
    assert _executor(0.0, None)._options(_task("auto", 1))["num_gpus"] == 0.0


def test_gpus_that_cannot_be_used_are_one_line():
    with pytest.raises(UsageError, match="--gpus-per-run 0.5 with --device cpu"):
        _executor(2.0, 0.5)._options(_task("cpu", 1))
    with pytest.raises(UsageError, match="Ray instance has none"):  # a local instance on a machine without GPUs
        _executor(0.0, 0.5, started=True)._options(_task("cuda", 1))
