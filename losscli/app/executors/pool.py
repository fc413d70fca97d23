"""The ``pool`` executor: tasks in worker processes (spawned: safe with torch), threads split evenly.

Reliability: a worker that dies (the OOM killer, a segfault) breaks the pool; the tasks that had
not finished are resubmitted to a fresh pool (each at most ``MAX_ATTEMPTS`` times) and their
runs are never marked failed. Workers die with the parent (``PR_SET_PDEATHSIG`` on Linux and a
watchdog thread everywhere), ignore Ctrl-C (the parent handles it and stops them), and skip
runs that are already finished, so a resubmitted task never overwrites a result.
"""

from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterator

from losscli.app.executors.base import register_executor

#: a task whose worker died this many times is given up (its runs stay pending)
MAX_ATTEMPTS = 3
_QUIET_TRACKER = "ignore::UserWarning:multiprocessing.resource_tracker"
_WORKER_CACHE: dict = {}  # datasets loaded by this worker process, reused across its tasks


def _worker_init(threads: int, parent: int) -> None:
    import signal
    import threading
    import time

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _die_with_parent()

    def watchdog() -> None:  # portable fallback: the parent's pid changes when it dies
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(1.0)

    threading.Thread(target=watchdog, daemon=True).start()
    import torch

    torch.set_num_threads(threads)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when its parent exits (no-op elsewhere)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _start_quiet_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (if not running yet) with its warnings off.

    Stopping workers on Ctrl-C can leave the pool's queue semaphores to the tracker, which cleans
    them up and warns in several lines: keep the promised one-line exit. The tracker is a separate
    process that reads PYTHONWARNINGS when it starts (otherwise lazily, at the pool's first
    semaphore; one already running is left as it is), so the variable is set only while we start
    it here: this process's environment, and the subprocesses it starts later, stay as they were.
    """
    if os.name != "posix":
        return  # no resource tracker there (its semaphores are unnamed)
    from multiprocessing import resource_tracker

    previous = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = ",".join(x for x in (previous, _QUIET_TRACKER) if x)
    try:
        resource_tracker.ensure_running()
    finally:
        if previous is None:
            del os.environ["PYTHONWARNINGS"]
        else:
            os.environ["PYTHONWARNINGS"] = previous


def _worker(task):
    return task.execute(_WORKER_CACHE, None)


@register_executor("pool")
class PoolExecutor:
    """Runs tasks in ``jobs`` worker processes on this machine."""

    def __init__(self, jobs: int, log: Callable[[str], None] | None = None, **_: Any):
        self.jobs = max(1, int(jobs))
        self.log = log
        self._pool: ProcessPoolExecutor | None = None
        self._in_flight: dict = {}

    def _new_pool(self) -> ProcessPoolExecutor:
        import multiprocessing as mp

        _start_quiet_resource_tracker()
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        return ProcessPoolExecutor(max_workers=self.jobs, mp_context=mp.get_context("spawn"),
                                   initializer=_worker_init, initargs=(threads, os.getpid()))

    def run(self, tasks: list) -> Iterator:
        """Yield each task's outcome as it ends. The workers stay up for the next call (tuning runs
        wave after wave); ``close`` stops them."""
        attempts = {id(t): 0 for t in tasks}
        queue = list(tasks)
        while queue:
            if self._pool is None:
                self._pool = self._new_pool()
            futures = {self._pool.submit(_worker, t): t for t in queue}
            for t in queue:
                attempts[id(t)] += 1
            queue = []
            broken = False
            self._in_flight = futures
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in done:
                    task = futures.pop(fut)
                    try:
                        yield fut.result()
                    except BrokenProcessPool:
                        broken = True
                        if attempts[id(task)] < MAX_ATTEMPTS:
                            queue.append(task)
                        else:
                            yield task.lost(f"its worker process died {attempts[id(task)]} times (out of memory?); "
                                            "it stays pending")
            self._in_flight = {}
            if broken:
                self._stop(abort=True)  # a broken pool cannot take more work: a fresh one next round
                if queue and self.log:
                    self.log(f"a worker process died (killed by the system? out of memory?); resubmitting "
                             f"{len(queue)} unfinished task(s); finished runs are kept")

    def close(self) -> None:
        """Stop the workers: cleanly when idle; when work is still queued or running (Ctrl-C, an error),
        cancel it and terminate them (runs in flight stay pending)."""
        self._stop(abort=bool(self._in_flight))

    def _stop(self, abort: bool) -> None:
        pool, self._pool = self._pool, None
        self._in_flight = {}
        if pool is None:
            return
        if not abort:
            pool.shutdown(wait=True)
            return
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in processes:  # do not let queued or running work go on after we stop
            if p.is_alive():
                p.terminate()
        for p in processes:
            p.join(timeout=5)
