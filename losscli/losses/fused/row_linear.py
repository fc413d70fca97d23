"""Fused autograd nodes for losses that are a softmax cross-entropy plus a per-row term.

Written with autograd, these losses keep several ``[N, C]`` intermediates and run a chain of
``[N, C]`` kernels in backward (the gradients of a max, a gather, a relu, a norm, each added
into the logits' gradient). Each node here runs torch's fused softmax once and gets the extra
term's row statistics from a few in-place passes.

The gradient of a per-row loss ``l_i`` is linear in the incoming ``g_i``, so the forward leaves
it as ``g_i H_i + sum_c g_i a_ic e_{col_ic}``: a dense ``[N, C]`` template ``H`` (built in place
in the softmax's buffer, so the temporaries are freed before backward) plus a few sparse columns
(the target, the argmax). Backward (``_RowLinear``) is one multiply and a scatter per column.

The CE value is read off the softmax: the row maximum has ``exp(0) = 1``, so ``p_max = 1/S``
with ``S = sum_k exp(x_k - max x)`` and ``CE = (max x - x_y) - log p_max`` to float rounding,
without a separate ``exp``/``log_softmax`` pass.
"""

from __future__ import annotations

import math

import torch


def _softmax_ce(x: torch.Tensor, gap_y: torch.Tensor, pmax_at: torch.Tensor | None = None):
    """``(p, log S, ce)``: ``p = softmax(x)``, ``log S = logsumexp(x) - max x``, ``ce = log S + gap_y``.

    ``gap_y = max x - x_y`` (``[N, 1]``); ``pmax_at``, when known, the ``[N, 1]`` column of a row maximum.
    """
    p = torch.softmax(x, dim=1)
    pmax = p.amax(dim=1, keepdim=True) if pmax_at is None else p.gather(1, pmax_at)
    log_s = pmax.log().neg_()
    return p, log_s, log_s + gap_y


class _RowLinear(torch.autograd.Function):
    """Base of the nodes below: ``forward`` calls ``_keep``; the gradient is ``g H + sum g a e_col``."""

    @staticmethod
    def _keep(ctx, h: torch.Tensor, cols, n_inputs: int) -> None:
        """``h`` the dense template, ``cols`` ``[(col [N, 1], a [N, 1] or float), ...]``."""
        ctx.save_for_backward(h)
        ctx.cols = cols
        ctx.n_inputs = n_inputs

    @staticmethod
    def backward(ctx, grad_out):
        (h,) = ctx.saved_tensors
        g = grad_out.unsqueeze(1)
        grad = torch.mul(h, g)
        for col, a in ctx.cols:
            grad.scatter_add_(1, col, a * g)
        return (grad,) + (None,) * (ctx.n_inputs - 1)


class _MbLS(_RowLinear):
    """MbLS per row: ``CE + (lam / C) sum_k [max_j z_j - z_k - margin]_+`` (the max differentiated).

    Gradient: ``p - e_y``, ``-lam/C`` on each active hinge and ``+lam/C * #active`` on the argmax
    column ``torch.max`` returns (where autograd's ``max`` sends its gradient).
    """

    @staticmethod
    def forward(ctx, z, target, margin, lam):
        k = lam / z.shape[1]
        idx = target.unsqueeze(1)
        zmax, imax = z.max(dim=1, keepdim=True)
        top = zmax - margin
        neg_gap = torch.clamp(z, max=top).sub_(top)  # min(z - (max - margin), 0) = -[max - z - margin]_+
        penalty = neg_gap.sum(dim=1, keepdim=True).neg_()
        active = neg_gap.sign_()  # -1 where the hinge is active, 0 elsewhere
        neg_count = active.sum(dim=1, keepdim=True)
        p, _, ce = _softmax_ce(z, zmax - z.gather(1, idx), imax)
        _RowLinear._keep(ctx, p.add_(active, alpha=k), [(imax, neg_count * -k), (idx, -1.0)], 4)
        return (ce + k * penalty).squeeze(1)


def mbls(z: torch.Tensor, target: torch.Tensor, margin: float, lam: float) -> torch.Tensor:
    return _MbLS.apply(z, target, margin, lam)


