"""Two different "z-losses": de Brébisson & Vincent's spherical Z-loss and PaLM's log Z penalty."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from losscli.losses.fused.row_linear import logz_ce, standardised_target
from losscli.losses.base import LOSSES, Loss, Param, Reference, register_loss
from losscli.losses.reweighted import build_base_loss

#: added to the population variance under the square root (constant logits have sigma = 0)
_VAR_EPS = 1e-12


def _softplus(x: float) -> float:
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


def _spherical_z_bound(params: dict, num_classes: int) -> float:
    # |z_hat_y| <= sqrt(C - 1) for a standardised vector (population std)
    a, b = params["a"], params["b"]
    return _softplus(a * (b + math.sqrt(num_classes - 1))) / a


@register_loss(
    "spherical_z",
    aliases=("z_loss_spherical", "brebisson_z"),
    family="efficiency",
    reference=Reference(
        "The Z-loss: a shift and scale invariant classification loss belonging to the Spherical Family",
        "de Brébisson & Vincent", 2016, "arXiv", "https://arxiv.org/abs/1604.08859",
    ),
    formula=(
        "mu = mean_k z_k, sigma = sqrt(mean_k (z_k - mu)^2);  z_hat_y = (z_y - mu)/sigma;  "
        "l = (1/a) softplus(a (b - z_hat_y))"
    ),
    params=(
        Param("a", 1.0, "sharpness of the softplus (losscli default; the paper tunes it)", low=0.0, low_open=True),
        Param("b", 2.0, "offset: target standardised score (losscli default; the paper tunes it)"),
    ),
    bounded=True,
    convex=False,
    supports_weight=True,
    upper_bound=_spherical_z_bound,
    notes=(
        "The paper gives no default a, b (they are tuned per task): a=1.0, b=2.0 are losscli's own defaults, "
        "not the paper's; tune them. Shift- and scale-invariant in z; bounded by softplus(a(b + sqrt(C-1)))/a. "
        f"A {_VAR_EPS:g} is added to the variance under the square root so constant logits give z_hat = 0."
    ),
)
class SphericalZLoss(Loss):
    def per_sample(self, logits, target, **context):
        z_hat = standardised_target(logits, target, _VAR_EPS)
        return F.softplus(self.b - z_hat, beta=self.a)


@register_loss(
    "logz_penalty",
    aliases=("z_loss", "palm_z_loss", "zloss"),
    family="efficiency",
    reference=Reference(
        "PaLM: Scaling Language Modeling with Pathways", "Chowdhery et al.", 2022, "arXiv (JMLR 2023)",
        "https://arxiv.org/abs/2204.02311",
    ),
    formula="l = base(z, y) + coef * (log Z)^2,  log Z = logsumexp_k z_k",
    params=(
        Param("coef", 1e-4, "weight of the (log Z)^2 penalty (PaLM: 1e-4)", low=0.0),
        Param("base", "ce", "registered single-label loss the penalty is added to", kind="str"),
    ),
    convex=False,
    soft_targets=True,
    supports_weight=True,
    notes=(
        "The PaLM/ST-MoE 'z-loss' regulariser, not the spherical Z-loss (that is `spherical_z`). Not convex where "
        "log Z < 0. Soft targets are accepted when the base loss accepts them (ce does)."
    ),
)
class LogZPenalty(Loss):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.base_loss = build_base_loss(self.info.name, self.base, self.class_counts)
        self._plain_ce = type(self.base_loss) is LOSSES.get("ce")

    def per_sample(self, logits, target, **context):
        if self._plain_ce and target.dim() == 1:
            return logz_ce(logits, target, self.coef)  # CE sharing the same log Z, one fused node
        lse = torch.logsumexp(logits, dim=-1)
        return self.base_loss(logits, target, **context) + self.coef * lse * lse

    def make_head(self, in_features, num_classes):
        return self.base_loss.make_head(in_features, num_classes)

    def prediction_logits(self, logits):
        return self.base_loss.prediction_logits(logits)
