"""Column sums of the softmax (or of a sigmoid of it) and the target entries, as one autograd node:
all that batch-level metric surrogates (Jaccard, AnyLoss) need."""

from __future__ import annotations

import torch


class _SoftmaxColumnSums(torch.autograd.Function):
    """``(sum_i r_i a_i, a_{i, y_i})`` with ``a = p = softmax(z)`` or ``a = sigmoid(slope (p - 1/2))``.

    Batch-level metric losses (Jaccard, AnyLoss) need only these column sums and target entries.
    With ``G = dL/da = r_i g_c + h_i e_y`` and ``D = da/dp`` (1, or ``slope a (1 - a)``):
    ``dL/dz = p D G - p s``, ``s_i = sum_c p_ic D_ic G_ic``; one ``[N, C]`` buffer in backward.
    """

    @staticmethod
    def forward(ctx, logits, target, rows, slope):
        p = torch.softmax(logits, dim=1)
        idx = target.unsqueeze(1)
        a = p if slope is None else torch.sub(p, 0.5).mul_(slope).sigmoid_()
        ctx.save_for_backward(p, a, idx, rows)
        ctx.slope = slope
        return torch.mv(a.t(), rows), a.gather(1, idx).squeeze(1)

    @staticmethod
    def backward(ctx, g_col, g_y):
        p, a, idx, rows = ctx.saved_tensors
        slope = ctx.slope
        if g_col is None:
            g_col = torch.zeros(p.shape[1], dtype=p.dtype, device=p.device)
        if g_y is None:
            g_y = torch.zeros(p.shape[0], dtype=p.dtype, device=p.device)
        if slope is None:  # D = 1
            s = rows * torch.mv(p, g_col) + g_y * p.gather(1, idx).squeeze(1)
            grad = torch.outer(rows, g_col).sub_(s.unsqueeze(1)).mul_(p)
            return grad.scatter_add_(1, idx, (g_y * p.gather(1, idx).squeeze(1)).unsqueeze(1)), None, None, None
        pd = torch.sub(1.0, a).mul_(a).mul_(p)  # p a (1 - a) = p D / slope
        pd_y = pd.gather(1, idx).squeeze(1)
        s = (rows * torch.mv(pd, g_col) + g_y * pd_y) * slope
        grad = pd.mul_((g_col * slope).unsqueeze(0)).mul_(rows.unsqueeze(1)).addcmul_(p, s.unsqueeze(1), value=-1.0)
        return grad.scatter_add_(1, idx, (g_y * pd_y * slope).unsqueeze(1)), None, None, None


def softmax_column_sums(logits, target, rows, slope=None):
    """``(sum_i rows_i a_i [C], a_{i, target_i} [N])``, ``a = softmax(logits)`` or, given ``slope``,
    ``sigmoid(slope (softmax(logits) - 1/2))``; one autograd node (``rows``: 0/1 row weights)."""
    return _SoftmaxColumnSums.apply(logits, target, rows, slope)
