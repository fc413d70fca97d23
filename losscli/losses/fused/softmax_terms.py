"""Fused building blocks shared by many losses.

Several losses combine terms that all depend on the softmax (SCE = CE + RCE, NCE + RCE,
NFL, NGCE, Dice). Written naively, autograd keeps several ``[N, C]`` intermediates per term
and runs a chain of ``[N, C]`` kernels in backward. ``fused_softmax_loss`` computes the
log-softmax once, shares ``p`` and ``1 - p`` between the terms, and writes the gradient in a
few in-place passes (each term supplies its value and its gradient with respect to log p).
"""

from __future__ import annotations

import torch


class SoftmaxState:
    """Per-row softmax quantities computed once and shared by the terms of a fused loss."""

    def __init__(self, logits: torch.Tensor, target: torch.Tensor):
        self.logits = logits
        self.target = target
        self.idx = target.unsqueeze(1)
        self.logp = torch.log_softmax(logits, dim=1)
        self._p = None
        self._om = None
        self._logp_y = None

    @property
    def p(self) -> torch.Tensor:
        if self._p is None:
            self._p = self.logp.exp()
        return self._p

    def expm1_scaled(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """``expm1(scale * x)`` (a new tensor)."""
        return torch.mul(x, scale).expm1_() if scale != 1.0 else torch.expm1(x)

    @property
    def om(self) -> torch.Tensor:
        """``1 - p = -expm1(log p)`` (exact near p = 1)."""
        if self._om is None:
            self._om = torch.expm1(self.logp).neg_()
        return self._om

    @property
    def logp_y(self) -> torch.Tensor:
        if self._logp_y is None:
            self._logp_y = self.logp.gather(1, self.idx).squeeze(1)
        return self._logp_y

    def y(self, x: torch.Tensor) -> torch.Tensor:
        return x.gather(1, self.idx).squeeze(1)


class SoftmaxTerm:
    """One additive term ``weight * l_i`` of a loss computed from ``log p`` (``SoftmaxState``).

    ``forward(st)`` returns the ``[N]`` value; ``backward(st, g)`` (``g = weight * grad_out``)
    returns ``(dense, rowconst, ycoef)``: the gradient with respect to ``log p`` is
    ``dense + rowconst[:, None] + ycoef[:, None] * e_y`` (each part optional, None when absent).
    ``dense`` is a new ``[N, C]`` tensor the loss may overwrite, or a pair ``(D, coef)`` meaning
    ``D * coef[:, None]`` with ``D`` a tensor the term keeps (saved in forward, never modified).
    """

    def forward(self, st: SoftmaxState) -> torch.Tensor:
        raise NotImplementedError

    def backward(self, st: SoftmaxState, g: torch.Tensor):
        raise NotImplementedError


class _FusedSoftmaxLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, terms):
        st = SoftmaxState(logits, target)
        out = None
        for weight, term in terms:
            v = term.forward(st)
            v = v if weight == 1.0 else v * weight
            out = v if out is None else out + v
        ctx.st, ctx.terms = st, terms
        return out

    @staticmethod
    def backward(ctx, grad_out):
        st, terms = ctx.st, ctx.terms
        dense = rowc = ycoef = None
        pairs = []  # (D, coef): D * coef[:, None], D kept by its term
        for weight, term in terms:
            d, r, y = term.backward(st, grad_out * weight if weight != 1.0 else grad_out)
            if isinstance(d, tuple):
                pairs.append(d)
            elif d is not None:
                dense = d if dense is None else dense.add_(d)
            if r is not None:
                rowc = r if rowc is None else rowc + r
            if y is not None:
                ycoef = y if ycoef is None else ycoef + y
        c = st.logp.shape[1]
        # d/dz_j of sum_k G_k log p_k = G_j - p_j sum_k G_k
        total = torch.zeros_like(grad_out)
        if dense is not None:
            total = total + dense.sum(dim=1)
        for d, coef in pairs:
            total = total + d.sum(dim=1) * coef
        if rowc is not None:
            total = total + c * rowc
        if ycoef is not None:
            total = total + ycoef
        if dense is None:  # p times a row constant, in a fresh p unless a term computed p already
            p = st.p if st._p is not None else st.logp.exp()
            grad = (p * total.neg().unsqueeze(1)) if st._p is not None else p.mul_(total.neg().unsqueeze(1))
        else:
            grad = dense.addcmul_(st.p, total.unsqueeze(1), value=-1.0)
        for d, coef in pairs:
            grad.addcmul_(d, coef.unsqueeze(1))
        if rowc is not None:
            grad.add_(rowc.unsqueeze(1))
        if ycoef is not None:
            grad.scatter_add_(1, st.idx, ycoef.unsqueeze(1))
        return grad, None, None


