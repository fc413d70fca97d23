"""Exact forms that cost an extra ``[B, C]`` pass, taken only where they can matter.

A shift-invariant loss whose input transform (a scale, an added offset, ``log p = z - lse``) rounds to
the size of the logits loses precision on rows far from zero; shifting each row by one of its own
values first (exact for nearby floats: Sterbenz) makes the transform round to the size of the row's
spread instead. On a CPU the shift is made only where some row value exceeds ``FAR_FROM_ZERO`` (a
check on ``[B, 1]`` values, so ordinary logits pay no pass); elsewhere (GPU: the check would
synchronise; under ``torch.func`` and compilation: no data-dependent branch) always.
"""

from __future__ import annotations

import math

import torch

from losscli.losses.fused.transforms import transforms_active


#: a row value (a logit, a row's max or logsumexp) at most this large in magnitude is rounded by at most
#: 8 eps (absolute): an exact form that costs an extra [B, C] pass is skipped on a CPU below it (worth_a_pass)
FAR_FROM_ZERO = 16.0


def host_checks(t: torch.Tensor) -> bool:
    """Whether a branch on ``t``'s values may be taken on the host: on a CPU (elsewhere the check would
    synchronise), outside ``torch.func`` transforms and compilation (no data-dependent branch there)."""
    return t.device.type == "cpu" and not transforms_active() and not torch.compiler.is_compiling()


def worth_a_pass(rows: torch.Tensor, limit: float = FAR_FROM_ZERO) -> bool:
    """Whether to take an exact form that costs an extra ``[B, C]`` pass, given per-row values ``rows``
    (``[B, 1]``) whose magnitude above ``limit`` means the cheap form can round beyond float rounding:
    where ``host_checks``, only if some row is above (a check on ``[B, 1]`` values, so ordinary logits
    pay no pass; the infinity norm is one op: ~6 us on 262 rows, against ~15 us for abs, compare, any);
    elsewhere always."""
    return not host_checks(rows) or float(torch.linalg.vector_norm(rows, math.inf)) > limit


def shift_far_rows(z: torch.Tensor, ref: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``z - ref`` (``ref`` ``[B, 1]``, a value of each row), or ``z`` itself when no row's ``|ref|`` exceeds
    ``FAR_FROM_ZERO`` (on a CPU; elsewhere always shifted: ``worth_a_pass``). For a shift-invariant loss whose
    input transform (a scale, an added offset) rounds to the size of ``|z|``: ``z_k - ref`` is exact for
    nearby floats (Sterbenz), so the transform of the shifted row rounds to the size of the row's spread
    instead of its offset."""
    if worth_a_pass(ref):
        return torch.sub(z, ref, out=out)
    return z
