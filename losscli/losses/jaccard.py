"""Batch-level soft Jaccard / Jaccard metric loss (Wang, Ning & Blaschko; zifuwanggg/JDTLosses, LOSSES.md §24)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from losscli.losses.base import Loss, Param, Reference, register_loss
from losscli.losses.fused.column_sums import softmax_off_target_sums


@register_loss(
    "jaccard",
    aliases=("jml", "soft_jaccard"),
    family="metric-surrogate",
    reference=Reference(
        "Jaccard Metric Losses: Optimizing the Jaccard Index with Soft Labels", "Wang, Ning & Blaschko", 2023,
        "NeurIPS", "https://github.com/zifuwanggg/JDTLosses",
    ),
    formula="l = mean_{active c} (1 - J_c)^gamma, J_c = (TP_c + s) / (TP_c + alpha FP_c + beta FN_c + s), "
    "TP_c = sum_i min(p_ic, t_ic), FP_c = sum_i p_ic - TP_c, FN_c = sum_i t_ic - TP_c, p = softmax(z)",
    params=(
        Param("smooth", 1e-3, "smoothing s in numerator and denominator", low=0.0, low_open=True, search=False),
        Param("alpha", 1.0, "weight of false positives (alpha=beta=1 Jaccard, 0.5 Dice, else Tversky)", low=0.0),
        Param("beta", 1.0, "weight of false negatives", low=0.0),
        Param("gamma", 1.0, "exponent of 1 - J_c", low=0.0, low_open=True),
    ),
    bounded=True,
    convex=False,
    soft_targets=True,
    batch_coupled=True,
    upper_bound=lambda params, c: 1.0,
    notes="JDT's default dataset/batch-level mode (mIoUD) with norm 1: the cardinalities are summed over "
    "the batch, then averaged over active classes - classes present in the batch's hard labels, all "
    "classes for soft labels. With hard labels min(p, t) = p t (classic soft Jaccard); with soft labels it "
    "is the Jaccard metric loss. Batch-level: only reduction='mean' (no per-sample decomposition); rows "
    "with ignore_index are dropped. Per-image terms (mIoUI/mIoUC), class weights and log_loss of JDT are "
    "not exposed.",
)
class Jaccard(Loss):
    def batch_loss(self, logits, target, **context):
        if target.dim() == 1:
            valid = target != self.ignore_index
            rows = valid.to(logits.dtype)
            safe = torch.where(valid, target, 0)
            # with hard labels min(p, t) = p t: FP_c = sum of the off-target p in column c, FN_c = sum of
            # 1 - p_y over the samples of class c, TP_c = count_c - FN_c (each a sum of positive terms: exact
            # at a saturated softmax, where FP = sum p - TP would cancel to 0)
            fp_c, om_y = softmax_off_target_sums(logits, safe, rows)
            zeros = torch.zeros(logits.shape[1], dtype=logits.dtype, device=logits.device)
            count = zeros.index_add(0, safe, rows)
            fn_c = zeros.index_add(0, safe, om_y * rows)
            tp_c = count - fn_c
            active = count > 0
        else:
            p = F.softmax(logits, dim=1)
            t = target
            tp = 0.5 * (p + t - (p - t).abs())  # min(p, t): the L1 (norm=1) cardinality
            active = torch.ones(p.shape[1], dtype=torch.bool, device=p.device)
            tp_c = tp.sum(dim=0)
            fp_c = (p - tp).sum(dim=0)
            fn_c = (t - tp).sum(dim=0)
        errors = self.alpha * fp_c + self.beta * fn_c
        one_minus_j = errors / (tp_c + errors + self.smooth)
        if self.gamma > 1:
            one_minus_j = one_minus_j.pow(self.gamma)
        elif self.gamma < 1:  # x^gamma, 0 at x = 0 (where its slope is infinite: gradient 0 there)
            positive = one_minus_j > 0
            floor = torch.finfo(one_minus_j.dtype).tiny
            one_minus_j = torch.where(positive, one_minus_j.clamp_min(floor).pow(self.gamma),
                                      torch.zeros_like(one_minus_j))
        act = active.to(logits.dtype)
        return (one_minus_j * act).sum() / act.sum().clamp_min(1.0)
