"""1D CNN as in the MNIST-1D paper (Greydanus 2020): three strided Conv1d + ReLU layers
(25 channels; kernels 5, 3, 3; stride 2) and a linear head on the flattened maps. No
normalisation layers, so it stays vmap-friendly; the paper reports ~94% test accuracy."""

from __future__ import annotations

import torch
from torch import nn

from losscli.errors import UsageError
from losscli.models.base import Classifier, positive, register_model


@register_model("cnn1d", kinds=("sequence1d", "vector"))
class CNN1d(Classifier):
    """MNIST-1D paper CNN: 3 x (Conv1d stride 2 + ReLU), linear head."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, *, channels: int = 25):
        super().__init__()
        channels = positive(channels, "cnn1d: channels")
        shape = tuple(input_shape)
        if len(shape) == 1:
            self.in_channels, length = 1, shape[0]
        elif len(shape) == 2:
            self.in_channels, length = shape
        else:
            raise UsageError(f"cnn1d needs input_shape (L,) or (C, L), got {shape}")
        self.length = length
        self.conv = nn.Sequential(
            nn.Conv1d(self.in_channels, channels, 5, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
        )
        out_len = length
        for k in (5, 3, 3):
            out_len = (out_len + 2 - k) // 2 + 1
        if out_len < 1:
            raise UsageError(f"cnn1d: sequence length {length} is too short (need >= 5)")
        self.head = nn.Linear(channels * out_len, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x.reshape(x.shape[0], self.in_channels, self.length))
        return h.flatten(1)
