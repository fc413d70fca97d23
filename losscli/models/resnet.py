"""A small ResNet for 32x32 (or 28x28) images: 3x3 stem, three stages of BasicBlocks
(widths w, 2w, 4w; stride 2 between stages), global average pooling, linear head.

``norm="group"`` (default; GroupNorm, vmap-friendly), ``"batch"`` (BatchNorm: updates running
statistics in place, so not for vmap'd multi-model training) or ``"none"``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from losscli.errors import UsageError
from losscli.models.base import MAX_DEPTH, Classifier, positive, register_model

NORMS = ("group", "batch", "none")


def group_count(channels: int, per_group: int = 8, max_groups: int = 32) -> int:
    """About ``per_group`` channels per group (at most ``max_groups`` groups), a divisor of ``channels``.

    Groups of several channels keep the statistics well conditioned; one channel per group
    (instance norm) on small late feature maps makes float32 gradients noisy."""
    groups = max(1, min(max_groups, channels // per_group))
    while channels % groups:
        groups -= 1
    return groups


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(group_count(channels), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=norm == "none")
        self.n1 = make_norm(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=norm == "none")
        self.n2 = make_norm(norm, cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=norm == "none"), make_norm(norm, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.n1(self.conv1(x)))
        h = self.n2(self.conv2(h))
        return F.relu(h + self.shortcut(x))


@register_model("resnet", kinds=("image",), aliases=("resnet_small",))
class ResNet(Classifier):
    """Small ResNet (3 stages x ``blocks`` BasicBlocks, width ``width``), GroupNorm by default."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, *, width: int = 32, blocks: int = 2,
                 norm: str = "group"):
        super().__init__()
        shape = tuple(input_shape)
        if len(shape) == 2:
            shape = (1, *shape)
        if len(shape) != 3:
            raise UsageError(f"resnet needs image input_shape (C, H, W), got {tuple(input_shape)}")
        if norm not in NORMS:
            raise UsageError(f"resnet: norm must be one of {', '.join(NORMS)}, got {norm!r}")
        width, blocks = positive(width, "resnet: width"), positive(blocks, "resnet: blocks", most=MAX_DEPTH)
        self.input_shape = shape
        self.stem = nn.Sequential(nn.Conv2d(shape[0], width, 3, padding=1, bias=norm == "none"),
                                  make_norm(norm, width), nn.ReLU())
        layers, cin = [], width
        for stage, cout in enumerate((width, 2 * width, 4 * width)):
            for b in range(blocks):
                layers.append(BasicBlock(cin, cout, 2 if (stage > 0 and b == 0) else 1, norm))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layers(self.stem(x.reshape(x.shape[0], *self.input_shape)))
        return h.mean(dim=(2, 3))