class _ACLS(_RowLinear):
    """ACLS per row: ``CE + alpha (lam_pos [z_max - m]_+^2 n_max + lam_neg/(C-1) sum_k [sg(z_max) - z_k - m]_+^2)``.

    ``n_max`` counts the tied maxima (a constant); the positive term's gradient goes to the argmax
    column ``torch.max`` returns; the negatives' max is detached.
    """

    @staticmethod
    def forward(ctx, z, target, lam_pos, lam_neg, alpha, margin):
        c = z.shape[1]
        idx = target.unsqueeze(1)
        zmax, imax = z.max(dim=1, keepdim=True)
        buf = torch.sub(z, zmax)
        n_max = buf.sign_().sum(dim=1, keepdim=True).add_(c)  # z - max <= 0: sign -1 except at the maxima
        top = zmax - margin
        neg_gap = torch.clamp(z, max=top, out=buf).sub_(top)  # -[max - z - m]_+, 0 at the maxima (m >= 0)
        neg = torch.linalg.vector_norm(neg_gap, dim=1, keepdim=True).square_()
        pos_gap = (zmax - margin).clamp_min_(0.0)
        reg = lam_pos * pos_gap.square() * n_max + (lam_neg / (c - 1)) * neg
        p, _, ce = _softmax_ce(z, zmax - z.gather(1, idx), imax)
        h = p.add_(neg_gap, alpha=2.0 * alpha * lam_neg / (c - 1))
        _RowLinear._keep(ctx, h, [(imax, (2.0 * alpha * lam_pos) * pos_gap * n_max), (idx, -1.0)], 6)
        return (ce + alpha * reg).squeeze(1)


def acls(z, target, lam_pos, lam_neg, alpha, margin):
    return _ACLS.apply(z, target, lam_pos, lam_neg, alpha, margin)


class _Circle(_RowLinear):
    """Class-level circle loss per row: CE of ``x_k = gamma a_k (s_k - delta_k)`` with the ``a_k`` detached.

    ``a_k = [s_k + m]_+`` (``delta = m``) off the target, ``a_y = [1 + m - s_y]_+`` (``delta = 1 - m``);
    the gradient is ``(p - e_y) gamma a``. With gamma = 256 most of ``x - max x`` lies far below
    ``log(tiny)``: those entries are set to ``-inf`` before the softmax (their ``exp`` is below float
    tiny: 0 instead of a subnormal, which the CPU computes ~2x slower).
    """

    @staticmethod
    def forward(ctx, s, target, gamma, m):
        idx = target.unsqueeze(1)
        scale = torch.add(s, m).relu_().mul_(gamma)  # gamma a_n, constants
        x = torch.sub(s, m).mul_(scale)
        s_y = s.gather(1, idx)
        scale_y = gamma * (1.0 + m - s_y).clamp_min_(0.0)
        x_y = scale_y * (s_y - (1.0 - m))
        x.scatter_(1, idx, x_y)
        scale.scatter_(1, idx, scale_y)
        xmax = x.amax(dim=1, keepdim=True)
        shifted = torch.threshold_(x.sub_(xmax), math.log(torch.finfo(x.dtype).tiny), -math.inf)
        p, _, ce = _softmax_ce(shifted, xmax - x_y)
        _RowLinear._keep(ctx, p.mul_(scale), [(idx, -scale_y)], 4)
        return ce.squeeze(1)


def circle(s, target, gamma, m):
    return _Circle.apply(s, target, gamma, m)


class _KD(_RowLinear):
    """Hinton KD per row: ``alpha T^2 KL(q || softmax(z/T)) [+ (1 - alpha) CE(z, y)]``, ``q = softmax(t/T)``.

    ``KL = sum_k q_k (t_k - z_k)/T + log(S_z/S_t) + (max z - max t)/T`` (``sum_k q_k = 1``); the
    teacher is a constant. Gradient ``alpha T (s - q) + (1 - alpha)(p - e_y)``. ``target`` is None
    for the distillation term alone.
    """

    @staticmethod
    def forward(ctx, z, teacher, target, temperature, alpha):
        tt = teacher / temperature
        tmax = tt.amax(dim=1, keepdim=True)
        q = torch.softmax(tt, dim=1)
        log_st = q.amax(dim=1, keepdim=True).log_().neg_()
        zt = z / temperature
        cross = tt.sub_(zt).mul_(q).sum(dim=1, keepdim=True)  # sum_k q_k (t_k - z_k) / T
        del tt
        s = torch.softmax(zt, dim=1)
        log_sz = s.amax(dim=1, keepdim=True).log_().neg_()
        del zt
        zmax = z.amax(dim=1, keepdim=True)
        # max(z / T) = max(z) / T: division by T > 0 is monotone in floating point too
        value = (alpha * temperature * temperature) * (cross + (log_sz - log_st) + (zmax / temperature - tmax))
        h = s.sub_(q).mul_(alpha * temperature)
        cols = []
        if target is not None:
            idx = target.unsqueeze(1)
            p, _, ce = _softmax_ce(z, zmax - z.gather(1, idx))
            value = value + (1.0 - alpha) * ce
            h.add_(p, alpha=1.0 - alpha)
            cols.append((idx, alpha - 1.0))
        _RowLinear._keep(ctx, h, cols, 5)
        return value.squeeze(1)


