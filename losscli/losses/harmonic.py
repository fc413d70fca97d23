"""Harmonic loss: cross-entropy of the scale-invariant HarMax over Euclidean distances.

Convention (losscli): the model's final layer is the loss's ``DistanceHead``, whose output
is ``h_k = -log d2_k`` with the **squared** distance
``d2_k = ||w_k||^2 + ||x||^2 - 2 w_k.x + eps`` (the official code's ``DistLayer``).
The loss is ``CE(n * h, y)``: ``softmax(n * h)_k = d2_k^(-n) / sum_j d2_j^(-n)`` is the
HarMax probability (the code's ``d2_k / min_j d2_j`` normalisation is a shift of ``n*h``
and cancels), computed in log space so large ``n`` cannot under- or overflow.
``prediction_logits(h) = n * h``. The README's unsquared-distance exponent is half of this n.
"""

from __future__ import annotations


from losscli.errors import UsageError
from losscli.losses.base import Loss, Param, Reference, register_loss
from losscli.losses.ce import soft_cross_entropy
from losscli.losses.fused.softmax_core import log_softmax_y
from losscli.losses.heads import DistanceHead


@register_loss(
    "harmonic",
    aliases=("harmonic_loss", "harmax"),
    family="standard",
    reference=Reference(
        "Harmonic Loss Trains Interpretable AI Models", "Baek, Liu, Tyagi & Tegmark", 2025, "arXiv (TMLR 2025)",
        "https://arxiv.org/abs/2502.01628",
    ),
    formula=(
        "head: h_k = -log d2_k, d2_k = ||w_k - x||^2 + eps (squared distance);  "
        "p_k = d2_k^(-n) / sum_j d2_j^(-n) = softmax(n h)_k;  l = -log p_y = CE(n h, y)"
    ),
    params=(
        Param("n", None, "HarMax exponent on the squared distance; None = the embedding dimension of the head "
              "(the official code's choice)", low=0.0, low_open=True, nullable=True),
        Param("eps", 1e-4, "added to the squared distances in the DistanceHead", low=0.0, low_open=True,
              search=False),
    ),
    convex=False,
    soft_targets=True,
    supports_weight=True,
    head="distance",
    test_params={"n": 2.0},
    notes=(
        "Needs its distance head: the engine replaces the final layer with `make_head(in_features, num_classes)` "
        "(a DistanceHead outputting -log of squared distances) and feeds that output to the loss. Squared-distance "
        "(code) convention: this n is twice the exponent of the README's unsquared form. With n=None the exponent is "
        "the head's embedding dimension, so make_head must be called first (or pass n explicitly). "
        "prediction_logits(h) = n*h gives the harmonic probabilities under softmax."
    ),
)
class HarmonicLoss(Loss):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.embedding_dim: int | None = None

    def make_head(self, in_features, num_classes):
        self.embedding_dim = int(in_features)
        return DistanceHead(in_features, num_classes, eps=self.eps)

    def exponent(self) -> float:
        if self.n is not None:
            return self.n
        if self.embedding_dim is None:
            raise UsageError(
                "harmonic: n=None means 'the embedding dimension of the distance head', but no head was made; "
                "pass n=... (e.g. harmonic(n=2)) or call loss.make_head(in_features, num_classes) first. "
                "The loss expects the head's -log(squared distance) outputs, not ordinary logits."
            )
        return float(self.embedding_dim)

    def per_sample(self, logits, target, **context):
        n = self.exponent()
        if target.dim() == 2:
            return soft_cross_entropy(n * logits, target)
        return log_softmax_y(logits, target, scale=n).neg()  # CE(n h, y), one fused node

    def prediction_logits(self, logits):
        return self.exponent() * logits
