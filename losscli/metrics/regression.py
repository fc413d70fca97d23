"""Regression metrics of point predictions: MSE, MAE and R² (float64, CPU).

For regression-as-classification losses (``hl_gauss``) the predictions are the loss's decoded
values (``loss.decode(logits)``, the expectation over the bin centres). Definitions:
:data:`losscli.metrics.info.METRICS`.
"""

from __future__ import annotations

from typing import Any

import torch

from losscli.errors import UsageError
from losscli.metrics.checks import as_tensor

#: the metrics ``compute_regression_metrics`` returns, in report order
REGRESSION_HEADLINE = ("mse", "mae", "r2")


def check_pairs(pred: Any, target: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions and targets as float64 ``[N]`` (N >= 1, finite, equal lengths)."""
    p, y = as_tensor(pred, "predictions"), as_tensor(target, "targets")
    for name, t in (("predictions", p), ("targets", y)):
        if t.ndim != 1 or t.dtype == torch.bool or t.is_complex():
            raise UsageError(f"{name} must be real numbers of shape [N], got {t.dtype} {tuple(t.shape)}")
    if p.shape != y.shape:
        raise UsageError(f"shape mismatch: {p.shape[0]} predictions but {y.shape[0]} targets")
    if p.shape[0] == 0:
        raise UsageError("no predictions to score (empty split)")
    p, y = p.to(torch.float64), y.to(torch.float64)
    if not bool(torch.isfinite(p).all() and torch.isfinite(y).all()):
        raise UsageError("predictions and targets must be finite (found NaN or inf)")
    return p, y


def mse(pred: Any, target: Any) -> float:
    """Mean squared error ``mean (p - y)^2``."""
    p, y = check_pairs(pred, target)
    return float((p - y).square().mean())


def mae(pred: Any, target: Any) -> float:
    """Mean absolute error ``mean |p - y|``."""
    p, y = check_pairs(pred, target)
    return float((p - y).abs().mean())


def r2(pred: Any, target: Any) -> float:
    """Coefficient of determination ``1 - sum (p - y)^2 / sum (y - mean y)^2`` (0 for predicting the
    mean of the targets, negative when worse); NaN when the targets are all equal."""
    p, y = check_pairs(pred, target)
    total = (y - y.mean()).square().sum()
    if float(total) == 0.0:
        return float("nan")
    return float(1.0 - (p - y).square().sum() / total)


def compute_regression_metrics(pred: Any, target: Any) -> dict[str, float]:
    """Every regression headline metric (:data:`REGRESSION_HEADLINE`, in that order)."""
    return {"mse": mse(pred, target), "mae": mae(pred, target), "r2": r2(pred, target)}
