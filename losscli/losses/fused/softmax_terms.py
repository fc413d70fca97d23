"""Losses that are weighted sums of terms of one softmax (APL family, Dice, ASL-single), fused.

Written with autograd, each term keeps several ``[N, C]`` intermediates and runs a chain of
``[N, C]`` kernels in backward. Here the loss runs in one ``softmax_core.blocked`` node: per
block of rows (small enough to stay in cache) one softmax; each term adds its value and its
share of the row gradient ``dl/dz``, in the form

    H = D + p * cp + const + e_y * cy        (D dense [B, C]; cp, const, cy per row [B, 1])

(the gradient of a function of ``log p`` with ``G = dl/dlog p`` is ``G - p sum_k G_k``; every
term below is written that way), and backward is one multiply. Everything is float-exact:
``log p = z - logsumexp(z)`` (no ``log`` of a rounded probability), ``1 - p`` and ``log p`` at a
saturated softmax come from the sum of the other probabilities (``SoftmaxBlock``,
``softmax_core.Saturation``), ``log p_y`` from ``softmax_core.target_log_prob``.
"""

from __future__ import annotations

import math

import torch

from losscli.losses.fused.powers import int_pow
from losscli.losses.fused.softmax_core import Saturation, blocked, target_log_prob

_LOG2E = 1.0 / math.log(2.0)


def _is_small_int(x: float) -> bool:
    return x == int(x) and 1 <= x <= 16


class SoftmaxBlock:
    """Softmax quantities of one block of rows, each computed at most once.

    Where a row's softmax saturates (``p_max > 1/2``, ``softmax_core.Saturation``, computed only
    for the terms that need it), the maximum's ``1 - p`` is the sum of the other probabilities
    and its ``log p`` is ``log1p(-(1 - p))``, so ``1 - p``, ``log p`` and every term built from
    them stay exact (and consistent with each other) up to margins where ``1 - p_max`` underflows.
    ``log p_y`` is exact the same way (``target_log_prob``) for every term.
    """

    def __init__(self, z: torch.Tensor, idx: torch.Tensor):
        self.z, self.idx = z, idx
        self.c = z.shape[1]
        self.p = torch.softmax(z, dim=1)
        self.pmax = self.p.amax(dim=1, keepdim=True)
        self._sat = False  # not looked for yet
        self._zmax = self._lp = self._lp_raw = self._lp_y = self._om = None

    @property
    def sat(self) -> Saturation | None:
        if self._sat is False:
            self._sat = Saturation.find(self.p, self.pmax)
        return self._sat

    @property
    def lse_parts(self):
        """``(max z, log S)``: ``logsumexp(z) = max z + log S`` and ``log S = -log p_max``."""
        if self._zmax is None:
            self._zmax = self.z.amax(dim=1, keepdim=True)
            self._log_s = self.pmax.log().neg_()
        return self._zmax, self._log_s

    @property
    def lp_raw(self) -> torch.Tensor:
        """``log p = z - (max z + log S)`` (one pass), to float rounding in absolute terms (the largest
        entry of a saturated row is its rounded ``-log S``; see ``lp``)."""
        if self._lp_raw is None:
            zmax, log_s = self.lse_parts
            self._lp_raw = torch.sub(self.z, zmax + log_s)
        return self._lp_raw

    @property
    def lp(self) -> torch.Tensor:
        """``log p`` exact to float rounding everywhere: ``lp_raw`` with a saturated maximum's entry
        ``log1p(-(1 - p_max))``. Shares ``lp_raw``'s buffer."""
        if self._lp is None:
            lp = self.lp_raw
            s = self.sat
            if s is not None:
                lp.scatter_(1, s.idx, torch.where(s.mask, torch.log1p(-s.rest), lp.gather(1, s.idx)))
            self._lp = lp
        return self._lp

    def lp_sum(self) -> torch.Tensor:
        """``sum_k log p_k`` ``[B, 1]``: ``sum_k (z_k - max z) - C log S`` (every term <= 0)."""
        if self._lp_raw is not None:
            return self._lp_raw.sum(dim=1, keepdim=True)
        zmax, log_s = self.lse_parts
        return torch.sub(self.z, zmax).sum(dim=1, keepdim=True).sub_(log_s, alpha=self.c)

    @property
    def lp_y(self) -> torch.Tensor:
        if self._lp_y is None:
            self._lp_y = target_log_prob(self.z, self.p, self.idx)[0]
        return self._lp_y

    @property
    def om(self) -> torch.Tensor:
        """``1 - p``, exact where ``p`` is close to 1."""
        if self._om is None:
            self._om = torch.rsub(self.p, 1.0)
            s = self.sat
            if s is not None:
                self._om.scatter_(1, s.idx, torch.where(s.mask, s.rest, self._om.gather(1, s.idx)))
        return self._om

    def y(self, x: torch.Tensor) -> torch.Tensor:
        return x.gather(1, self.idx)


