"""PLD: Plackett-Luce distillation (Bassam, Zhu & Bian, NeurIPS 2025; LOSSES-2.md §1).

The teacher-optimal permutation puts the true label first, then the other classes in
descending teacher logit; each position k costs the Plackett-Luce choice loss
``LSE(s[pi_k..pi_C]) - s[pi_k]`` weighted by the teacher probability of the class placed there.
The suffix log-sum-exps are one reversed ``logcumsumexp`` (stable, translation-invariant in s).
"""

from __future__ import annotations

import torch

from losscli.losses.base import Loss, LossInputError, Param, Reference, register_loss


def teacher_optimal_order(teacher: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``[N, C]`` class indices: the label first, then the rest by descending teacher logit.

    A stable sort: teacher ties keep the lower class index first (``torch.sort`` is not stable by
    default, which would make the order, and the loss, depend on the backend).
    """
    keyed = teacher.scatter(1, target.unsqueeze(1), float("inf"))
    return torch.sort(keyed, dim=1, descending=True, stable=True).indices


def pld_per_sample(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    order = teacher_optimal_order(teacher, target)
    s = student.gather(1, order)
    q = torch.softmax(teacher / temperature, dim=1).gather(1, order)  # tau touches the teacher only
    suffix_lse = torch.logcumsumexp(s.flip(1), dim=1).flip(1)  # LSE(s[pi_k], ..., s[pi_C])
    return (q * (suffix_lse - s)).sum(dim=1)


@register_loss(
    "pld",
    aliases=("plackett_luce",),
    family="distillation",
    reference=Reference(
        "PLD: A Choice-Theoretic List-Wise Knowledge Distillation", "Bassam, Zhu & Bian", 2025, "NeurIPS",
        "https://arxiv.org/abs/2506.12542",
    ),
    formula="pi = (y, other classes by descending t);  q = softmax(t / T);  "
    "l = sum_k q[pi_k] (LSE(s[pi_k], ..., s[pi_C]) - s[pi_k])",
    params=(
        Param("temperature", 1.0, "teacher temperature T (ImageNet best 1.0; the paper's CIFAR-100 runs use 4.0); "
              "applied to the teacher only", low=0.0, low_open=True),
    ),
    convex=True,
    needs=("teacher_logits",),
    notes="Reproduces the paper's Appendix C listing (create_adjusted_ranking, plackett_luce_loss): the weight of "
    "position k is the teacher probability of the class placed at k (at k = 1 the label's, not the teacher's "
    "maximum); the k = C term is 0. No CE term and no mixing weight: PLD replaces CE + KD. With q = one-hot(y) it "
    "is CE; with uniform q it is ListMLE / C. The teacher (forward(..., teacher_logits=[N, C])) is a fixed target "
    "(detached); teacher ties are ordered by class index (stable sort). Convex in the student logits "
    "(a non-negative sum of log-sum-exps minus linear terms).",
)
class PLD(Loss):
    def per_sample(self, logits, target, teacher_logits=None, **context):
        if not isinstance(teacher_logits, torch.Tensor) or teacher_logits.shape != logits.shape:
            shape = list(teacher_logits.shape) if isinstance(teacher_logits, torch.Tensor) else type(teacher_logits).__name__
            raise LossInputError(f"pld: teacher_logits must be a tensor shaped like the logits {list(logits.shape)}, got {shape}")
        teacher = teacher_logits.detach().to(device=logits.device, dtype=logits.dtype)
        return pld_per_sample(logits, teacher, target, self.temperature)
