"""Losses on norm-controlled logits: LogitClip (clip the logit norm) and LogitNorm (fix it)."""

from __future__ import annotations

import math

import torch

from losscli.losses.fused.row_linear import scaled_ce
from losscli.losses.base import LOSSES, Loss, Param, Reference, register_loss
from losscli.losses.ce import soft_cross_entropy
from losscli.losses.reweighted import build_base_loss


def _ce_bound(max_gap: float, num_classes: int) -> float:
    """Upper bound of CE when every logit gap z_k - z_y is at most ``max_gap``."""
    return max_gap + math.log(num_classes - 1 + math.exp(-max_gap)) if max_gap > 0 else math.log(num_classes)


def _row_scale(norm: torch.Tensor, scale: torch.Tensor, dscale: torch.Tensor):
    """``(r, r'(n) / n)`` for ``scaled_ce`` from the ``[N, 1]`` 2-norm ``n``, the scale ``r`` and ``dr/dn``.

    A zero row has no direction: its ``z z^T`` term is 0 (as torch's norm gradient at 0).
    """
    return scale, torch.where(norm > 0, dscale / norm, torch.zeros_like(norm))


def _logitclip_bound(params: dict, num_classes: int) -> float:
    try:
        is_ce = LOSSES.canonical(params["base"]) == "ce"
    except Exception:  # a spec with parameters, or unknown: no closed form
        is_ce = False
    if not is_ce:
        return math.inf  # bounded (continuous loss on a compact set), but no closed form for other bases
    tau, p = params["tau"], params["p"]
    radius = 1.0 / tau if params["mode"] == "paper" else max(tau, 1.0 / tau)
    # |z_k - z_y| <= |z_k| + |z_y| <= 2^(1 - 1/p) ||z||_p for p >= 1
    return _ce_bound(2.0 ** (1.0 - 1.0 / p) * radius, num_classes)


@register_loss(
    "logitclip",
    aliases=("logit_clip", "lc"),
    family="noise-robust",
    reference=Reference(
        "Mitigating Memorization of Noisy Labels by Clipping the Model Prediction", "Wei et al.", 2023, "ICML",
        "https://arxiv.org/abs/2212.04055",
    ),
    formula=(
        "paper: z' = z * min(1, (1/tau)/||z||_p) (norm clamped at 1/tau, continuous);  "
        "code: nu = ||z||_p + 1e-7, z' = z/(tau nu) if nu > tau else z;  l = base(z', y)"
    ),
    params=(
        Param("tau", 1.5, "temperature: paper mode clamps the norm at 1/tau; code mode clips norms above tau to 1/tau",
              low=0.0, low_open=True),
        Param("p", 2.0, "order of the logit norm", low=1.0),
        Param("mode", "paper", "'paper' (continuous clamp at 1/tau) or 'code' (the official discontinuous rule)",
              kind="str", choices=("paper", "code")),
        Param("base", "ce", "registered single-label loss applied to the clipped logits", kind="str"),
    ),
    bounded=True,
    convex=False,
    soft_targets=True,
    supports_weight=True,
    upper_bound=_logitclip_bound,
    notes=(
        "The official code clips when ||z|| > tau but rescales to norm 1/tau, a discontinuous map unless tau = 1 "
        "(mode='code'); mode='paper' (default) clamps the norm continuously at 1/tau. The README example uses "
        "tau=1.5 for CIFAR-10 with 50% symmetric noise. The norm is differentiated (true gradient). Bounded for "
        "any base; the stated upper bound is CE's, log(1 + (C-1) exp(2^(1-1/p) R)) with R the largest clipped norm. "
        "Soft targets are accepted when the base loss accepts them (ce does)."
    ),
)
class LogitClipLoss(Loss):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.base_loss = build_base_loss(self.info.name, self.base, self.class_counts)
        # the 2-norm with plain CE runs as one fused node (scaled_ce); other bases go through clip
        self._fused = self.p == 2.0 and type(self.base_loss) is LOSSES.get("ce")

    def clip(self, logits: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(logits, ord=self.p, dim=-1, keepdim=True)
        if self.mode == "paper":
            delta = 1.0 / self.tau
            return logits * (delta / norm.clamp_min(delta))  # = z * min(1, delta/||z||), no division by 0
        norm = norm + 1e-7
        scale = torch.where(norm > self.tau, 1.0 / (self.tau * norm), torch.ones_like(norm))
        return logits * scale

    def _fused_scale(self, logits: torch.Tensor):
        """``clip``'s row factor (p = 2) and its derivative in the norm, as ``scaled_ce`` takes them."""
        norm = torch.linalg.vector_norm(logits.detach(), dim=-1, keepdim=True)
        if self.mode == "paper":
            delta = 1.0 / self.tau
            scale = delta / norm.clamp_min(delta)
            dscale = torch.where(norm > delta, -scale / norm, 0.0)  # clamp_min passes no gradient at equality
        else:
            nu = norm + 1e-7
            active = nu > self.tau
            scale = torch.where(active, 1.0 / (self.tau * nu), 1.0)
            dscale = torch.where(active, -scale / nu, 0.0)
        return _row_scale(norm, scale, dscale)

    def per_sample(self, logits, target, **context):
        if self._fused and target.dim() == 1:
            return scaled_ce(logits, target, *self._fused_scale(logits))
        return self.base_loss(self.clip(logits), target, **context)

    def make_head(self, in_features, num_classes):
        return self.base_loss.make_head(in_features, num_classes)

    def prediction_logits(self, logits):
        return self.base_loss.prediction_logits(logits)


@register_loss(
    "logitnorm",
    aliases=("logit_norm",),
    family="calibration",
    reference=Reference(
        "Mitigating Neural Network Overconfidence with Logit Normalization", "Wei, Xie, Cheng, Feng, An & Li", 2022,
        "ICML", "https://arxiv.org/abs/2205.09310",
    ),
    formula="l = CE( z / (tau (||z||_2 + 1e-7)), y )",
    params=(
        Param("tau", 0.04, "temperature: the normalised logits have norm 1/tau (0.04 for CIFAR-10)", low=0.0, low_open=True),
    ),
    bounded=True,
    convex=False,
    soft_targets=True,
    supports_weight=True,
    upper_bound=lambda params, num_classes: _ce_bound(math.sqrt(2.0) / params["tau"], num_classes),
    notes=(
        "Normalised logits have norm 1/tau, so pairwise gaps are at most sqrt(2)/tau and the loss is at most "
        "log(1 + (C-1) exp(sqrt(2)/tau)). The official README example uses tau=0.01; train.py defaults to 1.0. "
        "Predictions (argmax) are unchanged by the normalisation; prediction_logits is the identity."
    ),
)
class LogitNormLoss(Loss):
    def per_sample(self, logits, target, **context):
        if target.dim() == 2:
            norm = torch.linalg.vector_norm(logits, ord=2, dim=-1, keepdim=True) + 1e-7
            return soft_cross_entropy(logits * (1.0 / (self.tau * norm)), target)
        norm = torch.linalg.vector_norm(logits.detach(), dim=-1, keepdim=True)
        nu = norm + 1e-7
        scale = 1.0 / (self.tau * nu)
        return scaled_ce(logits, target, *_row_scale(norm, scale, -scale / nu))
