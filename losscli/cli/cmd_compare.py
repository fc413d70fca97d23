"""``losscli compare``: losses x seeds x noise x imbalance -> the loss adoption report."""

from __future__ import annotations

from typing import List, Optional

import typer

from losscli.cli import names
from losscli.cli.app import app
from losscli.cli import run_options as o
from losscli.cli.common import FORMAT_OPTION, QUIET_OPTION, check_not_empty, check_out, quiet_libraries
from losscli.cli.output import Format, emit, log


C = o.ConfigOptions("default", "from the default preset")


@app.command("compare")
def compare_command(
    losses: Optional[str] = C.losses,
    seeds: Optional[int] = C.seeds,
    noise: Optional[str] = C.noise_list,
    imbalance: Optional[str] = C.imbalance_list,
    baseline: Optional[str] = typer.Option(None, "--baseline", autocompletion=names.complete_loss, help="Baseline loss (default: the first listed)."),
    teacher: Optional[str] = typer.Option(None, "--teacher", help="Run dir of a trained teacher, used by the distilling losses (kd, pld, dhkd) only."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Preset name or YAML file.  [default: default]",
                                         autocompletion=names.complete_preset),
    dataset: Optional[str] = C.dataset,
    data_dir: Optional[str] = o.DATA_DIR,
    download: Optional[bool] = o.DOWNLOAD,
    model: Optional[str] = C.model,
    epochs: Optional[int] = C.epochs,
    batch_size: Optional[int] = C.batch_size,
    lr: Optional[float] = C.lr,
    optimizer: Optional[str] = C.optimizer,
    schedule: Optional[str] = C.schedule,
    device: Optional[str] = C.device,
    compile: Optional[bool] = o.COMPILE,
    image_column: Optional[str] = o.IMAGE_COL,
    text_column: Optional[str] = o.TEXT_COL,
    label_column: Optional[str] = o.LABEL_COL,
    feature_columns: Optional[str] = o.FEATURE_COLS,
    normalize: Optional[bool] = o.NORMALIZE,
    image_size: Optional[int] = o.IMAGE_SIZE,
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Worker processes (default: one per CPU core on CPU, 1 on CUDA where runs are batched)."),
    executor: Optional[str] = typer.Option(None, "--executor", help="Where runs execute: local (this process), pool (worker processes) or ray (a Ray cluster; pip install 'losscli[ray]'). Default: local for one job, pool for more."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address ('auto' joins a running cluster; default: start a local Ray instance)."),
    gpus_per_run: Optional[float] = typer.Option(None, "--gpus-per-run", help="Ray: GPUs per run; fractions pack several small runs on one GPU."),
    batch_runs: Optional[bool] = typer.Option(None, "--batch-runs/--no-batch-runs", help="Train compatible runs together with torch.func (default: on CUDA only, where it is faster)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Re-run runs recorded as failed."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Skip runs already finished in --out (default). --no-resume refuses a non-empty --out."),
    wait: bool = typer.Option(False, "--wait", help="If another losscli process is using --out, wait for it instead of exiting."),
    tune: Optional[int] = typer.Option(None, "--tune", min=0, help="Tune every loss (baseline included) with the same budget of N trials per setting (Optuna TPE + successive halving), validation split only; the final runs use fresh seeds."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL for --tune (default: sqlite in the compare directory; a shared PostgreSQL/MySQL URL lets several machines tune one study)."),
    clean_val: Optional[bool] = o.CLEAN_VAL,
    test: Optional[str] = typer.Option(None, "--test", help="Paired test: t (default: seeds + test-set sampling variance), t-seeds, signflip (exact)."),
    correction: Optional[str] = typer.Option(None, "--correction", help="Multiple-comparison control over the report: holm (default), bh, none."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Significance level (default 0.05)."),
    min_effect: Optional[float] = typer.Option(None, "--min-effect", help="Smallest difference worth adopting, in points of accuracy-type metrics (default 1)."),
    sets: Optional[List[str]] = o.SET,
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Compare directory (default: compare/<preset> for a preset's own grid, compare/<preset>-<grid hash> otherwise)."),
    tracker: Optional[str] = o.TRACKER,
    tracking_uri: Optional[str] = o.TRACKING_URI,
    quiet: bool = QUIET_OPTION,
    fmt: Format = FORMAT_OPTION,
) -> None:
    """Compare losses under controlled conditions: accuracy, calibration, robustness, cost, with paired statistics."""
    from pathlib import Path

    from losscli.app.compare.grid import default_out_dir
    from losscli.app.compare.run import run_compare
    from losscli.config import build_config, validate
    from losscli.errors import RunFailedError, UsageError
    from losscli.report.compare import summary_rows

    quiet_libraries(quiet)
    check_out(out)
    # an unset shell variable: '' meant the default preset (compare: 60 runs) or data directory without a word
    check_not_empty(preset, "--preset", "give a preset name or a YAML file, or leave --preset out")
    check_not_empty(data_dir, "--data-dir", "give a directory, or leave --data-dir out for the default")
    overrides = o.flag_overrides(
        dataset=dataset, data_dir=data_dir, download=download, model=model, epochs=epochs, batch_size=batch_size,
        lr=lr, optimizer=optimizer, schedule=schedule, device=device, compile=compile, image_column=image_column,
        text_column=text_column, label_column=label_column, feature_columns=feature_columns, normalize=normalize, image_size=image_size,
        losses=losses, seeds=seeds, noise=noise, imbalance=imbalance, baseline=baseline, teacher=teacher, jobs=jobs,
        batch_runs=batch_runs, executor=executor, address=address, gpus_per_run=gpus_per_run, clean_val=clean_val,
        nested={"tune.trials": tune, "tune.storage": storage, "statistics.test": test,
                "statistics.correction": correction, "statistics.alpha": alpha, "statistics.min_effect": min_effect},
    )
    preset_name = preset or "default"
    if losses is not None and baseline is None:
        overrides["baseline"] = None  # your own list: its first loss is the baseline, not the preset's choice
    cfg = validate(build_config(preset_name, overrides, sets), "compare")
    out_dir = Path(out) if out else default_out_dir(preset_name, cfg, build_config(preset_name))
    if not resume and out_dir.is_dir() and any(out_dir.iterdir()):
        raise UsageError(f"{out_dir} is not empty and --no-resume was given; choose another --out or remove it")

    report = run_compare(cfg, out_dir, retry_failed=retry_failed, log=None if quiet else log, progress=not quiet,
                         wait=wait, tracker=tracker, tracking_uri=tracking_uri)
    if fmt in (Format.yaml, Format.json):
        emit(report, fmt)
    else:
        emit(report, fmt, rows=_compact_rows(summary_rows(report), report) if fmt != Format.csv else summary_rows(report))
        if not quiet:
            for verdict in report.get("verdicts", []):
                for sentence in verdict.get("sentences", []):
                    log(f"  [{verdict.get('label')}] {sentence}")
    log(f"report: {out_dir / 'report.md'} (data: {out_dir / 'report.yaml'})")
    if report.get("n_failed"):
        raise RunFailedError(f"{report['n_failed']} run(s) failed; see {out_dir / 'report.md'} (results of the others are kept)")


def _compact_rows(rows: list[dict], report: dict) -> list[dict]:
    """The terminal table: one line per (setting, loss) with the numbers people scan first (the
    report's first four metrics, percent metrics in %)."""
    from losscli.metrics.info import metric_info

    metrics = (report.get("metrics") or [])[:4]
    primary = metric_info(report.get("primary_metric", "accuracy"))

    def pm(row: dict, key: str) -> str:
        mean, std = row.get(key), row.get(f"{key}_std")
        if mean is None:
            return "-"
        scale, digits = (100, 1) if metric_info(key).percent else (1, 3)
        spread = std is not None and (row.get("n_ok") or 0) > 1  # one seed has no spread; identical seeds show ± 0
        return f"{scale * mean:.{digits}f}" + (f" ± {scale * std:.{digits}f}" if spread else "")

    out = []
    for r in rows:
        diff, p = r.get("diff"), r.get("p_adjusted")
        row = {"noise": r.get("noise"), "imbalance": r.get("imbalance"), "loss": r.get("loss"),
               "runs": f"{r.get('n_ok')}" + (f" ({r.get('n_failed')} failed)" if r.get("n_failed") else "")}
        row.update({metric_info(m).title + (" %" if metric_info(m).percent else ""): pm(r, m) for m in metrics})
        row[f"Δ {primary.title}" + (" (pts)" if primary.percent else "")] = \
            "-" if diff is None else (f"{100 * diff:+.1f}" if primary.percent else f"{diff:+.3g}")
        row["p (adj.)"] = "-" if p is None else f"{p:.2g}"
        row["p (raw)"] = "-" if r.get("p_value") is None else f"{r['p_value']:.2g}"  # both, as issue 11 asks
        row["W/T/L"] = "-" if r.get("wins") is None else f"{r.get('wins')}/{r.get('ties')}/{r.get('losses')}"
        row["outcome"] = r.get("outcome")
        out.append(row)
    return out
