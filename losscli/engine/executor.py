"""Executors run compare tasks: in this process, or in a pool of worker processes.

A task is a list of RunSpecs that train together (batched) or a single one. Tasks write
their results to their run directories; executors only report completion, so a
distributed backend can implement the same two-method interface later.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

from losscli.engine.spec import RunSpec


@dataclass
class Task:
    specs: list[RunSpec]
    run_dirs: list[Path]
    batched: bool

    def describe(self) -> str:
        if self.batched:
            return f"{len(self.specs)} runs batched"
        s = self.specs[0]
        return f"{s.loss_label} seed {s.seed} noise {s.noise} imbalance {s.imbalance}"


class Executor(Protocol):
    def run(self, tasks: list[Task]) -> Iterator[tuple[Task, str | None]]:
        """Yield (task, error message or None) as tasks finish."""
        ...


def execute_task(task: Task, data_cache: dict | None = None, log: Callable[[str], None] | None = None) -> None:
    """Run one task; exceptions inside a run are recorded as that run's failure, never raised.

    A batched task that fails as a whole is retried run by run, so one bad run cannot take
    the others down with it.
    """
    from losscli.engine.batched import train_group

    if task.batched:
        try:
            train_group(task.specs, task.run_dirs, data_cache=data_cache, log=log)
            return
        except Exception as exc:  # noqa: BLE001 - fall back to separate runs, each recorded on its own
            if log:
                log(f"batched training of {len(task.specs)} runs failed ({type(exc).__name__}: {exc}); running them one by one")
    for spec, run_dir in zip(task.specs, task.run_dirs):
        _run_single(spec, run_dir, data_cache, log)


def _run_single(spec: RunSpec, run_dir: Path, data_cache: dict | None, log) -> None:
    from losscli.engine.rundir import read_report
    from losscli.engine.trainer import train_run

    try:
        train_run(spec, run_dir, overwrite=True, progress=False, data_cache=data_cache, log=log)
    except Exception as exc:  # noqa: BLE001 - record the failure, keep going with the other runs
        _write_failure(spec, run_dir, f"{type(exc).__name__}: {exc}")
        if log:
            log(f"{spec.loss_label} seed {spec.seed} failed: {type(exc).__name__}: {exc}")
        return
    report = read_report(run_dir)
    assert report is not None


def _write_failure(spec: RunSpec, run_dir: Path, message: str) -> None:
    from losscli.engine.device import environment, resolve_device
    from losscli.engine.recorder import RunRecorder

    Path(run_dir).mkdir(parents=True, exist_ok=True)
    try:
        device = resolve_device(spec.device)
    except Exception:  # noqa: BLE001
        import torch

        device = torch.device("cpu")
    rec = RunRecorder(spec, Path(run_dir), environment(device, False, None), None, spec.model.name)
    rec.fail(message)
    rec.finish({}, None, None)


class SequentialExecutor:
    """Runs tasks one after another in this process (sharing the loaded data)."""

    def __init__(self, log: Callable[[str], None] | None = None):
        self.log = log
        self.cache: dict = {}

    def run(self, tasks: list[Task]) -> Iterator[tuple[Task, str | None]]:
        for task in tasks:
            execute_task(task, self.cache, self.log)
            yield task, None


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


_WORKER_CACHE: dict = {}  # datasets loaded by this worker process, reused across its tasks


def _worker(task: Task) -> None:
    execute_task(task, _WORKER_CACHE, None)


class PoolExecutor:
    """Runs tasks in ``jobs`` worker processes (spawned: safe with torch), threads split evenly."""

    def __init__(self, jobs: int, log: Callable[[str], None] | None = None):
        self.jobs = jobs
        self.log = log

    def run(self, tasks: list[Task]) -> Iterator[tuple[Task, str | None]]:
        import multiprocessing as mp

        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=self.jobs, mp_context=ctx, initializer=_worker_init,
                                 initargs=(threads,)) as pool:
            futures = {pool.submit(_worker, t): t for t in tasks}
            for fut in as_completed(futures):
                task = futures[fut]
                err = None
                try:
                    fut.result()
                except Exception as exc:  # noqa: BLE001 - a crashed worker: its runs have no report
                    err = f"{type(exc).__name__}: {exc}"
                    for spec, run_dir in zip(task.specs, task.run_dirs):
                        _write_failure(spec, run_dir, f"worker crashed: {err}")
                yield task, err


def make_executor(jobs: int, log: Callable[[str], None] | None = None) -> Executor:
    return SequentialExecutor(log) if jobs <= 1 else PoolExecutor(jobs, log)
