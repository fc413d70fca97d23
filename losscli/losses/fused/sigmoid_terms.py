"""Multi-label sigmoid losses (BCE, sigmoid focal, ASL) as row-blocked gradient templates.

Each loss runs in one ``softmax_core.blocked`` node: per block of rows, its value and its
gradient ``dl/dz`` (backward is one multiply). Two kernels per loss:

- **0/1 targets** (multi-hot labels, one-hot class indices): with ``u = z (1 - 2t)``
  (``z`` for a negative label, ``-z`` for a positive one) every label's BCE is ``softplus(u)``
  and its "wrong-side" probability ``q = sigmoid(u)`` (``p`` for a negative, ``1 - p`` for a
  positive), so a label costs one ``sigmoid`` and one fused ``softplus`` pass (``log1p(exp(u))``:
  relatively exact for tiny values, where ``F.binary_cross_entropy_with_logits``'
  ``log(1 + exp(-|u|))`` rounds to 0);
- **other targets** (soft labels): the formulas as written, a few more passes.

A block is 0/1 when ``t (1 - t)`` is 0 everywhere (exact: a sum-free test of every entry).

**Class indices** (``t`` given as ``[N]`` integers: a single-label dataset, the common case in
``compare``): each row has one positive label, so the kernels compute every entry as a negative
and then patch the positive column with ``gather``/``scatter``. No ``[N, C]`` one-hot matrix is
built (on a CPU building it cost as much as the loss's own sigmoid), and the passes that blend
``t`` in become ``[N, 1]`` column updates. Same values and gradients as the 0/1 kernels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from losscli.losses.fused.powers import POW_FLOOR, int_pow
from losscli.losses.fused.softmax_core import blocked



def _is_binary(t: torch.Tensor) -> bool:
    lo, hi = torch.aminmax(torch.addcmul(t, t, t, value=-1.0))  # t - t^2: 0 iff t is 0 or 1
    return bool(lo == 0) and bool(hi == 0)


def _autograd_block(plain, z: torch.Tensor, t: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
    """Value and gradient template of ``plain(z, t) -> [B]`` by autograd on this block (rows are
    independent, so the gradient of the sum is each row's own)."""
    if h is None:
        return plain(z, t)
    with torch.enable_grad():
        leaf = z.detach().requires_grad_(True)
        value = plain(leaf, t)
        (grad,) = torch.autograd.grad(value.sum(), leaf)
    h.copy_(grad)
    return value.detach()


def softplus(u: torch.Tensor) -> torch.Tensor:
    """``softplus(u) = log(1 + e^u)`` to float rounding, in one pass (a new tensor).

    torch's fused kernel computes ``log1p(exp(u))``, relatively exact however small the result,
    and returns ``u`` itself above ``threshold``, where the dropped ``log1p(e^-u)`` is below half an
    ulp of ``u`` (``e^-20 / 20 = 1e-10`` suffices in float32 and narrower types, float64 needs 40).
    One pass instead of the six of ``relu(u) - log1p(-min(q, 1 - q))`` from the sigmoid
    (``benchmarks/RESULTS.md``, "softplus in one pass")."""
    return F.softplus(u, threshold=40.0 if u.dtype == torch.float64 else 20.0)


def softplus_and_sigmoid(u: torch.Tensor, out: torch.Tensor | None = None,
                         complement: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(softplus(u), sigmoid(u), 1 - sigmoid(u))`` (the last None unless ``complement``); ``out``:
    where to write ``sigmoid(u)``."""
    q = torch.sigmoid(u, out=out)
    return softplus(u), q, torch.rsub(q, 1.0) if complement else None


def _power(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """``x ** gamma`` (a new tensor) for ``x`` in [0, 1]: products for small integers, else exp2(gamma log2 x)."""
    if gamma == int(gamma) and 1 <= gamma <= 16:
        return int_pow(x, int(gamma))
    return torch.log2(x).mul_(gamma).exp2_()  # x = 0: exp2(-inf) = 0


def _floored_pow(base: torch.Tensor, gamma: float) -> torch.Tensor:
    """``base ** gamma`` for ``base >= 0`` with finite gradients where ``base`` is 0 (autograd expression)."""
    if gamma == 0:
        return torch.ones_like(base)
    if gamma >= 1:
        return base.pow(gamma)
    return base.clamp_min(POW_FLOOR).pow(gamma)


def _index_softplus_and_sigmoid(z: torch.Tensor, idx: torch.Tensor, out: torch.Tensor | None = None,
                                complement: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """:func:`softplus_and_sigmoid` of ``u = z (1 - 2t)`` for one-hot ``t`` given as column indices
    ``idx`` ``[B, 1]``, without building ``u``: every entry as a negative (``u = z``), then the target
    column patched with its own ``[B, 1]`` values. ``out``: where to write ``sigmoid(u)``."""
    u_y = z.gather(1, idx).neg_()
    q = torch.sigmoid(z, out=out).scatter_(1, idx, torch.sigmoid(u_y))
    b = softplus(z).scatter_(1, idx, softplus(u_y))
    return b, q, torch.rsub(q, 1.0) if complement else None


def _is_index(t: torch.Tensor) -> bool:
    return t.dim() == 1


# ----------------------------------------------------------------------------------------------- BCE
def bce_index_block(z, idx, h):
    """BCE with one-hot labels given as column indices ``idx`` ``[B, 1]`` (also the OvR loss): the row
    sums of ``softplus(u)`` and, into ``h``, ``sigmoid(z) - t``."""
    b, q, _ = _index_softplus_and_sigmoid(z, idx, out=h, complement=False)  # q straight into h
    if h is not None:  # sigmoid(z) - t = q (1 - 2t)
        h.scatter_(1, idx, q.gather(1, idx).neg_())
    return b.sum(dim=1)


def _bce_block(z, t, h):
    if _is_binary(t):
        b, q, _ = softplus_and_sigmoid(torch.addcmul(z, z, t, value=-2.0), out=h, complement=False)
        if h is not None:
            h.addcmul_(q, t, value=-2.0)  # q (1 - 2t) = sigmoid(z) - t
        return b.sum(dim=1)
    return _autograd_block(_plain_bce, z, t, h)


def _plain_bce(z, t):
    return F.binary_cross_entropy_with_logits(z, t, reduction="none").sum(dim=1)


def bce(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``sum_k BCEWithLogits(z_k, t_k)`` per row, one autograd node (``t``: ``[N, C]`` or ``[N]`` class indices)."""
    if _is_index(t):
        return blocked(z, lambda zb, hb, ib: bce_index_block(zb, ib, hb), t.unsqueeze(1))
    return blocked(z, lambda zb, hb, tb: _bce_block(zb, tb, hb), t)


# ------------------------------------------------------------------------------------- sigmoid focal
def _weighted_row_sum(x: torch.Tensor, t: torch.Tensor, alpha: float) -> torch.Tensor:
    """``sum_k a_t x_k`` per row, ``a_t = (1 - alpha) + (2 alpha - 1) t`` (1 when alpha < 0); overwrites ``x``."""
    if alpha < 0:
        return x.sum(dim=1)
    out = x.sum(dim=1).mul_(1.0 - alpha)
    return out.add_(x.mul_(t).sum(dim=1), alpha=2.0 * alpha - 1.0)


def _focal_index_block(z, idx, h, alpha, gamma):
    # the 0/1 kernel below with t one-hot: a_t is w = 1 - alpha off the target and alpha on it (1 and 1
    # when alpha < 0). Written for few [B, C] allocations: h and then b are reused in place.
    b, q, r = _index_softplus_and_sigmoid(z, idx)
    a = _power(q, gamma)
    w, w_pos = (1.0 - alpha, alpha) if alpha >= 0 else (1.0, 1.0)
    if h is not None:
        d_pos = torch.addcmul(q.gather(1, idx), r.gather(1, idx), b.gather(1, idx), value=gamma)
        d_pos.mul_(a.gather(1, idx)).mul_(-w_pos)  # a_t (1 - 2t) on the target
        torch.addcmul(q, r, b, value=gamma, out=h).mul_(a)  # q^gamma (q + gamma (1 - q) b)
        if w != 1.0:
            h.mul_(w)
        h.scatter_(1, idx, d_pos)
    x = b.mul_(a)  # the per-label terms q^gamma softplus(u), before a_t
    value = x.sum(dim=1)
    if w != 1.0:
        value.mul_(w)
    if w_pos != w:
        value.add_(x.gather(1, idx).squeeze(1), alpha=w_pos - w)
    return value


def _focal_block(z, t, h, alpha, gamma):
    if _is_binary(t):
        # term = a_t q^gamma softplus(u); d/du = a_t q^gamma (q + gamma (1 - q) softplus(u)), du/dz = 1 - 2t
        b, q, r = softplus_and_sigmoid(torch.addcmul(z, z, t, value=-2.0))
        a = _power(q, gamma)
        value = _weighted_row_sum(torch.mul(a, b), t, alpha)
        if h is not None:
            d = torch.addcmul(q, r, b, value=gamma).mul_(a)  # q^gamma (q + gamma (1 - q) b)
            if alpha >= 0:  # a_t (1 - 2t) = (1 - alpha) - t for t in {0, 1}
                torch.mul(d, 1.0 - alpha, out=h).addcmul_(d, t, value=-1.0)
            else:
                torch.addcmul(d, d, t, value=-2.0, out=h)
        return value
    return _autograd_block(lambda zz, tt: plain_sigmoid_focal(zz, tt, alpha, gamma), z, t, h)


def plain_sigmoid_focal(z, t, alpha, gamma):
    """torchvision's expression, summed over the labels (the focal factor differentiated)."""
    bce_ = F.binary_cross_entropy_with_logits(z, t, reduction="none")
    p = torch.sigmoid(z)
    one_minus_pt = p + t - 2.0 * p * t  # = p (1 - t) + (1 - p) t, torchvision's expression
    loss = _floored_pow(one_minus_pt, gamma) * bce_
    if alpha >= 0:
        loss = ((1.0 - alpha) + (2.0 * alpha - 1.0) * t) * loss
    return loss.sum(dim=1)


def sigmoid_focal(z: torch.Tensor, t: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """torchvision's sigmoid focal loss summed over the labels of each row, one autograd node (gamma > 0;
    ``t``: ``[N, C]`` or ``[N]`` class indices)."""
    if _is_index(t):
        return blocked(z, lambda zb, hb, ib: _focal_index_block(zb, ib, hb, alpha, gamma), t.unsqueeze(1))
    return blocked(z, lambda zb, hb, tb: _focal_block(zb, tb, hb, alpha, gamma), t)


# ----------------------------------------------------------------------------------------------- ASL
def _asl_fast(gamma_neg, gamma_pos, clip, eps) -> bool:
    return clip > 0 and clip >= eps and gamma_pos == 0 and gamma_neg >= 1


def _asl_index_block(z, idx, h, gamma_neg, gamma_pos, clip, eps):
    if not _asl_fast(gamma_neg, gamma_pos, clip, eps):
        t = torch.zeros_like(z).scatter_(1, idx, 1.0)
        return _asl_block(z, t, h, gamma_neg, gamma_pos, clip, eps)
    # the 0/1 kernel below with t one-hot: every entry as a negative, then the target column
    arg_pos = torch.sigmoid(z.gather(1, idx))  # p: a positive's argument has no clip
    qn = torch.neg(z).sigmoid_().scatter_(1, idx, arg_pos)  # p on the target, 1 - p elsewhere
    tp = torch.ge(arg_pos, eps).to(z.dtype)  # the eps clamp's gradient gate (only a positive can reach it)
    arg = torch.add(qn, clip).clamp_max_(1.0).scatter_(1, idx, arg_pos.clamp_min(eps))
    log_arg = torch.log(arg)
    pm = torch.rsub(arg, 1.0).scatter_(1, idx, 0.0)  # p_m, 0 on the target
    pm_g1 = _power(pm, gamma_neg - 1.0) if gamma_neg > 1 else torch.ones_like(z).scatter_(1, idx, 0.0)
    if h is not None:
        d = torch.addcdiv(log_arg, pm, arg, value=-1.0 / gamma_neg).mul_(pm_g1).mul_(qn)
        d.mul_(gamma_neg).scatter_(1, idx, tp)  # the target's term is 0 before tp is added
        torch.mul(qn, d, out=h).sub_(d)  # -(1 - qn) d
    # the value last, in place over p_m (no longer needed): w = t + p_m^gn, then w log(arg)
    w = pm.mul_(pm_g1).scatter_(1, idx, 1.0)
    return w.mul_(log_arg).sum(dim=1).neg_()


def _asl_block(z, t, h, gamma_neg, gamma_pos, clip, eps):
    if _asl_fast(gamma_neg, gamma_pos, clip, eps) and _is_binary(t):
        # qn = sigmoid(z (2t - 1)): p for a positive label, 1 - p for a negative one.
        # arg = qn + clip (1 - t), at most 1: p for a positive, 1 - p_m for a negative (p_m = max(p - clip, 0));
        # one log serves both: pos = log max(p, eps), neg = p_m^gn log(1 - p_m), p_m = (1 - arg) (1 - t).
        qn = torch.addcmul(z, z, t, value=-2.0).neg_().sigmoid_()
        off = torch.mul(t, -clip).add_(clip)  # clip (1 - t)
        arg = torch.add(qn, off).clamp_max_(1.0)
        # only a positive label can reach the eps clamp (a negative's argument is at least clip >= eps):
        # log max(p, eps) is the log of the clamped argument, and its gradient is 0 below eps
        clamped = bool(arg.amin() < eps)
        tp = torch.threshold(arg, eps, 0.0).sign_().mul_(t) if clamped else t
        if clamped:
            arg.clamp_min_(eps)
        log_arg = torch.log(arg)
        pm = torch.rsub(arg, 1.0)
        pm.addcmul_(pm, t, value=-1.0)  # (1 - arg)(1 - t): exactly 0 on positives
        # p_m^(gn-1), 0 on positives (where p_m = 0; for gn = 1 through the factor 1 - t)
        pm_g1 = _power(pm, gamma_neg - 1.0) if gamma_neg > 1 else torch.rsub(t, 1.0)
        w = torch.mul(pm_g1, pm).add_(t)  # t + p_m^gn
        value = torch.mul(w, log_arg).sum(dim=1).neg_()
        if h is not None:
            # neg: d/dz = -p (1-p) p_m^(gn-1) (gn log(1 - p_m) - p_m / (1 - p_m)), p (1 - p) = qn (1 - qn)
            # pos: d/dz = -(1 - p) 1[p >= eps] = -(1 - qn) 1[...]
            d = torch.addcdiv(log_arg, pm, arg, value=-1.0 / gamma_neg).mul_(pm_g1).mul_(qn)
            d.mul_(gamma_neg).add_(tp)
            torch.mul(qn, d, out=h).sub_(d)  # -(1 - qn) d
        return value
    return _autograd_block(lambda zz, tt: plain_asl(zz, tt, gamma_neg, gamma_pos, clip, eps), z, t, h)


def plain_asl(z, t, gamma_neg, gamma_pos, clip, eps):
    """ASL's expression (AsymmetricLossOptimized, weights not detached), summed over the labels."""
    log_eps = math.log(eps)
    p = torch.sigmoid(z)
    log_pos = F.logsigmoid(z).clamp_min(log_eps)  # log max(p, eps), exact in the tail
    if clip > 0:  # p_m = max(p - clip, 0); log max(1 - p_m, eps) = log max(min(1 - p + clip, 1), eps)
        p_m = (p - clip).clamp_min(0.0)
        log_neg = torch.log((1.0 + clip - p).clamp_max(1.0)).clamp_min(log_eps)  # argument >= clip
    else:
        p_m = p
        log_neg = F.logsigmoid(-z).clamp_min(log_eps)
    pos = log_pos if gamma_pos == 0 else _floored_pow(torch.sigmoid(-z), gamma_pos) * log_pos
    neg = _floored_pow(p_m, gamma_neg) * log_neg
    return -(t * pos + (1 - t) * neg).sum(dim=1)


def asl(z: torch.Tensor, t: torch.Tensor, gamma_neg: float, gamma_pos: float, clip: float, eps: float) -> torch.Tensor:
    """ASL (AsymmetricLossOptimized, weights not detached) summed over the labels of each row, one node
    (``t``: ``[N, C]`` or ``[N]`` class indices)."""
    if _is_index(t):
        kernel = lambda zb, hb, ib: _asl_index_block(zb, ib, hb, gamma_neg, gamma_pos, clip, eps)  # noqa: E731
        return blocked(z, kernel, t.unsqueeze(1))
    return blocked(z, lambda zb, hb, tb: _asl_block(zb, tb, hb, gamma_neg, gamma_pos, clip, eps), t)
