"""Functional classification metrics on CPU tensors (computed in float64).

Conventions (also in :data:`DEFINITIONS`, which reports quote verbatim):

* ``probs`` is ``[N, C]`` rows of probabilities (non-negative, summing to 1); ``logits`` is
  ``[N, C]`` unnormalised scores (log-probabilities are fine too); ``labels`` is ``[N]``
  integer class indices in ``[0, C)``. numpy arrays are accepted as well as tensors.
* Metrics that only need the argmax (accuracy, top-k, F1, balanced accuracy,
  per-class and shot accuracy) accept either probabilities or logits.
* Equal-width binning (``ece``, ``mce``, ``classwise_ece``, ``reliability_bins``): edges
  ``linspace(0, 1, B + 1)`` in float64; bin ``b`` holds confidences in
  ``(edge[b], edge[b+1]]``; the first bin also takes 0 and the last bin is closed at 1.0,
  so a confidence of exactly 1.0 falls in the last bin. Empty bins contribute nothing.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F

from losscli.errors import UsageError

__all__ = [
    "DEFINITIONS",
    "METRICS_INFO",
    "PROB_ATOL",
    "accuracy",
    "adaptive_ece",
    "aurc",
    "balanced_accuracy",
    "bin_indices",
    "brier",
    "classwise_ece",
    "compute_metrics",
    "ece",
    "looks_like_probabilities",
    "macro_f1",
    "mce",
    "nll",
    "per_class_accuracy",
    "reliability_bins",
    "shot_accuracy",
    "top_k_accuracy",
]

PROB_ATOL = 1e-3  # tolerance on row sums when deciding whether an input is probabilities

DEFINITIONS = """\
- accuracy: fraction of samples whose argmax equals the label.
- top5: fraction whose label is among the k = min(5, C) highest scores.
- macro_f1: unweighted mean of per-class F1 = 2TP / (2TP + FP + FN), over classes that occur in the labels or the predictions.
- balanced_accuracy: unweighted mean of per-class recall over classes present in the labels.
- nll: mean over samples of -log softmax(logits)[label] (natural log), from logits.
- brier: sum over classes of (p_c - onehot_c)^2, averaged over samples (range 0..2).
- ece: top-label expected calibration error; B = 15 equal-width bins on the top-label confidence; bin b holds confidences in (b/B, (b+1)/B], the first bin also takes 0 and the last bin is closed at 1.0 (confidence 1.0 goes to the last bin); ECE = sum over non-empty bins of (n_b / N) * |accuracy_b - mean confidence_b|.
- adaptive_ece: the same with equal-mass bins: samples sorted by confidence, the i-th (0-based) goes to bin floor(i * B / N), so bin sizes differ by at most one (min(B, N) non-empty bins; equal confidences may straddle a boundary).
- classwise_ece: for each class c, bin p_c of every sample into B equal-width bins (same edges) and take sum over bins (n_b / N) * |frequency of label c in bin - mean p_c in bin|; the MEAN over the C classes (not the sum).
- mce: maximum over non-empty equal-width bins of |accuracy_b - mean confidence_b| (top-label).
- aurc: area under the risk-coverage curve with top-label confidence as the selection score: samples ranked by decreasing confidence, risk(k) = errors among the k most confident / k, AURC = mean of risk(k) for k = 1..N; tied confidences get their expected (random-order) risk.
"""

METRICS_INFO: dict[str, dict[str, Any]] = {
    "accuracy": {"higher_is_better": True, "doc": "fraction of correct argmax predictions"},
    "top5": {"higher_is_better": True, "doc": "label among the min(5, C) highest scores"},
    "macro_f1": {"higher_is_better": True, "doc": "mean per-class F1 over classes seen in labels or predictions"},
    "balanced_accuracy": {"higher_is_better": True, "doc": "mean per-class recall over classes present in labels"},
    "nll": {"higher_is_better": False, "doc": "mean negative log-likelihood of the label (nats), from logits"},
    "brier": {"higher_is_better": False, "doc": "sum over classes of squared error to one-hot, mean over samples"},
    "ece": {"higher_is_better": False, "doc": "top-label ECE, equal-width bins (lo, hi], last bin closed at 1.0"},
    "adaptive_ece": {"higher_is_better": False, "doc": "top-label ECE with equal-mass bins"},
    "classwise_ece": {"higher_is_better": False, "doc": "mean over classes of per-class ECE with equal-width bins"},
    "mce": {"higher_is_better": False, "doc": "largest |accuracy - confidence| over non-empty equal-width bins"},
    "aurc": {"higher_is_better": False, "doc": "area under the risk-coverage curve (selective prediction)"},
}


# --------------------------------------------------------------------------- validation


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    try:
        import numpy as np

        return torch.as_tensor(np.asarray(x))
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"{name} must be a tensor or array, got {type(x).__name__}") from exc


def _check_scores(scores: Any, name: str = "logits") -> torch.Tensor:
    t = _as_tensor(scores, name)
    if t.ndim != 2:
        raise UsageError(f"{name} must have shape [N, C], got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise UsageError(f"{name} must be floating point, got {t.dtype}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise UsageError(f"{name} is empty (shape {tuple(t.shape)})")
    t = t.to(torch.float64)
    if torch.isnan(t).any() or torch.isposinf(t).any():
        raise UsageError(f"{name} contains NaN or +inf values")
    return t


def _check_labels(labels: Any, n: int, c: int, name: str = "labels") -> torch.Tensor:
    t = _as_tensor(labels, name)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1:
        raise UsageError(f"{name} must have shape [N] (class indices), got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.dtype == torch.bool or t.is_complex():
        raise UsageError(f"{name} must be integer class indices, got {t.dtype}")
    if t.shape[0] != n:
        raise UsageError(f"shape mismatch: {n} rows of scores but {t.shape[0]} {name}")
    t = t.to(torch.int64)
    lo, hi = int(t.min()), int(t.max())
    if lo < 0 or hi >= c:
        raise UsageError(f"{name} out of range: found values {lo}..{hi}, expected 0..{c - 1} for {c} classes")
    return t


def looks_like_probabilities(x: Any, atol: float = PROB_ATOL) -> bool:
    """True when every row is non-negative and sums to 1 within ``atol`` (and C >= 2)."""
    t = _as_tensor(x, "input")
    if t.ndim != 2 or t.shape[1] < 2 or t.shape[0] == 0 or not t.is_floating_point():
        return False
    t = t.to(torch.float64)
    return bool((t >= 0).all() and ((t.sum(1) - 1).abs() <= atol).all())


def _check_probs(probs: Any, labels: Any, name: str = "probs") -> tuple[torch.Tensor, torch.Tensor]:
    p = _check_scores(probs, name)
    if not ((p >= 0).all() and ((p.sum(1) - 1).abs() <= PROB_ATOL).all()):
        raise UsageError(
            f"{name} must be probabilities (rows non-negative, summing to 1); apply softmax to logits first"
        )
    y = _check_labels(labels, p.shape[0], p.shape[1])
    return p, y


def _check_any(scores: Any, labels: Any, name: str = "scores") -> tuple[torch.Tensor, torch.Tensor]:
    s = _check_scores(scores, name)
    return s, _check_labels(labels, s.shape[0], s.shape[1])


def _check_bins(n_bins: int) -> int:
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 1:
        raise UsageError(f"n_bins must be a positive integer, got {n_bins!r}")
    return int(n_bins)


# --------------------------------------------------------------------------- accuracy family


def accuracy(scores: Any, labels: Any) -> float:
    """Fraction of samples whose argmax (of probabilities or logits) equals the label."""
    s, y = _check_any(scores, labels)
    return float((s.argmax(1) == y).double().mean())


def top_k_accuracy(scores: Any, labels: Any, k: int = 5) -> float:
    """Fraction of samples whose label is among the ``min(k, C)`` highest scores."""
    s, y = _check_any(scores, labels)
    if k < 1:
        raise UsageError(f"k must be >= 1, got {k}")
    k = min(int(k), s.shape[1])
    top = s.topk(k, dim=1).indices
    return float((top == y[:, None]).any(1).double().mean())


def _confusion_counts(s: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    c = s.shape[1]
    pred = s.argmax(1)
    tp = torch.bincount(y[pred == y], minlength=c).double()
    n_pred = torch.bincount(pred, minlength=c).double()
    n_true = torch.bincount(y, minlength=c).double()
    return tp, n_pred, n_true


def macro_f1(scores: Any, labels: Any) -> float:
    """Unweighted mean of per-class F1 = 2TP/(2TP+FP+FN) over classes that occur in the
    labels or the predictions (a class absent from both has undefined F1 and is skipped)."""
    s, y = _check_any(scores, labels)
    tp, n_pred, n_true = _confusion_counts(s, y)
    denom = n_pred + n_true  # = 2TP + FP + FN
    keep = denom > 0
    return float((2 * tp[keep] / denom[keep]).mean())


def balanced_accuracy(scores: Any, labels: Any) -> float:
    """Unweighted mean of per-class recall over the classes present in ``labels``."""
    s, y = _check_any(scores, labels)
    tp, _, n_true = _confusion_counts(s, y)
    keep = n_true > 0
    return float((tp[keep] / n_true[keep]).mean())


def per_class_accuracy(scores: Any, labels: Any, num_classes: Optional[int] = None) -> list[float]:
    """Recall of each class ``0..C-1`` (``C`` = number of score columns); ``nan`` for classes
    absent from ``labels`` (reports turn it into null). ``num_classes``, if given, must equal ``C``."""
    s, y = _check_any(scores, labels)
    if num_classes is not None and int(num_classes) != s.shape[1]:
        raise UsageError(f"num_classes={num_classes} but the scores have {s.shape[1]} columns")
    tp, _, n_true = _confusion_counts(s, y)
    return [float(t / n) if n > 0 else float("nan") for t, n in zip(tp.tolist(), n_true.tolist())]


def shot_accuracy(scores: Any, labels: Any, train_class_counts: Any, many: int = 100,
                  few: int = 20) -> dict[str, Optional[float]]:
    """Long-tail many/medium/few-shot accuracy (Liu et al. 2019, OLTR; Kang et al. 2020).

    Classes are grouped by their number of *training* samples: ``many`` if more than
    ``many`` (default 100), ``few`` if fewer than ``few`` (default 20), ``medium`` otherwise.
    Each group's value is the unweighted mean of per-class test accuracy (recall) over
    the group's classes that occur in ``labels``; ``None`` when there are none. The
    standard thresholds suit ImageNet-LT/CIFAR-LT sized training sets; for smaller
    datasets pass thresholds scaled to the training-set size.
    """
    s, y = _check_any(scores, labels)
    counts = _as_tensor(train_class_counts, "train_class_counts").reshape(-1)
    if counts.numel() != s.shape[1]:
        raise UsageError(
            f"train_class_counts has {counts.numel()} entries but the scores have {s.shape[1]} classes"
        )
    if few > many:
        raise UsageError(f"few ({few}) must not exceed many ({many})")
    counts = counts.to(torch.float64)
    recall = per_class_accuracy(s, y)
    groups = {"many": counts > many, "medium": (counts <= many) & (counts >= few), "few": counts < few}
    out: dict[str, Optional[float]] = {}
    for group, mask in groups.items():
        vals = [r for r, m in zip(recall, mask.tolist()) if m and r == r]  # r != r: class absent (nan)
        out[group] = float(sum(vals) / len(vals)) if vals else None
    return out


# --------------------------------------------------------------------------- proper scores


def nll(logits: Any, labels: Any) -> float:
    """Mean negative log-likelihood (nats) of the labels under ``softmax(logits)``."""
    z, y = _check_any(logits, labels, "logits")
    return float(F.cross_entropy(z, y))


def brier(probs: Any, labels: Any) -> float:
    """Multiclass Brier score: sum over classes of ``(p_c - onehot_c)^2``, mean over samples."""
    p, y = _check_probs(probs, labels)
    onehot = F.one_hot(y, p.shape[1]).to(p.dtype)
    return float(((p - onehot) ** 2).sum(1).mean())


# --------------------------------------------------------------------------- calibration


def bin_indices(conf: torch.Tensor, n_bins: int = 15) -> torch.Tensor:
    """Equal-width bin of each confidence: bin ``b`` is ``(b/B, (b+1)/B]``, the first bin
    also takes 0 (and anything below) and the last is closed at 1.0 (and anything above)."""
    n_bins = _check_bins(n_bins)
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
    p, y = _check_probs(probs, labels)
    n_bins = _check_bins(n_bins)
    conf, hit = _top_label(p, y)
    count, sc, sh = _binned_sums(conf, hit, bin_indices(conf, n_bins), n_bins)
    return float((sh - sc).abs().sum() / p.shape[0])


def mce(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """Maximum calibration error: largest ``|acc_b - conf_b|`` over non-empty equal-width bins
    (same binning as :func:`ece`)."""
    p, y = _check_probs(probs, labels)
    n_bins = _check_bins(n_bins)
    conf, hit = _top_label(p, y)
    count, sc, sh = _binned_sums(conf, hit, bin_indices(conf, n_bins), n_bins)
    keep = count > 0
    return float(((sh[keep] - sc[keep]).abs() / count[keep]).max())


def adaptive_ece(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """Top-label ECE with equal-mass bins: after a stable ascending sort of the confidences,
    sample ``i`` (0-based) goes to bin ``floor(i * B / N)`` (sizes differ by at most one)."""
    p, y = _check_probs(probs, labels)
    n_bins = _check_bins(n_bins)
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
    p, y = _check_probs(probs, labels)
    n_bins = _check_bins(n_bins)
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
    p, y = _check_probs(probs, labels)
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
    p, y = _check_probs(probs, labels)
    n_bins = _check_bins(n_bins)
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


# --------------------------------------------------------------------------- all at once


def compute_metrics(logits: Any, labels: Any, n_bins: int = 15) -> dict[str, float]:
    """Every headline metric from logits: accuracy, top5, macro_f1, balanced_accuracy, nll,
    brier, ece, adaptive_ece, classwise_ece, mce, aurc (see :data:`DEFINITIONS`).

    Raises :class:`UsageError` if ``logits`` look like probabilities (softmax of them would
    be meaningless); log-probabilities are fine.
    """
    z, y = _check_any(logits, labels, "logits")
    n_bins = _check_bins(n_bins)
    if looks_like_probabilities(z):
        raise UsageError("these look like probabilities, pass logits (every row is non-negative and sums to 1)")
    p = torch.softmax(z, dim=1)
    out = {
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
    return out