def fused_softmax_loss(logits: torch.Tensor, target: torch.Tensor, terms) -> torch.Tensor:
    """``sum_t weight_t * term_t`` per sample, ``terms = [(weight, SoftmaxTerm), ...]``, one autograd node."""
    return _FusedSoftmaxLoss.apply(logits, target, tuple(terms))


class CETerm(SoftmaxTerm):
    """``-log p_y``."""

    def forward(self, st):
        return -st.logp_y

    def backward(self, st, g):
        return None, None, -g


class MAETerm(SoftmaxTerm):
    """``1 - p_y`` (= ``-expm1(log p_y)``)."""

    def forward(self, st):
        return -torch.expm1(st.logp_y)

    def backward(self, st, g):
        return None, None, -g * st.logp_y.exp()


class NCETerm(SoftmaxTerm):
    """``log p_y / sum_k log p_k``."""

    def forward(self, st):
        self.s = st.logp.sum(dim=1)
        return st.logp_y / self.s

    def backward(self, st, g):
        s = self.s
        return None, -g * st.logp_y / (s * s), g / s


class RCETerm(SoftmaxTerm):
    """``A * sum_{k != y} max(p_k, p_min)``."""

    def __init__(self, a: float, p_min: float):
        self.a, self.p_min = a, p_min

    def forward(self, st):
        p = st.p
        return self.a * (p.clamp_min(self.p_min).sum(dim=1) - st.y(p).clamp_min(self.p_min))

    def backward(self, st, g):
        ga = g * self.a
        pm = torch.threshold(st.p, self.p_min, 0.0)  # p * 1[p > p_min]: the clamp's gradient
        y = st.y(pm)
        return pm.mul_(ga.unsqueeze(1)), None, -ga * y


class NFLTerm(SoftmaxTerm):
    """``f_y / sum_k f_k``, ``f_k = (1 - p_k)^gamma log p_k``."""

    def __init__(self, gamma: float, floor: float):
        self.gamma, self.floor = gamma, floor

    def forward(self, st):
        if self.gamma == 0:
            self.f = st.logp
        else:
            om = st.om
            self.fac = om.pow(self.gamma) if self.gamma >= 1 else om.clamp_min(self.floor).pow(self.gamma)
            self.f = self.fac * st.logp
        self.s = self.f.sum(dim=1)
        self.f_y = st.y(self.f)
        return self.f_y / self.s

    def backward(self, st, g):
        s = self.s
        if self.gamma == 0:
            df = None
        else:
            # df/dlog p = fac + log p * dfac/dlog p = fac - gamma p log p (1-p)^(gamma-1)
            om = st.om
            if self.gamma >= 1:
                df = om.pow(self.gamma - 1.0).mul_(st.p).mul_(st.logp).mul_(-self.gamma).add_(self.fac)
            else:
                df = torch.threshold(om, self.floor, float("inf"))
                df = torch.div(st.p, df).mul_(st.logp).mul_(-self.gamma).add_(1.0).mul_(self.fac)
        coef = -g * self.f_y / (s * s)
        if df is None:
            return None, coef, g / s
        dy = st.y(df)
        return df.mul_(coef.unsqueeze(1)), None, g / s * dy


class NGCETerm(SoftmaxTerm):
    """``(1 - p_y^q) / sum_k (1 - p_k^q)``, log p clamped at ``log_p_min``."""

    def __init__(self, q: float, log_p_min: float):
        self.q, self.log_p_min = q, log_p_min

    def forward(self, st):
        negom = st.expm1_scaled(st.logp.clamp_min(self.log_p_min), self.q)  # p^q - 1 <= 0
        self.s = negom.sum(dim=1)
        self.a = st.y(negom)
        return self.a / self.s

    def backward(self, st, g):
        s = self.s
        # d(p_k^q - 1)/dlog p_k = q p_k^q 1[log p_k >= log_p_min]: exp(q * -inf) = 0 below the clamp
        em = torch.threshold(st.logp, self.log_p_min, float("-inf")).mul_(self.q).exp_()
        coef = -g * self.a / (s * s) * self.q
        ey = st.y(em)
        return em.mul_(coef.unsqueeze(1)), None, g / s * self.q * ey


