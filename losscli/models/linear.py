"""Multinomial logistic regression on the flattened input."""

from __future__ import annotations

import torch
from torch import nn

from losscli.models.base import Classifier, flat_dim, register_model


@register_model("linear", kinds=("vector", "sequence1d", "image"), aliases=("logreg",))
class Linear(Classifier):
    """Linear classifier (logistic regression) on the flattened input."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.head = nn.Linear(flat_dim(self.input_shape), num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)
