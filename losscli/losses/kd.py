"""Knowledge distillation (Hinton et al.): tempered KL to a teacher plus cross-entropy."""

from __future__ import annotations

import torch

from losscli.losses.fused.row_linear import kd
from losscli.losses.base import Loss, LossInputError, Param, Reference, register_loss
from losscli.losses.ce import soft_cross_entropy


@register_loss(
    "kd",
    aliases=("distillation", "hinton_kd"),
    family="distillation",
    reference=Reference(
        "Distilling the Knowledge in a Neural Network", "Hinton, Vinyals & Dean", 2015, "NIPS Deep Learning Workshop",
        "https://arxiv.org/abs/1503.02531",
    ),
    formula=(
        "q = softmax(t/T), log s = log_softmax(z/T);  "
        "l = alpha T^2 sum_k q_k (log q_k - log s_k) + (1 - alpha) CE(z, y)"
    ),
    params=(
        Param("temperature", 4.0, "softening temperature T (RepDistiller: 4)", low=0.0, low_open=True),
        Param("alpha", 0.9, "weight of the distillation term; the CE term gets 1 - alpha (RepDistiller: 0.9 / 0.1)",
              low=0.0, high=1.0),
    ),
    convex=True,
    soft_targets=True,
    needs=("teacher_logits",),
    notes=(
        "The teacher's logits come through forward(..., teacher_logits=[N, C]) and are treated as a fixed target "
        "(detached). The KL is summed over classes and averaged over samples (torch 'batchmean'), scaled by T^2. "
        "With soft targets the CE part is -sum_k q_k log p_k. Convex in the student logits."
    ),
)
class KDLoss(Loss):
    def per_sample(self, logits, target, teacher_logits=None, **context):
        if not isinstance(teacher_logits, torch.Tensor) or teacher_logits.shape != logits.shape:
            shape = list(teacher_logits.shape) if isinstance(teacher_logits, torch.Tensor) else type(teacher_logits).__name__
            raise LossInputError(
                f"kd: teacher_logits must be a tensor shaped like the logits {list(logits.shape)}, got {shape}"
            )
        teacher = teacher_logits.detach().to(device=logits.device, dtype=logits.dtype)  # a fixed target
        fused_ce = self.alpha < 1.0 and target.dim() == 1
        loss = kd(logits, teacher, target if fused_ce else None, self.temperature, self.alpha)
        if self.alpha < 1.0 and not fused_ce:
            loss = loss + (1.0 - self.alpha) * soft_cross_entropy(logits, target)
        return loss
