"""The APL family's terms (CE, MAE, NCE, RCE, NFL, NGCE) for ``softmax_block.fused_softmax_loss``."""

from __future__ import annotations

import functools
import math

import torch

from losscli.losses.fused.powers import LOG2E, focal_factor
from losscli.losses.fused.softmax_block import SoftmaxTerm, _row_grad


class CETerm(SoftmaxTerm):
    """``-log p_y``."""

    p_into_template = True

    def apply(self, st, acc, w):
        if acc is not None:
            acc.cp = acc.cp + w
            acc.cy = acc.cy - w
        return st.lp_y * -w


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

    p_into_template = True

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
        self.p_into_template = gamma != 0  # gamma = 0 is NCE, whose gradient has a dense const

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
            f = torch.mul(om, r).mul_(lp)  # the factor is not needed on its own: f in place over it
        else:  # products for a small integer gamma, else exp2 of gamma log2 of the floored base
            fac, dfac = focal_factor(om, g, self.floor, need)
            f = torch.mul(fac, lp)
        total = f.sum(dim=1, keepdim=True)
        f_y = st.y(f)
        if need:
            # df/dlog p = (1-p)^gamma - gamma p log p (1-p)^(gamma-1)
            if r is not None:  # (1 - p - gamma p log p) (1 - p)^(gamma - 1): both terms >= 0; over f (read above)
                df = torch.addcmul(om, p, lp, value=-g, out=f).mul_(r)
            elif dfac is None:  # gamma = 1
                df = torch.addcmul(fac, p, lp, value=-g)
            else:  # in place over dfac, a fresh tensor read nowhere else: one [B, C] allocation fewer
                df = dfac.mul_(p).mul_(lp).mul_(-g).add_(fac)
            df_y = st.y(df)
            # l = w f_y / F: dl/df_k = -w f_y / F^2 (every k) + e_y w / F
            _row_grad(acc, st, -w * f_y / (total * total), df, w / total * df_y)
        return w * f_y / total


@functools.lru_cache(maxsize=64)
def _clamped_power(log_p_min: float, q: float, dtype: torch.dtype) -> float:
    """``exp(q log_p_min)`` as a CPU tensor of ``dtype`` rounds it through clamp, mul and exp, plus 2 ulps."""
    value = torch.full((1,), log_p_min, dtype=dtype).mul_(q).exp_().item()
    return value * (1.0 + 2 * torch.finfo(dtype).eps)


class NGCETerm(SoftmaxTerm):
    """``(1 - p_y^q) / sum_k (1 - p_k^q)``, p clamped at ``exp(log_p_min)`` (APL)."""

    p_into_template = True

    def __init__(self, q: float, log_p_min: float):
        self.q, self.log_p_min = q, log_p_min

    def _powers(self, lp: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(em, sum em, denom)``: ``em = p^q`` above the clamp, 0 below (there ``p^q`` is the constant
        ``p_min^q``, gradient 0); ``denom = sum_k (1 - max(p_k, p_min)^q)``."""
        q = self.q
        em = torch.threshold_(lp, self.log_p_min, -math.inf).mul_(q * LOG2E).exp2_()
        c0 = math.exp(q * self.log_p_min)
        em_sum = em.sum(dim=1, keepdim=True)
        # sum_k max(p_k, p_min)^q = sum em + c0 * #(clamped) = sum em + c0 C - sum min(em, c0)
        return em, em_sum, c - (em_sum + (c * c0 - torch.clamp_max(em, c0).sum(dim=1, keepdim=True)))

    def _powers_cpu(self, lp: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``_powers`` through ``exp``: on x86 torch's (MKL's) exp is ~1.5x faster than exp2 of a
        log2(e)-scaled argument, but ~200x slower on -inf or an underflowing result, so the argument is
        clamped (not sent to -inf), the clamped powers summed as they are, then set to 0 (0.89-0.92x the
        exp2 path's time in a paired A/B; gradients as close to float64)."""
        em = torch.clamp_min_(lp, self.log_p_min).mul_(self.q).exp_()
        denom = c - em.sum(dim=1, keepdim=True)
        # every clamped entry is p_min^q as these ops round it, computed alike (a bound from math.exp
        # could miss it by ulps and leave clamped entries a gradient); up to 2 ulps above counts as
        # clamped (the kink)
        torch.threshold_(em, _clamped_power(self.log_p_min, self.q, em.dtype), 0.0)
        return em, em.sum(dim=1, keepdim=True), denom

    def apply(self, st, acc, w):
        q = self.q
        em, em_sum, denom = (self._powers_cpu if st.z.device.type == "cpu" else self._powers)(st.lp_raw_owned(), st.c)
        a = -torch.expm1(q * st.lp_y.clamp_min(self.log_p_min))  # 1 - p_y^q
        if acc is not None:
            em_y = st.y(em)
            # d(p_k^q)/dlog p_k = q em_k; l = w a / D: dl/d(p_k^q) = w a / D^2, dl/d(p_y^q) += -w / D
            _row_grad(acc, st, w * q * a / (denom * denom), em, -w * q / denom * em_y, em_sum)
        return w * a / denom
