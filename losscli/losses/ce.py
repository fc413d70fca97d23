"""Cross-entropy and torch-semantics label smoothing."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from losscli.losses.base import Loss, Param, Reference, register_loss
from losscli.losses.fused.row_linear import soft_ce
from losscli.losses.fused.softmax_core import log_softmax_y_and_sum

_CE_REF = Reference("A Mathematical Theory of Communication (log loss); torch F.cross_entropy", "Shannon", 1948)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample ``-sum_k q_k log p_k`` for probability targets ``q`` (``-sum_k w_k q_k log p_k`` with a
    per-class ``weight``, as ``F.cross_entropy`` defines it for probability targets)."""
    q = target if weight is None else target * weight
    if logits.dim() == 2 and not q.requires_grad:  # the fused node treats the target as a constant
        return soft_ce(logits, q.to(logits.dtype))
    return -(q * F.log_softmax(logits, dim=-1)).sum(dim=-1)


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

    #: per_sample applies the class weights itself: w_y l_i for class indices, and for probability
    #: targets -sum_k w_k q_k log p_k, averaged over N (torch's semantics; the base class would refuse)
    handles_weight = True

    def forward(self, logits, target, **context):
        # Delegate to torch's fused kernel: exact semantics and its speed. The base class
        # still validates the inputs and upcasts low-precision logits.
        if context:
            return super().forward(logits, target, **context)
        logits, target, kind = self._check_inputs(logits, target)
        x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        weight = None if self.weight is None else self.weight.to(x.dtype)
        return F.cross_entropy(x, target, weight=weight, ignore_index=self.ignore_index, reduction=self.reduction)

    def per_sample(self, logits, target, **context):
        weight = None if self.weight is None else self.weight.to(logits.dtype)
        if target.dim() == 2:
            return soft_cross_entropy(logits, target, weight)
        return F.cross_entropy(logits, target, weight=weight, reduction="none")


def _fused_pays(logits: torch.Tensor) -> bool:
    """Whether the fused node beats torch's own label smoothing on these logits. It does from about a
    million entries with C >= 256 (4096 x 1000: 0.75x torch's time, forward + backward, one CPU thread);
    below that torch's kernel wins, and by most where a training step is small: 128 x 10 (the default
    compare's batches) 0.41x the fused node's time, 4096 x 100 0.77x. The loss is bounded below by the
    entropy of the smoothed target, so torch's ``log p_y`` (rounded where ``p_y`` rounds to 1) costs no
    relative precision unless epsilon is 0, where this is ``ce``, which is torch's kernel too."""
    return logits.dim() == 2 and logits.shape[1] >= 256 and logits.numel() >= 1 << 20


@register_loss(
    "label_smoothing",
    aliases=("ls", "smoothed_ce"),
    family="calibration",
    reference=Reference("Rethinking the Inception Architecture for Computer Vision", "Szegedy et al.", 2016, "CVPR"),
    formula="l = (1-eps)(-log p_y) + (eps/C) sum_k (-log p_k)  (torch semantics)",
    params=(Param("epsilon", 0.1, "smoothing mass spread uniformly over all C classes", low=0.0, high=1.0,
                  search=(0.0, 0.4)),),
    convex=True,
    soft_targets=True,
    supports_weight=True,
)
class LabelSmoothing(Loss):
    """torch's ``label_smoothing``: the target is ``(1-eps) e_y + eps/C``."""

    handles_weight = True  # torch weights the smoothing term per class, not by w_y alone

    def forward(self, logits, target, **context):
        if (self.weight is None and isinstance(target, torch.Tensor) and target.dim() == 1
                and (context or _fused_pays(logits))):
            # unweighted class indices on many classes: per_sample's fused node (the base class does
            # ignore_index and the reduction exactly as torch does for this case)
            return super().forward(logits, target, **context)
        logits, target, kind = self._check_inputs(logits, target)
        x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        weight = None if self.weight is None else self.weight.to(x.dtype)
        return F.cross_entropy(
            x, target, weight=weight, ignore_index=self.ignore_index,
            reduction=self.reduction, label_smoothing=self.epsilon,
        )

    def per_sample(self, logits, target, **context):
        # (1 - eps)(-log p_y) + (eps/C) sum_k (-log p_k): one softmax, one-pass backward
        lp_y, total = log_softmax_y_and_sum(logits, target)
        return (lp_y * (self.epsilon - 1.0)).sub_(total, alpha=self.epsilon / logits.shape[1])
