"""Integer powers by repeated multiplication: torch's CPU ``pow`` with an exponent other than
2 or 3 is a slow pass."""

from __future__ import annotations

import math

import torch

LOG2E = 1.0 / math.log(2.0)  # log2(e): exp(x) = exp2(x LOG2E), the faster pass on CPU

#: floor for the base of a fractional power ``x ** g`` (0 < g < 1): keeps its derivative
#: ``g x ** (g - 1)`` finite at ``x = 0`` (the losses' documented behaviour there)
POW_FLOOR = 1e-30


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


def focal_factor(om: torch.Tensor, gamma: float, floor: float,
                 need_derivative: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``((1 - p)^gamma, (1 - p)^(gamma - 1))`` from ``om = 1 - p`` for ``gamma > 0`` (NFL's focal terms).

    Small integer gamma: products (the second is None for gamma = 1, meaning 1). Otherwise the base is
    floored at ``floor`` and the power is ``exp2(gamma log2 base)``; the derivative factor is 0 where
    ``om`` is at or below the floor (the floor's gradient). ``need_derivative=False`` skips it there.
    """
    if gamma == int(gamma) and 1 <= gamma <= 16:
        dfac = int_pow(om, int(gamma) - 1) if gamma > 1 else None
        return (om.clone() if dfac is None else torch.mul(dfac, om)), dfac
    fac = torch.clamp_min(om, floor).log_().mul_(gamma * LOG2E).exp2_()
    dfac = torch.div(fac, torch.threshold(om, floor, math.inf)) if need_derivative else None
    return fac, dfac
