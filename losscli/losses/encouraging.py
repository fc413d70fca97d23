"""Encouraging loss: CE plus a bonus that keeps rewarding well-classified examples."""

from __future__ import annotations

import math

import torch

from losscli.losses.base import Loss, Param, Reference, register_loss
from losscli.losses.focal import target_nll


@register_loss(
    "encouraging",
    aliases=("encouraging_loss", "el"),
    family="calibration",
    reference=Reference(
        "Well-classified Examples are Underestimated in Classification with Deep Neural Networks",
        "Zhao, Li, Wu & Sun", 2022, "AAAI", "https://arxiv.org/abs/2110.06537",
    ),
    formula=(
        "l = -log p_y + rho * b(p_y);  b(p) = log(max(1-p, 1e-5)) for p <= LE, "
        "log(1-LE) - (p-LE)/(1-LE) for p > LE (conservative bonus: tangent of log(1-p) at LE)"
    ),
    params=(
        Param("rho", 1.0, "weight of the bonus (the code's bonus_rho)", low=0.0),
        Param("log_end", 0.75, "LE: where the log bonus turns into its tangent line; 1 gives the plain (clamped) "
              "log bonus; 0.5 'works for all settings' (README)", low=0.0, high=1.0),
    ),
    convex=False,
    can_be_negative=True,
    supports_weight=True,
    notes=(
        "Official defaults bonus_gamma=-1 (log bonus), LE=0.75. The bonus is negative, so the loss can be negative "
        "(confident correct predictions are still rewarded). Power/cosine bonuses and the label-smoothed variant of "
        "the official code are not implemented."
    ),
)
class EncouragingLoss(Loss):
    def per_sample(self, logits, target, **context):
        nll = target_nll(logits, target)
        comp = -torch.expm1(-nll)  # 1 - p_y without cancellation
        bonus = torch.log(comp.clamp_min(1e-5))
        le = self.log_end
        if le < 1.0:
            p = torch.exp(-nll)
            tangent = math.log(1.0 - le) - (p - le) / (1.0 - le)
            bonus = torch.where(p > le, tangent, bonus)
        return nll + self.rho * bonus
