"""A custom dataset for losscli: a function returning the splits (see README.md here).

``--dataset examples.custom_data:spirals``; its keyword arguments with defaults are options
(``--set dataset.options.noise=0.3``). It returns a mapping with ``x_train``, ``y_train``, ``x_test``,
``y_test`` (the validation split is carved from train by losscli, with ``split_seed``); it could
also return a ``losscli.data.DataBundle``. It must be deterministic given its arguments.
"""

from __future__ import annotations

import math

import torch


def spirals(n_train: int = 600, n_test: int = 300, num_classes: int = 3, noise: float = 0.2, seed: int = 0) -> dict:
    """Interleaved 2-D spirals, one arm per class: not linearly separable."""
    g = torch.Generator().manual_seed(seed)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % num_classes
        r = torch.rand(n, generator=g)
        angle = 4.0 * r + 2.0 * math.pi * y / num_classes
        x = torch.stack([r * torch.cos(angle), r * torch.sin(angle)], dim=1)
        return x + noise * 0.1 * torch.randn(n, 2, generator=g), y

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
            "class_names": [f"arm{k}" for k in range(num_classes)]}
