"""The softmax quantities most losses are built from, as cheap autograd nodes, and the row-blocked
node the element-wise losses run in.

Cost model (CPU, float32, one thread; see benchmarks/RESULTS.md): torch's fused ``softmax`` is
one transcendental pass; ``F.cross_entropy`` is two (``log_softmax`` forward, ``exp`` in
backward). ``log_softmax_y`` gets ``log p_y`` from the softmax itself and a backward of one
multiply, so a loss of ``p_y`` alone costs about 0.6-0.7 of ``F.cross_entropy``.

Accuracy: ``log p_y = log(p_y)`` is exact to float rounding while ``p_y`` is a normal number
(``exp(z_y - max z)`` is computed to a few ulps); below ``_LOG_FLOOR`` (p_y underflowing or
subnormal) it is taken as ``(z_y - max z) - log S`` with ``log S = -log(max_k p_k)`` instead.
Sums of ``log p`` are formed from ``z - max z`` (every term <= 0: no cancellation).

``blocked`` runs a per-row kernel over blocks of rows small enough to stay in cache: a loss made
of a dozen element-wise passes then streams its ``[N, C]`` input from memory once instead of a
dozen times. The kernel writes the gradient template ``H = dl_i/dz_i`` of each row (the gradient
of a per-row loss is linear in the incoming ``g_i``), so backward is one multiply.
"""

from __future__ import annotations

import math

import torch

from losscli.losses.eager import eager_under_compile
from losscli.losses.fused.far_rows import shift_far_rows
from losscli.losses.fused.transforms import (
    keep_for_backward, needs_grad, own_output, rowwise_vmap, transforms_active,
)

#: elements per row block: a few such [B, C] buffers stay in the CPU's L2/L3 cache. 2^18 (1 MB of
#: float32) measured ~5% faster than 2^19 over the blocked losses on an Intel Xeon with 2 MB of L2
#: per core (geometric mean over 16 losses, two alternating runs each); 2^17 and 2^16 were slower
#: (per-block overhead)
_BLOCK_ELEMENTS = 1 << 18


