"""DCO: the pass@N-aligned loss ``-log(1 - (1 - p_y)^N)`` (Chen et al., NeurIPS 2025; LOSSES-2.md §2).

Everything is computed from the logit margin ``m = LSE(z_{-y}) - z_y`` in log space, so that
neither ``p_y`` nor ``1 - p_y`` is ever formed by subtraction:

* ``log p_y = -softplus(m)``, ``log(1 - p_y) = -softplus(-m)`` (both exact for any ``m``);
* with ``r = N softplus(-m) = -N log(1 - p_y) >= 0`` the loss is ``-log(1 - e^{-r})``:
  for ``r > ln 2`` it is ``-log1p(-e^{-r})`` (keeps values down to ~1e-300 in float64, e.g. 1e-138 where
  the naive form gives 0); for ``r <= ln 2`` it is ``-log r - log(-expm1(-r) / r)`` with
  ``log r = log N + log softplus(-m)`` taken in log space, so a ``p_y`` that underflows (``r = 0``)
  still gives the finite limit ``-log N - log p_y``.

The gradient is the paper's ``F(N, p) * grad CE`` with ``grad CE = softmax(z) - e_y`` and
``log F = log N + (N - 1) log(1 - p) + log p + loss`` (``F = 1`` at N = 1, ``-> 0`` as ``p -> 1``),
written by hand in log space: no 0 * inf, so no NaN gradients anywhere.
"""

from __future__ import annotations

import math

import torch

from losscli.losses.base import Loss, Param, Reference, register_loss
from losscli.losses.fused.transforms import keep_for_backward, rowwise_vmap

_LOG_SOFTPLUS_CUT = -30.0  # below it log(softplus(x)) = x - e^x/2 + ... = x to < 1e-13 relative


def _softplus(x: torch.Tensor) -> torch.Tensor:
    """``log(1 + e^x)`` exactly (F.softplus returns x above 20, an absolute error e^-20 that would show in log p)."""
    return torch.logaddexp(x, torch.zeros_like(x))


def _log_softplus(x: torch.Tensor) -> torch.Tensor:
    """``log(softplus(x))`` without underflow: ``x`` itself far left, where softplus(x) ~ e^x."""
    far = x < _LOG_SOFTPLUS_CUT
    safe = torch.where(far, torch.zeros_like(x), x)  # keeps the unused branch finite
    return torch.where(far, x, torch.log(_softplus(safe)))


def dco_terms(logits: torch.Tensor, target: torch.Tensor, n: int):
    """``(loss [N], log p_y [N], log(1 - p_y) [N])`` of DCO, all exact in log space."""
    idx = target.unsqueeze(1)
    z_y = logits.gather(1, idx).squeeze(1)
    others = logits.scatter(1, idx, float("-inf"))
    m = torch.logsumexp(others, dim=1) - z_y  # finite: C >= 2 and the logits are finite
    log_p = -_softplus(m)
    log_q = -_softplus(-m)
    r = -n * log_q  # -log((1 - p)^N) >= 0
    big = r > math.log(2.0)
    r_big = torch.where(big, r, torch.ones_like(r))  # each branch sees only inputs it handles
    r_small = torch.where(big, torch.full_like(r, 0.5), r)
    value_big = -torch.log1p(-torch.exp(-r_big))
    log_r = math.log(n) + _log_softplus(-m)
    ratio = torch.where(r_small > 0, -torch.expm1(-r_small) / r_small.clamp_min(torch.finfo(r.dtype).tiny),
                        torch.ones_like(r_small))  # (1 - e^{-r}) / r -> 1 as r -> 0
    value_small = -log_r - torch.log(ratio)
    return torch.where(big, value_big, value_small), log_p, log_q


@rowwise_vmap(0, 1)
class _DCO(torch.autograd.Function):
    """``(value, log F)`` per row; ``log F`` is kept for backward only."""

    @staticmethod
    def forward(logits, target, n):
        value, log_p, log_q = dco_terms(logits, target, n)
        log_f = math.log(n) + (n - 1) * log_q + log_p + value  # log of the paper's F(N, p)
        return value, log_f

    @staticmethod
    def setup_context(ctx, inputs, output):
        keep_for_backward(ctx, output[1])
        ctx.save_for_backward(inputs[0], inputs[1], output[1])

    @staticmethod
    def backward(ctx, grad_out, _):
        if grad_out is None:  # grads are not materialised (keep_for_backward)
            return None, None, None
        logits, target, log_f = ctx.saved_tensors
        coef = (grad_out * torch.exp(log_f)).unsqueeze(1)
        grad = torch.softmax(logits, dim=1).mul_(coef)
        grad.scatter_add_(1, target.unsqueeze(1), -coef)
        return grad, None, None


@register_loss(
    "dco",
    aliases=("pass_at_n", "direct_coverage"),
    family="calibration",
    reference=Reference(
        "Rethinking Fine-Tuning when Scaling Test-Time Compute: Limiting Confidence Improves Mathematical Reasoning",
        "Chen, Raventós, Cheng, Ganguli & Druckmann", 2025, "NeurIPS", "https://arxiv.org/abs/2502.07154",
    ),
    formula="l = -log(1 - (1 - p_y)^N), p = softmax(z);  grad l = F(N, p_y) grad CE, "
    "F = N (1-p)^(N-1) p / (1 - (1-p)^N)",
    params=(
        Param("n_samples", 16, "N of the targeted pass@N (the paper: pick it close to the test-time N; "
              "N = 1 is CE)", kind="int", low=1),
    ),
    convex=False,
    supports_weight=True,
    notes="Computed from the logit margin m = LSE(z_{-y}) - z_y in log space (log p = -softplus(m), "
    "log(1-p) = -softplus(-m)): exact down to ~1e-300 in float64 where the naive form underflows, finite "
    "when p_y underflows (limit -log N - log p_y), gradient F * (softmax - onehot) with F in log space (no "
    "NaN). Equals ce at n_samples=1. Default n_samples=16: the paper gives no default (N' up to 256 on "
    "MATH, step-wise N_eff in {1,4,8,16,32} for theorem proving); 16 sits in that range, and with it the "
    "gradient weight F fades once p_y >~ 1/16. The paper's trainer also swaps out examples with F < eps "
    "(to keep the effective batch size): a training-loop feature, not part of the loss. Not convex for N > 1.",
)
class DCO(Loss):
    def per_sample(self, logits, target, **context):
        return _DCO.apply(logits, target, self.n_samples)[0]
