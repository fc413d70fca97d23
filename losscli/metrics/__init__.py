"""Functional classification metrics (torch, CPU, float64). See :mod:`losscli.metrics.functional`."""

from losscli.metrics.functional import (  # noqa: F401
    DEFINITIONS,
    METRICS_INFO,
    PROB_ATOL,
    accuracy,
    adaptive_ece,
    aurc,
    balanced_accuracy,
    bin_indices,
    brier,
    classwise_ece,
    compute_metrics,
    ece,
    looks_like_probabilities,
    macro_f1,
    mce,
    nll,
    per_class_accuracy,
    reliability_bins,
    shot_accuracy,
    top_k_accuracy,
)

__all__ = [
    "DEFINITIONS", "METRICS_INFO", "PROB_ATOL", "accuracy", "adaptive_ece", "aurc", "balanced_accuracy",
    "bin_indices", "brier", "classwise_ece", "compute_metrics", "ece", "looks_like_probabilities", "macro_f1",
    "mce", "nll", "per_class_accuracy", "reliability_bins", "shot_accuracy", "top_k_accuracy",
]
