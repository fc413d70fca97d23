"""MLP as in the MNIST-1D paper (Greydanus 2020): 2 hidden layers of 100 ReLU units."""

from __future__ import annotations

import torch
from torch import nn

from losscli.models.base import MAX_DEPTH, Classifier, flat_dim, positive, register_model


@register_model("mlp", kinds=("vector", "sequence1d", "image"))
class MLP(Classifier):
    """Fully connected ReLU network (default 2 hidden layers x 100 units)."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, *, hidden: int = 100, depth: int = 2):
        super().__init__()
        hidden, depth = positive(hidden, "mlp: hidden"), positive(depth, "mlp: depth", most=MAX_DEPTH)
        layers: list[nn.Module] = []
        d = flat_dim(tuple(input_shape))
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.ReLU()]
            d = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.reshape(x.shape[0], -1))
