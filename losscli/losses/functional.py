"""Fused building blocks shared by many losses.

Most losses of the literature are a function of the target's log-probability only:
``l_i = phi(log p_{i,y_i})`` (CE, focal, poly-1, GCE, MAE, Taylor-CE, comp-sum, encouraging...).
Written naively (``log_softmax`` then ``gather`` then ``phi``) autograd keeps the whole
``[N, C]`` log-softmax and runs several ``[N, C]`` kernels in backward. ``log_target_prob``
computes ``log p_y`` with one custom autograd node: forward is a ``logsumexp`` and a
``gather``; backward is one fused pass ``g_i (e_{y_i} - softmax(z_i))``. ``phi`` then runs
on ``[N]`` vectors, so such a loss costs about what ``F.cross_entropy`` costs.
"""

from __future__ import annotations

import torch


class _LogTargetProb(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        lse = torch.logsumexp(logits, dim=1)
        out = logits.gather(1, target.unsqueeze(1)).squeeze(1) - lse
        ctx.save_for_backward(logits, target, lse)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        logits, target, lse = ctx.saved_tensors
        # d log p_y / dz = e_y - softmax(z)
        grad = torch.exp(logits - lse.unsqueeze(1)).mul_(-grad_out.unsqueeze(1))
        grad.scatter_add_(1, target.unsqueeze(1), grad_out.unsqueeze(1))
        return grad, None


def log_target_prob(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[i, target_i]`` as ``[N]``, with a single-pass fused backward."""
    return _LogTargetProb.apply(logits, target)
