"""Prior-corrected cross-entropy: logit-adjusted loss and Balanced Softmax.

Both are CE on the logits shifted by a per-class offset from the training class counts;
predictions use the raw logits (``prediction_logits`` is the identity), which is what
makes them balanced.
"""

from __future__ import annotations

import math

import torch

from losscli.losses.base import Loss, LossInputError, Param, Reference, register_loss
from losscli.losses.ce import soft_cross_entropy
from losscli.losses.fused.far_rows import shift_far_rows
from losscli.losses.fused.softmax_core import log_softmax_y

#: offset given to a class with count 0 (instead of -inf): log(1e-12)
_ZERO_COUNT_LOG = math.log(1e-12)


class _OffsetCE(Loss):
    """CE(z + offset_c) with a fixed per-class offset buffer (set by subclasses)."""

    def per_sample(self, logits, target, **context):
        if logits.shape[1] != self.offset.numel():
            raise LossInputError(
                f"{self.info.name}: class_counts has {self.offset.numel()} entries but the logits have "
                f"C={logits.shape[1]} classes"
            )
        offset = self.offset.to(logits.dtype)
        if target.dim() == 2:
            # rows far from zero shifted by their maximum first: z + offset rounds to half an ulp of z (as in
            # _LogSoftmaxAt); the maximum is detached, a constant shift does not change the gradient
            shifted = shift_far_rows(logits, logits.detach().amax(dim=1, keepdim=True))
            return soft_cross_entropy(shifted + offset if shifted is logits else shifted.add_(offset), target)
        return log_softmax_y(logits, target, offset=offset).neg()  # CE(z + offset, y), one fused node


@register_loss(
    "logit_adjusted",
    aliases=("la", "logit_adjustment", "la_loss"),
    family="imbalance",
    reference=Reference(
        "Long-tail learning via logit adjustment", "Menon, Jayasumana, Rawat, Jain, Veit & Kumar", 2021, "ICLR",
        "https://arxiv.org/abs/2007.07314",
    ),
    formula="pi_c = n_c / sum_j n_j;  l = CE(z + log(pi^tau + 1e-12), y)",
    params=(Param("tau", 1.0, "strength of the adjustment (0 gives CE)", low=0.0),),
    convex=True,
    needs_class_counts=True,
    soft_targets=True,
    supports_weight=True,
    notes=(
        "Offset log(pi_c^tau + 1e-12) exactly as the official code (the 1e-12 only guards classes with count 0). "
        "Predictions use the raw logits. tau=1 equals balanced_softmax up to that guard."
    ),
)
class LogitAdjustedLoss(_OffsetCE):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        prior = self.class_counts.double() / self.class_counts.double().sum().clamp_min(1e-300)
        self.register_buffer("offset", torch.log(prior.pow(self.tau) + 1e-12), persistent=False)


@register_loss(
    "balanced_softmax",
    aliases=("bsce", "balanced_softmax_ce"),
    family="imbalance",
    reference=Reference(
        "Balanced Meta-Softmax for Long-Tailed Visual Recognition", "Ren et al.", 2020, "NeurIPS",
        "https://arxiv.org/abs/2007.10740",
    ),
    formula="l = CE(z + log n_c, y)",
    convex=True,
    needs_class_counts=True,
    soft_targets=True,
    supports_weight=True,
    notes=(
        "Equal to logit_adjusted with tau=1 (log n and log pi differ by a constant). A class with count 0 gets the "
        "finite offset log(1e-12) instead of the official code's -inf (NaN if it is a target). Predictions use the raw logits."
    ),
)
class BalancedSoftmaxLoss(_OffsetCE):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        counts = self.class_counts.double()
        offset = torch.where(counts > 0, torch.log(counts.clamp_min(1e-300)), torch.full_like(counts, _ZERO_COUNT_LOG))
        self.register_buffer("offset", offset, persistent=False)
