"""``run_compare``: run (or resume) a grid and write its report.

Every run has its own directory ``OUT/runs/<hash of its resolved spec>``; a run is done when its
report is valid (written atomically, last). Re-running the same command skips finished runs, so
a compare killed at any moment loses at most the runs in flight; a lock keeps two processes
from working on one directory.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from losscli.app.compare.grid import expand_grid, resolve_baseline
from losscli.app.compare.lock import CompareLock
from losscli.app.compare.plan import plan_tasks, resolve_jobs, use_batching
from losscli.app.compare.progress import GridProgress
from losscli.atomic import check_utf8_path
from losscli.config.schema import Config
from losscli.config.validate import validate
from losscli.errors import Interrupted, RunFailedError, UsageError


def run_compare(cfg: Config, out_dir: Path, *, retry_failed: bool = False, log: Callable[[str], None] | None = None,
                progress: bool = True, wait: bool = False, tracker: str | None = None,
                tracking_uri: str | None = None) -> dict[str, Any]:
    """Run the pending runs of ``cfg``'s grid in ``out_dir``, then write report.yaml, report.md and plots.
    Before the first run, the resolved configuration is logged and recorded in ``OUT/config.yaml``;
    with ``tracker`` (tensorboard, mlflow) every training run is also one tracker run.

    Raises :class:`Interrupted` on Ctrl-C (finished runs kept) and :class:`RunFailedError` when
    runs had to be left pending (an I/O error, a worker that kept dying): the report is written
    first with what finished.
    """
    from losscli.app.executors import check_executor
    from losscli.app.trackers import check_tracker
    from losscli.engine import rundir
    from losscli.engine.teacher import require_teacher

    validate(cfg, "compare")
    # a missing backend (pip install "losscli[ray]"), or a Ray address where nothing answers: one line before any work
    check_executor(cfg.executor, **({"address": cfg.address} if cfg.executor == "ray" else {}))
    kind = check_tracker(tracker, tracking_uri)
    grid = expand_grid(cfg)  # every loss, noise and imbalance spec resolves before anything is created
    for spec in grid:  # a distilling loss without its teacher fails every run of it: say so now, not after
        require_teacher(spec)
    if cfg.teacher and not any(spec.teacher for spec in grid):  # recorded and ignored without a word
        raise UsageError(f"teacher {cfg.teacher} is for the distilling losses (kd, pld, dhkd, or a sum with one); none "
                         "of the compared losses distils: drop --teacher (or the config key teacher)")
    baseline = resolve_baseline(cfg)
    out_dir = Path(out_dir)
    _check_out(out_dir)
    cache: dict = {}
    reports = rundir.ReportCache()  # each run's report.yaml parsed once, not at every status check
    pending = [s for s in grid if rundir.run_status(out_dir / "runs" / s.key(), reports, key=s.key()) != "ok"]
    _preflight(cfg, grid, pending, cache)
    _make_out(out_dir)
    with CompareLock(out_dir, wait=wait, log=log):
        t0 = time.perf_counter()
        tuning, run_dirs = None, []
        executors = _Executors(cfg, log)
        try:
            if cfg.tune.trials or pending:
                from losscli.app.compare.announce import announce

                announce(cfg, out_dir, grid, log, cache)
            if cfg.tune.trials:
                tuning = _tune(cfg, out_dir, executors, log, progress)
            specs = expand_grid(cfg, tuning["best"] if tuning else None)
            run_dirs = [out_dir / "runs" / s.key() for s in specs]
            statuses = [rundir.run_status(d, reports, key=d.name) for d in run_dirs]
            todo = [(s, d) for s, d, st in zip(specs, run_dirs, statuses)
                    if st == "pending" or (retry_failed and st == "failed")]
            if tuning and todo:  # tuned parameters make losses the preflight has not built
                _check_losses([s for s, _ in todo], cache)
            if log:
                log(f"compare: {len(specs)} runs ({len(specs) - len(todo)} already done, {len(todo)} to run) "
                    f"-> {out_dir}")
            track = _tracker(kind, tracking_uri, out_dir, log) if kind and todo else None
            errors = _run_pending(cfg, todo, executors, log, progress, cache, track) if todo else []
        except KeyboardInterrupt:
            kept = sum(rundir.run_status(d, reports, key=d.name) == "ok" for d in run_dirs)
            raise Interrupted(f"interrupted; {kept} finished run(s) are kept in {out_dir}"
                              + (" and the tuning trials in its study" if cfg.tune.trials else "")
                              + " (rerun the same command to resume)") from None
        finally:
            executors.close()
        wall = time.perf_counter() - t0
        from losscli.app.compare.grid import row_labels
        from losscli.app.compare.writer import write_compare_report

        try:
            report = write_compare_report(cfg, out_dir, specs, run_dirs, baseline, wall, labels=row_labels(cfg),
                                          tuning=tuning["report"] if tuning else None, data_cache=cache,
                                          reports=reports)
        except OSError as exc:
            pending = sum(rundir.run_status(d, reports, key=d.name) == "pending" for d in run_dirs)
            why = errors[0] if errors else f"I/O error: {exc.strerror or exc}: {exc.filename or out_dir}"
            raise RunFailedError(f"{pending} run(s) left pending and the report could not be written ({why}); "
                                 "fix it and rerun the same command to resume") from None
    if errors:
        pending = report.get("n_pending", 0)
        raise RunFailedError(f"{pending} run(s) left pending: {errors[0]}; fix it and rerun the same command to "
                             f"resume (the report in {out_dir} has the runs that finished)")
    return report


def _check_out(out_dir: Path) -> None:
    """A bad ``--out`` is one line before anything runs, and before anything is created."""
    check_utf8_path(out_dir, "--out")
    _refuse_foreign(out_dir)
    try:
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"--out {out_dir} is a file; give a directory")
        # in the way of what a compare writes: the runs trained, then the report failed (exit 1, a temp
        # file's name), or "cannot write to --out: File exists" for runs
        if (out_dir / "runs").exists() and not (out_dir / "runs").is_dir():
            raise UsageError(f"{out_dir / 'runs'} is a file where compare keeps its runs; remove it or choose another --out")
        if (out_dir / "report.md").is_dir():
            raise UsageError(f"{out_dir / 'report.md'} is a directory where compare writes its report; remove it or "
                             "choose another --out")
    except OSError as exc:
        raise UsageError(f"cannot write to --out {out_dir}: {exc.strerror or exc}") from None


def _preflight(cfg: Config, grid: list, pending: list, cache: dict) -> None:
    """Load the data and build each loss of the runs still to do, before the compare directory is
    created: a refused invocation (a plugin loss whose constructor raises, data that cannot load)
    left an empty ``OUT/runs`` and a lock file behind. With nothing pending there is nothing to check."""
    if not (cfg.tune.trials or pending):
        return
    from losscli.engine.build import load_base_data

    load_base_data(grid[0], cache)  # a dataset that cannot load is one line here, not a failure in every run
    _check_settings(grid, cache)  # before tuning too: its trials run the same settings
    _check_losses(pending, cache)


def _make_out(out_dir: Path) -> None:
    """Create the compare directory and prove it writable (a read-only one is one line, not a failed run)."""
    try:
        (out_dir / "runs").mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write to --out {out_dir}: {exc.strerror or exc}") from None


#: what a compare directory's own files declare (any version): anything else there is not ours
_OWN_SCHEMAS = {"config.yaml": "losscli/compare-config/", "report.yaml": "losscli/compare/"}


def _refuse_foreign(out_dir: Path) -> None:
    """A compare replaces OUT/config.yaml and OUT/report.*: in a run's directory, or one holding
    someone's own config.yaml, those were overwritten without a word."""
    for name, schema in _OWN_SCHEMAS.items():
        path = out_dir / name
        try:
            if not path.exists():
                continue
        except OSError:  # a name too long, a parent that is a file: the write probe says so next
            return
        try:
            declared = _declared_schema(path.read_bytes(), str(path))
        except (OSError, UsageError):
            declared = ""
        if not declared.startswith(schema):
            raise UsageError(f"--out {out_dir} holds a {name} that is not a losscli compare's (a run's directory, "
                             "or files of your own); a compare would replace it: choose another --out")


