"""``linear_loss`` streamed over the vocabulary: never more than one ``[rows, classes]`` block of logits.

For each block of rows, the forward pass walks over blocks of classes, computes that block's logits
``x = scale (h W_blk^T + b_blk) + offset_blk (+ the target's shift)`` and folds them into running
per-row statistics (``stream_plan.RowStats``): an online logsumexp (running maximum ``m`` and
``s = sum_{k != y} exp(x_k - m)``, rescaled when the maximum grows), the target logit and, when the
loss needs it, ``sum_k v_k (x_k - m)``. The loss's ``terms`` turn them into the per-row values and
the coefficients of ``d value / d x = a p + b e_y + c v``, which are all the backward pass keeps
(``O(N)``). Backward recomputes each block's logits, forms ``dz = scale g (a p + b e_y + c v)``
and accumulates ``grad_hidden += dz W_blk``, ``grad_W_blk += dz^T h``, ``grad_b_blk += sum dz``.

Losses whose value needs a sum over classes of a nonlinear function of ``log p_k`` (APL's RCE with
its clamp, NGCE's powers, NFL's focal terms) take a second sweep over the vocabulary once
``logsumexp`` is known (``stream_plan.SumTerm``): it accumulates ``sum_k f(log p_k)`` and
``sum_k f'(log p_k)``, and backward adds ``d_i f'(log p_ik)`` to each block's gradient.

Extra memory is a few ``[row_block, vocab_block]`` buffers plus ``O(N)`` statistics, whatever the
number of classes. The price is one more matrix product than the materialised path (the logits
are computed in forward and again in backward).
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from losscli.losses.stream_plan import RowStats, StreamPlan

#: default block: 1024 rows x 4096 classes (16 MB of float32 logits); large enough that the
#: matrix products run near full speed, small next to the [N, C] logits it replaces
DEFAULT_ROW_BLOCK = 1024
DEFAULT_VOCAB_BLOCK = 4096


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    # low-precision logits are upcast to float32, as the loss base class does
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _block_logits(h, weight, bias, v0, v1, plan: StreamPlan, tgt, shift_rows):
    """The transformed logits of classes [v0, v1) for the rows ``h`` (a fresh tensor)."""
    z = F.linear(h, weight[v0:v1], None if bias is None else bias[v0:v1])
    x = z if z.dtype == _acc_dtype(z.dtype) else z.float()
    if plan.scale is not None:
        x.mul_(plan.scale)
    if plan.offset is not None:
        x.add_(plan.offset[v0:v1])
    if shift_rows is not None:
        x.scatter_add_(1, tgt.col, torch.where(tgt.inside, shift_rows, 0.0).unsqueeze(1))
    return x


class _Targets:
    """Where each row's target falls in the block [v0, v1): ``inside`` [R] and its column ``col``
    [R, 1] (clamped into the block for the other rows, whose entries are masked with ``inside``).
    Masks instead of index lists: no host synchronisation per block on GPU."""

    def __init__(self, y, v0, v1):
        local = y - v0
        self.inside = (local >= 0) & (local < v1 - v0)
        self.col = local.clamp(0, v1 - v0 - 1).unsqueeze(1)


def _vectors(plan: StreamPlan, dtype, device) -> StreamPlan:
    """The plan with its per-class vectors in the accumulation dtype, on the device (None stays None)."""
    def cast(v):
        return None if v is None else v.to(device=device, dtype=dtype)

    return replace(plan, offset=cast(plan.offset), shift=cast(plan.shift), class_vector=cast(plan.class_vector),
                   row_weight=cast(plan.row_weight))


def _row_stats(h, weight, bias, y, plan: StreamPlan, vocab_block: int) -> RowStats:
    """One forward sweep over the vocabulary for the rows ``h``."""
    c = weight.shape[0]
    shift_rows = None if plan.shift is None else plan.shift[y]
    m = s = xy = vsum = None
    seen = 0.0  # sum of v over the classes seen so far (for rescaling vsum)
    for v0 in range(0, c, vocab_block):
        v1 = min(c, v0 + vocab_block)
        tgt = _Targets(y, v0, v1)
        x = _block_logits(h, weight, bias, v0, v1, plan, tgt, shift_rows)
        at_target = x.gather(1, tgt.col).squeeze(1)
        xy = torch.where(tgt.inside, at_target, at_target if xy is None else xy)
        bmax = x.amax(dim=1)
        m_new = bmax if m is None else torch.maximum(m, bmax)
        x.sub_(m_new.unsqueeze(1))  # x - m <= 0 from here on
        if plan.needs_vsum:
            v = None if plan.class_vector is None else plan.class_vector[v0:v1]
            part = x.sum(dim=1) if v is None else torch.mv(x, v)
            # sum_k v_k (x_k - m): every term <= 0, so moving m up only adds terms of one sign
            vsum = part if vsum is None else vsum - seen * (m_new - m) + part
            seen += float(v1 - v0) if v is None else float(v.sum())
        x.exp_()
        # s sums the other classes, so that 1 - p_y = s / (e_y + s) exactly
        _zero_target(x, tgt)
        part = x.sum(dim=1)
        s = part if s is None else s.mul_(torch.exp(m - m_new)).add_(part)
        m = m_new
        del x
    e_y = torch.exp(xy - m)
    total = e_y + s
    log_s = torch.log(total)
    om = s / total
    # log p_y: log1p(-(1 - p_y)) where p_y > 1/2 (exact there), else (x_y - m) - log S
    lp = torch.where(om < 0.5, torch.log1p(-om), (xy - m) - log_s)
    vtotal = None
    if plan.needs_vsum:
        vtotal = torch.full_like(lp, seen)
    return RowStats(y=y, c=c, lp=lp, om=om, lse=m + log_s, log_s=log_s, vsum=vsum, vtotal=vtotal)


def _sum_terms(h, weight, bias, y, plan: StreamPlan, vocab_block: int, stats: RowStats) -> RowStats:
    """The second sweep: ``sum_k f_t(log p_k)`` and ``sum_k f_t'(log p_k)`` of each of the plan's sum terms
    (over ``k != y`` for the terms that skip the target), now that ``logsumexp`` is known."""
    c = weight.shape[0]
    shift_rows = None if plan.shift is None else plan.shift[y]
    lse = stats.lse.unsqueeze(1)
    sums = [torch.zeros_like(stats.lp) for _ in plan.sums]
    dsums = [torch.zeros_like(stats.lp) for _ in plan.sums]
    for v0 in range(0, c, vocab_block):
        v1 = min(c, v0 + vocab_block)
        tgt = _Targets(y, v0, v1)
        lp = _block_logits(h, weight, bias, v0, v1, plan, tgt, shift_rows).sub_(lse)  # log p of the block
        for u0, u1, sub in _term_slices(lp, v0, y):
            for t, term in enumerate(plan.sums):
                for acc, part in zip((sums[t], dsums[t]), term.both(lp[:, u0:u1])):
                    if term.skip_target:
                        _zero_target(part, sub)
                    acc.add_(part.sum(dim=1))
        del lp
    return replace(stats, sums=sums, dsums=dsums)


#: columns per slice when sum terms are evaluated: their elementwise temporaries (several per term)
#: are then a few [row_block, 1024] buffers, not [row_block, vocab_block] ones
_TERM_COLUMNS = 1024


def _term_slices(block: torch.Tensor, v0: int, y: torch.Tensor):
    """``(u0, u1, targets)`` for column slices ``[u0, u1)`` of a vocabulary block starting at class ``v0``."""
    width = block.shape[1]
    for u0 in range(0, width, _TERM_COLUMNS):
        u1 = min(width, u0 + _TERM_COLUMNS)
        yield u0, u1, _Targets(y, v0 + u0, v0 + u1)


def _zero_target(x: torch.Tensor, tgt: "_Targets") -> None:
    """Set each row's target entry to 0 where the target falls in this block, in place."""
    x.scatter_(1, tgt.col, torch.where(tgt.inside, 0.0, x.gather(1, tgt.col).squeeze(1)).unsqueeze(1))