class SquareDiceTerm(SoftmaxTerm):
    """Self-adjusting Dice, square mode: ``sum_{k != y} x_k^2 / (x_k^2 + s) + 1 - (2 x_y + s) / (x_y^2 + 1 + s)``
    with ``x = (1 - p)^alpha p`` (the base clamped at ``floor`` when alpha < 1)."""

    def __init__(self, alpha: float, smooth: float, floor: float):
        self.alpha, self.smooth, self.floor = alpha, smooth, floor

    def forward(self, st):
        a, s = self.alpha, self.smooth
        if a == 0:
            pt = st.p
        elif a >= 1:
            pt = st.om.pow(a).mul_(st.p)
        else:  # om^a = exp(a log om): two cheap passes where a fractional pow is a slow one
            pt = torch.clamp_min(st.om, self.floor).log_().mul_(a).exp_().mul_(st.p)
        self.pt = pt
        x2 = pt * pt
        self.d = x2 + s
        neg = x2.div_(self.d).sum(dim=1)
        x_y = st.y(pt)
        self.x_y = x_y
        h_y = x_y * x_y / (x_y * x_y + s)
        pos = 1.0 - (2.0 * x_y + s) / (x_y * x_y + 1.0 + s)
        return neg - h_y + pos

    def backward(self, st, g):
        a, s, p = self.alpha, self.smooth, st.p
        # d x / d log p = p ((1-p)^a - a p (1-p)^(a-1)) = x (1 - a p / (1-p))
        if a == 0:
            dpt = p.clone()
        elif a >= 1:
            dpt = st.om.pow(a - 1.0).mul_(p).mul_(p).mul_(-a).add_(self.pt)
        else:  # the clamp's gradient is 0 where om < floor: p / inf = 0 there
            dpt = torch.threshold(st.om, self.floor, float("inf"))
            torch.div(p, dpt, out=dpt).mul_(-a).add_(1.0).mul_(self.pt)
        x, d = self.x_y, self.d
        dpt_y = st.y(dpt)
        hprime_y = 2.0 * s * x / (x * x + s) ** 2
        dpos = -(2.0 + 2.0 * s - 2.0 * x * x - 2.0 * s * x) / (x * x + 1.0 + s) ** 2
        # dense: g * h'(x_k) * dx_k, h'(x) = 2 s x / (x^2 + s)^2
        dense = dpt.mul_(self.pt).div_(d).div_(d).mul_((2.0 * s) * g.unsqueeze(1))
        return dense, None, g * (dpos - hprime_y) * dpt_y


class ASLSingleTerm(SoftmaxTerm):
    """ASL single-label: ``-on w_y log p_y - (eps/C) sum_{k != y} p_k^gn log p_k``, ``on = 1 - eps + eps/C``,
    ``w_y = (1 - p_y)^gp`` (the base clamped at ``floor`` when gp < 1)."""

    def __init__(self, gamma_pos: float, gamma_neg: float, epsilon: float, floor: float):
        self.gp, self.gn, self.eps, self.floor = gamma_pos, gamma_neg, epsilon, floor

    def forward(self, st):
        c = st.logp.shape[1]
        self.on, self.off = 1.0 - self.eps + self.eps / c, self.eps / c
        lp = st.logp_y
        gp = self.gp
        if gp == 0:
            w = dw = torch.ones_like(lp)
        else:
            om = torch.expm1(lp).neg_()
            # d/dlog p_y of w log p_y = w + log p_y dw/dlog p_y, dw/dlog p_y = -gp p_y (1-p_y)^(gp-1)
            if gp >= 1:
                w = om.pow(gp)
                dw = om.pow(gp - 1.0)
            else:
                w = om.clamp_min(self.floor).pow(gp)
                dw = torch.where(om >= self.floor, w / om, torch.zeros_like(w))  # the clamp's gradient is 0
            dw = w - dw.mul_(lp.exp()).mul_(lp).mul_(gp)
        self.dpos = dw
        out = -self.on * (w * lp)
        if self.eps > 0:
            if self.gn != 0:
                e = torch.mul(st.logp, self.gn).exp_()  # p^gn
                neg = torch.mul(e, st.logp).scatter_(1, st.idx, 0.0)
                # d/dlog p of p^gn log p = p^gn (gn log p + 1), 0 at the target
                self.dneg = torch.mul(neg, self.gn).add_(e).scatter_(1, st.idx, 0.0)
            else:
                neg = st.logp.scatter(1, st.idx, 0.0)
                self.dneg = None
            out = out - self.off * neg.sum(dim=1)
        return out

    def backward(self, st, g):
        ycoef = -self.on * g * self.dpos
        if self.eps == 0:
            return None, None, ycoef
        if self.dneg is None:  # gn = 0: -(eps/C) on every k != y
            return None, -self.off * g, ycoef + self.off * g
        return (self.dneg, -self.off * g), None, ycoef
