"""Cross-entropy and torch-semantics label smoothing."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from losscli.losses.base import Loss, Param, Reference, register_loss

_CE_REF = Reference("A Mathematical Theory of Communication (log loss); torch F.cross_entropy", "Shannon", 1948)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample ``-sum_k q_k log p_k`` for probability targets ``q``."""
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1)


@register_loss(
    "ce",
    aliases=("cross_entropy", "xent", "nll"),
    family="standard",
    reference=_CE_REF,
    formula="l = -log p_y = logsumexp(z) - z_y",
    convex=True,
    soft_targets=True,
    supports_weight=True,
)
class CrossEntropy(Loss):
    """Equal to ``F.cross_entropy`` (weights, ignore_index, soft targets included)."""

    def forward(self, logits, target, **context):
        # Delegate to torch's fused kernel: exact semantics and its speed. The base class
        # still validates the inputs and upcasts low-precision logits.
        if context:
            return super().forward(logits, target, **context)
        logits, target, kind = self._check_inputs(logits, target)
        x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        weight = None if self.weight is None else self.weight.to(x.dtype)
        if kind == "soft" and weight is not None:
            return super().forward(logits, target)
        return F.cross_entropy(x, target, weight=weight, ignore_index=self.ignore_index, reduction=self.reduction)

    def per_sample(self, logits, target, **context):
        if target.dim() == 2:
            return soft_cross_entropy(logits, target)
        return F.cross_entropy(logits, target, reduction="none")


@register_loss(
    "label_smoothing",
    aliases=("ls", "smoothed_ce"),
    family="calibration",
    reference=Reference("Rethinking the Inception Architecture for Computer Vision", "Szegedy et al.", 2016, "CVPR"),
    formula="l = (1-eps)(-log p_y) + (eps/C) sum_k (-log p_k)  (torch semantics)",
    params=(Param("epsilon", 0.1, "smoothing mass spread uniformly over all C classes", low=0.0, high=1.0),),
    convex=True,
    soft_targets=True,
    supports_weight=True,
)
class LabelSmoothing(Loss):
    """torch's ``label_smoothing``: the target is ``(1-eps) e_y + eps/C``."""

    handles_weight = True  # torch weights the smoothing term per class, not by w_y alone

    def forward(self, logits, target, **context):
        logits, target, kind = self._check_inputs(logits, target)
        x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        weight = None if self.weight is None else self.weight.to(x.dtype)
        return F.cross_entropy(
            x, target, weight=weight, ignore_index=self.ignore_index,
            reduction=self.reduction, label_smoothing=self.epsilon,
        )
