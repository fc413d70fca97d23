"""Self-adjusting Dice and ASL-single terms for ``softmax_block.fused_softmax_loss``."""

from __future__ import annotations

import math

import torch

from losscli.losses.fused.powers import int_pow
from losscli.losses.fused.softmax_block import SoftmaxBlock, SoftmaxTerm, _is_small_int, _row_grad


class SquareDiceTerm(SoftmaxTerm):
    """Self-adjusting Dice, square mode: ``sum_{k != y} x_k^2 / (x_k^2 + s) + 1 - (2 x_y + s) / (x_y^2 + 1 + s)``
    with ``x = (1 - p)^alpha p``.

    ``(1 - p)^alpha = exp(alpha log(1 - p))`` from the exact ``1 - p`` (``SoftmaxBlock.om``); a row
    whose ``1 - p_max`` is tiny (below ``2^24`` times the smallest normal number: logit margins
    above ~70 in float32) gets ``log(1 - p_max) = logsumexp_{k != max} z - logsumexp z``. With
    ``c_k = x_k dl/dx_k`` the gradient is ``dl/dlog p_k = c_k (1 - alpha p_k / (1 - p_k))``: at a
    saturated maximum that grows like ``1/(1 - p_max)`` while ``dl/dz`` stays of order
    ``alpha c``, so it goes through ``GradAccumulator.add_top`` (and, in those tiny rows, through
    the softmax of the other logits, ``q_k = p_k / (1 - p_max)``).
    """

    p_into_template = True

    def __init__(self, alpha: float, smooth: float, floor: float):
        self.alpha, self.smooth, self.floor = alpha, smooth, floor

    @staticmethod
    def _tiny_rows(st: SoftmaxBlock):
        """``(rows, max column, log(1 - p_max), softmax of the other logits)`` of the saturated rows whose
        ``1 - p_max`` is too small to divide by; None when there are none."""
        s = st.sat
        if s is None:
            return None
        tiny = s.mask & (s.rest < torch.finfo(st.p.dtype).tiny * 2.0 ** 24)
        rows = tiny.squeeze(1).nonzero().squeeze(1)
        if rows.numel() == 0:
            return None
        top = s.idx[rows]
        others = st.z[rows].scatter(1, top, -math.inf)
        zmax, log_s = st.lse_parts
        log_rest = torch.logsumexp(others, dim=1, keepdim=True) - (zmax[rows] + log_s[rows])
        return rows, top, log_rest, torch.softmax(others, dim=1)

    def apply(self, st, acc, w):
        a, s = self.alpha, self.smooth
        p, idx = st.p, st.idx
        tiny = rho = None
        if a == 0:
            x = p.clone()
        elif _is_small_int(a):
            x = int_pow(st.om, int(a)).mul_(p)
            if acc is not None:  # the gradient divides by 1 - p_max: rows where it underflows go apart
                tiny = self._tiny_rows(st)
        else:
            om = st.take_om()  # its last reader: log(1 - p) is written over it
            if acc is not None:
                rho = torch.div(p, om)  # p / (1 - p) for the gradient (see below), while om is at hand
            log_om = om.log_()
            tiny = self._tiny_rows(st)
            if tiny is not None:
                rows, top, log_rest, _ = tiny
                log_om.index_copy_(0, rows, log_om[rows].scatter_(1, top, log_rest))
            # exp, not exp2 of a log2(e)-scaled argument: on an Intel Xeon torch's exp (MKL) is ~1.5x
            # faster than its exp2 (SLEEF), one rounding fewer
            x = log_om.mul_(a).exp_().mul_(p)
        # fresh [B, C] buffers are reused in place once their last reader is done (x, then r):
        # on a CPU a new tensor costs 2-3x a pass over one already in cache
        r = torch.mul(x, x).add_(s)
        r = torch.div(x, r, out=r)  # x / (x^2 + s)
        x_y = st.y(x)
        neg = x.mul_(r).scatter_(1, idx, 0.0).sum(dim=1, keepdim=True)  # sum_{k != y} x_k^2 / (x_k^2 + s)
        den_y = x_y * x_y + 1.0 + s
        pos = 1.0 - (2.0 * x_y + s) / den_y
        if acc is None:
            return w * (neg + pos)
        # c_k = x_k dl/dx_k: 2 s r_k^2 off the target (dh/dx = 2 s x / (x^2 + s)^2), x_y dpos/dx at it
        c_y = -(2.0 + 2.0 * s - 2.0 * x_y * x_y - 2.0 * s * x_y) / (den_y * den_y) * x_y
        sat = st.sat
        r_m = None if sat is None else r.gather(1, sat.idx)
        dense = r.mul_(r)
        if a == 0:
            _row_grad(acc, st, 2.0 * s * w, dense.scatter_(1, idx, 0.0), w * c_y)
            return w * (neg + pos)
        if rho is None:
            rho = torch.div(p, st.om)
        # rho = p / (1 - p): at most 1 except at a saturated maximum (handled below)
        dense.addcmul_(dense, rho, value=-a)
        g_y = w * c_y * (1.0 - a * st.y(rho))
        if sat is not None:
            # the saturated maximum's share goes through add_top: drop it from the dense part (and the target's)
            m, mask = sat.idx, sat.mask
            at_y = mask & (m == idx)
            c_m = torch.where(at_y, c_y, 2.0 * s * r_m.square())
            om_m, p_m = sat.rest, sat.top
            zero = torch.zeros_like(c_m)
            g_top = torch.where(mask, w * c_m * (1.0 - a * (p_m / om_m)), zero)
            g_top_om = torch.where(mask, w * c_m * (om_m - a * p_m), zero)
            if tiny is not None:
                # 1/(1 - p_max) is out of range: g_top keeps the bounded part w c_m; the rest,
                # -a w c_m p_max / (1 - p_max), times -p_k is a w c_m p_max q_k
                rows, _, _, q = tiny
                g_top.index_copy_(0, rows, w * c_m[rows])
                acc.extra = (rows, q.mul_(a * w * c_m[rows] * p_m[rows]))
            dense.scatter_(1, m, torch.where(mask, zero, dense.gather(1, m)))
            g_y = torch.where(at_y, torch.zeros_like(g_y), g_y)
            acc.add_top(g_top, g_top_om)
        _row_grad(acc, st, 2.0 * s * w, dense.scatter_(1, idx, 0.0), g_y)
        return w * (neg + pos)


