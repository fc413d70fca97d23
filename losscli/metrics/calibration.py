"""Calibration metrics on top-label (and per-class) confidence: ECE, MCE, adaptive ECE,
classwise ECE, AURC and the per-bin data of a reliability diagram.

Equal-width binning: edges ``linspace(0, 1, B + 1)`` in float64; bin ``b`` holds confidences in
``(edge[b], edge[b+1]]``; the first bin also takes 0 and the last bin is closed at 1.0.
Empty bins contribute nothing.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from losscli.metrics.checks import check_bins, check_probs



def bin_indices(conf: torch.Tensor, n_bins: int = 15) -> torch.Tensor:
    """Equal-width bin of each confidence: bin ``b`` is ``(b/B, (b+1)/B]``, the first bin
    also takes 0 (and anything below) and the last is closed at 1.0 (and anything above)."""
    n_bins = check_bins(n_bins)
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)
    return torch.bucketize(conf.to(torch.float64), edges[1:-1], right=False)


def _binned_sums(conf: torch.Tensor, hit: torch.Tensor, idx: torch.Tensor, n_bins: int):
    count = torch.bincount(idx, minlength=n_bins).to(torch.float64)
    sum_conf = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, idx, conf)
    sum_hit = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, idx, hit.to(torch.float64))
    return count, sum_conf, sum_hit


def _top_label(p: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    conf, pred = p.max(1)
    return conf, (pred == y)


def ece(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """Top-label expected calibration error with ``n_bins`` equal-width bins.

    Bins are ``(lo, hi]`` with the first bin including 0 and the last bin closed at 1.0.
    ``ECE = sum_b (n_b/N) |acc_b - conf_b|`` over non-empty bins.
    """
    p, y = check_probs(probs, labels)
    n_bins = check_bins(n_bins)
    conf, hit = _top_label(p, y)
    count, sc, sh = _binned_sums(conf, hit, bin_indices(conf, n_bins), n_bins)
    return float((sh - sc).abs().sum() / p.shape[0])


def mce(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """Maximum calibration error: largest ``|acc_b - conf_b|`` over non-empty equal-width bins
    (same binning as :func:`ece`)."""
    p, y = check_probs(probs, labels)
    n_bins = check_bins(n_bins)
    conf, hit = _top_label(p, y)
    count, sc, sh = _binned_sums(conf, hit, bin_indices(conf, n_bins), n_bins)
    keep = count > 0
    return float(((sh[keep] - sc[keep]).abs() / count[keep]).max())


def adaptive_ece(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """Top-label ECE with equal-mass bins: after a stable ascending sort of the confidences,
    sample ``i`` (0-based) goes to bin ``floor(i * B / N)`` (sizes differ by at most one)."""
    p, y = check_probs(probs, labels)
    n_bins = check_bins(n_bins)
    conf, hit = _top_label(p, y)
    n = conf.shape[0]
    order = torch.sort(conf, stable=True).indices
    idx = torch.empty(n, dtype=torch.int64)
    idx[order] = torch.arange(n, dtype=torch.int64) * n_bins // n
    count, sc, sh = _binned_sums(conf, hit, idx, n_bins)
    return float((sh - sc).abs().sum() / n)


def classwise_ece(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """Mean over classes ``c`` of ``sum_b (n_b/N) |freq_b(y == c) - mean_b(p_c)|`` with the
    equal-width bins of :func:`ece` applied to ``p_c`` (Kull et al. 2019; mean, not sum)."""
    p, y = check_probs(probs, labels)
    n_bins = check_bins(n_bins)
    n, c = p.shape
    idx = bin_indices(p, n_bins) + torch.arange(c)[None, :] * n_bins  # [N, C] -> flat (class, bin)
    hit = F.one_hot(y, c).to(torch.float64)
    count, sc, sh = _binned_sums(p.reshape(-1), hit.reshape(-1), idx.reshape(-1), c * n_bins)
    per_class = (sh - sc).abs().reshape(c, n_bins).sum(1) / n
    return float(per_class.mean())


def aurc(probs: Any, labels: Any) -> float:
    """Area under the risk-coverage curve (Geifman et al. 2019), selection by top-label confidence.

    Samples ranked by decreasing confidence; ``risk(k)`` = errors among the ``k`` most
    confident / ``k``; AURC = mean of ``risk(k)`` over ``k = 1..N``. Within a group of tied
    confidences the cumulative error is interpolated linearly (its expectation over random
    orderings of the tie), so the value does not depend on sort order.
    """
    p, y = check_probs(probs, labels)
    conf, hit = _top_label(p, y)
    n = conf.shape[0]
    order = torch.sort(conf, descending=True, stable=True).indices
    c = conf[order]
    err = (~hit[order]).to(torch.float64)
    _, inverse, counts = torch.unique_consecutive(c, return_inverse=True, return_counts=True)
    g_err = torch.zeros(counts.shape[0], dtype=torch.float64).index_add_(0, inverse, err)
    g_end = torch.cumsum(counts, 0)
    g_start = g_end - counts
    err_before = torch.cumsum(g_err, 0) - g_err
    pos = torch.arange(1, n + 1, dtype=torch.float64)
    local = pos - g_start[inverse].to(torch.float64)
    cum_err = err_before[inverse] + local / counts[inverse].to(torch.float64) * g_err[inverse]
    return float((cum_err / pos).mean())


def reliability_bins(probs: Any, labels: Any, n_bins: int = 15) -> dict[str, Any]:
    """Per-bin data for a reliability diagram (top-label, equal-width bins as in :func:`ece`).

    Returns ``{"edges": [B+1], "confidence": [B], "accuracy": [B], "count": [B], "ece", "mce",
    "accuracy_overall", "confidence_overall"}``; confidence/accuracy are ``None`` for empty bins.
    """
    p, y = check_probs(probs, labels)
    n_bins = check_bins(n_bins)
    conf, hit = _top_label(p, y)
    count, sc, sh = _binned_sums(conf, hit, bin_indices(conf, n_bins), n_bins)
    keep = count > 0
    gaps = (sh[keep] - sc[keep]).abs() / count[keep]
    return {
        "edges": torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64).tolist(),
        "confidence": [float(s / c) if c > 0 else None for s, c in zip(sc.tolist(), count.tolist())],
        "accuracy": [float(s / c) if c > 0 else None for s, c in zip(sh.tolist(), count.tolist())],
        "count": [int(c) for c in count.tolist()],
        "ece": float((sh - sc).abs().sum() / p.shape[0]),
        "mce": float(gaps.max()),
        "accuracy_overall": float(hit.double().mean()),
        "confidence_overall": float(conf.mean()),
    }
