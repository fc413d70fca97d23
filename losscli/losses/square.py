"""Square losses on raw logits: squentropy and the rescaled square loss."""

from __future__ import annotations

from losscli.losses.fused.row_linear import square, squentropy
from losscli.losses.base import Loss, Param, Reference, register_loss


@register_loss(
    "squentropy",
    family="standard",
    reference=Reference(
        "Cut your Losses with Squentropy", "Hui, Belkin & Wright", 2023, "ICML", "https://arxiv.org/abs/2302.03952",
    ),
    formula="l = -log p_y + (1/(C-1)) sum_{k != y} z_k^2",
    convex=True,
    supports_weight=True,
    notes="Square term on the raw logits of the C-1 incorrect classes (target 0), averaged over C-1 (not C).",
)
class Squentropy(Loss):
    def per_sample(self, logits, target, **context):
        return squentropy(logits, target)


@register_loss(
    "square",
    aliases=("rescaled_square", "square_loss"),
    family="standard",
    reference=Reference(
        "Evaluation of Neural Architectures Trained with Square Loss vs Cross-Entropy in Classification Tasks",
        "Hui & Belkin", 2021, "ICLR", "https://arxiv.org/abs/2006.07322",
    ),
    formula="l = (1/C) [ k (z_y - m)^2 + sum_{j != y} z_j^2 ]",
    params=(
        Param("k", 1.0, "rescaling of the true-class term (paper: 1 for few classes, 15 for ImageNet)", low=0.0, low_open=True),
        Param("m", 1.0, "target value M of the true-class logit (paper: 1 for few classes, 30 for ImageNet)", low=0.0),
    ),
    convex=True,
    supports_weight=True,
    notes=(
        "On raw logits, averaged over the C outputs. The paper's large-C (k, M) table could not be verified; "
        "the defaults k=1, M=1 are the plain square loss. Note a third-party Rescaled_MSE(t, M) has k = t + 1."
    ),
)
class RescaledSquareLoss(Loss):
    def per_sample(self, logits, target, **context):
        return square(logits, target, self.k, self.m)  # one fused node (same value, hand-derived gradient)
