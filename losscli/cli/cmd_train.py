"""``losscli train``: one model, one loss, one dataset -> a run directory."""

from __future__ import annotations

from typing import List, Optional

import typer

from losscli.cli import names
from losscli.cli.app import app
from losscli.cli import run_options as o
from losscli.cli.common import FORMAT_OPTION, QUIET_OPTION, check_not_empty, check_out, quiet_libraries
from losscli.cli.output import Format, emit, log


T = o.ConfigOptions(None, "from the config")


@app.command("train")
def train_command(
    loss: Optional[str] = typer.Option(None, "--loss", "-l", autocompletion=names.complete_loss, help="Loss name or spec, e.g. focal, 'focal(gamma=3)', a weighted sum 'ce + 0.5*focal(gamma=3)' or your own loss 'my_package.losses:MyLoss(k=1)'.  [default: ce (from the config)]"),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", help="Loss hyperparameter name=value (repeatable)."),
    preset: Optional[str] = o.PRESET,
    dataset: Optional[str] = T.dataset,
    data_dir: Optional[str] = o.DATA_DIR,
    download: Optional[bool] = o.DOWNLOAD,
    model: Optional[str] = T.model,
    epochs: Optional[int] = T.epochs,
    batch_size: Optional[int] = T.batch_size,
    lr: Optional[float] = T.lr,
    optimizer: Optional[str] = T.optimizer,
    schedule: Optional[str] = T.schedule,
    seed: Optional[int] = T.seed,
    noise: Optional[str] = T.noise,
    imbalance: Optional[str] = T.imbalance,
    device: Optional[str] = T.device,
    compile: Optional[bool] = o.COMPILE,
    teacher: Optional[str] = typer.Option(None, "--teacher", help="Run dir of a trained teacher (for kd, pld, dhkd)."),
    image_column: Optional[str] = o.IMAGE_COL,
    text_column: Optional[str] = o.TEXT_COL,
    label_column: Optional[str] = o.LABEL_COL,
    feature_columns: Optional[str] = o.FEATURE_COLS,
    normalize: Optional[bool] = o.NORMALIZE,
    image_size: Optional[int] = o.IMAGE_SIZE,
    clean_val: Optional[bool] = o.CLEAN_VAL,
    sets: Optional[List[str]] = o.SET,
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Run directory (default runs/<loss>-<dataset>-s<seed>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing completed run directory."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last epoch checkpoint (a killed or preempted run); starts it when there is none. Without other options, the run's own config is used."),
    log_every: Optional[int] = o.LOG_EVERY,
    tracker: Optional[str] = o.TRACKER,
    tracking_uri: Optional[str] = o.TRACKING_URI,
    quiet: bool = QUIET_OPTION,
    fmt: Format = FORMAT_OPTION,
) -> None:
    """Train one model with one loss. Writes config.yaml, metrics.jsonl, model.pt, logits, report.md/.yaml
    (and checkpoint.pt while it runs, for --resume)."""
    from losscli.app.train import run_train
    from losscli.config import build_config
    from losscli.errors import RunFailedError, UsageError
    from losscli.losses.resolve import parse_spec
    from losscli.lossspec import format_composite, format_loss_spec, parse_assignments, parse_params, split_composite

    quiet_libraries(quiet)
    check_out(out)
    # an unset shell variable: '' meant the default preset (compare: 60 runs) or data directory without a word
    check_not_empty(preset, "--preset", "give a preset name or a YAML file, or leave --preset out")
    check_not_empty(data_dir, "--data-dir", "give a directory, or leave --data-dir out for the default")
    if resume and overwrite:
        raise UsageError("--resume continues a run and --overwrite replaces it; give one of them")
    overrides = o.flag_overrides(
        dataset=dataset, data_dir=data_dir, download=download, model=model, epochs=epochs, batch_size=batch_size,
        lr=lr, optimizer=optimizer, schedule=schedule, device=device, compile=compile, image_column=image_column,
        text_column=text_column, label_column=label_column, feature_columns=feature_columns, normalize=normalize,
        image_size=image_size, seed=seed, noise=noise, imbalance=imbalance, clean_val=clean_val,
    )
    if loss is not None or param:
        given = parse_params(param or [])
        if param and "loss" in parse_assignments(sets or [], what="--set"):  # applied after the flags: -p was lost
            raise UsageError("--param applies to --loss (or the preset's loss), and --set loss=... replaces it; write "
                             "the parameters in one spec (--set loss='focal(gamma=3)' or --loss 'focal(gamma=3)')")
        base = loss if loss is not None else _preset_loss(preset) if param else "ce"
        composite = split_composite(base)
        if composite is not None:  # --param applies to the whole sum (weight, ignore_index); validated later
            terms, options = composite
            overrides["loss"] = format_composite(terms, {**options, **given})
        else:
            name, params = parse_spec(base)
            overrides["loss"] = format_loss_spec(name, {**params, **given})
    # --resume with nothing but --out: the run's own config.yaml says what it is
    cfg = None if resume and out and not (overrides or preset or sets or teacher) else build_config(preset, overrides, sets)
    report, run_dir = run_train(cfg, out=out, teacher=teacher, overwrite=overwrite, resume=resume,
                                progress=not quiet, log=None if quiet else log, log_every=log_every,
                                tracker=tracker, tracking_uri=tracking_uri)
    _print_summary(report, fmt)
    if report["status"] != "ok":
        raise RunFailedError(f"run failed: {report['error']} (partial results kept in {run_dir})")
    if not quiet:
        log(f"run directory: {run_dir}")


def _preset_loss(preset: Optional[str]) -> str:
    """The loss ``--param`` applies to without ``--loss``: the preset's (it was always ce: ``--preset p -p gamma=3``
    with a focal preset said "ce: unknown parameter 'gamma'")."""
    from losscli.config.loading import read_preset

    named = read_preset(preset).get("loss") if preset else None
    return named if isinstance(named, str) and named.strip() else "ce"


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