class GradAccumulator:
    """``H = D + p cp + const + e_y cy``, written into the block of ``H`` at ``finish``."""

    def __init__(self, h: torch.Tensor | None):
        self.h = h
        self.dense = None
        self.cp = self.const = self.cy = 0.0
        self.top = None  # (g_top, g_top (1 - p_max)): see add_top
        self.extra = None  # (rows, [R, C]): added to those rows of H at the end

    def add_top(self, g_top: torch.Tensor, g_top_om: torch.Tensor) -> None:
        """``dl/dlog p`` has ``g_top`` [B, 1] at the saturated maximum (0 in other rows), too large to be
        combined as ``G - p sum G`` (it grows like ``1/(1 - p_max)``); its share ``g_top (e_max - p)`` is
        added exactly: ``g_top_om = g_top (1 - p_max)`` (finite, from the exact ``1 - p_max``) at the
        maximum and ``-g_top p_k`` (with ``p_k <= 1 - p_max``) elsewhere."""
        self.top = (g_top, g_top_om)

    def add_dense(self, d: torch.Tensor, coef) -> None:
        """``D += d * coef`` (``coef`` a ``[B, 1]`` tensor or a float); ``d`` may be overwritten."""
        if self.dense is None:
            self.dense = torch.mul(d, coef, out=self.h)
        else:
            self.dense.addcmul_(d, coef) if isinstance(coef, torch.Tensor) else self.dense.add_(d, alpha=coef)

    def finish(self, st: SoftmaxBlock) -> None:
        h = self.h
        cp, const = self.cp, self.const
        if self.top is not None:
            # p without its maximum times (cp - g_top), the maximum's entry written exactly (p is not used again)
            s = st.sat
            g_top, g_top_om = self.top
            top_entry = st.p.gather(1, s.idx) * cp + g_top_om
            st.p.scatter_(1, s.idx, 0.0)
            cp = cp - g_top
        if not isinstance(cp, torch.Tensor):
            cp = torch.full_like(st.pmax, cp)
        if isinstance(const, torch.Tensor) or const != 0.0:
            if not isinstance(const, torch.Tensor):
                const = torch.full_like(st.pmax, const)
            if self.dense is None:  # const + p cp in one pass
                torch.addcmul(const, st.p, cp, out=h)
            else:
                h.add_(const).addcmul_(st.p, cp)
        elif self.dense is None:
            torch.mul(st.p, cp, out=h)
        else:
            h.addcmul_(st.p, cp)
        if self.top is not None:
            h.scatter_add_(1, s.idx, top_entry)
        if self.extra is not None:
            h.index_add_(0, *self.extra)
        if isinstance(self.cy, torch.Tensor):
            h.scatter_add_(1, st.idx, self.cy)
        elif self.cy != 0.0:
            h.scatter_add_(1, st.idx, torch.full_like(st.pmax, self.cy))


class SoftmaxTerm:
    """One term of a fused softmax loss: ``apply(st, acc, w)`` returns ``w * value`` ``[B, 1]`` and,
    when ``acc`` is not None, adds ``w * dvalue/dz`` to it."""

    def apply(self, st: SoftmaxBlock, acc: GradAccumulator | None, w: float) -> torch.Tensor:
        raise NotImplementedError


def _row_grad(acc: GradAccumulator, st: SoftmaxBlock, g_dense, dense, g_y) -> None:
    """Add the gradient of a term with ``dl/dlog p = g_dense * dense + e_y g_y`` (``dense`` [B, C] or None
    for all-ones): ``G - p sum G``."""
    if dense is None:  # G = g_dense (every class) + e_y g_y
        acc.const = acc.const + g_dense
        acc.cp = acc.cp - (g_dense * st.c + g_y)
    else:
        total = dense.sum(dim=1, keepdim=True)
        acc.add_dense(dense, g_dense)
        acc.cp = acc.cp - (g_dense * total + g_y)
    acc.cy = acc.cy + g_y


