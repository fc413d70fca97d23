"""Label-distributionally robust losses: LDR-KL and adaptive ALDR-KL (Zhu, Ying & Yang, ICML 2023).

Maths from the official code (Optimization-AI/ICML2023_LDR, LOSSES.md §10):

* logits are normalised ``z~_k = s_k / ((1/C) sum_j s_j)`` with ``s = softplus(z)``;
* ``d_k = c 1[k != y] + z~_k - z~_y``;
* LDR-KL: ``l = lam * log((1/C) sum_k exp(d_k / lam))`` (the 1/C inside the log: can be < 0).

The normalisation is computed in log space, ``z~ = C * softmax(log softplus(z))``, which is
the same number but stays finite (with finite gradients) when every softplus underflows.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from losscli.losses.base import Loss, LossInputError, Param, Reference, register_loss

_LDR_REF = Reference(
    "Label Distributionally Robust Losses for Multi-class Classification: Consistency, Robustness and Adaptivity",
    "Zhu, Ying & Yang", 2023, "ICML", "https://github.com/Optimization-AI/ICML2023_LDR",
)
_MARGIN = Param("margin", 0.1, "margin c added to the non-target classes (official run scripts: 0.1)", low=0.0)
_LAM = Param("lam", 10.0, "KL regularisation strength lambda (official runs: 10)", low=0.0, low_open=True)
_LOG_SOFTPLUS_CUT = -20.0


def log_softplus(z: torch.Tensor) -> torch.Tensor:
    """``log(softplus(z))``, finite for very negative ``z`` (where it equals ``z`` to < 1e-9)."""
    safe = z.clamp_min(_LOG_SOFTPLUS_CUT)
    return torch.where(z > _LOG_SOFTPLUS_CUT, torch.log(F.softplus(safe)), z)


def normalised_logits(logits: torch.Tensor) -> torch.Tensor:
    """``softplus(z) / mean_k softplus(z_k)``: non-negative, sums to C."""
    return logits.shape[1] * F.softmax(log_softplus(logits), dim=1)


def margins(zt: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
    """``d_k = c 1[k != y] + z~_k - z~_y``."""
    idx = target.unsqueeze(1)
    d = zt - zt.gather(1, idx) + margin
    return d.scatter(1, idx, 0.0)


def ldr_value(d: torch.Tensor, lam: torch.Tensor | float) -> torch.Tensor:
    """``lam * log((1/C) sum_k exp(d_k / lam))`` per row; ``lam`` scalar or ``[N]``."""
    if isinstance(lam, torch.Tensor):
        lam = lam.unsqueeze(1)
        return lam.squeeze(1) * (torch.logsumexp(d / lam, dim=1) - math.log(d.shape[1]))
    return lam * (torch.logsumexp(d / lam, dim=1) - math.log(d.shape[1]))


@register_loss(
    "ldr_kl",
    family="noise-robust",
    reference=_LDR_REF,
    formula="l = lam * log((1/C) sum_k exp(d_k / lam)), d_k = c 1[k!=y] + z~_k - z~_y, "
    "z~ = softplus(z) / mean_k softplus(z_k)",
    params=(_MARGIN, _LAM),
    bounded=True,
    convex=False,
    can_be_negative=True,
    supports_weight=True,
    # z~ >= 0 and sum_k z~_k = C, so every d_k <= c + C and l <= max_k d_k
    upper_bound=lambda params, c: params["margin"] + c,
    notes="LDRLoss_V1 of the official code with its run-script defaults (margin 0.1, lambda 10; the class "
    "defaults are threshold=2, Lambda=1). The 1/C inside the log makes the loss negative for confident "
    "correct predictions (lower bound -lam log C + mean_k d_k).",
)
class LDRKL(Loss):
    def per_sample(self, logits, target, **context):
        d = margins(normalised_logits(logits), target, self.margin)
        return ldr_value(d, self.lam)


@register_loss(
    "aldr_kl",
    family="noise-robust",
    reference=_LDR_REF,
    formula="l_i = lam_i * log((1/C) sum_k exp(d_k / lam_i)) - (alpha log C / (2 lam)) (lam_i - lam)^2, "
    "lam_i = sg(lam - lam * KL(softmax(z~/lam_i_prev) || uniform) / (alpha log C))",
    params=(
        _MARGIN,
        _LAM,
        Param("alpha", 2.0, "adaptivity: lam_i ranges over [lam (1 - 1/alpha), lam]", low=1.0, low_open=True),
    ),
    bounded=True,
    convex=False,
    can_be_negative=True,
    supports_weight=True,
    needs=("index",),
    upper_bound=lambda params, c: params["margin"] + c,
    notes="Per-sample state lam_i keyed by the sample ids passed as forward(..., index=ids): a buffer that "
    "grows to the largest id seen; a sample's first visit uses lam_prev = lam. lam_i is detached (as in "
    "ALDRLoss_V1) and written back only in training mode (module.train()); in eval mode the state is read, "
    "not changed. losscli always applies the softplus normalisation of ldr_kl (the official code applies it "
    "only for CIFAR-100 and otherwise divides raw logits by their mean absolute value). "
    "Gradient: lam_i is a stop-gradient (as in the method), so autograd's gradient omits d lam_i/dz; "
    "the omitted part is tiny (~1e-6 of a ~0.1 gradient at the defaults) because lam_i nearly maximises "
    "the objective in lam.",
)
class ALDRKL(Loss):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # NaN = never visited; grows on demand, follows .to(device); float64 so that a stored
        # lambda is exactly the one used (one number per training sample)
        self.register_buffer("lam_state", torch.empty(0, dtype=torch.float64), persistent=False)

    def reset_state(self) -> None:
        self.lam_state = torch.empty(0, dtype=self.lam_state.dtype, device=self.lam_state.device)

    def _state_for(self, index: torch.Tensor, n: int) -> torch.Tensor:
        if not isinstance(index, torch.Tensor):
            index = torch.as_tensor(index)
        if index.dim() != 1 or index.shape[0] != n:
            raise LossInputError(f"aldr_kl: index must be [N] sample ids matching the logits' N={n}")
        if index.is_floating_point() or index.dtype == torch.bool:
            raise LossInputError(f"aldr_kl: index must hold integer sample ids, got {index.dtype}")
        index = index.to(self.lam_state.device).long()
        if n == 0:
            return index
        lo, hi = int(index.min()), int(index.max())
        if lo < 0:
            raise LossInputError(f"aldr_kl: sample ids must be non-negative, got {lo}")
        if hi >= self.lam_state.numel():
            grown = torch.full((max(hi + 1, 2 * self.lam_state.numel()),), float("nan"),
                               dtype=self.lam_state.dtype, device=self.lam_state.device)
            grown[: self.lam_state.numel()] = self.lam_state
            self.lam_state = grown
        return index

    def per_sample(self, logits, target, index=None, **context):
        n, c = logits.shape
        idx = self._state_for(index, n)
        zt = normalised_logits(logits)
        log_c = math.log(c)
        with torch.no_grad():
            prev = self.lam_state[idx].to(device=logits.device, dtype=logits.dtype)
            prev = torch.where(torch.isnan(prev), torch.full_like(prev, self.lam), prev)
            q = F.softmax(zt / prev.unsqueeze(1), dim=1) + 1e-5
            q = q / q.sum(dim=1, keepdim=True)
            kl = (q * torch.log(c * q)).sum(dim=1)
            lam_i = self.lam - self.lam * kl / (self.alpha * log_c)
            if self.training:
                self.lam_state[idx] = lam_i.to(self.lam_state.dtype).to(self.lam_state.device)
        d = margins(zt, target, self.margin)
        penalty = (self.alpha * log_c / (2.0 * self.lam)) * (lam_i - self.lam) ** 2
        return ldr_value(d, lam_i) - penalty