def _declared_schema(raw: bytes, what: str) -> str:
    """The top-level ``schema`` of a YAML file ("" when it has none). Our files write it first, and
    then it is read from the first parse events alone: a finished compare's report.yaml holds every
    run's numbers (half a second to load), and a resume only needs to know whose it is."""
    import itertools

    import yaml

    from losscli.serialize import load_yaml

    try:  # parse events only (nothing is built): stream, document, mapping, key, value
        head = list(itertools.islice(yaml.parse(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)), 5))
    except yaml.YAMLError:
        head = []
    if (len(head) == 5 and isinstance(head[2], yaml.MappingStartEvent)
            and all(isinstance(e, yaml.ScalarEvent) for e in head[3:]) and head[3].value == "schema"):
        return head[4].value
    data = load_yaml(raw, what)  # anything else: the whole document, as any YAML losscli reads
    return str(data.get("schema", "")) if isinstance(data, dict) else ""


def _executor(cfg: Config, n_tasks: int, log):
    from losscli.app.executors import make_executor

    jobs = resolve_jobs(cfg.jobs, cfg.device, n_tasks)
    if log and jobs > 1 and cfg.executor in (None, "pool"):
        log(f"running {n_tasks} tasks in {jobs} worker processes")
    executor = make_executor(cfg.executor, jobs, log, address=cfg.address, gpus_per_run=cfg.gpus_per_run,
                             requested_jobs=cfg.jobs)
    return executor, getattr(executor, "slots", jobs)  # a cluster runs as many tasks at once as it has room for


