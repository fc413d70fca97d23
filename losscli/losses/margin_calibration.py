"""Logit-margin calibration losses: MbLS and ACLS (CE plus a penalty on logit distances)."""

from __future__ import annotations

from losscli.losses.fused.row_linear import acls, mbls
from losscli.losses.base import Loss, Param, Reference, register_loss


@register_loss(
    "mbls",
    aliases=("margin_ls", "logit_margin"),
    family="calibration",
    reference=Reference(
        "The Devil is in the Margin: Margin-based Label Smoothing for Network Calibration",
        "Liu, Ben Ayed, Galdran & Dolz", 2022, "CVPR", "https://arxiv.org/abs/2111.15430",
    ),
    formula="l = -log p_y + lam * (1/C) sum_k [ max_j z_j - z_k - margin ]_+",
    params=(
        Param("margin", 10.0, "tolerated distance between the largest logit and the others", low=0.0),
        Param("lam", 0.1, "weight of the margin penalty (the code's alpha)", low=0.0),
    ),
    convex=True,
    supports_weight=True,
    notes=(
        "The penalty is averaged over all C classes of a sample (the max class contributes 0), so the batch mean "
        "equals the official code's mean over N*C entries; papers write it as a per-sample sum (divide lam by C to "
        "compare). The max is not detached. A `weight` applies to the whole per-sample loss."
    ),
)
class MbLSLoss(Loss):
    def per_sample(self, logits, target, **context):
        return mbls(logits, target, self.margin, self.lam)


@register_loss(
    "acls",
    family="calibration",
    exact_gradient=False,  # the negatives use a detached max by the method
    reference=Reference(
        "ACLS: Adaptive and Conditional Label Smoothing for Network Calibration", "Park, Noh, Oh, Baek & Ham", 2023,
        "ICCV", "https://arxiv.org/abs/2308.11911",
    ),
    formula=(
        "l = -log p_y + alpha [ lam_pos [z_max - margin]_+^2 "
        "+ lam_neg/(C-1) sum_{k not argmax} [sg(z_max) - z_k - margin]_+^2 ]"
    ),
    params=(
        Param("lam_pos", 1.0, "weight of the penalty on the largest logit (lambda_1)", low=0.0),
        Param("lam_neg", 0.1, "weight of the penalty on the other logits (lambda_2)", low=0.0),
        Param("alpha", 0.1, "overall weight of the regulariser", low=0.0),
        Param("margin", 10.0, "margin m", low=0.0),
    ),
    convex=False,
    supports_weight=True,
    notes=(
        "'Positive' is the argmax class (not the target); its term is differentiated, while the negatives use a "
        "detached max (as in the official code). Tied maxima each count as a positive (normaliser stays N). "
        "A `weight` applies to the whole per-sample loss."
    ),
)
class ACLSLoss(Loss):
    def per_sample(self, logits, target, **context):
        # each tied maximum counts as a positive in the value (official semantics); at exact ties the
        # positive-term gradient goes to one of them (measure-zero event)
        return acls(logits, target, self.lam_pos, self.lam_neg, self.alpha, self.margin)
