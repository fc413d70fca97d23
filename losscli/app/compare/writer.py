"""Write a compare directory's report: collect each run's result, add what the runs cost,
build the report (``losscli.report.compare``), draw the plots, write report.yaml/report.md."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from losscli.config.schema import Config
from losscli.engine.runspec import RunSpec

if TYPE_CHECKING:
    from losscli.engine.rundir import ReportCache


def collect_results(specs: list[RunSpec], run_dirs: list[Path], labels: list[str] | None = None,
                    reports: ReportCache | None = None) -> list[dict[str, Any]]:
    """One result per run: its report, or a ``pending`` stub for a run that has not finished, with
    the per-example test outcomes the test-set bootstrap needs (from logits.pt, when present).
    ``labels`` name the loss rows (the listed loss, also when tuning changed its parameters);
    ``reports`` reuses the reports the status checks already parsed (each result is a copy)."""
    from losscli.engine import rundir
    from losscli.metrics.outcomes import example_outcomes

    results = []
    for i, (spec, d) in enumerate(zip(specs, run_dirs)):
        report = reports.read(d) if reports is not None else rundir.read_report(d)
        if rundir.report_problem(report, spec.key()) is not None:
            report = {"status": "pending", "error": None}
        report = dict(report)
        report["loss"] = {**spec.loss.to_dict(), "label": labels[i] if labels else spec.loss.label}
        report["seed"] = spec.seed
        report["setting"] = spec.setting()
        report["run_dir"] = str(d)
        if report.get("status") == "ok" and report.get("task") != "regression":
            try:
                logits = rundir.load_logits(d)
                report["examples"] = example_outcomes(logits["test_logits"], logits["test_labels"])
            except Exception:  # noqa: BLE001 - without them the test uses the seed variance alone
                report["examples"] = None
        results.append(report)
    return results


def write_compare_report(cfg: Config, out_dir: Path, specs: list[RunSpec], run_dirs: list[Path], baseline: str,
                         wall: float, *, labels: list[str] | None = None,
                         tuning: dict[str, Any] | None = None, data_cache: dict | None = None,
                         reports: ReportCache | None = None) -> dict[str, Any]:
    from losscli.atomic import atomic_write_text, write_yaml
    from losscli.device import autocast_dtype, resolve_device, should_compile
    from losscli.engine import rundir
    from losscli.environment import environment
    from losscli.report.compare import DEFAULT_METRICS, TABLE_METRICS, build_compare_report, render_compare_markdown
    from losscli.report.plots import write_compare_plots

    results = collect_results(specs, run_dirs, labels, reports)
    device = resolve_device(cfg.device)
    noisy = any(n.kind != "none" for n in cfg.noise_settings())
    config = {
        "dataset": cfg.dataset.name, "model": cfg.model.name, "epochs": cfg.train.epochs,
        "batch_size": cfg.train.batch_size, "optimizer": cfg.train.optimizer, "lr": cfg.train.lr,
        "seeds": cfg.seed_list(), "losses": [s.label for s in cfg.loss_specs()],
        "noise": [str(n) for n in cfg.noise_settings()], "imbalance": [str(i) for i in cfg.imbalance_settings()],
        "baseline": baseline,
        "validation": ("clean (--clean-val: optimistic, a practitioner's validation labels are noisy)"
                       if cfg.dataset.clean_val else "as noisy as the training labels") if noisy else "clean",
        "hyperparameters": (f"tuned per loss and setting ({cfg.tune.trials} trials each, validation split only)"
                            if cfg.tune.trials else "the registry's defaults for every loss, one learning rate"),
        "resolved": cfg.to_dict(),
    }
    env = environment(device, compiled=should_compile(cfg.compile, device),
                      amp_dtype=autocast_dtype(cfg.precision, device))
    threads = {r.get("env", {}).get("threads") for r in results if r.get("status") == "ok"} - {None}
    if threads:
        env["threads"] = sorted(threads)[0] if len(threads) == 1 else sorted(threads)  # what the runs used
    env["compare_wall_seconds"] = round(wall, 2)
    costs = measure_costs(results, specs, cfg, baseline, device, env["threads"] if isinstance(env.get("threads"), int)
                          else None, data_cache) if ran_here(results, env) else {}
    metrics, table = list(DEFAULT_METRICS), list(TABLE_METRICS)
    if any(r.get("task") == "regression" for r in results):  # hl_gauss on float targets
        metrics, table = ["mse", "mae", "r2"], ["mse", "mae", "r2"]
    elif any(i.kind != "none" for i in cfg.imbalance_settings()):  # long tails: the tail classes are the question
        metrics += ["balanced_accuracy", "few_shot_accuracy"]
        table += ["balanced_accuracy", "few_shot_accuracy"]
    st = cfg.statistics
    report = build_compare_report(results, config, env, metrics=metrics, test=st.test, correction=st.correction,
                                  alpha=st.alpha, min_effect=st.min_effect, tuning=tuning, costs=costs)
    regression = report["primary_metric"] in ("mse", "mae", "r2")
    plots = write_compare_plots(report, results, out_dir, load_logits=None if regression else rundir.load_logits)
    write_yaml(out_dir / "report.yaml", report)
    atomic_write_text(out_dir / "report.md", render_compare_markdown(report, plots, table_metrics=table))
    return report


def ran_here(results: list[dict], env: dict[str, Any]) -> bool:
    """Whether the finished runs ran on this machine's kind of device. Costs are measured after the runs, on
    this machine: meaningless when they ran elsewhere (a Ray cluster's workers may have GPUs the driver
    lacks); the report then keeps the runs' own times."""
    run_devices = {(r.get("env") or {}).get("device_name") for r in results if r.get("status") == "ok"} - {None}
    return run_devices <= {env.get("device_name")}


