"""Losses of the cosine similarities ``S = e e^T`` of embeddings ``x`` (``e = x / ||x||``, rows; used by
multi_similarity and tcm) as one autograd node: ``S`` is formed once, the loss supplies its
gradient ``G = dL/dS`` along with its value, and backward is ``dL/de = (G + G^T) e``, one
``[N, N] x [N, D]`` product, then ``dL/dx = (dL/de - e (e . dL/de)) / ||x||``.

Why: through autograd, ``e @ e.t()`` costs two such products in backward (one per operand) and
every masked ``[N, N]`` intermediate (``torch.where``, ``full_like``, ``logsumexp``) is allocated,
saved and differentiated; on CPU at N=4096, D=1000 that was 4-7x the cost of the two products
this needs. Those two products are the floor; the rest is a few in-place passes over row
blocks of ``S`` (which the loss overwrites with the dense part of ``G``) and a tiled transpose.

``G`` is given as a dense ``[N, N]`` part (optional) plus sparse entries (same-label pairs,
few per row under P x K sampling). For a per-anchor output ``l`` ``[N]`` (``dense`` row ``i``
is ``dl_i/dS_i``), backward scales row ``i`` by the incoming ``g_i``; a scalar output scales all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from losscli.losses.fused.softmax_core import graph_is_freed_after_this_pass
from losscli.losses.fused.transforms import bind_once, keep_for_backward, needs_grad
from losscli.losses.eager import eager_under_compile

_TILE = 256  # symmetrising tile: two 256 x 256 float32 tiles stay in L2
_EPS = 1e-12  # F.normalize's default


@dataclass
class GramGradient:
    """``dL/dS = dense + sparse(rows, cols, values)``, rows scaled by the upstream gradient in backward."""

    dense: torch.Tensor | None  # [N, N]
    rows: torch.Tensor  # [P] int64
    cols: torch.Tensor
    values: torch.Tensor  # [P]


def block_rows(n: int) -> int:
    """Rows per block for the elementwise passes over ``S``: about 1 MB of float32, so that the
    several passes over a block run from cache instead of memory."""
    return max(8, (1 << 18) // max(n, 1))


def same_label_pairs(labels: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ordered pair ``(i, j)`` of valid rows with ``labels[i] == labels[j]``, ``i == j`` included.

    From a sort of the labels, in ``O(N log N + sum_c n_c^2)``: no ``[N, N]`` mask.
    """
    members = valid.nonzero().squeeze(1)
    lab, order = torch.sort(labels[members], stable=True)
    members = members[order]  # grouped by label
    _, counts = torch.unique_consecutive(lab, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    size = counts.repeat_interleave(counts)  # for each member: its group's size and start
    start = starts.repeat_interleave(counts)
    rows = members.repeat_interleave(size)
    run_start = torch.cumsum(size, 0) - size  # where each member's run of partners begins
    offset = torch.arange(rows.numel(), device=labels.device) - run_start.repeat_interleave(size)
    cols = members[start.repeat_interleave(size) + offset]
    return rows, cols


@bind_once
class _CosineGramLoss(torch.autograd.Function):
    """``evaluate(S, need_grad) -> (loss, GramGradient | None)`` on ``S = e e^T``; see the module doc.
    Outputs ``(loss, e, denom, unclamped, GramGradient | None)``; all but the first are kept for
    backward only. No vmap rule: the pair lists depend on each batch's labels."""

    @staticmethod
    def forward(x, evaluate, need_grad):
        norm = x.norm(2, dim=1, keepdim=True)  # as F.normalize(x, dim=1, eps=1e-12)
        denom = norm.clamp_min(_EPS)
        e = x / denom
        out, grad = evaluate(e @ e.t(), need_grad)
        return out, e, denom, norm >= _EPS, grad  # clamp_min passes the gradient at equality

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, e, denom, unclamped, grad = output
        keep_for_backward(ctx, e, denom, unclamped)
        ctx.grad = grad
        ctx.save_for_backward(e, denom, unclamped)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g, *_):
        if g is None:  # grads are not materialised (keep_for_backward)
            return None, None, None
        e, denom, unclamped = ctx.saved_tensors
        grad: GramGradient = ctx.grad
        upstream = g if g.dim() == 1 else g.expand(e.shape[0])
        values = grad.values * upstream[grad.rows]
        if grad.dense is None:  # sparse only: sum over the pairs, no [N, N] product
            grad_e = torch.zeros_like(e)
            grad_e.index_add_(0, grad.rows, values.unsqueeze(1) * e[grad.cols])
            grad_e.index_add_(0, grad.cols, values.unsqueeze(1) * e[grad.rows])
        else:
            # the dense part is read once when this backward frees the graph: overwrite it there
            freed = graph_is_freed_after_this_pass()
            h = symmetrised(grad.dense, upstream, in_place=freed)
            h.index_put_((grad.rows, grad.cols), values, accumulate=True)
            h.index_put_((grad.cols, grad.rows), values, accumulate=True)
            grad_e = h @ e
            # let the [N, N] buffer go before the radial pass allocates its [N, D] product: it was a
            # quarter of the node's peak memory (2.03x ce's at N=4096, D=1000; 1.8x without)
            del h
            if freed:
                grad = ctx.grad = None
        # through e = x / max(||x||, eps): the radial part drops out, except where the norm was clamped
        radial = (e * grad_e).sum(dim=1, keepdim=True).mul_(unclamped)
        return grad_e.addcmul_(e, radial, value=-1.0).div_(denom), None, None


def symmetrised(dense: torch.Tensor, row_scale: torch.Tensor, in_place: bool = False) -> torch.Tensor:
    """``W + W^T`` for ``W = diag(row_scale) dense``, tile by tile: a whole-matrix transposed add
    walks one operand column-wise through memory and costs as much as several plain passes.

    ``in_place`` writes it over ``dense`` (each pair of mirrored tiles is read before either is
    written), saving an ``[N, N]`` buffer: a third of the node's peak memory."""
    n = dense.shape[0]
    out = dense if in_place else torch.empty_like(dense)
    scale = row_scale.to(dense.dtype).unsqueeze(1)
    for i in range(0, n, _TILE):
        rows = slice(i, min(n, i + _TILE))
        for j in range(i, n, _TILE):
            cols = slice(j, min(n, j + _TILE))
            tile = torch.mul(dense[rows, cols], scale[rows])
            tile += (dense[cols, rows] * scale[cols]).t()
            out[rows, cols] = tile
            if j != i:
                out[cols, rows] = tile.t()
    return out


@eager_under_compile  # data-dependent pair lists and block skipping: runs eagerly under torch.compile
def cosine_gram_loss(x: torch.Tensor, evaluate: Callable) -> torch.Tensor:
    """The loss ``evaluate`` computes on the cosine similarities of the rows of ``x`` ``[N, D]``,
    differentiable in ``x``."""
    return _CosineGramLoss.apply(x, evaluate, needs_grad(x))[0]
