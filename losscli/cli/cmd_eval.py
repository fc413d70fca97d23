"""``losscli eval``: every metric of a finished run (optionally after a fitted calibrator)."""

from __future__ import annotations

from typing import Optional

import typer

from losscli.cli import names
from losscli.cli.app import app
from losscli.cli.common import FORMAT_OPTION, check_not_empty
from losscli.cli.output import Format, emit, log


@app.command("eval")
def eval_command(
    run_dir: Optional[str] = typer.Argument(None, help="A run directory written by `losscli train`."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="A model.pt (its run's config.yaml must sit beside it)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", autocompletion=names.complete_dataset, help="Evaluate on this dataset's test split instead."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Directory for --dataset."),
    calibrator: Optional[str] = typer.Option(None, "--calibrator", autocompletion=names.complete_calibrators, help="Apply a calibrator fitted by `losscli calibrate` (e.g. temperature)."),
    bins: int = typer.Option(15, "--bins", help="Bins for the ECE family."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda."),
    fmt: Format = FORMAT_OPTION,
) -> None:
    """Evaluate a run: accuracy, top-5, macro-F1, NLL, Brier, ECE family, AURC, per-class and many/medium/few-shot accuracy."""
    from pathlib import Path

    from losscli.errors import UsageError

    check_not_empty(run_dir, "RUN_DIR", "give a directory written by `losscli train`")
    # '' evaluated the run's own test set, uncalibrated, as if the option were not given
    check_not_empty(dataset, "--dataset", "give a dataset name, or leave --dataset out for the run's own")
    check_not_empty(data_dir, "--data-dir", "give a directory, or leave --data-dir out for the default")
    check_not_empty(calibrator, "--calibrator", "give a fitted calibrator's name (e.g. temperature), or leave it out")
    if (run_dir is None) == (checkpoint is None):
        raise UsageError("pass a RUN_DIR or --checkpoint FILE (one of them)")
    if checkpoint is not None and (Path(checkpoint).name != "model.pt" or not Path(checkpoint).is_file()):
        # any other name was ignored: the model.pt beside it was evaluated instead
        raise UsageError(f"--checkpoint {checkpoint!r} is not a run's model.pt; pass the model.pt a run directory "
                         "holds (its config.yaml beside it), or the run directory itself")
    directory = Path(run_dir) if run_dir is not None else Path(checkpoint).parent
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise UsageError(f"run directory {str(directory)!r} {what}; pass a directory written by `losscli train`")
    from losscli.app.evaluate import evaluate_run

    report = evaluate_run(directory, dataset=dataset, data_dir=data_dir, calibrator=calibrator, n_bins=bins, device=device)
    for warning in report.get("warnings") or []:
        log(f"warning: {warning}")
    rows = []
    for split in ("test", "val"):
        if report["metrics"].get(split):
            rows.append({"split": split, **report["metrics"][split]})
    emit(report, fmt, rows=rows)
    if fmt in (Format.table, Format.md) and report.get("shot_accuracy"):
        emit(report, fmt, rows=[{"split": "test", **report["shot_accuracy"]}])
