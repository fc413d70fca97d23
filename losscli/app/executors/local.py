"""The ``local`` executor: tasks one after another in this process, sharing the loaded data."""

from __future__ import annotations

from typing import Any, Callable, Iterator

from losscli.app.executors.base import register_executor


@register_executor("local")
class LocalExecutor:
    """Runs tasks one after another in this process (sharing the loaded data)."""

    def __init__(self, jobs: int = 1, log: Callable[[str], None] | None = None, **_: Any):
        self.log = log
        self.cache: dict = {}

    def run(self, tasks: list) -> Iterator:
        for task in tasks:
            yield task.execute(self.cache, self.log)

    def close(self) -> None:
        self.cache.clear()