class _Executors:
    """Hands each phase (tuning, then the grid) its executor. A Ray one is made once and shared, and
    ``close`` stops it at the end: each phase would otherwise start and stop its own local Ray
    instance (seconds each). Others are made per phase (a pool sizes its workers to the phase)."""

    def __init__(self, cfg: Config, log):
        self.cfg, self.log = cfg, log
        self._shared = None

    def get(self, n_tasks: int):
        """``(executor, tasks it runs at once)``; pass the executor to ``done`` when the phase ends."""
        if self._shared is not None:
            return self._shared, self._shared.slots
        executor, slots = _executor(self.cfg, n_tasks, self.log)
        if self.cfg.executor == "ray":
            self._shared = executor
        return executor, slots

    def done(self, executor) -> None:
        """The phase ended (also on Ctrl-C or an error): stop its executor, unless it is the shared one."""
        if executor is not self._shared:
            executor.close()

    def close(self) -> None:
        shared, self._shared = self._shared, None
        if shared is not None:
            shared.close()


def _tune(cfg: Config, out_dir: Path, executors: _Executors, log, progress: bool) -> dict:
    from losscli.app.tuning import run_tuning

    executor, slots = executors.get(len(cfg.loss_specs()) * len(cfg.noise_settings()) * len(cfg.imbalance_settings()))
    try:
        return run_tuning(cfg, out_dir, executor, log, progress=progress, slots=slots)
    finally:
        executors.done(executor)


def _tracker(kind: str, uri: str | None, out_dir: Path, log):
    """The tracker every run of this compare reports to, tagged with the compare directory."""
    from losscli.app.trackers import TrackerConfig, prepare

    where = str(Path(out_dir).resolve())
    root = uri if uri else str(Path(out_dir) / "tensorboard")
    return prepare(TrackerConfig(kind, uri, experiment=f"losscli compare {Path(where).name}",
                                 tags={"losscli.compare_dir": where}, root=root if kind == "tensorboard" else None), log)


def _check_losses(specs: list, cache: dict | None) -> None:
    """Build each loss once on the data before any run: a loss that cannot train on it (a regression loss
    on class labels, a support that misses the targets, a weight per class of the wrong length, a teacher
    trained on other data) is one line and exit 2 here, not a failure recorded in every one of its runs."""
    from losscli.engine.build import build_run_loss, load_base_data
    from losscli.engine.teacher import check_teacher

    seen: set[tuple] = set()
    for spec in specs:
        key = (spec.loss.label, repr(spec.loss.options), spec.setting()["dataset"])
        if key not in seen:
            seen.add(key)
            bundle = load_base_data(spec, cache)
            build_run_loss(spec, bundle)
            check_teacher(spec, bundle)


def _check_settings(specs: list, cache: dict | None) -> None:
    """Label noise and class imbalance act on class labels: on a regression dataset each such setting
    failed every one of its runs (and a regression compare inherits the preset's ``sym:0.4`` unless
    ``--noise`` is given); one line and exit 2 here instead."""
    from losscli.engine.build import load_base_data

    bundle = load_base_data(specs[0], cache)
    if not bundle.is_regression:
        return
    noise = sorted({str(s.noise) for s in specs if s.noise.kind != "none"})
    imbalance = sorted({str(s.imbalance) for s in specs if s.imbalance.kind != "none"})
    if noise or imbalance:
        what = " and ".join(f"{k} {', '.join(v)}" for k, v in (("label noise", noise), ("imbalance", imbalance)) if v)
        flags = " ".join(f"--{k} none" for k, v in (("noise", noise), ("imbalance", imbalance)) if v)
        raise UsageError(f"{bundle.name} is a regression dataset (float targets), so {what} (settings of class "
                         f"labels) would fail every run; add {flags}")


def _run_pending(cfg: Config, todo: list, executors: _Executors, log, progress: bool, cache: dict | None = None,
                 tracker=None) -> list[str]:
    """Train the pending runs through the configured executor; returns why runs stayed pending."""
    specs, dirs = [s for s, _ in todo], [d for _, d in todo]
    tasks = plan_tasks(specs, dirs, use_batching(cfg.batch_runs, cfg.device, log), log)
    for task in tasks:
        task.tracker = tracker
    executor, jobs = executors.get(len(tasks))
    bar = GridProgress(len(todo), jobs * max(len(t.specs) for t in tasks), progress, log)
    errors: list[str] = []
    try:
        for outcome in executor.run(tasks):
            n_ok = outcome.statuses.count("ok")
            n_failed = outcome.statuses.count("failed")
            if outcome.error:
                errors.append(outcome.error)
            bar.finished(n_ok, n_failed, outcome.task.describe(), outcome.error)
    finally:  # also on Ctrl-C: cancel what has not started and stop the workers (runs in flight stay pending)
        executors.done(executor)
        bar.close()
    return errors
