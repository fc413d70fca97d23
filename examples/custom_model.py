"""A custom model for losscli: a factory ``(num_classes, input_shape) -> nn.Module`` (see README.md here).

``--model examples.custom_model:residual_mlp``; its keyword arguments with defaults are options
(``--set model.options.width=128``). It follows losscli's model contract, ``features(x) -> [N, D]``
and a final ``nn.Linear`` named ``head`` (``forward(x) = head(features(x))``), so it also trains the
losses that replace the head (cosine, distance heads: ldam, circle, harmonic) or read the features
(a sum with an embedding loss). A model with only ``forward(x) -> [N, C]`` trains every other loss.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ResidualMLP(nn.Module):
    """Flatten, a linear stem, ``depth`` residual blocks ``x + W2 relu(W1 LayerNorm(x))``, linear head."""

    def __init__(self, in_features: int, num_classes: int, width: int, depth: int):
        super().__init__()
        self.stem = nn.Linear(in_features, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.ReLU(), nn.Linear(2 * width, width))
            for _ in range(depth)
        )
        self.head = nn.Linear(width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x.reshape(x.shape[0], -1))
        for block in self.blocks:
            h = h + block(h)
        return torch.relu(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def residual_mlp(num_classes: int, input_shape: tuple[int, ...], width: int = 64, depth: int = 2) -> nn.Module:
    """A residual MLP on the flattened input (any data kind except token ids)."""
    if width < 1 or depth < 0:
        raise ValueError(f"width must be >= 1 and depth >= 0, got width={width}, depth={depth}")
    return ResidualMLP(math.prod(input_shape), num_classes, width, depth)


residual_mlp.kinds = ("vector", "sequence1d", "image")  # the data kinds it takes (default: all)
