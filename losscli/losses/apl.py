"""Noise-robust losses of the Active-Passive family (GCE, MAE, RCE, SCE, NCE, NFL, NGCE, APL combos).

Values follow the official Active-Passive-Losses code (HanxunH/Active-Passive-Losses,
``loss.py``), clamps included (LOSSES.md §5-§6). Gradients are the true gradients of
those values (LOSSES.md Part A): where APL's code computes a factor from detached
probabilities (NFL), losscli does not detach, and says so in the loss's notes.

Everything is computed from ``log_softmax`` (never ``log(softmax)``); probabilities are
``exp(log p)`` and ``1 - p`` is ``-expm1(log p)`` so that confident predictions keep
their precision.
"""

from __future__ import annotations

import math

import torch

from losscli.losses.base import Loss, Param, Reference, register_loss
from losscli.losses.fused.powers import POW_FLOOR
from losscli.losses.fused.softmax_core import log_softmax_y, log_softmax_y_and_sum
from losscli.losses.fused.softmax_terms import (
    CETerm, NCETerm, NFLTerm, NGCETerm, RCETerm,
)
from losscli.losses.fused.softmax_block import fused_softmax_loss

# APL's clamps: probabilities at 1e-7 (GCE, NGCE, RCE), the one-hot at 1e-4 inside RCE's log.
P_MIN = 1e-7
LOG_P_MIN = math.log(P_MIN)
RCE_A = -math.log(1e-4)  # -log(1e-4) = 9.2103...: RCE = A * sum_{k != y} max(p_k, 1e-7)

_GCE_REF = Reference(
    "Generalized Cross Entropy Loss for Training Deep Neural Networks with Noisy Labels",
    "Zhang & Sabuncu", 2018, "NeurIPS",
)
_MAE_REF = Reference(
    "Robust Loss Functions under Label Noise for Deep Neural Networks",
    "Ghosh, Kumar & Sastry", 2017, "AAAI",
)
_SCE_REF = Reference(
    "Symmetric Cross Entropy for Robust Learning with Noisy Labels",
    "Wang, Ma, Chen, Luo, Yi & Bailey", 2019, "ICCV",
)
_APL_REF = Reference(
    "Normalized Loss Functions for Deep Learning with Noisy Labels",
    "Ma, Huang, Wang, Romano, Erfani & Bailey", 2020, "ICML",
    "https://github.com/HanxunH/Active-Passive-Losses",
)

_SCALE = Param("scale", 1.0, "multiplies the loss (APL's scale)", low=0.0, low_open=True)
_ALPHA = Param("alpha", 1.0, "weight of the active term", low=0.0)
_BETA = Param("beta", 1.0, "weight of the passive term", low=0.0)
_GAMMA = Param("gamma", 0.5, "focusing parameter of the normalised focal term", low=0.0)
_Q = Param("q", 0.7, "exponent of p_y (q -> 0: CE, q = 1: 1 - p_y)", low=0.0, high=1.0, low_open=True)