class ASLSingleTerm(SoftmaxTerm):
    """ASL single-label: ``-on w_y log p_y - (eps/C) sum_{k != y} p_k^gn log p_k``, ``on = 1 - eps + eps/C``,
    ``w_y = (1 - p_y)^gp`` (the base floored at ``floor`` when gp < 1, whose gradient is then 0)."""

    def __init__(self, gamma_pos: float, gamma_neg: float, epsilon: float, floor: float):
        self.gp, self.gn, self.eps, self.floor = gamma_pos, gamma_neg, epsilon, floor
        # gamma_neg = 0 with smoothing: -(eps/C) on every k != y, a dense const
        self.p_into_template = not (epsilon != 0 and gamma_neg == 0)

    def apply(self, st, acc, w):
        c = st.c
        on, off = 1.0 - self.eps + self.eps / c, self.eps / c
        lp_y, gp = st.lp_y, self.gp
        if gp == 0:
            wy = dwy = torch.ones_like(lp_y)
        else:
            om_y = torch.expm1(lp_y).neg_()
            if gp >= 1:
                wy, dw = om_y.pow(gp), om_y.pow(gp - 1.0)
            else:
                wy = om_y.clamp_min(self.floor).pow(gp)
                dw = torch.where(om_y >= self.floor, wy / om_y, torch.zeros_like(wy))
            # d(w log p_y)/dlog p_y = w + log p_y dw/dlog p_y, dw/dlog p_y = -gp p_y (1-p_y)^(gp-1)
            dwy = wy - dw.mul_(lp_y.exp()).mul_(lp_y).mul_(gp)
        value = -on * w * wy * lp_y
        if acc is not None:
            acc.cp = acc.cp + on * w * dwy
            acc.cy = acc.cy - on * w * dwy
        if self.eps == 0:
            return value
        lp = st.take_lp()  # this term is its last reader: f is written over it
        if self.gn == 0:
            e = None
            f = lp
        else:
            e = int_pow(st.p, int(self.gn)) if _is_small_int(self.gn) else torch.mul(lp, self.gn).exp_()  # p^gn
            f = lp.mul_(e)
        neg = f.scatter_(1, st.idx, 0.0).sum(dim=1, keepdim=True)
        if acc is not None:
            # d(p^gn log p)/dlog p = p^gn (gn log p + 1), 0 at the target
            if e is None:
                dense = None
            else:
                dense = e.add_(f, alpha=self.gn).scatter_(1, st.idx, 0.0)
            if dense is None:  # gn = 0: -(eps/C) on every k != y
                _row_grad(acc, st, -off * w, None, torch.full_like(lp_y, off * w))
            else:
                _row_grad(acc, st, -off * w, dense, torch.zeros_like(lp_y))
        return value - off * w * neg
