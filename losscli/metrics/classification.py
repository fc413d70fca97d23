"""Metrics of the predicted class and of the probability of the label: accuracy, top-k,
macro-F1, balanced accuracy, per-class and many/medium/few-shot accuracy, NLL, Brier.

Functions take ``[N, C]`` scores (probabilities or logits, where only the argmax matters) and
``[N]`` integer labels, tensors or numpy arrays; they compute in float64 on the CPU.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F

from losscli.errors import UsageError
from losscli.metrics.checks import as_tensor, check_any, check_probs



def accuracy(scores: Any, labels: Any) -> float:
    """Fraction of samples whose argmax (of probabilities or logits) equals the label."""
    s, y = check_any(scores, labels)
    return float((s.argmax(1) == y).double().mean())


def top_k_accuracy(scores: Any, labels: Any, k: int = 5) -> float:
    """Fraction of samples whose label is among the ``min(k, C)`` highest scores."""
    s, y = check_any(scores, labels)
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
    s, y = check_any(scores, labels)
    tp, n_pred, n_true = _confusion_counts(s, y)
    denom = n_pred + n_true  # = 2TP + FP + FN
    keep = denom > 0
    return float((2 * tp[keep] / denom[keep]).mean())


def balanced_accuracy(scores: Any, labels: Any) -> float:
    """Unweighted mean of per-class recall over the classes present in ``labels``."""
    s, y = check_any(scores, labels)
    tp, _, n_true = _confusion_counts(s, y)
    keep = n_true > 0
    return float((tp[keep] / n_true[keep]).mean())


def per_class_accuracy(scores: Any, labels: Any, num_classes: Optional[int] = None) -> list[float]:
    """Recall of each class ``0..C-1`` (``C`` = number of score columns); ``nan`` for classes
    absent from ``labels`` (reports turn it into null). ``num_classes``, if given, must equal ``C``."""
    s, y = check_any(scores, labels)
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
    s, y = check_any(scores, labels)
    counts = as_tensor(train_class_counts, "train_class_counts").reshape(-1)
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
    z, y = check_any(logits, labels, "logits")
    return float(F.cross_entropy(z, y))


def brier(probs: Any, labels: Any) -> float:
    """Multiclass Brier score: sum over classes of ``(p_c - onehot_c)^2``, mean over samples."""
    p, y = check_probs(probs, labels)
    onehot = F.one_hot(y, p.shape[1]).to(p.dtype)
    return float(((p - onehot) ** 2).sum(1).mean())
