"""Fit calibrators on validation logits and score them before/after on both splits.

Report schema ``losscli/calibration/v1``::

    schema: losscli/calibration/v1
    env: {losscli, torch, device, ...}
    data: {n_val, n_test, n_classes}
    n_bins: 15
    uncalibrated: {val: {metrics}, test: {metrics}}
    methods: {name: {params: {...}, accuracy_preserving: bool, fit_seconds: float, val: {...}, test: {...}}}
    definitions: <text of the metric conventions>
    files: {...}          # only when written to a directory
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Sequence

import torch

from losscli.calibrate.base import CALIBRATORS, Calibrator, check_logits
from losscli.errors import UsageError
from losscli.lossspec import split_list
from losscli.metrics.functional import DEFINITIONS, check_labels, compute_metrics

SCHEMA = "losscli/calibration/v1"
DEFAULT_METHODS = ("temperature", "vector", "matrix", "dirichlet", "histogram", "isotonic")


def resolve_methods(methods: str | Iterable[str] | None) -> list[str]:
    """Canonical calibrator names (comma-separated string or list), duplicates removed.
    Unknown names raise :class:`UnknownNameError` with a "did you mean" hint."""
    if methods is None:
        return list(DEFAULT_METHODS)
    if isinstance(methods, str):
        methods = split_list(methods, "--methods", brackets=False)
    out: list[str] = []
    for m in methods:
        name = CALIBRATORS.canonical(m)
        if name not in out:
            out.append(name)
    if not out:
        raise UsageError(f"no calibration methods given; known: {', '.join(CALIBRATORS.names())}")
    return out


def _check_split(logits: Any, labels: Any, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    z = check_logits(logits, f"{split}_logits")
    y = check_labels(labels, z.shape[0], z.shape[1], f"{split}_labels")
    return z, y


def fit_and_score(val_logits, val_labels, test_logits, test_labels, methods, n_bins):
    """``(report, fitted calibrators, calibrated test logits per method, (test logits, test labels))``."""
    from losscli.environment import environment

    zv, yv = _check_split(val_logits, val_labels, "val")
    zt, yt = _check_split(test_logits, test_labels, "test")
    if zv.shape[1] != zt.shape[1]:
        raise UsageError(f"val logits have {zv.shape[1]} classes but test logits have {zt.shape[1]}")
    names = resolve_methods(methods)
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "env": environment(),
        "data": {"n_val": int(zv.shape[0]), "n_test": int(zt.shape[0]), "n_classes": int(zv.shape[1])},
        "n_bins": int(n_bins),
        "uncalibrated": {"val": compute_metrics(zv, yv, n_bins), "test": compute_metrics(zt, yt, n_bins)},
        "methods": {},
        "definitions": DEFINITIONS,
    }
    fitted: dict[str, Calibrator] = {}
    calibrated_test: dict[str, torch.Tensor] = {}
    for name in names:
        cal = CALIBRATORS.get(name)()
        t0 = time.perf_counter()
        cal.fit(zv, yv)
        seconds = time.perf_counter() - t0
        out_test = cal.transform(zt)
        report["methods"][name] = {
            "params": cal.params(),
            "accuracy_preserving": bool(cal.accuracy_preserving),
            "fit_seconds": round(seconds, 4),
            "val": compute_metrics(cal.transform(zv), yv, n_bins),
            "test": compute_metrics(out_test, yt, n_bins),
        }
        fitted[name] = cal
        calibrated_test[name] = out_test
    return report, fitted, calibrated_test, (zt, yt)


def fit_calibrators(val_logits: Any, val_labels: Any, methods: str | Sequence[str] | None = None) -> dict[str, Calibrator]:
    """Fit each method on the validation split; returns ``{name: fitted calibrator}``."""
    zv, yv = _check_split(val_logits, val_labels, "val")
    return {name: CALIBRATORS.get(name)().fit(zv, yv) for name in resolve_methods(methods)}


def calibrate_logits(val_logits: Any, val_labels: Any, test_logits: Any, test_labels: Any,
                     methods: str | Sequence[str] | None = DEFAULT_METHODS, n_bins: int = 15) -> dict[str, Any]:
    """Fit every method on (val_logits, val_labels), score before/after on both splits.

    Returns the ``losscli/calibration/v1`` report dict (see the module docstring)."""
    report, _, _, _ = fit_and_score(val_logits, val_labels, test_logits, test_labels, methods, n_bins)
    return report
