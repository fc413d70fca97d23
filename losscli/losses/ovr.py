"""One-vs-rest sigmoid loss: C independent binary logistic losses on the softmax-free logits."""

from __future__ import annotations

import torch.nn.functional as F

from losscli.losses.base import Loss, Reference, register_loss


@register_loss(
    "ovr",
    aliases=("one_vs_rest",),
    family="standard",
    reference=Reference("In Defense of One-Vs-All Classification", "Rifkin & Klautau", 2004, "JMLR"),
    formula="l = sum_k softplus(-s_k z_k), s_y = +1, s_k = -1 (k != y)  (= sum_k BCEWithLogits(z_k, 1[k=y]))",
    convex=True,
    supports_weight=True,
    notes="Generic OvR (LOSSES.md §22); per-sample value is the sum over the C labels, so "
    "reduction='sum' equals BCEWithLogits(reduction='sum') on one-hot targets. The 'SOVR' paper could "
    "not be identified: no SOVR-specific scaling.",
)
class OneVsRest(Loss):
    def per_sample(self, logits, target, **context):
        idx = target.unsqueeze(1)
        # flip the sign of the target logit so every term is softplus(-s_k z_k), without cancellation
        signed = logits.scatter(1, idx, -logits.gather(1, idx))
        return F.softplus(signed).sum(dim=1)
