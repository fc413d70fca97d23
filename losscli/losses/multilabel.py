"""Multi-label sigmoid losses (BCE, sigmoid focal, ASL) and single-label ASL.

Multi-label losses take ``[N, C]`` 0/1 targets or 1-D class indices (passed through as
indices: the fused kernels patch the one positive column instead of reading an ``[N, C]``
one-hot matrix; the plain expressions get ``_dense``'s one-hot) and their per-sample value is the **sum over the C labels**, so
``reduction="sum"`` equals torchvision's / ASL's sum over all entries (LOSSES.md Part A).
In eager mode each loss is one fused node (``losscli.losses.fused.sigmoid_terms``: value and
hand-derived gradient per block of rows; with 0/1 targets a label costs one ``sigmoid`` and one
``log1p``); under ``torch.compile`` the plain expressions below are used.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from losscli.losses.base import Loss, Param, Reference, one_hot_targets, register_loss
from losscli.losses.fused.powers import POW_FLOOR
from losscli.losses.fused import sigmoid_terms
from losscli.losses.fused.dice_asl_terms import ASLSingleTerm
from losscli.losses.fused.softmax_block import fused_softmax_loss



_FOCAL_REF = Reference("Focal Loss for Dense Object Detection", "Lin, Goyal, Girshick, He & Dollar", 2017, "ICCV")
_ASL_REF = Reference(
    "Asymmetric Loss For Multi-Label Classification",
    "Ridnik, Ben-Baruch, Zamir, Noy, Friedman, Protter & Zelnik-Manor", 2021, "ICCV",
    "https://github.com/Alibaba-MIIL/ASL",
)


def _dense(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``[N, C]`` targets for the plain expressions (class indices one-hot encoded)."""
    return one_hot_targets(target, logits.shape[1], logits.dtype) if target.dim() == 1 else target


@register_loss(
    "bce",
    aliases=("binary_cross_entropy", "multilabel_bce"),
    family="multi-label",
    reference=Reference("A Review on Multi-Label Learning Algorithms (binary relevance)", "Zhang & Zhou", 2014, "IEEE TKDE"),
    formula="l = sum_k [ -Y_k log sigmoid(z_k) - (1 - Y_k) log sigmoid(-z_k) ]  (BCEWithLogits summed over labels)",
    convex=True,
    multilabel=True,
    notes="Per-sample value is the sum over labels: reduction='sum' equals "
    "F.binary_cross_entropy_with_logits(reduction='sum'); 'mean' is that sum / N (not / N*C). "
    "Targets in [0, 1] (soft multi-label targets) are accepted.",
)
class MultiLabelBCE(Loss):
    takes_class_indices = True

    def per_sample(self, logits, target, **context):
        if torch.compiler.is_compiling():  # the compiler fuses the plain expression itself
            return F.binary_cross_entropy_with_logits(logits, _dense(target, logits), reduction="none").sum(dim=1)
        return sigmoid_terms.bce(logits, target)  # one fused node (same value, hand-derived gradient)


@register_loss(
    "sigmoid_focal",
    family="multi-label",
    reference=_FOCAL_REF,
    formula="l = sum_k alpha_t (1 - p_t)^gamma BCEWithLogits(z_k, Y_k), p = sigmoid(z), "
    "p_t = p Y + (1-p)(1-Y), alpha_t = alpha Y + (1-alpha)(1-Y)",
    params=(
        Param("alpha", 0.25, "weight of positives (negatives get 1 - alpha); alpha < 0 disables weighting", high=1.0),
        Param("gamma", 2.0, "focusing parameter", low=0.0),
    ),
    convex=False,
    multilabel=True,
    notes="Same maths as torchvision.ops.sigmoid_focal_loss: reduction='sum' equals it with reduction='sum'; "
    "losscli's 'mean' is the sum over labels averaged over N (torchvision's 'mean' averages over N*C). "
    "The focal factor is not detached (true gradient).",
)
class SigmoidFocal(Loss):
    takes_class_indices = True

    def per_sample(self, logits, target, **context):
        # the default: one fused node in eager mode. Under torch.compile the plain expression is
        # used instead: the compiler fuses it itself, and it mis-compiled this node (GPU test).
        if self.gamma > 0 and not torch.compiler.is_compiling():
            return sigmoid_terms.sigmoid_focal(logits, target, self.alpha, self.gamma)
        return sigmoid_terms.plain_sigmoid_focal(logits, _dense(target, logits), self.alpha, self.gamma)


@register_loss(
    "asl",
    aliases=("asymmetric",),
    family="multi-label",
    reference=_ASL_REF,
    formula="l = -sum_k [ Y (1-p)^gamma_pos log max(p, eps) + (1-Y) p_m^gamma_neg log max(1-p_m, eps) ], "
    "p = sigmoid(z), p_m = max(p - clip, 0)",
    params=(
        Param("gamma_neg", 4.0, "focusing parameter of negatives", low=0.0),
        Param("gamma_pos", 0.0, "focusing parameter of positives (train.py: 0; the class default is 1)", low=0.0),
        Param("clip", 0.05, "probability margin shifted off negatives", low=0.0, high=1.0),
        Param("eps", 1e-8, "clamp inside the logs", low=0.0, low_open=True, high=1.0, search=False),
    ),
    convex=False,
    multilabel=True,
    # the eps clamp inside both logs bounds every label's term by -log(eps) (as APL's clamps bound RCE)
    bounded=True,
    upper_bound=lambda p, c: c * -math.log(p["eps"]),
    notes="AsymmetricLossOptimized semantics: the focusing weights are NOT detached "
    "(disable_torch_grad_focal_loss=False; the AsymmetricLoss class detaches them by default). "
    "Defaults from ASL's train.py (gamma_pos=0). reduction='sum' equals ASL's loss (a sum over batch and labels).",
)
class ASL(Loss):
    takes_class_indices = True

    def per_sample(self, logits, target, **context):
        args = (self.gamma_neg, self.gamma_pos, self.clip, self.eps)
        if torch.compiler.is_compiling():  # as in SigmoidFocal: eager only
            return sigmoid_terms.plain_asl(logits, _dense(target, logits), *args)
        return sigmoid_terms.asl(logits, target, *args)


@register_loss(
    "asl_single",
    family="imbalance",
    reference=_ASL_REF,
    formula="l = -sum_k t_k w_k log p_k, t = (1-eps) e_y + eps/C, w_y = (1-p_y)^gamma_pos, w_k = p_k^gamma_neg (k != y)",
    params=(
        Param("gamma_pos", 0.0, "focusing exponent of the target class", low=0.0),
        Param("gamma_neg", 4.0, "exponent of the non-target probabilities", low=0.0),
        Param("epsilon", 0.1, "label smoothing mass (the code's eps)", low=0.0, high=1.0, search=(0.0, 0.4)),
    ),
    convex=False,
    supports_weight=True,
    notes="ASLSingleLabel of the official code (weights not detached). Negatives only contribute through "
    "the smoothing mass eps/C: with epsilon=0 and gamma_pos=0 it is exactly CE. The parameter is named "
    "epsilon (the code's eps) to match losscli's label_smoothing.",
)
class ASLSingleLabel(Loss):
    def per_sample(self, logits, target, **context):
        # one fused node (same value, hand-derived gradient)
        term = ASLSingleTerm(self.gamma_pos, self.gamma_neg, self.epsilon, POW_FLOOR)
        return fused_softmax_loss(logits, target, [(1.0, term)])
