"""Standardise a bundle's inputs with statistics of its training split (what image sources do too).

Raw inputs on their own scale train badly with some losses and not others (0-16 pixel counts made
gce look broken: 68% against 95% once standardised), so a comparison would measure the scale, not
the loss. ``x -> (x - mean) / std`` per feature (vectors, 1-D sequences: per position) or per
channel (images), the statistics from the training split only, applied to train, val and test.
A feature that is constant in the training split is centred but not scaled (a std of 1, as
scikit-learn's StandardScaler does): dividing by a tiny std would blow up its val/test values.
Token ids are never touched. What was done is recorded in ``info["normalization"]``.
"""

from __future__ import annotations

from typing import Any

import torch

from losscli.data.bundle import DataBundle

#: per-feature statistics are listed in the data info up to this many features (a summary beyond)
MAX_LISTED = 256


def standardize(bundle: DataBundle, enabled: bool = True) -> DataBundle:
    """A new bundle with standardised inputs (``enabled=False``: unchanged, recorded as such)."""
    if bundle.kind == "tokens":
        out = bundle.replace()
        out.info["normalization"] = {"method": "none", "why": "token ids"}
        return out
    if not enabled:
        out = bundle.replace()
        out.info["normalization"] = {"method": "none", "why": "normalize off (--no-normalize)"}
        return out
    per = "channel" if bundle.kind == "image" else "feature"
    dims = (0, 2, 3) if per == "channel" else (0,)
    x = bundle.x_train.to(torch.float64)
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True) if len(x) > 1 else torch.ones_like(mean)
    constant = ~torch.isfinite(std) | (std < 1e-12)
    std = torch.where(constant, torch.ones_like(std), std)
    mean32, std32 = mean.to(torch.float32), std.to(torch.float32)

    def apply(t: torch.Tensor) -> torch.Tensor:
        return ((t - mean32) / std32).contiguous() if len(t) else t

    out = bundle.replace(x_train=apply(bundle.x_train), x_val=apply(bundle.x_val), x_test=apply(bundle.x_test))
    out.info["normalization"] = _record(per, mean.flatten(), std.flatten(), int(constant.sum()), len(x))
    return out


def _record(per: str, mean: torch.Tensor, std: torch.Tensor, n_constant: int, n_rows: int) -> dict[str, Any]:
    info: dict[str, Any] = {"method": "standardize", "statistics": f"training split ({n_rows} rows)", "per": per}
    if len(mean) <= MAX_LISTED:
        info["mean"] = [float(v) for v in mean]
        info["std"] = [float(v) for v in std]
    else:  # thousands of numbers help nobody reading a report; the ranges say what happened
        info["num_" + per + "s"] = len(mean)
        info["mean_range"] = [float(mean.min()), float(mean.max())]
        info["std_range"] = [float(std.min()), float(std.max())]
    if n_constant:
        info["constant_" + per + "s"] = n_constant  # centred only (std taken as 1)
    return info