class CETerm(SoftmaxTerm):
    """``-log p_y``."""

    def apply(self, st, acc, w):
        if acc is not None:
            acc.cp = acc.cp + w
            acc.cy = acc.cy - w
        return st.lp_y * -w


class MAETerm(SoftmaxTerm):
    """``1 - p_y`` (= ``-expm1(log p_y)``)."""

    def apply(self, st, acc, w):
        lp_y = st.lp_y
        if acc is not None:
            wp = lp_y.exp() * w  # d(1 - p_y)/dlog p_y = -p_y
            acc.cp = acc.cp + wp
            acc.cy = acc.cy - wp
        return torch.expm1(lp_y).mul_(-w)


class NCETerm(SoftmaxTerm):
    """``log p_y / sum_k log p_k``."""

    def apply(self, st, acc, w):
        a = st.lp_y
        b = st.lp_sum()
        if acc is not None:
            _row_grad(acc, st, -w * a / (b * b), None, w / b)
        return w * a / b


class RCETerm(SoftmaxTerm):
    """``A * sum_{k != y} max(p_k, p_min)`` (APL's reverse CE with its clamps)."""

    def __init__(self, a: float, p_min: float):
        self.a, self.p_min = a, p_min

    def apply(self, st, acc, w):
        wa = w * self.a
        clamped = torch.clamp_min(st.p, self.p_min).scatter_(1, st.idx, 0.0)  # the sum excludes y (no cancellation)
        value = clamped.sum(dim=1, keepdim=True).mul_(wa)
        if acc is not None:
            # d/dp_k = A 1[p_k > p_min] (k != y): the clamp's gradient; p_k at p_min is exactly p_min here
            pm = torch.threshold_(clamped, self.p_min, 0.0)
            total = pm.sum(dim=1, keepdim=True)
            acc.add_dense(pm, wa)
            acc.cp = acc.cp - wa * total
        return value


class NFLTerm(SoftmaxTerm):
    """``f_y / sum_k f_k``, ``f_k = (1 - p_k)^gamma log p_k`` (``1 - p`` floored at ``floor`` when gamma < 1)."""

    def __init__(self, gamma: float, floor: float):
        self.gamma, self.floor = gamma, floor

    def apply(self, st, acc, w):
        g = self.gamma
        if g == 0:  # NCE
            return NCETerm().apply(st, acc, w)
        lp, p = st.lp, st.p
        om = st.om
        need = acc is not None
        r = None
        # the smallest 1 - p of a row is its maximum's (the exact sum of the others where it saturates)
        om_min = torch.rsub(st.pmax, 1.0) if st.sat is None else torch.where(st.sat.mask, st.sat.rest, 1.0 - st.pmax)
        # (on GPU the check would synchronise: the general path, which floors, is used there)
        if g == 0.5 and om.device.type == "cpu" and not bool(om_min.amin() <= self.floor):
            # rsqrt is a cheap pass where a fractional pow is a slow one
            r = torch.rsqrt(om)  # (1 - p)^(gamma - 1)
            fac = torch.mul(om, r)
            dfac = r
        elif _is_small_int(g):
            dfac = int_pow(om, int(g) - 1) if g > 1 else None
            fac = torch.mul(dfac, om) if dfac is not None else om.clone()
        else:  # (1 - p)^gamma = exp(gamma log(1 - p)), base floored; the floor's gradient is 0
            base = torch.clamp_min(om, self.floor)
            fac = torch.log(base).mul_(g * _LOG2E).exp2_()
            dfac = torch.div(fac, torch.threshold(om, self.floor, math.inf)) if need else None
        f = torch.mul(fac, lp)
        total = f.sum(dim=1, keepdim=True)
        f_y = st.y(f)
        if need:
            # df/dlog p = (1-p)^gamma - gamma p log p (1-p)^(gamma-1)
            if dfac is None:  # gamma = 1
                df = torch.addcmul(fac, p, lp, value=-g)
            elif g == 0.5 and dfac is r:  # (1 - p - gamma p log p) (1 - p)^(gamma - 1): both terms >= 0
                df = torch.addcmul(om, p, lp, value=-g).mul_(r)
            else:
                df = torch.mul(p, lp).mul_(dfac).mul_(-g).add_(fac)
            df_y = st.y(df)
            # l = w f_y / F: dl/df_k = -w f_y / F^2 (every k) + e_y w / F
            _row_grad(acc, st, -w * f_y / (total * total), df, w / total * df_y)
        return w * f_y / total