def block_rows(n: int, c: int, device: torch.device | None = None, scale: int = 1) -> int:
    """Rows per block of ``blocked`` (all rows at once on GPU: its kernels are not cache-bound);
    ``scale`` multiplies ``_BLOCK_ELEMENTS`` for a kernel that keeps fewer [B, C] buffers live."""
    if device is not None and device.type != "cpu":
        return max(n, 1)
    return max(1, min(n, _BLOCK_ELEMENTS * scale // max(c, 1)))


def _log_floor(dtype: torch.dtype) -> float:
    # p_y at or below this is too close to underflow for log(p_y): use the logsumexp form
    return math.log(torch.finfo(dtype).tiny) + 30.0


#: at most this many elements, a CPU ``saturated_target`` known to have a saturated row sums every row
#: (4 ops) instead of finding the saturated ones (``nonzero`` and indexing: 7): same sums, bit for bit
_SMALL = 1 << 14


def saturated_target(p: torch.Tensor, idx: torch.Tensor,
                     p_y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(mask, 1 - p_y)`` ``[N, 1]`` for the rows where ``p_y > 1/2``: ``1 - p_y = sum_{k != y} p_k``, summed
    with the target's entry zeroed (no cancellation; ``1 - round(p_y)`` is 0 once ``p_y`` rounds to 1).
    Other rows get ``1 - p_y`` directly (exact there). None when no row has ``p_y > 1/2`` (CPU only).
    ``p_y``: ``p.gather(1, idx)`` when the caller has it, and knows some row saturates."""
    known = p_y is not None
    p_y = p.gather(1, idx) if p_y is None else p_y
    big = p_y > 0.5
    om_y = torch.rsub(p_y, 1.0)
    if p.device.type == "cpu" and not (known and p.numel() <= _SMALL):
        rows = big.squeeze(1).nonzero().squeeze(1)
        if rows.numel() == 0:
            return None
        if 4 * rows.numel() < p.shape[0]:  # only the saturated rows' data is touched
            return big, om_y.index_copy_(0, rows, p[rows].scatter_(1, idx[rows], 0.0).sum(dim=1, keepdim=True))
    rest = p.scatter_(1, idx, 0.0).sum(dim=1, keepdim=True)
    p.scatter_(1, idx, p_y)  # restored exactly
    return big, torch.where(big, rest, om_y)


def target_log_prob(z: torch.Tensor, p: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(log p_y, 1 - p_y)`` ``[N, 1]``, both exact to float rounding; the second is None when no row
    has ``p_y > 1/2`` (then ``1 - p_y`` from the rounded ``p_y`` is exact already).

    Where ``p_y > 1/2``, ``log p_y = log1p(-(1 - p_y))`` (``saturated_target``): a confident
    prediction's loss is its tiny exact value, not the 0 of ``log(round(p_y))``.
    """
    # on a CPU both checks from p_y's extremes: one op and one read (was 2 gathers, 5 ops, 2 reads); at
    # 128 x 10, 32.5 -> 9.2 us with no saturated row, 65.8 -> 43.6 us with 5 (paired, thread time)
    if p.device.type == "cpu":
        p_y = p.gather(1, idx)
        lo, hi = map(float, torch.aminmax(p_y)) if p_y.numel() else (1.0, 0.0)
        if lo > math.exp(_log_floor(p.dtype) + 1.0):  # no row under log_p_at's floor (NaN: the general path)
            lp = p_y.log()
            if not hi > 0.5:
                return lp, None
            sat = saturated_target(p, idx, p_y)
            return torch.where(sat[0], torch.log1p(-sat[1]), lp), sat[1]
    lp = log_p_at(z, p, idx)
    sat = saturated_target(p, idx)
    if sat is None:
        return lp, None
    big, om_y = sat
    return torch.where(big, torch.log1p(-om_y), lp), om_y


def log_p_at(z: torch.Tensor, p: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``log p_{i, idx_i}`` ``[N, 1]`` from the logits and their softmax (see the module docstring)."""
    lp = p.gather(1, idx).log_()
    floor = _log_floor(p.dtype)
    if z.device.type == "cpu":
        low = lp < floor
        if not bool(low.any()):
            return lp
        rows = low.squeeze(1).nonzero().squeeze(1)
        zr, pr = z[rows], p[rows]
        exact = (zr.gather(1, idx[rows]) - zr.amax(dim=1, keepdim=True)) + pr.amax(dim=1, keepdim=True).log_()
        return lp.index_copy_(0, rows, exact)
    exact = (z.gather(1, idx) - z.amax(dim=1, keepdim=True)) + p.amax(dim=1, keepdim=True).log_()
    return torch.where(lp < floor, exact, lp)


def log_normaliser(z: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(max_k z_k, log S)`` ``[N, 1]`` with ``S = sum_k exp(z_k - max z)``: ``p_max = 1/S``, so
    ``log S = -log p_max`` to float rounding; ``logsumexp(z) = max + log S``."""
    return z.amax(dim=1, keepdim=True), p.amax(dim=1, keepdim=True).log_().neg_()


class Saturation:
    """The rows whose largest probability exceeds 1/2, where ``1 - p_max`` (and ``log p_max``)
    cannot be read off the rounded ``p_max``.

    At most one entry per row exceeds 1/2. Its column ``idx`` [N, 1] comes from one threshold
    pass and a matrix-vector product (``sum_k k p_k 1[p_k > 1/2] / p_max``; ``argmax`` is a slow
    pass on CPU), and ``rest = 1 - p_max = sum_{k != max} p_k`` is summed from the others (all
    positive: exact). ``mask`` [N, 1] marks those rows; elsewhere ``idx`` is 0 and ``rest`` is
    ``1 - p_0`` (harmless: every use is masked or exact there too).
    """

    def __init__(self, p: torch.Tensor, pmax: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor | None):
        n, c = p.shape
        self.mask = mask
        cols = torch.arange(c, dtype=p.dtype, device=p.device)
        if rows is None:  # every row (GPU, or most rows saturate)
            self.idx, self.top, self.rest = self._locate(p, pmax, cols)
        else:  # only the saturated rows' data is touched
            idx, top, rest = self._locate(p[rows], pmax[rows], cols)
            self.idx = torch.zeros((n, 1), dtype=torch.long, device=p.device).index_copy_(0, rows, idx)
            self.top = p[:, :1].clone().index_copy_(0, rows, top)
            self.rest = torch.rsub(self.top, 1.0).index_copy_(0, rows, rest)

    @staticmethod
    def _locate(p, pmax, cols):
        c = p.shape[1]
        pos = torch.mv(torch.threshold(p, 0.5, 0.0), cols).unsqueeze(1)
        idx = pos.div_(pmax).round_().clamp_(0, c - 1).long()
        top = p.gather(1, idx)
        rest = p.scatter_(1, idx, 0.0).sum(dim=1, keepdim=True)
        p.scatter_(1, idx, top)  # restored exactly
        return idx, top, rest

    @staticmethod
    def find(p: torch.Tensor, pmax: torch.Tensor) -> "Saturation | None":
        """None when no row saturates (checked on CPU only: on GPU the check would synchronise)."""
        mask = pmax > 0.5
        if p.device.type != "cpu":
            return Saturation(p, pmax, mask, None)
        rows = mask.squeeze(1).nonzero().squeeze(1)
        if rows.numel() == 0:
            return None
        return Saturation(p, pmax, mask, rows if 4 * rows.numel() < p.shape[0] else None)


@rowwise_vmap(0, 1, 4)
class _LogSoftmaxAt(torch.autograd.Function):
    """``log softmax(x)_y`` with ``x = scale * z + offset + shift_y e_y``: one softmax forward, one multiply
    backward (``d/dz = scale (e_y - p)``). Outputs ``(log p_y, p, 1 - p_y or None)``; the last two
    are kept for backward only.

    With a scale or an offset, rows far from zero are shifted by their target logit first
    (``shift_far_rows``; ``x`` is shift-invariant): ``s z`` and ``z + offset`` round to half an ulp of
    the logits (LDAM's ``30 z`` near 1e4 with spreads of 0.01: 2.6e-3 relative off), ``s (z - z_y)`` to
    that of the row's spread. The check is on the logits, not on ``x``: LDAM's cosine logits
    (``|z| <= 1``) never take the extra pass (there ``s z`` rounds by at most s/2 ulps of 1).
    """

    @staticmethod
    def forward(z, target, scale, offset, shift):
        idx = target.unsqueeze(1)
        x = z
        if scale is not None or offset is not None:
            x = shift_far_rows(z, z.gather(1, idx))
        if scale is not None:
            x = x * scale if x is z else x.mul_(scale)
        if offset is not None:
            x = x + offset if x is z else x.add_(offset)
        if shift is not None:
            x = (x.clone() if x is z else x).scatter_add_(1, idx, shift.to(x.dtype).unsqueeze(1))
        p = torch.softmax(x, dim=1)
        lp, om_y = target_log_prob(x, p, idx)
        return lp.squeeze(1), p, om_y

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, p, om_y = output
        keep_for_backward(ctx, p, om_y)
        ctx.save_for_backward(p, inputs[1].unsqueeze(1), om_y)
        ctx.scale = inputs[2]

    @staticmethod
    def backward(ctx, g, *_):
        if g is None:  # no gradient reached log p_y (grads are not materialised: keep_for_backward)
            return None, None, None, None, None
        p, idx, om_y = ctx.saved_tensors
        gs = (g if ctx.scale is None else g * ctx.scale).unsqueeze(1)
        grad = p.mul_(gs.neg()) if graph_is_freed_after_this_pass() else torch.mul(p, gs.neg())
        if om_y is None:
            return grad.scatter_add_(1, idx, gs), None, None, None, None
        # the target's entry g (1 - p_y), from the exact 1 - p_y (out of place under torch.func:
        # vmap has no batching rule for the in-place scatter)
        scatter = grad.scatter if transforms_active() else grad.scatter_
        return scatter(1, idx, gs * om_y), None, None, None, None


def log_softmax_y(z: torch.Tensor, target: torch.Tensor, scale: float | None = None,
                  offset: torch.Tensor | None = None, shift: torch.Tensor | None = None) -> torch.Tensor:
    """``log p_y`` ``[N]`` (``-CE``) of ``x = scale z + offset[C] + shift[N] e_y`` as one autograd node."""
    return _LogSoftmaxAt.apply(z, target, scale, offset, shift)[0]


@rowwise_vmap(0, 1)
class _LogSoftmaxAtAndSum(torch.autograd.Function):
    """``(log p_y, sum_k log p_k)``; backward ``g1 (e_y - p) + g2 (1 - C p)``: one pass. The third
    output, ``p``, is kept for backward only."""

    @staticmethod
    def forward(z, target):
        c = z.shape[1]
        idx = target.unsqueeze(1)
        p = torch.softmax(z, dim=1)
        zmax, log_s = log_normaliser(z, p)
        lp, om_y = target_log_prob(z, p, idx)
        if om_y is not None:  # a saturated target is the row maximum: log S = -log p_y there
            log_s = torch.where(p.gather(1, idx) > 0.5, -lp, log_s)
        # sum_k (z_k - max) - C log S: every term <= 0, no cancellation
        total = torch.sub(z, zmax).sum(dim=1, keepdim=True).sub_(log_s, alpha=c)
        return lp.squeeze(1), total.squeeze(1), p

    @staticmethod
    def setup_context(ctx, inputs, output):
        p = output[2]
        keep_for_backward(ctx, p)
        ctx.save_for_backward(p, inputs[1].unsqueeze(1))

    @staticmethod
    def backward(ctx, g1, g2, _):
        p, idx = ctx.saved_tensors
        c = p.shape[-1]
        if g1 is None:
            g1 = torch.zeros_like(p[..., 0])
        if g2 is None:
            g2 = torch.zeros_like(p[..., 0])
        coef = (g1 + c * g2).neg_().unsqueeze(1)
        if graph_is_freed_after_this_pass():  # p has no other reader (see graph_is_freed_after_this_pass)
            grad = p.mul_(coef).add_(g2.unsqueeze(1))
        else:
            grad = torch.addcmul(g2.unsqueeze(1), p, coef)
        return grad.scatter_add_(1, idx, g1.unsqueeze(1)), None


def log_softmax_y_and_sum(z: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p_y, sum_k log p_k)``, both ``[N]``, as one autograd node."""
    lp, total, _ = _LogSoftmaxAtAndSum.apply(z, target)
    return lp, total


def graph_is_freed_after_this_pass() -> bool:
    """True inside a backward pass that frees the graph afterwards (no ``retain_graph``/``create_graph``).

    Then a node's saved gradient template is read once, and backward can scale it in place instead
    of writing a fresh ``[N, C]`` tensor: on CPU the out-of-place multiply costs 2.5-3x the in-place
    one (a [4096, 1000] float32 template: ~4.5 ms against ~1.7 ms, about a third of CE's whole
    step), since every line of the new tensor is first read into cache. PyTorch's own AOT autograd
    asks the same question the same way; if the private hook is missing or there is no current
    graph task, the answer is the safe one (no).
    """
    keep_graph = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    if keep_graph is None or torch.compiler.is_compiling() or transforms_active():
        return False  # a traced backward is not run by a graph task; under torch.func, saved tensors may be shared
    try:
        return not keep_graph()
    except RuntimeError:
        return False


@rowwise_vmap(variadic_from=4)
class _Blocked(torch.autograd.Function):
    """A per-row loss computed block by block by ``kernel(z_block, h_block, *row_input_blocks)``.

    The kernel returns the block's ``[B]`` values (or a tuple whose first entry is them; the
    others are non-differentiable per-row outputs) and, when ``h_block`` is not None, writes
    ``dl_i/dz_i`` into it. Backward: ``grad = g[:, None] * H``. Every tensor the kernel reads per
    row comes in ``row_inputs`` (sliced with the block), not from the kernel's closure, so that
    ``torch.func.vmap`` can fold its dimension into the rows. The last output is ``H`` (or None),
    kept for backward only.
    """

    @staticmethod
    def forward(z, kernel, n_outputs, need_grad, *row_inputs):
        n, c = z.shape
        h = torch.empty((n, c), dtype=z.dtype, device=z.device) if need_grad else None
        step = block_rows(n, c, z.device, getattr(kernel, "block_scale", 1))
        if 0 < n <= step:  # one block (compare's 128 x 10 batches): no slices, and the kernel's fresh [N] outputs kept
            res = kernel(z, h, *row_inputs)
            res = res if isinstance(res, tuple) else (res,)
            outs = [own_output(r, n, z, h, row_inputs) for r in res[:n_outputs]]
            return (*outs, *(z.new_empty(n) for _ in range(n_outputs - len(outs))), h)
        outs = [z.new_empty(n) for _ in range(n_outputs)]
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            blocks = [r[lo:hi] if isinstance(r, torch.Tensor) else r for r in row_inputs]
            res = kernel(z[lo:hi], None if h is None else h[lo:hi], *blocks)
            res = res if isinstance(res, tuple) else (res,)
            for out, r in zip(outs, res):
                out[lo:hi] = r
        return (*outs, h)

    @staticmethod
    def setup_context(ctx, inputs, output):
        h = output[-1]
        keep_for_backward(ctx, *output[1:])
        ctx.save_for_backward(h)

    @staticmethod
    def backward(ctx, g, *_):
        (h,) = ctx.saved_tensors
        grads = [None] * (len(ctx.needs_input_grad) - 1)  # row inputs (targets, teachers) are constants
        if g is None or h is None:  # no gradient reached the value, or z did not require one
            return None, *grads
        if graph_is_freed_after_this_pass():  # h has no other reader: scale it in place
            return h.mul_(g.unsqueeze(-1)), *grads
        return torch.mul(h, g.unsqueeze(-1)), *grads


def blocked(z: torch.Tensor, kernel, *row_inputs, n_outputs: int = 1, block_scale: int = 1):
    """Run ``kernel(z_block, h_block, *row_input_blocks)`` over row blocks of ``z`` as one autograd
    node (see ``_Blocked``); ``row_inputs`` are tensors indexed by row like ``z`` (or None).
    ``block_scale``: blocks of ``block_scale`` times the default size (``block_rows``).

    Under ``torch.compile`` on a CPU the node runs eagerly (one graph break): dynamo traced into the
    block loop, whose last block has another size and whose kernels branch on values, recompiled
    the pieces up to its recompile limit and left dice 4.8x and nfl 6.9x cross-entropy's time
    (2.9x and 2.7x eager) after a minute of compiling. On a GPU the rows are one block, traced whole.
    """
    if block_scale != 1:  # carried on the kernel: _Blocked's inputs stay as they are
        inner = kernel

        def kernel(*args):
            return inner(*args)

        kernel.block_scale = block_scale
    if z.device.type == "cpu" and torch.compiler.is_compiling():
        return _blocked_eagerly(z, kernel, *row_inputs, n_outputs=n_outputs)
    return _apply_blocked(z, kernel, *row_inputs, n_outputs=n_outputs)


def _apply_blocked(z: torch.Tensor, kernel, *row_inputs, n_outputs: int = 1):
    out = _Blocked.apply(z, kernel, n_outputs, needs_grad(z), *row_inputs)
    return out[0] if n_outputs == 1 else tuple(out[:n_outputs])


_blocked_eagerly = eager_under_compile(_apply_blocked)


def first_argmax(z: torch.Tensor, zmax: torch.Tensor) -> torch.Tensor:
    """The column of each row's first maximum ``[N, 1]`` (``torch.max``'s choice), given ``zmax = z.amax(1, keepdim=True)``.

    ``torch.max(dim=1)`` / ``argmax`` are scalar loops on CPU (several times a softmax pass); an
    equality pass and a matrix-vector product find the column where the maximum is unique, and
    only rows with tied maxima go through ``torch.max``.
    """
    if z.device.type != "cpu":
        return z.max(dim=1, keepdim=True).indices
    return argmax_and_count(z, zmax)[0]


def argmax_and_count(z: torch.Tensor, zmax: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first_argmax, number of maxima)`` ``[N, 1]`` (the count in ``z``'s dtype): the equality pass
    that finds the column also counts the tied maxima, for losses that need both."""
    n, c = z.shape
    eq = torch.eq(z, zmax, out=torch.empty_like(z))  # 1.0 at the maxima
    count = eq.sum(dim=1, keepdim=True)
    if z.device.type != "cpu":
        return z.max(dim=1, keepdim=True).indices, count
    pos = torch.mv(eq, torch.arange(c, dtype=z.dtype, device=z.device)).unsqueeze(1)
    idx = pos.round_().clamp_(0, c - 1).long()
    tied = count != 1
    if not bool(tied.any()):
        return idx, count
    rows = tied.squeeze(1).nonzero().squeeze(1)
    return idx.index_copy_(0, rows, z[rows].max(dim=1, keepdim=True).indices), count
