"""``losscli check-loss SPEC``: run the loss contract on any loss (registered, composite or plugin)."""

from __future__ import annotations

from typing import List, Optional

import typer

from losscli.cli import names
from losscli.cli.app import app
from losscli.cli.common import FORMAT_OPTION, QUIET_OPTION
from losscli.cli.output import Format, emit, log


#: the checks, in report order (spelled out here so that --help needs no torch; a test keeps it in sync
#: with losscli.losses.contract.CHECKS)
CHECK_NAMES = ("builds, reductions, mean, permutation, finite_float32, finite_bf16, gradcheck, bounded, symmetric, "
               "soft_targets, ignore_index, weight, bad_inputs, func_grad, func_vmap")


@app.command("check-loss")
def check_loss_command(
    spec: str = typer.Argument(..., autocompletion=names.complete_loss, help="Loss spec: a registered name such as 'focal(gamma=3)', a weighted sum 'ce + 0.5*focal', or a plugin 'my_package.losses:MyLoss(k=1)'."),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", help="Loss hyperparameter name=value (repeatable)."),
    check: Optional[List[str]] = typer.Option(None, "--check", "-c", help=f"Run only this check (repeatable; default: all): {CHECK_NAMES}."),
    classes: int = typer.Option(5, "--classes", help="Classes (or bins) of the test batches."),
    quiet: bool = QUIET_OPTION,
    fmt: Format = FORMAT_OPTION,
) -> None:
    """Check that a loss keeps the loss contract: reductions, mean = sum / N, permutation equivariance,
    finite values and gradients at logits of magnitude 1e4 (float32, bfloat16), float64 gradcheck,
    the properties it claims (bounded, symmetric, soft targets, ignore_index, per-class weight) and
    clear errors on wrong shapes. Exit 1 when a check fails."""
    from losscli.errors import RunFailedError
    from losscli.losses.contract import CHECKS, check_loss, contract_case
    from losscli.losses.resolve import parse_spec
    from losscli.lossspec import format_composite, format_loss_spec, parse_params, split_composite

    if param:  # --param applies to the one loss, or to the whole sum (like train's)
        given = parse_params(param)
        composite = split_composite(spec)
        if composite is not None:
            spec = format_composite(composite[0], {**composite[1], **given})
        else:
            name, params = parse_spec(spec)
            spec = format_loss_spec(name, {**params, **given})
    case = contract_case(spec, classes)
    label = case.spec.label
    results = check_loss(case, checks=check or None)
    failed = [r.check for r in results if r.failed]
    data = {"loss": label, "passed": not failed, "checks": [r.to_dict() for r in results]}
    if fmt in (Format.yaml, Format.json):
        emit(data, fmt)
    else:  # what each check tests: spelled out in csv (for spreadsheets); `--help` and the docs say it for people
        rows = [{"loss": label, "check": r.check, "result": r.status, "detail": r.detail, "what": CHECKS[r.check][0]}
                if fmt == Format.csv else {"check": r.check, "result": r.status, "detail": r.detail} for r in results]
        emit(data, fmt, rows=rows)
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "skip")}
    if not quiet:
        log(f"{label}: {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped (not applicable)")
    if failed:
        raise RunFailedError(f"{label} fails the loss contract: {', '.join(failed)}")
