"""Group a grid's pending runs into tasks: stacked groups where runs can train together exactly,
single runs otherwise (and the log says why)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from losscli.app.executors.task import Task
from losscli.engine.runspec import RunSpec

MAX_GROUP = 64  # runs stacked into one vmapped model at most


def plan_tasks(specs: list[RunSpec], run_dirs: list[Path], batch: bool,
               log: Callable[[str], None] | None = None) -> list[Task]:
    if not batch:
        return [Task([s], [d]) for s, d in zip(specs, run_dirs)]
    from losscli.engine.batched import batchable
    from losscli.engine.build import build_run_loss, build_run_model, load_base_data

    groups: dict[str, list[tuple[RunSpec, Path]]] = {}
    singles: list[Task] = []
    said: set[str] = set()
    cache: dict = {}
    for spec, run_dir in zip(specs, run_dirs):
        base = load_base_data(spec, cache)
        loss_fn = build_run_loss(spec, base)
        reason = batchable(loss_fn, build_run_model(spec, base, loss_fn))
        if reason:
            if log and reason not in said:
                log(f"not batched: {reason}; those runs train one by one")
                said.add(reason)
            singles.append(Task([spec], [run_dir]))
        else:
            groups.setdefault(spec.batch_group(), []).append((spec, run_dir))
    tasks = []
    for members in groups.values():
        for i in range(0, len(members), MAX_GROUP):
            chunk = members[i:i + MAX_GROUP]
            tasks.append(Task([s for s, _ in chunk], [d for _, d in chunk]))
    return tasks + singles


def use_batching(batch_runs: bool | None, device: str, log: Callable[[str], None] | None) -> bool:
    """Explicit ``batch_runs``, else on for CUDA (launch-bound tiny models) and off on CPU."""
    if batch_runs is not None:
        return batch_runs
    from losscli.device import resolve_device

    on_cuda = resolve_device(device).type == "cuda"
    if log and not on_cuda:
        log("runs train one by one on CPU (stacked training is not faster there; --batch-runs forces it)")
    return on_cuda


def resolve_jobs(jobs: int | None, device: str, n_tasks: int) -> int:
    """Explicit ``jobs``, else one worker per CPU core on CPU (runs are single-threaded there)
    and one process on CUDA (runs are batched on the device instead)."""
    import os

    from losscli.device import resolve_device

    if jobs is not None:  # never more workers than tasks (--jobs 10**9 announced a billion processes)
        return max(1, min(jobs, n_tasks))
    if resolve_device(device).type == "cuda":
        return 1
    return max(1, min(os.cpu_count() or 1, n_tasks))
