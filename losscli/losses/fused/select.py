"""A branch-free ``torch.where`` for the fused kernels' element-wise passes.

``torch.where`` on CPU branches per element: with a condition that flips at random (which side of
a threshold each logit falls) it mispredicts and runs 4-5x slower than an arithmetic pass (one
[256, 1000] block: 1.05 ms against 0.24 ms for an all-true condition and 0.15 ms for a multiply,
Intel Xeon). With the condition as a 0/1 float mask, ``b - m b + m a`` selects exactly: each
product is ``x * 1 = x`` or ``x * 0 = 0`` and each sum adds an exact 0, provided both branches
are finite (the callers clamp each branch's argument into its own domain first).
"""

from __future__ import annotations

import torch


def float_mask(condition_like: torch.Tensor, op, other: float) -> torch.Tensor:
    """``op(x, other)`` (a comparison such as ``torch.lt``) as a 0/1 tensor of ``x``'s dtype, in one pass."""
    return op(condition_like, other, out=torch.empty_like(condition_like))


def select(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a`` where ``mask == 1``, ``b`` where ``mask == 0`` (float 0/1 mask; ``a`` and ``b`` finite)."""
    return torch.addcmul(b, mask, b, value=-1.0).addcmul_(mask, a)
