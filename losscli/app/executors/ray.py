"""The ``ray`` executor: tasks as Ray remote tasks, on a local Ray instance or a running cluster.

* ``address=None`` starts a local instance (loopback only, no dashboard) and shuts it down on
  ``close``; ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT`` (or ``RAY_ADDRESS``, which a Ray job
  has) joins a cluster and only disconnects.
  A process that already called ``ray.init`` (a library user, the tests) is used as it is.
* Each task declares what it needs: ``threads`` CPUs (1 by default) and ``gpus_per_run`` GPUs
  (1 when runs go to CUDA; fractions pack small runs on one GPU). A stacked group is one task.
* No shared filesystem: the worker trains into a temporary directory and returns the run's files;
  the driver writes them into the compare directory (``runfiles``), never over a finished run.
* A worker or node that dies is Ray's to retry (``MAX_RETRIES``, system failures only); when the
  retries run out the task's runs stay pending. A run's own failure is recorded in the worker.
* Tuning trials report to the Optuna storage from the worker. A SQLite file exists only on the
  driver's machine, so with it trials are pinned to the driver's node; an RDB URL (postgresql://,
  mysql://) lets them spread over the cluster. A worker that cannot open the storage stops the
  tuning with one line, instead of losing trials forever.

Ray is imported when the executor is built, never when this module is imported.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

from losscli.app.executors.base import register_executor
from losscli.app.executors.ray_address import unreachable
from losscli.app.executors.task import Task, TaskOutcome
from losscli.errors import UsageError

INSTALL_HINT = '--executor ray needs Ray: pip install "losscli[ray]"'
#: Ray reruns a task whose worker or node died at most this many times (then its runs stay pending)
MAX_RETRIES = 3
_TMP_PREFIX = "losscli-ray-"

_WORKER_CACHE: dict = {}  # datasets loaded by this Ray worker process, reused by its later tasks
_REACHED: set = set()  # tuning storages this worker process has opened


def import_ray():
    """The ``ray`` module, or the one-line install hint (exit 2)."""
    try:
        import ray
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return ray


# --------------------------------------------------------------------------- in the Ray worker


def _run_remote(task) -> dict:
    """The body of every Ray task. Returns plain data; anything raised here would be a bug, not the
    run's failure (``execute`` records those), so it comes back as an error that leaves runs pending."""
    import socket
    import sys

    ray = sys.modules.get("ray")  # imported in a Ray worker; absent when called directly (tests)
    where = socket.gethostname()
    node = ray.get_runtime_context().get_node_id() if ray is not None and ray.is_initialized() else None
    where = {"where": where, "node": node}
    try:
        if isinstance(task, Task):
            return {**where, **_train_remote(task)}
        problem = _storage_problem(task)
        if problem:
            return {**where, "storage_error": problem}
        return {**where, "trial": task.execute(_WORKER_CACHE, None)}
    except Exception as exc:  # noqa: BLE001 - reported to the driver, which keeps the runs pending
        return {**where, "error": f"{type(exc).__name__}: {_first_line(exc)}"}


