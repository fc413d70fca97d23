"""``losscli eval``: every metric of a finished run, recomputed from its saved model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from losscli.errors import UsageError

EVAL_SCHEMA = "losscli/eval/v1"


def evaluate_run(run_dir: Path, *, dataset: str | None = None, data_dir: str | None = None,
                 calibrator: str | None = None, n_bins: int = 15, device: str = "auto") -> dict[str, Any]:
    """All metrics of a saved run (schema ``losscli/eval/v1``), recomputed from its model.

    With ``dataset`` the model is evaluated on that dataset's test split (same input shape
    and classes required). With ``calibrator`` the fitted calibrator from ``losscli
    calibrate`` is applied to the logits first.
    """
    from losscli.device import resolve_device
    from losscli.engine import rundir
    from losscli.engine.build import restore_run
    from losscli.engine.evaluate import predict_logits, regression_metrics, shot_summary, split_metrics
    from losscli.metrics import per_class_accuracy
    from losscli.metrics.checks import check_bins

    check_bins(n_bins)  # before the model is loaded and run

    dev = resolve_device(device)
    loaded = rundir.load_run(Path(run_dir))
    model, loss_fn, bundle = restore_run(loaded, dev)
    if bundle.is_regression and calibrator:
        raise UsageError(f"{run_dir} is a regression run; calibrators apply to classifiers' probabilities")
    splits = {"val": (bundle.x_val, bundle.y_val), "test": (bundle.x_test, bundle.y_test)}
    if dataset:
        from losscli.data import load_dataset

        other = load_dataset(dataset, data_dir=data_dir)
        if other.task != bundle.task:
            raise UsageError(f"{dataset} is a {other.task} dataset; the run was trained on {bundle.task} data")
        if tuple(other.input_shape) != tuple(bundle.input_shape) or other.num_classes != bundle.num_classes:
            raise UsageError(
                f"{dataset} has inputs {tuple(other.input_shape)} and {other.num_classes} classes; the model expects "
                f"{tuple(bundle.input_shape)} and {bundle.num_classes}"
            )
        splits = {"test": (other.x_test, other.y_test)}
    warnings = _unseen(bundle, dataset, splits["test"][1], run_dir)
    cal = None
    if calibrator:
        from losscli.app.calibrate import load_calibrator

        cal = load_calibrator(Path(run_dir), calibrator)
    metrics: dict[str, Any] = {}
    test_logits = None
    for split, (x, y) in splits.items():
        if len(y) == 0:
            continue
        logits = predict_logits(model, loss_fn, x.to(dev))
        if bundle.is_regression:  # hl_gauss: MSE, MAE, R² of the decoded predictions
            metrics[split] = regression_metrics(logits, y, loss_fn)
            continue
        if cal is not None:
            logits = cal.transform(logits)
        metrics[split] = split_metrics(logits, y, bundle, n_bins=n_bins)
        if split == "test":
            test_logits = logits
    y_test = splits["test"][1]
    spec = loaded.spec
    report: dict[str, Any] = {
        "schema": EVAL_SCHEMA,
        "run_dir": str(Path(run_dir).resolve()),
        "loss": spec.loss.to_dict(),
        "dataset": dataset or spec.dataset.name,
        "task": bundle.task,
        "calibrator": calibrator,
        "metrics": metrics,
    }
    if test_logits is not None:
        report["per_class_test_accuracy"] = [float(v) for v in per_class_accuracy(test_logits, y_test,
                                                                                  bundle.num_classes)]
    if shot_summary(metrics.get("test", {})):
        report["shot_accuracy"] = shot_summary(metrics["test"])
    if warnings:
        report["warnings"] = warnings
    return report


def _unseen(bundle, dataset: str | None, y_test, run_dir: Path) -> list[str]:
    """Warnings about test classes the run never trained on (its own data's, recorded when it was
    loaded; for another ``dataset``, its test classes missing from the run's training split)."""
    if bundle.is_regression:
        return []
    if not dataset:
        return list(bundle.info.get("warnings") or [])
    from losscli.data.bundle import unseen_classes_warning

    warning = unseen_classes_warning(f"{dataset} evaluated with the run in {run_dir}", bundle.y_train, y_test,
                                     bundle.class_names)
    return [warning] if warning else []
