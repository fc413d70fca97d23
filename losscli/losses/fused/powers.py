"""Integer powers by repeated multiplication: torch's CPU ``pow`` with an exponent other than
2 or 3 is a slow pass."""

from __future__ import annotations

import torch


def int_pow(x: torch.Tensor, k: int) -> torch.Tensor:
    """``x ** k`` (one new tensor) for an integer ``k >= 1`` by repeated multiplication in place:
    a few cheap passes, where torch's CPU ``pow`` with an exponent other than 2 or 3 is a slow one."""
    if k == 1:
        return x.clone()
    out = x * x
    if k == 2:
        return out
    if k == 3:
        return out.mul_(x)
    if k == 4:
        return out.mul_(out)
    sq = out  # x^(2^j)
    out = x.clone() if k & 1 else None
    k >>= 1
    while True:
        if k & 1:
            out = sq.clone() if out is None else out.mul_(sq)
        k >>= 1
        if not k:
            return out
        sq.mul_(sq)


def pow_scalar(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """``x ** gamma`` (a new tensor): repeated multiplication for small integer ``gamma``, else ``pow``."""
    if gamma == int(gamma) and 1 <= gamma <= 16:
        return int_pow(x, int(gamma))
    return x.pow(gamma)