def _with_sum_term_grads(lp, v0, y, plan: StreamPlan, ga, gd) -> torch.Tensor:
    """``a p + sum_t d_t f_t'(log p)`` for a block of ``log p`` (overwritten), slice by slice."""
    for u0, u1, sub in _term_slices(lp, v0, y):
        lp_u = lp[:, u0:u1]
        extra = None
        for t, term in enumerate(plan.sums):
            part = term.grad(lp_u).mul_(gd[t].unsqueeze(1))
            if term.skip_target:
                _zero_target(part, sub)
            extra = part if extra is None else extra.add_(part)
        lp_u.exp_().mul_(ga.unsqueeze(1)).add_(extra)
    return lp


class StreamedLinearLoss(torch.autograd.Function):
    """Per-row losses ``[N]`` of ``hidden @ weight.T + bias`` streamed over row and vocabulary blocks."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, target, plan, valid, row_block, vocab_block):
        n = hidden.shape[0]
        acc = _acc_dtype(weight.dtype)
        plan = _vectors(plan, acc, hidden.device)
        out = torch.zeros(n, dtype=acc, device=hidden.device)
        coef = {k: torch.zeros(n, dtype=acc, device=hidden.device) for k in "abc"}
        # d_t: the coefficient of sum term t's f_t'(log p_k) in the gradient
        coef_d = torch.zeros((len(plan.sums), n), dtype=acc, device=hidden.device)
        lse = torch.zeros(n, dtype=acc, device=hidden.device)
        for r0 in range(0, n, row_block):
            r1 = min(n, r0 + row_block)
            y, ok = target[r0:r1], valid[r0:r1]
            stats = _row_stats(hidden[r0:r1], weight, bias, y, plan, vocab_block)
            if plan.sums:
                stats = _sum_terms(hidden[r0:r1], weight, bias, y, plan, vocab_block, stats)
            value, a, b, c, *d = plan.terms(stats)
            w = None if plan.row_weight is None else plan.row_weight[y]
            # ignored rows: value and gradient 0 (torch.where, so a nan there cannot leak)
            out[r0:r1] = torch.where(ok, value if w is None else value * w, 0.0)
            rows = [(coef["a"], a), (coef["b"], b), (coef["c"], c)] + [(coef_d[t], x) for t, x in enumerate(d[0] if d else ())]
            for dest, t in rows:
                if t is not None:
                    t = torch.as_tensor(t, dtype=value.dtype, device=value.device).expand_as(value)
                    dest[r0:r1] = torch.where(ok, t if w is None else t * w, 0.0)
            lse[r0:r1] = stats.lse
        ctx.plan, ctx.row_block, ctx.vocab_block = plan, row_block, vocab_block
        ctx.has_bias = bias is not None
        ctx.save_for_backward(hidden, weight, bias, target, lse, coef["a"], coef["b"], coef["c"], coef_d)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        hidden, weight, bias, target, lse, a, b, c, d = ctx.saved_tensors
        plan, need = ctx.plan, ctx.needs_input_grad
        n, cls = hidden.shape[0], weight.shape[0]
        acc = _acc_dtype(weight.dtype)
        gh = torch.zeros(hidden.shape, dtype=acc, device=hidden.device) if need[0] else None
        gw = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need[1] else None
        gb = torch.zeros(cls, dtype=acc, device=weight.device) if (ctx.has_bias and need[2]) else None
        # the chain rule through x = scale z + ...: fold scale and the upstream gradient into a, b, c
        g = grad_out.to(acc) * (1.0 if plan.scale is None else plan.scale)
        ga, gbv, gc, gd = a * g, b * g, c * g, d * g
        use_c = bool(c.any()) if c.numel() else False
        for r0 in range(0, n, ctx.row_block):
            r1 = min(n, r0 + ctx.row_block)
            h, y = hidden[r0:r1], target[r0:r1]
            shift_rows = None if plan.shift is None else plan.shift[y]
            for v0 in range(0, cls, ctx.vocab_block):
                v1 = min(cls, v0 + ctx.vocab_block)
                tgt = _Targets(y, v0, v1)
                x = _block_logits(h, weight, bias, v0, v1, plan, tgt, shift_rows)
                lp = x.sub_(lse[r0:r1].unsqueeze(1))
                if plan.sums:
                    dz = _with_sum_term_grads(lp, v0, y, plan, ga[r0:r1], gd[:, r0:r1])
                else:
                    dz = lp.exp_().mul_(ga[r0:r1].unsqueeze(1))  # a p
                if use_c:
                    v = plan.class_vector
                    cv = gc[r0:r1].unsqueeze(1) if v is None else torch.outer(gc[r0:r1], v[v0:v1])
                    dz.add_(cv)
                dz.scatter_add_(1, tgt.col, torch.where(tgt.inside, gbv[r0:r1], 0.0).unsqueeze(1))
                dz = dz.to(h.dtype)
                # in place where the dtypes allow: no [rows, D] or [vocab_block, D] temporaries
                if gh is not None:
                    if gh.dtype == h.dtype:
                        gh[r0:r1].addmm_(dz, weight[v0:v1])
                    else:
                        gh[r0:r1].add_((dz @ weight[v0:v1]).to(acc))
                if gw is not None:
                    if gw.dtype == h.dtype:
                        gw[v0:v1].addmm_(dz.t(), h)
                    else:
                        gw[v0:v1].add_((dz.t() @ h).to(acc))
                if gb is not None:
                    gb[v0:v1].add_(dz.sum(dim=0).to(acc))
                del dz, x, lp
        return (None if gh is None else gh.to(hidden.dtype), None if gw is None else gw.to(weight.dtype), None if gb is None else gb.to(bias.dtype),
                None, None, None, None, None)