class NGCETerm(SoftmaxTerm):
    """``(1 - p_y^q) / sum_k (1 - p_k^q)``, p clamped at ``exp(log_p_min)`` (APL)."""

    def __init__(self, q: float, log_p_min: float):
        self.q, self.log_p_min = q, log_p_min

    def apply(self, st, acc, w):
        q = self.q
        # p^q for p above the clamp, 0 below (there p^q is the constant p_min^q, gradient 0)
        em = torch.threshold(st.lp_raw, self.log_p_min, -math.inf).mul_(q * _LOG2E).exp2_()
        c0 = math.exp(q * self.log_p_min)
        # sum_k max(p_k, p_min)^q = sum em + c0 * #(clamped) = sum em + c0 C - sum min(em, c0)
        clamped_part = st.c * c0 - torch.clamp_max(em, c0).sum(dim=1, keepdim=True)
        denom = st.c - (em.sum(dim=1, keepdim=True) + clamped_part)
        a = -torch.expm1(q * st.lp_y.clamp_min(self.log_p_min))  # 1 - p_y^q
        if acc is not None:
            em_y = st.y(em)
            # d(p_k^q)/dlog p_k = q em_k; l = w a / D: dl/d(p_k^q) = w a / D^2, dl/d(p_y^q) += -w / D
            _row_grad(acc, st, w * q * a / (denom * denom), em, -w * q / denom * em_y)
        return w * a / denom


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
        tiny = None
        if a == 0:
            x = p.clone()
        elif _is_small_int(a):
            x = int_pow(st.om, int(a)).mul_(p)
        else:
            log_om = torch.log(st.om)
            tiny = self._tiny_rows(st)
            if tiny is not None:
                rows, top, log_rest, _ = tiny
                log_om.index_copy_(0, rows, log_om[rows].scatter_(1, top, log_rest))
            x = log_om.mul_(a * _LOG2E).exp2_().mul_(p)
        d = torch.mul(x, x).add_(s)  # x^2 + s
        r = torch.div(x, d)  # x / (x^2 + s)
        h = torch.mul(r, x)
        x_y = st.y(x)
        neg = h.scatter_(1, idx, 0.0).sum(dim=1, keepdim=True)
        den_y = x_y * x_y + 1.0 + s
        pos = 1.0 - (2.0 * x_y + s) / den_y
        if acc is None:
            return w * (neg + pos)
        # c_k = x_k dl/dx_k: 2 s r_k^2 off the target (dh/dx = 2 s x / (x^2 + s)^2), x_y dpos/dx at it
        c_y = -(2.0 + 2.0 * s - 2.0 * x_y * x_y - 2.0 * s * x_y) / (den_y * den_y) * x_y
        dense = torch.mul(r, r)
        if a == 0:
            _row_grad(acc, st, 2.0 * s * w, dense.scatter_(1, idx, 0.0), w * c_y)
            return w * (neg + pos)
        om = st.om
        rho = torch.div(p, om)  # p / (1 - p): at most 1 except at a saturated maximum (handled below)
        dense.addcmul_(dense, rho, value=-a)
        g_y = w * c_y * (1.0 - a * st.y(rho))
        sat = st.sat
        if sat is not None:
            # the saturated maximum's share goes through add_top: drop it from the dense part (and the target's)
            m, mask = sat.idx, sat.mask
            at_y = mask & (m == idx)
            c_m = torch.where(at_y, c_y, 2.0 * s * r.gather(1, m).square())
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
        lp = st.lp
        if self.gn == 0:
            e = None
            f = lp.clone()
        else:
            e = int_pow(st.p, int(self.gn)) if _is_small_int(self.gn) else torch.mul(lp, self.gn).exp_()  # p^gn
            f = torch.mul(e, lp)
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


def fused_softmax_loss(logits: torch.Tensor, target: torch.Tensor, terms) -> torch.Tensor:
    """``sum_t weight_t * term_t`` per sample, ``terms = [(weight, SoftmaxTerm), ...]``, one autograd node."""
    terms = tuple(terms)

    def kernel(zb, lo, hi, hb):
        st = SoftmaxBlock(zb, target[lo:hi].unsqueeze(1))
        acc = GradAccumulator(hb) if hb is not None else None
        out = None
        for weight, term in terms:
            v = term.apply(st, acc, weight)
            out = v if out is None else out.add_(v)
        if acc is not None:
            acc.finish(st)
        return out.squeeze(1)

    return blocked(logits, kernel)
