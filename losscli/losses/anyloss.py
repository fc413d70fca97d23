"""AnyLoss: a confusion-matrix metric made differentiable by an amplified probability (Han, Moniz & Chawla 2024).

Binary in the paper (LOSSES.md §25): the model's sigmoid output ``p`` is amplified,
``A = sigmoid(L (p - 0.5))``, and the confusion entries are summed over the batch:
``TP = sum y A``, ``FN = sum y - TP``, ``FP = sum A - TP``, ``TN = N - sum y - sum A + TP``.
The loss is ``1 - metric``.
"""

from __future__ import annotations

import torch

from losscli.losses.base import Loss, Param, Reference, register_loss
from losscli.losses.fused.column_sums import softmax_column_sums

METRICS = ("f1", "fbeta", "accuracy", "gmean", "balanced_accuracy")
_EPS = 1e-5  # the extension's guard size; used as a floor for denominators (never added)
_SQRT_FLOOR = 1e-12


def metric_from_confusion(tp, fn, fp, tn, metric: str, beta: float) -> torch.Tensor:
    """Soft metric per column (class) from soft confusion entries; denominators floored at 1e-5."""
    pos = tp + fn  # y1
    neg = fp + tn  # y0
    if metric == "accuracy":
        return (tp + tn) / (pos + neg).clamp_min(_EPS)
    if metric in ("f1", "fbeta"):
        b2 = 1.0 if metric == "f1" else beta * beta
        return (1.0 + b2) * tp / (b2 * pos + tp + fp).clamp_min(_EPS)
    tpr = tp / pos.clamp_min(_EPS)
    tnr = tn / neg.clamp_min(_EPS)
    if metric == "gmean":
        return (tpr * tnr).clamp_min(_SQRT_FLOOR).sqrt()
    return 0.5 * (tpr + tnr)  # balanced accuracy = (y0 TP + y1 TN) / (2 y1 y0)


@register_loss(
    "anyloss",
    family="metric-surrogate",
    reference=Reference(
        "AnyLoss: Transforming Classification Metrics into Loss Functions", "Han, Moniz & Chawla", 2024, "KDD",
        "https://github.com/doheonhan/anyloss_extension",
    ),
    formula="l = 1 - metric(TP, FN, FP, TN), TP = sum_i y_i A_i, FP = sum_i A_i - TP, ..., "
    "A = sigmoid(L (p - 0.5)); C = 2: p = p_1; C > 2: macro average of one-vs-rest metrics on softmax p_c",
    params=(
        Param("metric", "f1", "metric to optimise", kind="str", choices=METRICS),
        Param("L", 73.0, "amplifier slope (Type-1 notebooks: 73; README range 2-70)", low=0.0, low_open=True),
        Param("beta", 1.0, "F-beta's beta (used by metric='fbeta' only)", low=0.0, low_open=True),
    ),
    bounded=True,
    convex=False,
    batch_coupled=True,
    upper_bound=lambda params, c: 1.0,
    notes="Batch-level: only reduction='mean'; rows with ignore_index are dropped. C = 2: the paper's "
    "binary loss with the positive-class probability p_1 = softmax(z)_1 = sigmoid(z_1 - z_0) as its sigmoid "
    "output. C > 2 (losscli extension, not in the paper): one-vs-rest per class c on softmax probabilities "
    "p_c, macro-averaged over the classes present in the batch's labels. gmean is sqrt(TPR * TNR) "
    "(Type-1 code; the extension repo drops the sqrt). Zero denominators (a batch without positives or "
    "negatives) are floored at 1e-5 instead of the extension's additive 1e-5, so values are exact "
    "otherwise; such terms then have value 0 and no gradient. Pitfall for C > 2: at initialisation "
    "p_c ~ 1/C, far below the amplifier's 0.5 threshold, so at L=73 A ~ sigmoid(-73 (1/2 - 1/C)) ~ 1e-13 "
    "and the gradients vanish: a 10-class MNIST-1D cnn1d stayed at chance (10.8% after 20 epochs) where "
    "L=10 reached 61% (ce: 84%). Use a small L (5-10) for multi-class data.",
)
class AnyLoss(Loss):
    def batch_loss(self, logits, target, **context):
        n, c = logits.shape
        valid = target != self.ignore_index
        rows = valid.to(logits.dtype)
        safe = torch.where(valid, target, 0)
        a_sum, a_y = softmax_column_sums(logits, safe, rows, self.L)
        zeros = torch.zeros(c, dtype=logits.dtype, device=logits.device)  # out of place below: vmap-safe
        tp = zeros.index_add(0, safe, a_y * rows)
        y1 = zeros.index_add(0, safe, rows)
        if c == 2:  # the paper's binary loss on the positive class
            tp, y1, a_sum = tp[1:], y1[1:], a_sum[1:]
        total = rows.sum()
        fn = y1 - tp
        fp = a_sum - tp
        tn = total - y1 - a_sum + tp
        metric = metric_from_confusion(tp, fn, fp, tn, self.metric, self.beta)
        if c == 2:
            return 1.0 - metric.squeeze(0)
        present = (y1 > 0).to(logits.dtype)
        return 1.0 - (metric * present).sum() / present.sum().clamp_min(1.0)
