"""Column sums of the softmax (or of a sigmoid of it) and the target entries, as one autograd node:
all that batch-level metric surrogates (Jaccard, AnyLoss) need."""

from __future__ import annotations

import torch

from losscli.losses.fused.softmax_core import saturated_target
from losscli.losses.fused.transforms import can_inspect_values, keep_for_backward, looped_vmap


def _normal_range_scale(g: torch.Tensor) -> torch.Tensor:
    """A power of two (so multiplying by it and dividing again is exact) that brings ``max |g|``
    to about 2^90: far from overflow for any realistic class count, while products of ``g`` with
    probabilities' tiny derivatives stay in float's normal range. A 0-d tensor, so that on a GPU
    no value has to come back to the host."""
    biggest = g.abs().amax()
    return torch.ldexp(torch.ones_like(biggest), 90 - torch.frexp(biggest).exponent)  # max 0: 2^90, harmless


@looped_vmap
class _SoftmaxColumnSums(torch.autograd.Function):
    """``(sum_i r_i a_i, a_{i, y_i})`` with ``a = sigmoid(slope (p - 1/2))``, ``p = softmax(z)``.

    With ``G = dL/da = r_i g_c + h_i e_y`` and ``D = da/dp = slope a (1 - a)``:
    ``dL/dz = p D G - p s``, ``s_i = sum_c p_ic D_ic G_ic``; one ``[N, C]`` buffer in backward.
    """

    @staticmethod
    def forward(logits, target, rows, slope):
        p = torch.softmax(logits, dim=1)
        idx = target.unsqueeze(1)
        a = torch.sub(p, 0.5).mul_(slope).sigmoid_()
        return torch.mv(a.t(), rows), a.gather(1, idx).squeeze(1), p, a  # p, a: kept for backward only

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, target, rows, slope = inputs
        keep_for_backward(ctx, output[2], output[3])
        ctx.save_for_backward(output[2], output[3], target.unsqueeze(1), rows)
        ctx.slope = slope

    @staticmethod
    def backward(ctx, g_col, g_y, *_):
        p, a, idx, rows = ctx.saved_tensors
        slope = ctx.slope
        if g_col is None:
            g_col = torch.zeros(p.shape[1], dtype=p.dtype, device=p.device)
        if g_y is None:
            g_y = torch.zeros(p.shape[0], dtype=p.dtype, device=p.device)
        pd = torch.ops.aten.sigmoid_backward(p, a)  # p a (1 - a) = p D / slope, one pass
        pd_y = pd.gather(1, idx).squeeze(1)
        # Work in a power-of-two rescaled domain (exact): near p = 0, a ~ 1e-16 and p a (1 - a) g
        # falls below float's smallest normal number for most entries of a confident batch, and on
        # Intel CPUs every subnormal operand or result costs a microcode assist (one [4096, 1000]
        # multiply: 26 ms instead of 0.7 ms, which made this backward 5x CE's). Scaled so the largest
        # |g| is 2^90, the intermediates stay normal; only the final unscaling can produce subnormals,
        # and only where the gradient itself is subnormal.
        scale = _normal_range_scale(torch.cat([g_col, g_y]).mul_(slope))
        g_col, g_y = g_col * (slope * scale), g_y * (slope * scale)
        s = rows * torch.mv(pd, g_col) + g_y * pd_y
        grad = pd.mul_(g_col.unsqueeze(0))
        if not can_inspect_values(rows) or not bool((rows == 1).all()):
            grad.mul_(rows.unsqueeze(1))
        grad.addcmul_(p, s.unsqueeze(1), value=-1.0)
        grad.scatter_add_(1, idx, (g_y * pd_y).unsqueeze(1))
        return grad.div_(scale), None, None, None


@looped_vmap
class _OffTargetColumnSums(torch.autograd.Function):
    """``(sum_i r_i p_ic [c != y_i], 1 - p_{i, y_i})`` for ``p = softmax(z)``: Jaccard's false positives per
    class and false negatives per sample, each a sum of positive terms (exact even when the softmax
    saturates, where ``sum_i p_ic - sum_i p_{i,y_i}`` or ``1 - round(p_y)`` would cancel to 0).

    With ``G' = dL/dp`` (``r_i g_c`` off the target, ``-h_i`` at it): ``dL/dz = p (G' - sum_c p_c G'_c)``.
    """

    @staticmethod
    def forward(logits, target, rows):
        p = torch.softmax(logits, dim=1)
        idx = target.unsqueeze(1)
        p_y = p.gather(1, idx)
        sat = saturated_target(p, idx)
        om_y = torch.rsub(p_y, 1.0) if sat is None else sat[1]
        col = torch.mv(p.scatter_(1, idx, 0.0).t(), rows)
        p.scatter_(1, idx, p_y)  # restored exactly
        return col, om_y.squeeze(1), p  # p: kept for backward only

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, target, rows = inputs
        keep_for_backward(ctx, output[2])
        ctx.save_for_backward(output[2], target.unsqueeze(1), rows, output[1])

    @staticmethod
    def backward(ctx, g_col, g_om, _):
        p, idx, rows, om_y = ctx.saved_tensors
        om_y = om_y.unsqueeze(-1)
        if g_col is None:
            g_col = torch.zeros(p.shape[1], dtype=p.dtype, device=p.device)
        if g_om is None:
            g_om = torch.zeros(p.shape[0], dtype=p.dtype, device=p.device)
        g_om, rows_c = g_om.unsqueeze(1), rows.unsqueeze(1)
        p_y = p.gather(1, idx)
        grad = p.scatter(1, idx, 0.0)  # target entries out of the sum (a copy: p is saved)
        off = torch.mv(grad, g_col).unsqueeze(1)  # sum_{c != y} p_c g_c
        s = rows_c * off - p_y * g_om  # sum_c p_c G'_c
        grad.mul_(g_col.unsqueeze(0))
        if not can_inspect_values(rows) or not bool((rows == 1).all()):
            grad.mul_(rows_c)
        grad.addcmul_(p, s, value=-1.0)  # p_c (r g_c - s) off the target (its entry is written below)
        # at the target: p_y (G'_y - s) = -p_y ((1 - p_y) h + r off), with the exact 1 - p_y
        return grad.scatter_(1, idx, -p_y * (om_y * g_om + rows_c * off)), None, None


def softmax_column_sums(logits, target, rows, slope):
    """``(sum_i rows_i a_i [C], a_{i, target_i} [N])``, ``a = sigmoid(slope (softmax(logits) - 1/2))``;
    one autograd node (``rows``: 0/1 row weights)."""
    return _SoftmaxColumnSums.apply(logits, target, rows, slope)[:2]


def softmax_off_target_sums(logits, target, rows):
    """``(sum_i rows_i p_ic [c != target_i] [C], 1 - p_{i, target_i} [N])``, ``p = softmax(logits)``; one
    autograd node (``rows``: 0/1 row weights)."""
    return _OffTargetColumnSums.apply(logits, target, rows)[:2]
