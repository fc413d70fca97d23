"""Functional classification (and regression) metrics (torch, CPU, float64) and their one description table.

>>> from losscli.metrics import compute_metrics, ece, METRICS
>>> METRICS["ece"].higher_is_better, METRICS["accuracy"].unit
(False, '%')
"""

from losscli.metrics.functional import (  # noqa: F401
    DEFINITIONS,
    HEADLINE,
    METRICS,
    PROB_ATOL,
    MetricInfo,
    accuracy,
    adaptive_ece,
    aurc,
    balanced_accuracy,
    bin_indices,
    brier,
    classwise_ece,
    compute_metrics,
    ece,
    higher_is_better,
    looks_like_probabilities,
    macro_f1,
    mce,
    metric_info,
    nll,
    per_class_accuracy,
    reliability_bins,
    shot_accuracy,
    top_k_accuracy,
)
from losscli.metrics.regression import REGRESSION_HEADLINE, compute_regression_metrics, mae, mse, r2  # noqa: F401

__all__ = [
    "DEFINITIONS", "HEADLINE", "METRICS", "PROB_ATOL", "MetricInfo", "accuracy", "adaptive_ece", "aurc",
    "balanced_accuracy", "bin_indices", "brier", "classwise_ece", "compute_metrics", "ece", "higher_is_better",
    "looks_like_probabilities", "macro_f1", "mce", "metric_info", "nll", "per_class_accuracy", "reliability_bins",
    "shot_accuracy", "top_k_accuracy", "REGRESSION_HEADLINE", "compute_regression_metrics", "mae", "mse", "r2",
]
