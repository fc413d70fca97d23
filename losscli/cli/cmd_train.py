"""``losscli train``: one model, one loss, one dataset -> a run directory."""

from __future__ import annotations

from typing import List, Optional

import typer

from losscli.cli.app import app
from losscli.cli import run_options as o
from losscli.cli.common import FORMAT_OPTION, QUIET_OPTION
from losscli.cli.output import Format, emit, log


@app.command("train")
def train_command(
    loss: Optional[str] = typer.Option(None, "--loss", "-l", help="Loss name or spec, e.g. focal, 'focal(gamma=3)' or a weighted sum 'ce + 0.5*focal(gamma=3)'."),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", help="Loss hyperparameter name=value (repeatable)."),
    preset: Optional[str] = o.PRESET,
    dataset: Optional[str] = o.DATASET,
    data_dir: Optional[str] = o.DATA_DIR,
    download: Optional[bool] = o.DOWNLOAD,
    model: Optional[str] = o.MODEL,
    epochs: Optional[int] = o.EPOCHS,
    batch_size: Optional[int] = o.BATCH,
    lr: Optional[float] = o.LR,
    optimizer: Optional[str] = o.OPTIMIZER,
    schedule: Optional[str] = o.SCHEDULE,
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for init, data order and label noise."),
    noise: Optional[str] = typer.Option(None, "--noise", help="Label noise: none, sym:0.4, asym:0.4, instance:0.4."),
    imbalance: Optional[str] = typer.Option(None, "--imbalance", help="Long tail: none, exp:100, step:10."),
    device: Optional[str] = o.DEVICE,
    compile: Optional[bool] = o.COMPILE,
    teacher: Optional[str] = typer.Option(None, "--teacher", help="Run dir of a trained teacher (for kd, pld, dhkd)."),
    image_column: Optional[str] = o.IMAGE_COL,
    text_column: Optional[str] = o.TEXT_COL,
    label_column: Optional[str] = o.LABEL_COL,
    clean_val: Optional[bool] = o.CLEAN_VAL,
    sets: Optional[List[str]] = o.SET,
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Run directory (default runs/<loss>-<dataset>-s<seed>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing completed run directory."),
    quiet: bool = QUIET_OPTION,
    fmt: Format = FORMAT_OPTION,
) -> None:
    """Train one model with one loss. Writes config.yaml, metrics.jsonl, model.pt, logits, report.md/.yaml."""
    from losscli.app.train import run_train
    from losscli.config import build_config
    from losscli.errors import RunFailedError
    from losscli.lossspec import format_composite, format_loss_spec, parse_assignments, parse_loss_spec, split_composite

    overrides = o.flag_overrides(
        dataset=dataset, data_dir=data_dir, download=download, model=model, epochs=epochs, batch_size=batch_size,
        lr=lr, optimizer=optimizer, schedule=schedule, device=device, compile=compile, image_column=image_column,
        text_column=text_column, label_column=label_column, seed=seed, noise=noise, imbalance=imbalance,
        clean_val=clean_val,
    )
    if loss is not None or param:
        given = parse_assignments(param or [], what="--param")
        composite = split_composite("ce" if loss is None else loss)
        if composite is not None:  # --param applies to the whole sum (weight, ignore_index); validated later
            terms, options = composite
            overrides["loss"] = format_composite(terms, {**options, **given})
        else:
            name, params = parse_loss_spec("ce" if loss is None else loss)
            overrides["loss"] = format_loss_spec(name, {**params, **given})
    cfg = build_config(preset, overrides, sets)
    report, run_dir = run_train(cfg, out=out, teacher=teacher, overwrite=overwrite, progress=not quiet,
                                log=None if quiet else log)
    _print_summary(report, fmt)
    if report["status"] != "ok":
        raise RunFailedError(f"run failed: {report['error']} (partial results kept in {run_dir})")
    if not quiet:
        log(f"run directory: {run_dir}")


def _print_summary(report: dict, fmt: Format) -> None:
    if fmt in (Format.yaml, Format.json):
        emit(report, fmt)
        return
    m = report.get("metrics") or {}
    test = m.get("test") or {}
    regression = report.get("task") == "regression"
    keys = ("mse", "mae", "r2") if regression else ("accuracy", "macro_f1", "nll", "ece", "brier")
    row = {"loss": report["loss"]["label"], "status": report["status"], **{k: test.get(k) for k in keys},
           "train_s": report["timing"]["train_seconds"]}
    best = m.get("best_epoch")
    if best:
        row["best_epoch"] = best["epoch"]
        if regression:
            row["best_epoch_test_mse"] = best["test_mse"]
        else:
            row["best_epoch_test_acc"] = best["test_accuracy"]
    emit(report, fmt, rows=[row])
