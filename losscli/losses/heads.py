"""Learnable output layers that some losses need instead of a plain ``nn.Linear``.

A loss with ``info.head`` set returns one of these from ``make_head(in_features,
num_classes)``; the engine replaces the model's final linear layer with it, feeds the
head's output to the loss as "logits", and uses ``loss.prediction_logits(output)`` for
predictions and metrics.

* ``CosineHead`` (LDAM's ``NormedLinear``, circle loss): cosine similarities
  ``cos(x, w_k) = <x/||x||, w_k/||w_k||>`` in ``[-1, 1]``.
* ``DistanceHead`` (harmonic loss, the official ``DistLayer``): ``-log d2_k`` with the
  **squared** Euclidean distance ``d2_k = ||w_k||^2 + ||x||^2 - 2 w_k.x + eps``.
* ``DualHead`` (DHKD): two linear classifiers on the same features, output ``[N, 2C]``
  (main, auxiliary); ``prediction_logits`` keeps the main one.

LegendreTron's head (a learned monotone link) lives with its loss in ``legendretron.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class _PrototypeHead(nn.Module):
    """One learnable prototype per class, ``weight [num_classes, in_features]`` (nn.Linear's layout)."""

    def __init__(self, in_features: int, num_classes: int, eps: float):
        super().__init__()
        self.in_features = int(in_features)
        self.num_classes = int(num_classes)
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.empty(self.num_classes, self.in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}, eps={self.eps:g}"


class CosineHead(_PrototypeHead):
    """``z_k = cos(x, w_k)``: normalised features times normalised class weights.

    The weight has ``nn.Linear``'s layout ``[num_classes, in_features]`` and no bias.
    """

    def __init__(self, in_features: int, num_classes: int, eps: float = 1e-12):
        super().__init__(in_features, num_classes, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x, dim=-1, eps=self.eps)
        w = F.normalize(self.weight, dim=-1, eps=self.eps).to(x.dtype)
        return x @ w.t()


class DistanceHead(_PrototypeHead):
    """``z_k = -log d2_k`` with ``d2_k = ||w_k||^2 + ||x||^2 - 2 w_k.x + eps``.

    ``d2`` is the *squared* distance (the official code's convention), clamped at 0
    before ``eps`` is added so that rounding in the expansion can never make it
    negative. With the harmonic loss, ``softmax(n * z)`` is the HarMax distribution
    ``p_k ∝ d2_k^(-n)`` (the code's min-normalisation ``d2_k / min_j d2_j`` is a shift
    of ``z`` and cancels in the softmax).
    """

    def __init__(self, in_features: int, num_classes: int, eps: float = 1e-4):
        if eps <= 0:
            raise ValueError("DistanceHead: eps must be > 0")
        super().__init__(in_features, num_classes, eps)

    def squared_distances(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype)
        d2 = (w * w).sum(-1) + (x * x).sum(-1, keepdim=True) - 2.0 * (x @ w.t())
        return d2.clamp_min(0.0) + self.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.log(self.squared_distances(x))


class DualHead(nn.Module):
    """DHKD's two classifiers on the same features: ``[fc(x), fc2(x)]`` concatenated, ``[N, 2C]``.

    ``fc`` (the first C columns) is the main head, trained by CE and used for predictions; ``fc2``
    is the auxiliary head that takes the distillation loss. ``aux="nonlinear"`` is the official
    ``--nonlinear`` auxiliary head ``Linear(d, 200) -> Dropout(0.1) -> BatchNorm1d -> ReLU -> Linear(200, C)``.
    """

    def __init__(self, in_features: int, num_classes: int, aux: str = "linear"):
        super().__init__()
        self.in_features = int(in_features)
        self.num_classes = int(num_classes)
        self.fc = nn.Linear(self.in_features, self.num_classes)
        if aux == "linear":
            self.fc2 = nn.Linear(self.in_features, self.num_classes)
        elif aux == "nonlinear":
            self.fc2 = nn.Sequential(
                nn.Linear(self.in_features, 200), nn.Dropout(0.1), nn.BatchNorm1d(200), nn.ReLU(),
                nn.Linear(200, self.num_classes),
            )
        else:
            raise ValueError(f"DualHead: aux must be 'linear' or 'nonlinear', got {aux!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.fc(x), self.fc2(x)], dim=-1)
