"""One-vs-rest sigmoid loss: C independent binary logistic losses on the softmax-free logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from losscli.losses.base import Loss, Reference, register_loss

_SOFTPLUS_THRESHOLD = 20.0  # F.softplus's default: softplus(x) = x above it


class _OneVsRest(torch.autograd.Function):
    """``sum_k softplus(-s_k z_k)`` per row, one autograd node: one ``[N, C]`` buffer in forward and one in
    backward. The target entry is ``softplus(-z_y)``, written before the row sum (no cancellation against
    ``z_y``); the gradient is softplus's own backward at ``z`` (``sigmoid(z_k)``, 1 above the threshold)
    with the target entry replaced by ``-softplus'(-z_y)``."""

    @staticmethod
    def forward(ctx, logits, target):
        idx = target.unsqueeze(1)
        z_y = logits.gather(1, idx)
        out = F.softplus(logits).scatter_(1, idx, F.softplus(-z_y)).sum(dim=1)
        ctx.save_for_backward(logits, idx, z_y)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        logits, idx, z_y = ctx.saved_tensors
        g = grad_out.unsqueeze(1)
        grad = torch.ops.aten.softplus_backward(g.expand_as(logits), logits, 1.0, _SOFTPLUS_THRESHOLD)
        g_y = torch.ops.aten.softplus_backward(g, -z_y, 1.0, _SOFTPLUS_THRESHOLD).neg_()
        return grad.scatter_(1, idx, g_y), None


@register_loss(
    "ovr",
    aliases=("one_vs_rest",),
    family="standard",
    reference=Reference("In Defense of One-Vs-All Classification", "Rifkin & Klautau", 2004, "JMLR"),
    formula="l = sum_k softplus(-s_k z_k), s_y = +1, s_k = -1 (k != y)  (= sum_k BCEWithLogits(z_k, 1[k=y]))",
    convex=True,
    supports_weight=True,
    notes="Generic OvR (LOSSES.md §22); per-sample value is the sum over the C labels, so "
    "reduction='sum' equals BCEWithLogits(reduction='sum') on one-hot targets. SOVR (Kanai et al. 2023, "
    "registered as sovr) switches to this loss, unscaled, for the batch's smallest-margin samples.",
)
class OneVsRest(Loss):
    def per_sample(self, logits, target, **context):
        return _OneVsRest.apply(logits, target)
