"""Self-adjusting Dice loss (Li et al., ACL 2020; ShannonAI/dice_loss_for_NLP, LOSSES.md §23)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from losscli.losses.base import Loss, Param, Reference, register_loss
from losscli.losses.fused.powers import POW_FLOOR
from losscli.losses.fused.dice_asl_terms import SquareDiceTerm
from losscli.losses.fused.softmax_block import fused_softmax_loss



def self_adjusted_probs(logits: torch.Tensor, alpha: float) -> torch.Tensor:
    """``p~ = (1 - p)^alpha p`` with ``p = softmax(z)``; ``1 - p`` via expm1 (exact near p = 1)."""
    logp = F.log_softmax(logits, dim=1)
    p = logp.exp()
    if alpha == 0:
        return p
    one_minus = -torch.expm1(logp)
    factor = one_minus.pow(alpha) if alpha >= 1 else one_minus.clamp_min(POW_FLOOR).pow(alpha)
    return factor * p


@register_loss(
    "dice",
    aliases=("self_adjusting_dice", "dsc"),
    family="metric-surrogate",
    reference=Reference(
        "Dice Loss for Data-imbalanced NLP Tasks", "Li, Sun, Meng, Liang, Wu & Li", 2020, "ACL",
        "https://github.com/ShannonAI/dice_loss_for_NLP",
    ),
    formula="l_i = sum_c [1 - (2 p~_ic t_ic + smooth) / (p~_ic^2 + t_ic^2 + smooth)], p~ = (1-p)^alpha p, "
    "p = softmax(z), t = one-hot(y)",
    params=(
        Param("alpha", 0.01, "self-adjusting exponent of (1 - p) (run scripts: 0.01)", low=0.0),
        Param("smooth", 1.0, "smoothing gamma in numerator and denominator (run scripts: 1)", low=0.0, low_open=True,
              search=False),
        Param("square", True, "square the denominator (all official run scripts); False: batch-summed denominator",
              kind="bool"),
    ),
    bounded=True,
    convex=False,
    # square: every class term is <= 1/(1+smooth); non-square: every class term is in [0, 1]
    upper_bound=lambda params, c: c / (1.0 + params["smooth"]) if params["square"] else float(c),
    notes="Per-sample value is the sum over classes, mean over samples (official multiclass path with "
    "--dice_square, DICE_SMOOTH=1, DICE_ALPHA=0.01; the class defaults smooth=1e-4, alpha=0, square=False "
    "are not what the paper ran). square=False reproduces the official non-square mode, whose denominator "
    "sum_j p~_jc + sum_j t_jc + smooth runs over the whole batch (rows with ignore_index excluded) while the "
    "numerator is per example: losscli returns per-sample contributions with those batch-level "
    "denominators, so reduction='none' gives [N] values whose mean is the official loss (and 'sum' is N "
    "times it), but each value depends on the rest of the batch.",
)
class Dice(Loss):
    _valid: torch.Tensor | None = None

    def forward(self, logits, target, **context):
        # non-square mode sums its denominator over the batch: it must know which rows are ignored
        self._valid = (
            target != self.ignore_index
            if not self.square and isinstance(target, torch.Tensor) and target.dim() == 1
            else None
        )
        try:
            return super().forward(logits, target, **context)
        finally:
            self._valid = None

    def per_sample(self, logits, target, **context):
        if self.square:  # one fused node (same value, hand-derived gradient)
            return fused_softmax_loss(logits, target, [(1.0, SquareDiceTerm(self.alpha, self.smooth, POW_FLOOR))])
        idx = target.unsqueeze(1)
        pt = self_adjusted_probs(logits, self.alpha)
        s = self.smooth
        pt_y = pt.gather(1, idx)
        if self.square:
            neg = pt * pt / (pt * pt + s)  # t = 0: 1 - s / (p~^2 + s)
            pos = 1.0 - (2.0 * pt_y + s) / (pt_y * pt_y + 1.0 + s)
            return neg.scatter(1, idx, pos).sum(dim=1)
        onehot = torch.zeros_like(pt).scatter_(1, idx, 1.0)
        if self._valid is not None:
            rows = self._valid.to(pt.dtype).unsqueeze(1)
            den = (pt * rows).sum(dim=0) + (onehot * rows).sum(dim=0) + s
        else:
            den = pt.sum(dim=0) + onehot.sum(dim=0) + s
        return (1.0 - (2.0 * pt * onehot + s) / den).sum(dim=1)
