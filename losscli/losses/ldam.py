"""LDAM: label-distribution-aware margins on cosine logits, with optional DRW weights."""

from __future__ import annotations

import torch

from losscli.errors import UsageError
from losscli.losses.base import Loss, LossInputError, Param, Reference, register_loss
from losscli.losses.fused.softmax_core import log_softmax_y
from losscli.losses.heads import CosineHead
from losscli.losses.reweighted import effective_number_weights


def ldam_margins(counts: torch.Tensor, max_m: float) -> torch.Tensor:
    """``m_c = max_m * n_c^(-1/4) / max_j n_j^(-1/4)`` (counts below 1 are treated as 1)."""
    inv = counts.double().clamp_min(1.0).pow(-0.25)
    return max_m * inv / inv.max()  # float64; cast to the logits dtype on use


@register_loss(
    "ldam",
    aliases=("ldam_drw",),
    family="imbalance",
    reference=Reference(
        "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss",
        "Cao, Wei, Gaidon, Arechiga & Ma", 2019, "NeurIPS", "https://arxiv.org/abs/1906.07413",
    ),
    formula="m_c = max_m n_c^(-1/4) / max_j n_j^(-1/4);  l = CE(s (z - m_y e_y), y)  on cosine logits z",
    params=(
        Param("max_m", 0.5, "largest margin (given to the rarest class)", low=0.0),
        Param("s", 30.0, "scale applied to the margin-shifted cosine logits", low=0.0, low_open=True),
        Param("drw_epoch", None, "deferred re-weighting: from this epoch on (forward's `epoch`), use class-balanced "
              "weights with drw_beta; None (default) disables DRW", kind="int", low=0.0, nullable=True),
        Param("drw_beta", 0.9999, "effective-number beta of the DRW weights", low=0.0, high=1.0, high_open=True, search=False),
    ),
    convex=True,
    needs_class_counts=True,
    supports_weight=True,
    head="cosine",
    uses=("epoch",),
    notes=(
        "Meant for cosine logits: the engine replaces the final layer with `make_head` (a CosineHead, LDAM's "
        "NormedLinear); on raw logits s=30 is meaningless. prediction_logits returns s*z. Convex in the cosine logits. "
        "DRW (losscli option, off by default): with drw_epoch=E and forward(..., epoch=e), samples are weighted by "
        "w_c = (1-beta)/(1-beta^n_c) normalised to sum C when e >= E (torch weighted mean), unweighted before; "
        "the paper's CIFAR schedule is drw_epoch=160 of 200. A `weight` and drw_epoch cannot be combined."
    ),
)
class LDAMLoss(Loss):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.register_buffer("margins", ldam_margins(self.class_counts, self.max_m), persistent=False)
        if self.drw_epoch is not None:
            if self.weight is not None:
                raise UsageError("ldam: give either per-class `weight` or drw_epoch (DRW supplies the weights), not both")
            self.register_buffer("drw_weight", effective_number_weights(self.class_counts, self.drw_beta), persistent=False)
        else:
            self.drw_weight = None

    def forward(self, logits, target, **context):
        epoch = context.get("epoch")
        if self.drw_weight is None or epoch is None or int(epoch) < self.drw_epoch:
            return super().forward(logits, target, **context)
        # DRW phase: the base class applies `weight` with torch's weighted-mean semantics.
        saved = self.weight
        self.weight = self.drw_weight
        try:
            return super().forward(logits, target, **context)
        finally:
            self.weight = saved

    def per_sample(self, logits, target, **context):
        if logits.shape[1] != self.margins.numel():
            raise LossInputError(
                f"ldam: class_counts has {self.margins.numel()} entries but the logits have C={logits.shape[1]} classes"
            )
        # CE(s z - s m_y e_y, y) as one fused node (d/dz = s (p - e_y))
        m = self.margins.to(logits.dtype)[target]
        return log_softmax_y(logits, target, scale=self.s, shift=m * (-self.s)).neg()

    def make_head(self, in_features, num_classes):
        return CosineHead(in_features, num_classes)

    def prediction_logits(self, logits):
        return self.s * logits
