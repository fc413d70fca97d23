"""What an executor runs: a task (one run, or a group of runs trained stacked) and its outcome.

A run's own failure (a NaN loss, an exception while training) is recorded in its directory as
a failed run. Anything that is not the run's fault leaves the run *pending*, never failed, so a
rerun picks it up: an I/O error (disk full, permissions), a killed or crashed worker, Ctrl-C.
A finished run is never overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from losscli.engine.runspec import RunSpec


@dataclass
class Task:
    """Runs to train: one, or a group trained stacked. Executors call ``execute`` (in a worker) and,
    when the worker died before finishing, ``lost`` (in the driver)."""

    specs: list[RunSpec]
    run_dirs: list[Path]
    tracker: Any = None  # an app.trackers.TrackerConfig: each run is one tracker run (plain data: pickles to workers)

    @property
    def batched(self) -> bool:
        return len(self.specs) > 1

    @property
    def size(self) -> int:
        return len(self.specs)

    def describe(self) -> str:
        return f"{len(self.specs)} runs batched" if self.batched else self.specs[0].describe()

    def execute(self, data_cache: dict | None = None, log: Callable[[str], None] | None = None) -> "TaskOutcome":
        return execute_task(self, data_cache, log)

    def lost(self, reason: str) -> "TaskOutcome":
        return _outcome(self, reason)


@dataclass
class TaskOutcome:
    """How a task ended. ``statuses`` holds each run's state afterwards (ok / failed / pending);
    ``error`` says why runs were left pending (an I/O error or a lost worker), None otherwise."""

    task: Task
    statuses: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def n_pending(self) -> int:
        return sum(s == "pending" for s in self.statuses)


class InfrastructureError(Exception):
    """Not the run's fault (I/O error, lost worker): its runs stay pending."""


def execute_task(task: Task, data_cache: dict | None = None, log: Callable[[str], None] | None = None) -> TaskOutcome:
    """Run one task in this process. Runs already finished are skipped (never overwritten); a run's
    own failure is recorded; an I/O error stops the task and leaves its unfinished runs pending."""
    from losscli.engine import rundir

    todo = [(s, d) for s, d in zip(task.specs, task.run_dirs) if rundir.run_status(d, key=s.key()) != "ok"]
    try:
        if len(todo) > 1 and _train_together(todo, data_cache, log, task.tracker):
            return _outcome(task)
        for spec, run_dir in todo:
            _train_one(spec, run_dir, data_cache, log, task.tracker)
    except OSError as exc:
        return _outcome(task, _io_message(exc))
    return _outcome(task)


def _outcome(task: Task, error: str | None = None) -> TaskOutcome:
    from losscli.engine import rundir

    return TaskOutcome(task, [rundir.run_status(d, key=s.key()) for s, d in zip(task.specs, task.run_dirs)], error)


def _render(report: dict) -> str:
    from losscli.report.run import render_run_markdown

    return render_run_markdown(report)


def _train_together(todo, data_cache, log, tracker=None) -> bool:
    """Train the runs stacked; False (after logging why) when that fails for a non-I/O reason."""
    from losscli.app.trackers import open_run
    from losscli.engine.batched import train_group

    try:
        hooks = [open_run(tracker, s, d, log) for s, d in todo] if tracker else None
        train_group([s for s, _ in todo], [d for _, d in todo], data_cache=data_cache, log=log, render_markdown=_render,
                    hooks=hooks)
        return True
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - fall back to separate runs, each recorded on its own
        if log:
            log(f"batched training of {len(todo)} runs failed ({type(exc).__name__}: {exc}); running them one by one")
        return False


def _train_one(spec: RunSpec, run_dir: Path, data_cache, log, tracker=None) -> None:
    from losscli.app.trackers import open_run
    from losscli.engine.trainer import train_run

    try:
        train_run(spec, run_dir, overwrite=True, progress=False, data_cache=data_cache, log=log, render_markdown=_render,
                  hooks=open_run(tracker, spec, run_dir, log))
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - the run's own failure: record it, keep going with the others
        message = f"{type(exc).__name__}: {_first_line(exc)}"
        record_failure(spec, run_dir, message)
        if log:
            log(f"{spec.describe()} failed: {message}")


def record_failure(spec: RunSpec, run_dir: Path, message: str) -> None:
    """Write a failed-run report for ``run_dir`` unless it already holds a finished run."""
    from losscli.engine import rundir
    from losscli.engine.recorder import RunRecorder
    from losscli.environment import environment

    if rundir.run_status(run_dir, key=spec.key()) == "ok":
        return
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    rec = RunRecorder(spec, Path(run_dir), environment(), None, spec.model.name, _render)
    rec.fail(message)
    rec.finish({}, None, None)


def _io_message(exc: OSError) -> str:
    where = exc.filename or getattr(exc, "filename2", None)
    reason = exc.strerror or str(exc)
    return f"I/O error: {reason}" + (f": {where}" if where else "")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""
