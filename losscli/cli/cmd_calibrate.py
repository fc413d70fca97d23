"""``losscli calibrate``: fit post-hoc calibrators on validation logits, score them on test logits."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from losscli.cli import names
from losscli.cli.app import app
from losscli.cli.common import FORMAT_OPTION, check_not_empty
from losscli.cli.output import Format, emit, log

# the help lists calibrate.fitting.DEFAULT_METHODS and every built-in calibrator (a test checks); the
# default itself is None -> that tuple, so it has one owner (importing it here would load torch for --help)
_METHODS_HELP = ("Comma-separated calibrators (default: temperature, vector, matrix, dirichlet, histogram, isotonic; "
                 "also h_calibration, correctness_aware, or a plugin my_package.module:Class).")


@app.command("calibrate")
def calibrate_command(
    run_dir: Optional[str] = typer.Argument(
        None, metavar="RUN_DIR", help="Run directory with logits.pt (val/test logits and labels); outputs are written into it."),
    methods: Optional[str] = typer.Option(None, "--methods", "-m", autocompletion=names.complete_calibrators,
                                           help=_METHODS_HELP),
    bins: int = typer.Option(15, "--bins", min=1, help="Equal-width bins for ECE/MCE/classwise ECE (and equal-mass for adaptive ECE)."),
    val_logits: Optional[str] = typer.Option(None, "--val-logits", help="Validation logits [N, C] (.pt, .npy, .npz), instead of RUN_DIR."),
    val_labels: Optional[str] = typer.Option(None, "--val-labels", help="Validation labels [N] (.pt, .npy, .npz)."),
    test_logits: Optional[str] = typer.Option(None, "--test-logits", help="Test logits [M, C] (.pt, .npy, .npz)."),
    test_labels: Optional[str] = typer.Option(None, "--test-labels", help="Test labels [M] (.pt, .npy, .npz)."),
    out: Optional[str] = typer.Option(None, "--out", "-o",
                                       help="Write calibration.yaml/.md, diagrams and calibrators here (default: RUN_DIR; with files: nothing written)."),
    fmt: Format = FORMAT_OPTION,
) -> None:
    """Fit calibrators on the validation split, compare them on the test split (before/after)."""
    from losscli.errors import UsageError

    files = {"--val-logits": val_logits, "--val-labels": val_labels, "--test-logits": test_logits,
             "--test-labels": test_labels}
    # taken as text, not Path: typer made '' (an unset shell variable) Path('.'), the current directory
    check_not_empty(run_dir, "RUN_DIR", "give a directory written by `losscli train`")
    check_not_empty(out, "--out", "give a directory, or leave --out out")
    for flag, value in files.items():
        check_not_empty(value, flag, "give a .pt, .npy or .npz file")
    given = [k for k, v in files.items() if v is not None]
    if run_dir is not None and given:
        raise UsageError(f"give either RUN_DIR or the logits/labels files, not both ({', '.join(given)} with {run_dir})")
    if run_dir is None and not given:
        raise UsageError("give a RUN_DIR, or --val-logits, --val-labels, --test-logits and --test-labels")
    if run_dir is None and len(given) < 4:
        missing = [k for k in files if files[k] is None]
        raise UsageError(f"missing {', '.join(missing)} (all four files are needed without a RUN_DIR)")

    from losscli.app.calibrate import calibrate_files, calibrate_run
    from losscli.calibrate import resolve_methods
    from losscli.report.calibration import render_calibration_markdown, summary_rows

    names = resolve_methods(methods)
    out_dir = Path(out) if out is not None else None
    if run_dir is not None:
        report = calibrate_run(Path(run_dir), names, bins, out_dir=out_dir)
        dest: Optional[Path] = out_dir if out_dir is not None else Path(run_dir)
    else:
        report = calibrate_files(Path(val_logits), Path(val_labels), Path(test_logits), Path(test_labels), names, bins,
                                 out_dir=out_dir)
        dest = out_dir
    if dest is not None:
        log(f"wrote {Path(dest) / 'calibration.md'}, calibration.yaml, reliability diagrams and calibrators/")
    rows = summary_rows(report, "test")
    text = render_calibration_markdown(report, report.get("files", {}).get("reliability")) if fmt == Format.md else None
    emit(report, fmt, rows=rows, text=text)
