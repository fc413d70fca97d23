"""The executor registry and the interface every backend implements."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol

from losscli.registry import Registry


class Executor(Protocol):
    """Runs tasks; yields one :class:`~losscli.app.executors.task.TaskOutcome` per task as it ends.

    ``close()`` cancels what has not run yet and stops the workers (idempotent; also called on
    Ctrl-C). Runs that were in flight when work stopped stay pending and are picked up by a rerun.
    """

    def run(self, tasks: list) -> Iterator[Any]:
        ...

    def close(self) -> None:
        ...


EXECUTORS: Registry[Callable[..., Executor]] = Registry("executor")


def register_executor(name: str, doc: str = "") -> Callable:
    def decorator(cls):
        EXECUTORS.add(name, cls, doc=doc or (cls.__doc__ or "").strip().splitlines()[0])
        return cls

    return decorator
