"""The functional metrics API in one namespace, and ``compute_metrics`` (every headline metric).

Conventions: ``probs`` is ``[N, C]`` rows of probabilities; ``logits`` is ``[N, C]`` unnormalised
scores (log-probabilities are fine too); ``labels`` is ``[N]`` integer class indices; numpy arrays
are accepted as well as tensors; everything is computed in float64 on the CPU. Definitions:
:data:`losscli.metrics.info.METRICS`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from losscli.errors import UsageError
from losscli.metrics.calibration import (adaptive_ece, aurc, bin_indices, classwise_ece, ece, mce,  # noqa: F401
                                         reliability_bins)
from losscli.metrics.checks import (PROB_ATOL, check_any, check_bins, check_labels, check_scores,  # noqa: F401
                                    looks_like_probabilities)
from losscli.metrics.classification import (accuracy, balanced_accuracy, brier, macro_f1, nll,  # noqa: F401
                                            per_class_accuracy, shot_accuracy, top_k_accuracy)
from losscli.metrics.info import DEFINITIONS, HEADLINE, METRICS, MetricInfo, higher_is_better, metric_info  # noqa: F401


def compute_metrics(logits: Any, labels: Any, n_bins: int = 15) -> dict[str, float]:
    """Every headline metric from logits (:data:`HEADLINE`, in that order).

    Raises :class:`UsageError` if ``logits`` look like probabilities (softmax of them would
    be meaningless); log-probabilities are fine.
    """
    z, y = check_any(logits, labels, "logits")
    n_bins = check_bins(n_bins)
    if looks_like_probabilities(z):
        raise UsageError("these look like probabilities, pass logits (every row is non-negative and sums to 1)")
    p = torch.softmax(z, dim=1)
    return {
        "accuracy": accuracy(z, y),
        "top5": top_k_accuracy(z, y, 5),
        "macro_f1": macro_f1(z, y),
        "balanced_accuracy": balanced_accuracy(z, y),
        "nll": float(F.cross_entropy(z, y)),
        "brier": brier(p, y),
        "ece": ece(p, y, n_bins),
        "adaptive_ece": adaptive_ece(p, y, n_bins),
        "classwise_ece": classwise_ece(p, y, n_bins),
        "mce": mce(p, y, n_bins),
        "aurc": aurc(p, y),
    }
