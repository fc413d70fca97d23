"""Executors run compare tasks: here (``local``), in worker processes (``pool``) or on a Ray
cluster (``ray``, an optional extra). Each one is registered in ``EXECUTORS``; adding a backend
is one module with a class implementing ``run(tasks) -> Iterator[TaskOutcome]`` and ``close()``.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable

from losscli.app.executors.base import EXECUTORS, Executor, register_executor  # noqa: F401
from losscli.app.executors.task import InfrastructureError, Task, TaskOutcome, execute_task  # noqa: F401

__all__ = ["EXECUTORS", "Executor", "register_executor", "InfrastructureError", "Task", "TaskOutcome", "execute_task",
           "check_executor", "make_executor"]


def _import_backends() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if mod.name not in ("base", "task") and not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


def check_executor(name: str | None, **options: Any) -> None:
    """Raise the one-line UsageError for an unknown backend, one whose extra is not installed, or
    options it can tell are wrong before any work (Ray: an address where nothing answers)."""
    if name is None:
        return
    _import_backends()
    check = getattr(EXECUTORS.get(name), "check", None)
    if check is not None:
        check(**options)


def make_executor(name: str | None, jobs: int, log: Callable[[str], None] | None = None, **options: Any) -> Executor:
    """The named executor (``None``: ``local`` for one job, ``pool`` for more)."""
    _import_backends()
    name = name or ("local" if jobs <= 1 else "pool")
    return EXECUTORS.get(name)(jobs=jobs, log=log, **options)
