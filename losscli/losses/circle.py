"""Circle loss, class-level (proxy) form, on cosine logits."""

from __future__ import annotations

from losscli.losses.fused.row_linear import circle
from losscli.losses.base import Loss, Param, Reference, register_loss
from losscli.losses.heads import CosineHead


@register_loss(
    "circle",
    aliases=("circle_loss",),
    exact_gradient=False,  # the alpha weights are stop-gradients by the method
    family="standard",
    reference=Reference(
        "Circle Loss: A Unified Perspective of Pair Similarity Optimization", "Sun et al.", 2020, "CVPR",
        "https://arxiv.org/abs/2002.10857",
    ),
    formula=(
        "s = cosine logits; a_p = [1 + m - s_y]_+, a_n = [s_k + m]_+ (detached);  "
        "l = CE( gamma a_p (s_y - (1-m)) for y, gamma a_n (s_k - m) for k != y )"
    ),
    params=(
        Param("gamma", 256.0, "scale factor (face recognition / re-ID: 256)", low=0.0, low_open=True),
        Param("m", 0.25, "relaxation margin (face recognition / re-ID: 0.25)", low=0.0),
    ),
    convex=None,
    supports_weight=True,
    head="cosine",
    notes=(
        "Class-level circle loss with class weights as proxies: the engine replaces the final layer with a "
        "CosineHead (`make_head`). The weights a_p, a_n are detached, as in all implementations seen. "
        "prediction_logits returns gamma*s. Convex in s only with the a's frozen."
    ),
)
class CircleLoss(Loss):
    def per_sample(self, logits, target, **context):
        return circle(logits, target, self.gamma, self.m)

    def make_head(self, in_features, num_classes):
        return CosineHead(in_features, num_classes)

    def prediction_logits(self, logits):
        return self.gamma * logits