def measure_costs(results: list[dict], specs: list[RunSpec], cfg: Config, baseline: str, device,
                  threads: int | None, data_cache: dict | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """Per dataset and loss label: ``{"step": ..., "loss": ...}``, each loss's whole training step and its
    loss kernel (forward+backward at the training batch shape) timed paired with the baseline's
    (``step_cost.paired_step_costs``, ``profiling.step.loss_step_costs``); ``loss_ms_per_step`` goes into
    each run's timing. Measured with the threads the runs used. Compiled runs keep their own training
    times as the step ratio (a compiled step costs tens of seconds to build per loss)."""
    import dataclasses

    from losscli.app.compare.step_cost import paired_step_costs
    from losscli.device import cpu_threads, should_compile
    from losscli.profiling.step import loss_step_costs

    by_dataset: dict[str, dict[str, tuple[dict, RunSpec]]] = {}
    for r, spec in zip(results, specs):
        if r.get("status") == "ok":
            by_dataset.setdefault(spec.dataset.name, {}).setdefault(r["loss"]["label"], (r, spec))
    costs: dict[str, dict[str, dict[str, Any]]] = {}
    threads = threads or cfg.threads or (1 if device.type == "cpu" else None)
    with cpu_threads(threads, device):
        for dataset, firsts in by_dataset.items():
            first = next(iter(firsts.values()))[0]
            num_classes = len((first.get("metrics") or {}).get("per_class_test_accuracy") or []) or 10
            try:
                kernel = loss_step_costs(list(firsts), baseline, cfg.train.batch_size, num_classes, device)
            except Exception:  # noqa: BLE001 - timing is informative only; never fail the report for it
                kernel = {}
            step = {} if should_compile(cfg.compile, device) else paired_step_costs(
                {lab: dataclasses.replace(spec, threads=threads) for lab, (_, spec) in firsts.items()},
                baseline, data_cache)
            costs[dataset] = {lab: {"step": step.get(lab), "loss": kernel.get(lab)} for lab in firsts}
    for r, spec in zip(results, specs):
        if r.get("status") == "ok":
            kernel = costs[spec.dataset.name][r["loss"]["label"]]["loss"]
            # a new dict: r's own "timing" may be the report cache's (collect_results copies the top level only)
            r["timing"] = {**r.get("timing", {}), "loss_ms_per_step": kernel["ms"] if kernel else None}
    return costs
