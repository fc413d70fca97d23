"""One-vs-rest sigmoid loss: C independent binary logistic losses on the softmax-free logits."""

from __future__ import annotations

from losscli.losses.base import Loss, Reference, register_loss
from losscli.losses.fused.sigmoid_terms import bce_index_block
from losscli.losses.fused.softmax_core import blocked


def ovr_block(z, idx, h):
    """``sum_k softplus(u_k)`` with ``u = z`` off the target and ``u_y = -z_y``: BCE with one-hot labels,
    the same kernel as ``bce`` on class indices; the gradient is ``sigmoid(u)`` off the target and
    ``-sigmoid(u_y)`` at it."""
    return bce_index_block(z, idx, h)


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
        return ovr_per_sample(logits, target)


def ovr_per_sample(logits, target):
    """The per-sample OvR loss as one row-blocked node (same value, hand-derived gradient); shared
    with ``sovr``, which switches to it for its smallest-margin samples."""
    return blocked(logits, lambda zb, hb, tb: ovr_block(zb, tb.unsqueeze(1), hb), target)
