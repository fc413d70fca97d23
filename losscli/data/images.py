"""Image arrays -> normalised float32 tensors ``[N, C, H, W]``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def normalise_images(x_train: np.ndarray, others: list[np.ndarray], normalize: bool) -> tuple[torch.Tensor, list[torch.Tensor], dict]:
    """uint8 (or float) ``[N, C, H, W]`` -> float32, per-channel (x - mean) / std from train.

    The record has the keys of :func:`losscli.data.normalize.standardize`'s (``method``, ``per``,
    ``statistics``; ``why`` when off), which the run header and reports read, plus ``scale``."""
    scale = 255.0 if x_train.dtype == np.uint8 else 1.0
    tensors = [torch.from_numpy(np.array(a, dtype=np.float32)).div_(scale) for a in [x_train, *others]]
    why = "normalize off (--no-normalize)" + ("; 8-bit pixels scaled to [0, 1]" if scale != 1.0 else "")
    stats: dict[str, Any] = {"method": "none", "why": why, "scale": scale}
    if normalize:
        xt = tensors[0]
        mean = xt.mean(dim=(0, 2, 3), dtype=torch.float64)
        std = xt.to(torch.float64).std(dim=(0, 2, 3)) if xt.numel() < 50_000_000 else _chunked_std(xt, mean)
        std = std.clamp_min(1e-6)
        for t in tensors:
            t.sub_(mean.float().view(1, -1, 1, 1)).div_(std.float().view(1, -1, 1, 1))
        stats = {"method": "standardize", "statistics": f"training data ({len(xt)} rows)", "per": "channel",
                 "scale": scale, "mean": [float(m) for m in mean], "std": [float(s) for s in std]}
    return tensors[0], tensors[1:], stats


def _chunked_std(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    acc = torch.zeros(x.shape[1], dtype=torch.float64)
    for chunk in x.split(4096):
        acc += ((chunk.to(torch.float64) - mean.view(1, -1, 1, 1)) ** 2).sum(dim=(0, 2, 3))
    n = x.shape[0] * x.shape[2] * x.shape[3]
    return (acc / max(n - 1, 1)).sqrt()
