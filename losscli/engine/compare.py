"""``compare``: the grid of losses x seeds x noise x imbalance, resumable, batched.

Every run has its own directory ``OUT/runs/<hash of its resolved config>``; a run is done
when its ``report.yaml`` exists (written atomically, last). Re-running the same command
skips finished runs, so a compare killed at any moment loses at most the runs in flight.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from losscli.config import Config
from losscli.engine.executor import Task, make_executor
from losscli.engine.rundir import read_report
from losscli.engine.spec import RunSpec
from losscli.errors import UsageError
from losscli.specs import format_loss_spec, parse_loss_spec

COMPARE_SCHEMA = "losscli/compare/v1"
MAX_GROUP = 64  # runs stacked into one vmapped model at most


def expand_grid(cfg: Config) -> list[RunSpec]:
    """losses x noise x imbalance x seeds, in that nesting order (settings outermost)."""
    from losscli.losses import check_loss_spec

    losses = [parse_loss_spec(s) if isinstance(s, str) else (s["name"], s.get("params", {})) for s in cfg.losses]
    if not losses:
        raise UsageError("compare needs at least one loss (--losses ce,focal,...)")
    canonical = []
    for name, params in losses:
        cname, _ = check_loss_spec(name, params)
        canonical.append((cname, params))
    labels = [format_loss_spec(n, p) for n, p in canonical]
    dupes = {l for l in labels if labels.count(l) > 1}
    if dupes:
        raise UsageError(f"loss listed twice: {', '.join(sorted(dupes))}")
    from losscli.data.specs import parse_imbalance_spec, parse_noise_spec

    for n in cfg.noise_list():
        parse_noise_spec(n)
    for i in cfg.imbalance_list():
        parse_imbalance_spec(i)
    specs = []
    for imbalance in cfg.imbalance_list():
        for noise in cfg.noise_list():
            for name, params in canonical:
                for seed in cfg.seed_list():
                    specs.append(RunSpec.from_config(cfg, format_loss_spec(name, params), seed=seed, noise=noise,
                                                     imbalance=imbalance))
    return specs


def baseline_label(cfg: Config, specs: list[RunSpec]) -> str:
    labels = list(dict.fromkeys(s.loss_label for s in specs))
    if cfg.baseline is None:
        return labels[0]
    name, params = parse_loss_spec(cfg.baseline)
    from losscli.losses import LOSSES

    wanted = format_loss_spec(LOSSES.canonical(name), params)
    matches = [l for l in labels if l == wanted or (not params and parse_loss_spec(l)[0] == LOSSES.canonical(name))]
    if not matches:
        raise UsageError(f"baseline {cfg.baseline!r} is not among the compared losses ({', '.join(labels)})")
    return matches[0]


def plan_tasks(specs: list[RunSpec], run_dirs: list[Path], batch: bool,
               log: Callable[[str], None] | None = None) -> list[Task]:
    """Group runs that can train together; the rest run one by one (and the log says why)."""
    if not batch:
        return [Task([s], [d], batched=False) for s, d in zip(specs, run_dirs)]
    from losscli.engine.batched import batchable
    from losscli.engine.setup import build_run_loss, build_run_model, load_base_data

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
            singles.append(Task([spec], [run_dir], batched=False))
        else:
            groups.setdefault(spec.batch_group(), []).append((spec, run_dir))
    tasks = []
    for members in groups.values():
        for i in range(0, len(members), MAX_GROUP):
            chunk = members[i:i + MAX_GROUP]
            tasks.append(Task([s for s, _ in chunk], [d for _, d in chunk], batched=len(chunk) > 1))
    return tasks + singles


def _batching(cfg: Config, log: Callable[[str], None] | None) -> bool:
    if cfg.batch_runs is not None:
        return cfg.batch_runs
    from losscli.engine.device import resolve_device

    on_cuda = resolve_device(cfg.device).type == "cuda"
    if log and not on_cuda:
        log("runs train one by one on CPU (stacked training is not faster there; --batch-runs forces it)")
    return on_cuda


def resolve_jobs(cfg: Config, n_tasks: int) -> int:
    """Explicit ``jobs``, else one worker per CPU core on CPU (runs are single-threaded there)
    and one process on CUDA (runs are batched on the device instead)."""
    import os

    from losscli.engine.device import resolve_device

    if cfg.jobs is not None:
        if cfg.jobs < 1:
            raise UsageError("jobs must be >= 1")
        return cfg.jobs
    if resolve_device(cfg.device).type == "cuda":
        return 1
    return max(1, min(os.cpu_count() or 1, n_tasks))


def run_compare(cfg: Config, out_dir: Path, *, jobs: int | None = None, retry_failed: bool = False,
                log: Callable[[str], None] | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the grid and write report.yaml, report.md and plots to ``out_dir``."""
    out_dir = Path(out_dir)
    specs = expand_grid(cfg)
    baseline = baseline_label(cfg, specs)
    run_dirs = [out_dir / "runs" / s.key() for s in specs]
    pending = []
    for spec, d in zip(specs, run_dirs):
        report = read_report(d)
        if report is None or (retry_failed and report.get("status") != "ok"):
            pending.append((spec, d))
    done = len(specs) - len(pending)
    if log:
        log(f"compare: {len(specs)} runs ({done} already done, {len(pending)} to run) -> {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if pending:
        tasks = plan_tasks([s for s, _ in pending], [d for _, d in pending], _batching(cfg, log), log)
        jobs = jobs if jobs is not None else resolve_jobs(cfg, len(tasks))
        if log and jobs > 1:
            log(f"running {len(tasks)} tasks in {jobs} worker processes")
        executor = make_executor(jobs, log)
        bar = _bar(len(pending), progress)
        for task, err in executor.run(tasks):
            bar.update(len(task.specs))
            if log and not bar.disable:
                bar.set_postfix_str(task.describe())
            elif log:
                log(f"  done: {task.describe()}" + (f" (error: {err})" if err else ""))
        bar.close()
    wall = time.perf_counter() - t0
    results = []
    for spec, d in zip(specs, run_dirs):
        report = read_report(d)
        if report is None:
            report = {"status": "failed", "error": "no result written (process killed?)", "run_dir": str(d)}
        report.setdefault("loss", {"name": spec.loss, "params": spec.loss_params, "label": spec.loss_label})
        report.setdefault("seed", spec.seed)
        report.setdefault("setting", spec.setting())
        report["loss"]["label"] = spec.loss_label
        results.append(report)
    return write_compare_report(cfg, out_dir, results, baseline, wall)


def write_compare_report(cfg: Config, out_dir: Path, results: list[dict], baseline: str, wall: float) -> dict[str, Any]:
    from losscli.engine.device import autocast_dtype, environment, resolve_device, should_compile
    from losscli.io import atomic_write_text, write_yaml
    from losscli.report.compare import DEFAULT_METRICS, TABLE_METRICS, build_compare_report, render_compare_markdown
    from losscli.report.plots import write_compare_plots

    device = resolve_device(cfg.device)
    config = {
        "dataset": cfg.dataset.name, "model": cfg.model.name, "epochs": cfg.train.epochs,
        "batch_size": cfg.train.batch_size, "optimizer": cfg.train.optimizer, "lr": cfg.train.lr,
        "seeds": cfg.seed_list(), "losses": list(dict.fromkeys(r["loss"]["label"] for r in results)),
        "noise": cfg.noise_list(), "imbalance": cfg.imbalance_list(), "baseline": baseline,
        "resolved": cfg.to_dict(),
    }
    env = environment(device, should_compile(cfg.compile, device), autocast_dtype(cfg.precision, device))
    threads = {r.get("env", {}).get("threads") for r in results if r.get("status") == "ok"} - {None}
    if threads:
        env["threads"] = sorted(threads)[0] if len(threads) == 1 else sorted(threads)  # what the runs used
    env["compare_wall_seconds"] = round(wall, 2)
    _add_loss_overheads(results, cfg, device)
    metrics, table = list(DEFAULT_METRICS), list(TABLE_METRICS)
    if any(i != "none" for i in cfg.imbalance_list()):  # long tails: the tail classes are the question
        metrics += ["balanced_accuracy", "few_shot_accuracy"]
        table += ["balanced_accuracy", "few_shot_accuracy"]
    report = build_compare_report(results, config, env, metrics=metrics)
    plots = write_compare_plots(report, results, out_dir)
    write_yaml(out_dir / "report.yaml", report)
    atomic_write_text(out_dir / "report.md", render_compare_markdown(report, plots, table_metrics=table))
    return report


def _add_loss_overheads(results: list[dict], cfg: Config, device) -> None:
    """Per-step loss kernel time (forward+backward) at the training shape, measured once per loss."""
    from losscli.engine.device import cpu_threads
    from losscli.profiling.step import loss_step_ms

    ok = [r for r in results if r.get("status") == "ok"]
    if not ok:
        return
    num_classes = len((ok[0].get("metrics") or {}).get("per_class_test_accuracy") or []) or 10

    cache: dict[str, float | None] = {}
    # measured with the threads the runs used (one per run for small models on CPU)
    with cpu_threads(cfg.threads or (1 if device.type == "cpu" else None), device):
        for r in ok:
            label = r["loss"]["label"]
            if label not in cache:
                try:
                    cache[label] = loss_step_ms(label, cfg.train.batch_size, num_classes, device)
                except Exception:  # noqa: BLE001 - timing is informative only; never fail the report for it
                    cache[label] = None
            r.setdefault("timing", {})["loss_ms_per_step"] = cache[label]


def _bar(total: int, enabled: bool):
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc="runs", unit="run", file=sys.stderr, disable=not (enabled and sys.stderr.isatty()))