# --------------------------------------------------------------------------- functional pieces
def _log_p_y(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """log p_y as one fused node: one softmax forward, one multiply backward."""
    return log_softmax_y(logits, target)


def gce_per_sample(logits, target, q):
    """(1 - max(p_y, 1e-7)^q) / q."""
    lp = _log_p_y(logits, target).clamp_min(LOG_P_MIN)
    # / -q, not -(...) / q: one op and autograd node fewer, same bits (negation is exact, rounding symmetric)
    return torch.expm1(q * lp) / -q


def mae_per_sample(logits, target):
    """1 - p_y (APL's "reduced" MAE; the true L1 distance is twice this)."""
    return -torch.expm1(_log_p_y(logits, target))


def nce_per_sample(logits, target):
    """log p_y / sum_k log p_k (in [0, 1]; sums to 1 over the C labels)."""
    lp_y, total = log_softmax_y_and_sum(logits, target)
    return lp_y / total


def _rce_term() -> RCETerm:
    return RCETerm(RCE_A, P_MIN)


# The registered losses below use fused single-node versions of these formulas
# (losscli.losses.functional): same values, hand-derived gradient, a few [N, C] passes.


def _rce_bound(num_classes: int) -> float:
    return RCE_A * (1.0 + (num_classes - 1) * P_MIN)


# --------------------------------------------------------------------------- registered losses
@register_loss(
    "gce",
    family="noise-robust",
    reference=_GCE_REF,
    formula="l = (1 - p_y^q) / q, with p_y clamped at 1e-7 (APL); q -> 0 gives CE, q = 1 gives 1 - p_y",
    params=(_Q,),
    bounded=True,
    convex=False,
    supports_weight=True,
    upper_bound=lambda params, c: 1.0 / params["q"],
    notes="APL's implementation: p_y is clamped to [1e-7, 1] before the power (zero gradient below "
    "1e-7); no scale parameter, as in APL. Symmetric only at q = 1.",
)
class GCE(Loss):
    def per_sample(self, logits, target, **context):
        return gce_per_sample(logits, target, self.q)


@register_loss(
    "mae",
    family="noise-robust",
    reference=_MAE_REF,
    formula="l = scale * (1 - p_y)  (APL's 'reduced' MAE; the L1 distance sum_k |p_k - e_yk| is 2(1 - p_y))",
    params=(_SCALE,),
    bounded=True,
    symmetric=True,
    convex=False,
    supports_weight=True,
    upper_bound=lambda params, c: params["scale"],
    notes="Follows Active-Passive-Losses' MeanAbsoluteError: 1 - p_y, half the true L1 distance. "
    "Sum over the C labels is scale * (C - 1).",
)
class MAE(Loss):
    def per_sample(self, logits, target, **context):
        return self.scale * mae_per_sample(logits, target)


@register_loss(
    "rce",
    family="noise-robust",
    reference=_SCE_REF,
    formula="l = -scale * sum_k max(p_k, 1e-7) log max(e_yk, 1e-4) = scale * 9.2103 * sum_{k!=y} max(p_k, 1e-7)",
    params=(_SCALE,),
    bounded=True,
    symmetric=True,
    convex=False,
    supports_weight=True,
    upper_bound=lambda params, c: params["scale"] * _rce_bound(c),
    notes="APL clamps: p at 1e-7 and the one-hot at 1e-4 inside the log (A = log 1e-4, not the paper's "
    "A = -4). Symmetric up to the 1e-7 clamp: sum over labels = A (C-1) sum_k max(p_k, 1e-7).",
)
class RCE(Loss):
    def per_sample(self, logits, target, **context):
        return fused_softmax_loss(logits, target, [(self.scale, _rce_term())])


@register_loss(
    "sce",
    family="noise-robust",
    reference=_SCE_REF,
    formula="l = alpha * CE + beta * RCE  (CE unclamped, RCE with APL's clamps)",
    params=(
        Param("alpha", 0.1, "weight of CE (CIFAR-10 0.1, CIFAR-100 6.0)", low=0.0),
        Param("beta", 1.0, "weight of RCE (CIFAR-10 1.0, CIFAR-100 0.1)", low=0.0),
    ),
    convex=False,
    supports_weight=True,
    notes="APL's SCELoss: CE on logits without clamp (the original Keras code clamps p at 1e-7 in CE "
    "and not in RCE; APL clamps p in RCE only).",
)
class SCE(Loss):
    def per_sample(self, logits, target, **context):
        return fused_softmax_loss(logits, target, [(self.alpha, CETerm()), (self.beta, _rce_term())])


@register_loss(
    "nce",
    family="noise-robust",
    reference=_APL_REF,
    formula="l = scale * log p_y / sum_k log p_k  (in [0, scale]; sums to scale over the C labels)",
    params=(_SCALE,),
    bounded=True,
    symmetric=True,
    convex=False,
    supports_weight=True,
    upper_bound=lambda params, c: params["scale"],
)
class NCE(Loss):
    def per_sample(self, logits, target, **context):
        return self.scale * nce_per_sample(logits, target)


@register_loss(
    "nfl",
    family="noise-robust",
    reference=_APL_REF,
    formula="l = scale * (1-p_y)^gamma log p_y / sum_k (1-p_k)^gamma log p_k",
    params=(_GAMMA, _SCALE),
    bounded=True,
    symmetric=True,
    convex=False,
    supports_weight=True,
    upper_bound=lambda params, c: params["scale"],
    notes="Value equals APL's NormalizedFocalLoss. APL's code computes the (1-p)^gamma factors from "
    "detached probabilities (clcarwin style), so its gradient is not the gradient of its value; losscli "
    "differentiates the whole formula (LOSSES.md Part A: no detached focal factor). Configs: CIFAR-10 "
    "symmetric noise uses scale=10.",
)
class NFL(Loss):
    def per_sample(self, logits, target, **context):
        return fused_softmax_loss(logits, target, [(self.scale, NFLTerm(self.gamma, POW_FLOOR))])


@register_loss(
    "ngce",
    family="noise-robust",
    reference=_APL_REF,
    formula="l = scale * (1 - p_y^q) / (C - sum_k p_k^q), p clamped at 1e-7 (APL)",
    params=(_Q, _SCALE),
    bounded=True,
    symmetric=True,
    convex=False,
    supports_weight=True,
    upper_bound=lambda params, c: params["scale"],
    notes="APL clamps p to [1e-7, 1] before the power. CIFAR-10 configs use q=0.1, CIFAR-100 q=0.7.",
)
class NGCE(Loss):
    def per_sample(self, logits, target, **context):
        return fused_softmax_loss(logits, target, [(self.scale, NGCETerm(self.q, LOG_P_MIN))])


@register_loss(
    "nce_rce",
    family="noise-robust",
    reference=_APL_REF,
    formula="l = alpha * NCE + beta * RCE  (APL active-passive combination)",
    params=(_ALPHA, _BETA),
    bounded=True,
    symmetric=True,
    convex=False,
    supports_weight=True,
    upper_bound=lambda params, c: params["alpha"] + params["beta"] * _rce_bound(c),
    notes="RCE (not the normalised RCE) as in APL's NCEandRCE. CIFAR-100: alpha=10, beta=0.1.",
)
class NCEandRCE(Loss):
    def per_sample(self, logits, target, **context):
        return fused_softmax_loss(logits, target, [(self.alpha, NCETerm()), (self.beta, _rce_term())])


@register_loss(
    "nce_mae",
    family="noise-robust",
    reference=_APL_REF,
    formula="l = alpha * NCE + beta * (1 - p_y)  (APL active-passive combination)",
    params=(_ALPHA, _BETA),
    bounded=True,
    symmetric=True,
    convex=False,
    supports_weight=True,
    upper_bound=lambda params, c: params["alpha"] + params["beta"],
    notes="MAE is APL's reduced 1 - p_y. CIFAR-100: alpha=10, beta=1.",
)
class NCEandMAE(Loss):
    def per_sample(self, logits, target, **context):
        # both terms are functions of (log p_y, sum_k log p_k): one softmax node, O(N) autograd after it
        lp_y, total = log_softmax_y_and_sum(logits, target)
        return self.alpha * (lp_y / total) - self.beta * torch.expm1(lp_y)


@register_loss(
    "nfl_rce",
    family="noise-robust",
    reference=_APL_REF,
    formula="l = alpha * NFL(gamma) + beta * RCE  (APL active-passive combination)",
    params=(_ALPHA, _BETA, _GAMMA),
    bounded=True,
    symmetric=True,
    convex=False,
    supports_weight=True,
    upper_bound=lambda params, c: params["alpha"] + params["beta"] * _rce_bound(c),
    notes="Value equals APL's NFLandRCE; like nfl, the focal factors are not detached (true gradient), "
    "unlike APL's code. CIFAR-100: alpha=10, beta=0.1.",
)
class NFLandRCE(Loss):
    def per_sample(self, logits, target, **context):
        return fused_softmax_loss(
            logits, target, [(self.alpha, NFLTerm(self.gamma, POW_FLOOR)), (self.beta, _rce_term())]
        )