def kd(z, teacher, target, temperature, alpha):
    return _KD.apply(z, teacher, target, temperature, alpha)


class _ScaledCE(_RowLinear):
    """``CE(r z, y)`` per row for a row scale ``r(||z||_2)`` given with ``k = r'(||z||) / ||z||`` (both ``[N, 1]``).

    ``d/dz (r z) = r I + k z z^T``, so with ``G = p - e_y`` (at ``x = r z``) the gradient is
    ``r G + k (G . z) z``, ``G . z = (p . x - x_y) / r``.
    """

    @staticmethod
    def forward(ctx, z, target, r, k):
        idx = target.unsqueeze(1)
        x = z * r
        x_y = x.gather(1, idx)
        p, _, ce = _softmax_ce(x, x.amax(dim=1, keepdim=True) - x_y)
        gz = (x.mul_(p).sum(dim=1, keepdim=True) - x_y) / r  # x is not needed any more
        _RowLinear._keep(ctx, p.mul_(r).addcmul_(z, k * gz), [(idx, -r)], 4)
        return ce.squeeze(1)


def scaled_ce(z, target, r, k):
    return _ScaledCE.apply(z, target, r, k)


class _Squentropy(_RowLinear):
    """``CE + (1/(C-1)) sum_{k != y} z_k^2`` per row; gradient ``p - e_y + 2 z / (C-1)`` off the target."""

    @staticmethod
    def forward(ctx, z, target):
        c = z.shape[1]
        idx = target.unsqueeze(1)
        # the true class is zeroed (not subtracted afterwards): exact when z_y dominates
        off = torch.linalg.vector_norm(z.scatter(1, idx, 0.0), dim=1, keepdim=True)
        p, _, ce = _softmax_ce(z, z.amax(dim=1, keepdim=True) - z.gather(1, idx))
        p_y = p.gather(1, idx)
        _RowLinear._keep(ctx, p.add_(z, alpha=2.0 / (c - 1)).scatter_(1, idx, p_y - 1.0), [], 2)
        return (ce + off * off / (c - 1)).squeeze(1)


def squentropy(z, target):
    return _Squentropy.apply(z, target)


class _LogZ(_RowLinear):
    """``CE + coef (log Z)^2`` per row, ``log Z = logsumexp(z)``; gradient ``(1 + 2 coef log Z) p - e_y``."""

    @staticmethod
    def forward(ctx, z, target, coef):
        idx = target.unsqueeze(1)
        zmax = z.amax(dim=1, keepdim=True)
        p, log_s, ce = _softmax_ce(z, zmax - z.gather(1, idx))
        lse = zmax + log_s
        _RowLinear._keep(ctx, p.mul_(1.0 + (2.0 * coef) * lse), [(idx, -1.0)], 3)
        return (ce + coef * lse * lse).squeeze(1)


def logz_ce(z, target, coef):
    return _LogZ.apply(z, target, coef)


class _StandardisedTarget(_RowLinear):
    """``z_hat_y = (z_y - mu) / sqrt(var + eps)`` per row.

    Population variance from the centred logits (two-pass): no ``E[z^2] - E[z]^2`` cancellation
    at |z| = 1e4. ``d z_hat_y / d z_j = rs (delta_jy - 1/C) - z_hat_y rs^2 (z_j - mu) / C``,
    ``rs = 1/sqrt(var + eps)``.
    """

    @staticmethod
    def forward(ctx, z, target, eps):
        c = z.shape[1]
        idx = target.unsqueeze(1)
        centred = z - z.mean(dim=1, keepdim=True)
        var = torch.linalg.vector_norm(centred, dim=1, keepdim=True).square_() / c
        rs = torch.rsqrt(var + eps)
        z_hat = centred.gather(1, idx) * rs
        h = centred.mul_(z_hat * (rs * rs) * (-1.0 / c)).sub_(rs / c)
        _RowLinear._keep(ctx, h, [(idx, rs)], 3)
        return z_hat.squeeze(1)


def standardised_target(z, target, eps):
    return _StandardisedTarget.apply(z, target, eps)
