"""Teacher logits for distillation losses (``kd``, ...): a finished run's predictions on the
student's training set."""

from __future__ import annotations

from pathlib import Path

import torch

from losscli.engine.runspec import RunSpec
from losscli.errors import UsageError


def require_teacher(spec: RunSpec) -> bool:
    """Whether the run's loss distils (a composite does when one of its parts does); one that does
    without a teacher run directory is a one-line error, raised before any run starts."""
    if "teacher_logits" not in spec.loss.info().needs:
        return False
    if not spec.teacher:
        raise UsageError(f"{spec.loss.label} distils from a teacher: pass --teacher RUN_DIR (a finished `losscli train` "
                         "run; for compare: --teacher or the config key teacher)")
    if not Path(spec.teacher).is_dir():
        raise UsageError(f"--teacher {spec.teacher} is not a directory; pass a run directory written by `losscli train`")
    return True


def check_teacher_used(spec: RunSpec) -> None:
    """A teacher given to a run whose loss does not distil is a one-line error: ``train --loss ce --teacher
    DIR`` recorded the teacher and ignored it without a word."""
    if spec.teacher and "teacher_logits" not in spec.loss.info().needs:
        raise UsageError(f"--teacher is for the distilling losses (kd, pld, dhkd, or a sum with one); {spec.loss.label} "
                         "does not distil: drop --teacher")


def check_teacher(spec: RunSpec, bundle):
    """The teacher run of a distilling ``spec`` (``rundir.load_run``), checked against the student's data
    from its report alone (no model restored), so compare can refuse a teacher that does not fit in one
    line before any run, instead of failing every run of the loss; None when the loss does not distil."""
    from losscli.engine import rundir

    if not require_teacher(spec):
        return None
    loaded = rundir.load_run(Path(spec.teacher))
    if rundir.report_problem(loaded.report) is not None or loaded.report["status"] != "ok":
        raise UsageError(f"--teacher {spec.teacher} is not a finished run; train it to the end first")
    data = loaded.report.get("data") or {}
    if data.get("task") == "regression":
        raise UsageError(f"--teacher {spec.teacher} is a regression run; a teacher must be a classifier")
    classes, shape = data.get("num_classes"), tuple(data.get("input_shape") or ())
    if classes != bundle.num_classes or shape != tuple(bundle.input_shape):
        raise UsageError(f"--teacher {spec.teacher} was trained on {classes} classes with inputs {shape}; the student "
                         f"({bundle.name}) has {bundle.num_classes} and {tuple(bundle.input_shape)}")
    return loaded


def teacher_logits(spec: RunSpec, bundle, device: torch.device) -> torch.Tensor | None:
    """``[N_train, C]`` teacher logits when the run's loss distils, else None."""
    from losscli.engine.build import restore_run
    from losscli.engine.evaluate import predict_logits

    loaded = check_teacher(spec, bundle)
    if loaded is None:
        return None
    model, loss_fn, _ = restore_run(loaded, device)
    return predict_logits(model, loss_fn, bundle.x_train.to(device)).to(device)