def _train_remote(task: Task) -> dict:
    from losscli.app.executors.runfiles import pack_run
    from losscli.app.executors.task import execute_task
    from losscli.engine.rundir import run_status

    _sweep_orphans()
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-"))
    try:
        local = replace(task, run_dirs=[tmp / str(i) for i in range(task.size)])
        outcome = execute_task(local, _WORKER_CACHE, None)
        # only finished or failed runs travel: a run left pending (I/O error) is redone from scratch
        files = [pack_run(d) if run_status(d, key=s.key()) != "pending" else {}
                 for s, d in zip(local.specs, local.run_dirs)]
        return {"files": files, "error": outcome.error}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sweep_orphans() -> None:
    """Remove temp dirs of workers that were killed mid-task (their ``finally`` never ran)."""
    root = Path(tempfile.gettempdir())
    for path in root.glob(f"{_TMP_PREFIX}*-*"):
        pid = path.name[len(_TMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _storage_problem(task) -> str | None:
    """Why this worker cannot open the trial's study (None when it can; checked once per storage)."""
    if task.storage in _REACHED:
        return None
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        optuna.load_study(study_name=task.study_name, storage=task.storage)
    except Exception as exc:  # noqa: BLE001 - unreachable server, missing file or driver, unknown study
        return f"{type(exc).__name__}: {_first_line(exc)}"
    _REACHED.add(task.storage)
    return None


# --------------------------------------------------------------------------- in the driver


@register_executor("ray")
class RayExecutor:
    """Runs tasks as Ray remote tasks: a local Ray instance, or a running cluster (--address)."""

    @staticmethod
    def check(address: str | None = None) -> None:
        import_ray()
        address = address or os.environ.get("RAY_ADDRESS") or None
        problem = unreachable(address) if address else None
        if problem is not None:  # before the compare directory is made, not after
            raise UsageError(f"cannot connect to the Ray cluster at --address {address}: {problem}; "
                             "start one with `ray start --head` or omit --address")

    def __init__(self, jobs: int = 1, log: Callable[[str], None] | None = None, address: str | None = None,
                 gpus_per_run: float | None = None, requested_jobs: int | None = None, **_: Any):
        self.ray = ray = import_ray()
        self.log = log
        self.gpus_per_run = _check_gpus(gpus_per_run)
        self._refs: dict = {}
        self._fn = None
        self._warned = False  # said once that the cluster has no GPU yet
        self._pinned: dict = {}  # (cpus, gpus) -> the scheduling strategy that keeps SQLite trials on this node
        self.submitted = 0  # tasks sent to Ray
        self._nodes: dict[str, int] = {}  # Ray node id -> tasks that came back from it
        self._connected = False  # we called ray.init: ray.shutdown on close (stops an instance we started)
        self.started = False  # we started the instance (as opposed to joining a cluster)
        self._restore: Callable[[], None] | None = None  # undoes _loopback_only after our instance stopped
        # inside `ray job submit` (and KubeRay's RayJob) RAY_ADDRESS names the cluster the job belongs to
        address = address or os.environ.get("RAY_ADDRESS") or None
        if not ray.is_initialized():
            self._connect(address, requested_jobs)
        res = ray.cluster_resources()
        self.cpus, self.gpus = float(res.get("CPU", 0)), float(res.get("GPU", 0))
        self.slots = max(1, int(self.cpus))  # tasks running at once (one CPU each), for progress
        if log:
            nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
            how = "started a local Ray instance" if self.started else f"Ray cluster {address or '(connected)'}"
            log(f"{how}: {nodes} node(s), {self.cpus:g} CPUs, {self.gpus:g} GPUs")

    def _connect(self, address: str | None, requested_jobs: int | None) -> None:
        ray = self.ray
        quiet = {"log_to_driver": False, "logging_level": logging.ERROR}  # stderr is ours: progress, one-line errors
        with _keep_sigterm_handler():
            self._init(ray, address, requested_jobs, quiet)
        self._connected = True

    def _init(self, ray, address: str | None, requested_jobs: int | None, quiet: dict) -> None:
        try:
            if address is None:
                self._restore = _loopback_only(ray)
                ray.init(num_cpus=requested_jobs or os.cpu_count() or 1, include_dashboard=False,
                         _node_ip_address="127.0.0.1", **quiet)  # loopback: nothing outside can reach it
                self.started = True
            else:
                problem = unreachable(address)
                if problem is not None:  # Ray itself would retry for a minute, logging from C++ on stderr
                    raise ConnectionError(problem)
                ray.init(address=address, **quiet)
        except Exception as exc:  # noqa: BLE001 - no cluster there, version mismatch, bad token
            where = f"the Ray cluster at --address {address}" if address else "a local Ray instance"
            raise UsageError(f"cannot connect to {where}: {_first_line(exc)}"
                             + ("; start one with `ray start --head` or omit --address" if address else "")) from None

    # -- resources

    def _options(self, task) -> dict:
        spec = task.specs[0] if isinstance(task, Task) else task.spec
        gpus = self._gpus(spec.device, task.size if isinstance(task, Task) else 1)
        options: dict[str, Any] = {"num_cpus": spec.threads or 1, "num_gpus": gpus, "max_retries": MAX_RETRIES,
                                   "retry_exceptions": False}  # retry lost workers/nodes, never a run's own failure
        if not isinstance(task, Task) and task.storage.startswith("sqlite"):
            key = (options["num_cpus"], options["num_gpus"])
            if key not in self._pinned:  # checked once per shape, not once per trial
                self._pinned[key] = self._driver_node(options)
            options["scheduling_strategy"] = self._pinned[key]
        return options

    def _gpus(self, device: str, runs: int) -> float:
        on_gpu = device.startswith("cuda") or (device == "auto" and self.gpus > 0)
        if self.gpus_per_run is not None and not on_gpu and device != "auto":
            raise UsageError(f"--gpus-per-run {self.gpus_per_run:g} with --device {device}: the runs would hold GPUs "
                             "they never use; drop one of the two")
        if self.gpus_per_run is None and not on_gpu:
            return 0.0
        per_run = self.gpus_per_run if self.gpus_per_run is not None else 1.0
        if self.gpus == 0 and not self._warned:
            if self.started:
                raise UsageError("the runs need GPUs and this machine's Ray instance has none; use --device cpu "
                                 "and drop --gpus-per-run")
            if self.log:  # an autoscaling cluster may add GPU nodes for the waiting tasks
                self.log("warning: the Ray cluster has no GPUs right now; tasks wait for a GPU node (Ctrl-C stops)")
            self._warned = True
        # a stacked group trains on one device: its runs' shares, at most that one GPU
        return per_run if per_run >= 1 else min(1.0, per_run * runs)

    def _driver_node(self, options: dict):
        """Pin SQLite-backed trials to this node, after checking it can run them (else they would wait forever)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node = self.ray.get_runtime_context().get_node_id()
        have = next((n.get("Resources", {}) for n in self.ray.nodes() if n.get("NodeID") == node), {})
        if have.get("CPU", 0) < options["num_cpus"] or have.get("GPU", 0) < options["num_gpus"]:
            raise UsageError("tuning with the SQLite study storage runs its trials on the driver's node, which offers "
                             "Ray too few CPUs/GPUs for them; pass --storage postgresql://... (a database every node "
                             "reaches) to spread the trials over the cluster")
        return NodeAffinitySchedulingStrategy(node_id=node, soft=False)

    # -- running

    def run(self, tasks: list) -> Iterator:
        """Submit every task at once (Ray queues what the cluster cannot start yet); yield each outcome as
        it ends. Runs already finished in the compare directory are not sent."""
        from losscli.engine.rundir import run_status

        ray = self.ray
        if self._fn is None:
            self._fn = ray.remote(_run_remote)
        refs = self._refs = {}
        for task in tasks:
            if isinstance(task, Task):
                todo = [i for i, d in enumerate(task.run_dirs) if run_status(d, key=task.specs[i].key()) != "ok"]
                if not todo:
                    yield TaskOutcome(task, ["ok"] * task.size)
                    continue
                shipped = replace(task, specs=[task.specs[i] for i in todo], run_dirs=[task.run_dirs[i] for i in todo])
            else:
                shipped = replace(task, storage=_absolute_sqlite(task.storage))  # the worker's cwd is not ours
            refs[self._fn.options(**self._options(shipped)).remote(shipped)] = (task, shipped)
            self.submitted += 1
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1, timeout=1.0)  # wake up now and then for Ctrl-C
            for ref in done:
                task, shipped = refs.pop(ref)
                yield self._collect(ref, task, shipped)

    def _collect(self, ref, task, shipped):
        from ray.exceptions import RayError, RayTaskError

        try:
            result = self.ray.get(ref)
        except RayTaskError as exc:  # _run_remote returns its errors; this is the worker failing to start it
            cause = getattr(exc, "cause", None) or exc  # e.g. losscli missing on that node: unpickling fails
            hint = "; is losscli installed on every node?" if isinstance(cause, ImportError) else ""
            why = f"{type(cause).__name__}: {_first_line(cause)}{hint}"
            # a trial that cannot even start would be lost wave after wave until tuning gives up on its
            # study (MAX_LOST_IN_A_ROW), blaming dying workers: say the real reason now
            if not isinstance(task, Task):
                raise UsageError(f"a tuning trial could not run on Ray ({why})") from None
            return task.lost(f"its Ray task could not run ({why}); it stays pending")
        except RayError as exc:  # the worker or node died and Ray's retries are spent, or Ray could not place it
            return task.lost(f"its Ray worker or node was lost ({type(exc).__name__}; Ray retried it up to "
                             f"{MAX_RETRIES} times); it stays pending")
        if result.get("node"):
            self._nodes[result["node"]] = self._nodes.get(result["node"], 0) + 1
        if "storage_error" in result:
            from losscli.app.tuning.run import redact_storage

            raise UsageError(f"a Ray worker on {result['where']} cannot open the tuning storage "
                             f"{redact_storage(task.storage)} ({result['storage_error']}); give --storage a database that "
                             "every node reaches (postgresql://..., mysql://...)")
        if "error" in result and "files" not in result:
            return task.lost(f"its Ray task failed on {result['where']}: {result['error']}; it stays pending")
        if not isinstance(task, Task):
            return result["trial"]
        return _write_back(task, shipped, result)

    def close(self) -> None:
        """Cancel what is queued or running (Ctrl-C, an error); disconnect, stopping an instance we started."""
        refs, self._refs = list(self._refs), {}
        # An instance we started goes down whole with ray.shutdown (its workers with it). Force-
        # cancelling there first races the replies of tasks finishing at that moment, which Ray 2.x
        # can answer with a fatal check and a C++ stack trace on stderr (seen on Ctrl-C): skip it.
        for ref in ([] if self.started and self._connected else refs):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished, or the cluster is gone: nothing left to stop
                pass
        if self.log and self._nodes:
            self.log(f"Ray: {sum(self._nodes.values())} task(s) ran on {len(self._nodes)} node(s)")
            self._nodes = {}
        if self._connected:
            self._connected = False
            self.ray.shutdown()
        if self._restore is not None:
            self._restore()
            self._restore = None


def _write_back(task: Task, shipped: Task, result: dict) -> TaskOutcome:
    """Write the shipped runs into the compare directory; an I/O error here leaves them pending."""
    from losscli.app.executors.runfiles import unpack_run
    from losscli.engine.rundir import run_status

    error = result.get("error")
    try:
        for run_dir, files in zip(shipped.run_dirs, result["files"]):
            unpack_run(run_dir, files)
    except OSError as exc:
        error = f"I/O error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return TaskOutcome(task, [run_status(d, key=s.key()) for s, d in zip(task.specs, task.run_dirs)], error)


@contextlib.contextmanager
def _keep_sigterm_handler():
    """``ray.init`` replaces the process's SIGTERM handler twice: in Python (``sys.exit(15)``) and in C++
    (a failure handler that prints a stack of ``*** SIGTERM received`` lines on stderr). The CLI's own
    handler (SIGTERM taken as Ctrl-C: the outstanding tasks cancelled, the instance stopped, one line,
    exit 143) is put back afterwards; ``signal.signal`` replaces the C++ handler too. Only a Python
    handler that was there (a library user without one keeps Ray's), and only in the main thread,
    where Python handles signals."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if callable(previous):
            signal.signal(signal.SIGTERM, previous)


def _loopback_only(ray) -> Callable[[], None]:
    """Make the local instance bind 127.0.0.1 only; returns how to undo it.

    ``_node_ip_address`` alone is not enough: Ray's servers still listen on every interface unless
    its "no cluster" mode (the Windows/macOS default) is on. That mode is read from
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER when ``ray`` is imported (here possibly long before), and by
    the processes Ray starts; set both. Undone afterwards: joining a real cluster later in this
    process needs this machine's real address.
    """
    var = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    previous_env = os.environ.get(var)
    os.environ[var] = "0"
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    previous = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    if previous is not None:
        constants.ENABLE_RAY_CLUSTER = False

    def restore() -> None:
        if previous_env is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = previous_env
        if previous is not None:
            constants.ENABLE_RAY_CLUSTER = previous

    return restore


def _check_gpus(gpus_per_run: float | None) -> float | None:
    if gpus_per_run is not None and gpus_per_run > 1 and gpus_per_run != int(gpus_per_run):
        raise UsageError(f"--gpus-per-run {gpus_per_run:g}: above 1 it must be a whole number (Ray's rule); a run "
                         "uses one GPU, so 1 or a fraction is what you want")
    return gpus_per_run


def _absolute_sqlite(url: str) -> str:
    """``sqlite:///tuning.db`` is relative to the current directory, which Ray workers do not share."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url[len(prefix):].startswith("/") and url[len(prefix):] != ":memory:":
        return prefix + str(Path(url[len(prefix):]).resolve())
    return url


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
