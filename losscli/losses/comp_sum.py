"""Taylor cross-entropy and the comp-sum family Φ^τ (both functions of p_y only)."""

from __future__ import annotations

import math

import torch

from losscli.losses.base import Loss, Param, Reference, register_loss
from losscli.losses.focal import target_nll


def _harmonic_number(t: int) -> float:
    return math.fsum(1.0 / k for k in range(1, int(t) + 1))


@register_loss(
    "taylor_ce",
    aliases=("taylor", "taylor_cross_entropy"),
    family="noise-robust",
    reference=Reference(
        "Can Cross Entropy Loss Be Robust to Label Noise?", "Feng, Shu, Lin, Lv, Li & An", 2020, "IJCAI",
        "https://www.ijcai.org/proceedings/2020/305",
    ),
    formula="l = sum_{k=1}^{t} (1 - p_y)^k / k   (order-t Taylor series of -log p_y around p_y = 1)",
    params=(Param("order", 2, "number of Taylor terms t; 1 gives 1 - p_y (MAE), t -> inf approaches CE", kind="int", low=1),),
    bounded=True,
    convex=False,
    supports_weight=True,
    upper_bound=lambda params, num_classes: _harmonic_number(params["order"]),
    notes=(
        "Bounded by the harmonic number H_t = sum_{k<=t} 1/k. Symmetric only for order=1 (then it is 1 - p_y). "
        "The series converges slowly where p_y is small: do not use a large order to approximate CE."
    ),
)
class TaylorCrossEntropy(Loss):
    def per_sample(self, logits, target, **context):
        u = -torch.expm1(-target_nll(logits, target))  # 1 - p_y, exact near p_y = 1
        if self.order == 1:
            return u
        if self.order == 2:
            return u + 0.5 * u * u
        k = torch.arange(1, self.order + 1, device=u.device, dtype=u.dtype)
        return (u.unsqueeze(-1).pow(k) / k).sum(dim=-1)


@register_loss(
    "comp_sum",
    aliases=("compsum",),
    family="standard",
    reference=Reference(
        "Cross-Entropy Loss Functions: Theoretical Analysis and Applications", "Mao, Mohri & Zhong", 2023, "ICML",
        "https://arxiv.org/abs/2304.07288",
    ),
    formula=(
        "u = sum_{k!=y} exp(z_k - z_y) = 1/p_y - 1;  l = Phi^tau(u) = ((1+u)^(1-tau) - 1)/(1-tau) "
        "= expm1((tau-1) log p_y)/(1-tau);  tau=1: log(1+u) = CE"
    ),
    params=(
        Param("tau", 1.0, "tau=0 sum-exponential, 1 CE, (1,2) GCE with q=tau-1, 2 gives 1-p_y; bounded for tau>1", low=0.0),
    ),
    convex=True,
    supports_weight=True,
    notes=(
        "Evaluated as expm1((tau-1) * log_softmax_y)/(1-tau): exact near tau=1 and for p_y near 1. "
        "Properties depend on tau: convex for tau in [0,1] (the default tau=1 is CE), bounded by 1/(tau-1) and "
        "non-convex for tau>1, symmetric only at tau=2. For tau<1 the value grows like p_y^(tau-1) and genuinely "
        "overflows to inf when p_y underflows (|logit gaps| in the hundreds or more)."
    ),
)
class CompSumLoss(Loss):
    def per_sample(self, logits, target, **context):
        nll = target_nll(logits, target)  # -log p_y
        if self.tau == 1.0:
            return nll
        return torch.expm1((1.0 - self.tau) * nll) / (1.0 - self.tau)
