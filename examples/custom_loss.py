"""Custom losses for losscli, three ways (see README.md here).

* :class:`SoftCappedCE`: a plain ``torch.nn.Module``. It takes ``reduction`` (torch's convention),
  so losscli builds it with ``reduction="none"`` and gives it every reduction, per-class weights
  and ``ignore_index``. Its constructor's keyword arguments are its hyperparameters:
  ``--loss 'examples.custom_loss:SoftCappedCE(cap=2)'``.
* :func:`smoothed_ce`: a factory returning a module (here one of torch's).
* :class:`TemperedGCE`: a :class:`losscli.losses.Loss` with ``@register_loss`` metadata: validated
  hyperparameter ranges, a paper, and claimed properties (bounded, with its bound; soft targets;
  per-class weights) that ``losscli check-loss`` then verifies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from losscli.losses import Loss, Param, Reference, register_loss


class SoftCappedCE(nn.Module):
    """Soft-capped cross-entropy ``cap * tanh(CE / cap)``: CE for confident fits, at most ``cap``.

    Bounded losses are robust to label noise (a wrong label costs at most ``cap``); unlike a hard
    clamp, the gradient never vanishes abruptly. Its per-sample gradient is CE's times
    ``1 - tanh(CE / cap)^2``.
    """

    def __init__(self, cap: float = 4.0, reduction: str = "mean"):
        super().__init__()
        if not cap > 0:
            raise ValueError(f"cap must be > 0, got {cap}")
        self.cap, self.reduction = float(cap), reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per = self.cap * torch.tanh(F.cross_entropy(logits, target, reduction="none") / self.cap)
        if self.reduction == "none":
            return per
        return per.sum() if self.reduction == "sum" else per.mean()


def smoothed_ce(epsilon: float = 0.1, reduction: str = "mean") -> nn.Module:
    """Cross-entropy with label smoothing ``epsilon``, from a factory (torch's own module)."""
    return nn.CrossEntropyLoss(label_smoothing=epsilon, reduction=reduction)


@register_loss(
    "tempered_gce",
    family="noise-robust",
    reference=Reference("Generalized Cross Entropy Loss for Training Deep Neural Networks with Noisy Labels",
                        "Zhang & Sabuncu", 2018, "NeurIPS"),
    formula="l = (1 - p_y^q) / q with p = softmax(z / T); soft targets: (1 - sum_k t_k p_k^q) / q",
    params=(
        Param("q", 0.7, "robustness: q -> 0 is CE, q = 1 is MAE", low=0.0, high=1.0, low_open=True),
        Param("temperature", 1.0, "softmax temperature T", low=0.0, low_open=True),
    ),
    bounded=True,
    upper_bound=lambda params, num_classes: 1.0 / params["q"],
    soft_targets=True,
    supports_weight=True,
)
class TemperedGCE(Loss):
    """GCE (Zhang & Sabuncu 2018) on a tempered softmax: an example of a loss with metadata."""

    def per_sample(self, logits: torch.Tensor, target: torch.Tensor, **context) -> torch.Tensor:
        # p^q = exp(q log p): finite for every logit (p itself underflows to 0 at large margins)
        log_p = F.log_softmax(logits / self.temperature, dim=-1)
        powered = torch.exp(self.q * log_p)
        if target.dim() == 2:  # probability targets
            return (1.0 - (target * powered).sum(-1)) / self.q
        return (1.0 - powered.gather(1, target[:, None]).squeeze(1)) / self.q
