"""Fused autograd nodes for losses that are a softmax cross-entropy plus a per-row term.

Written with autograd, these losses keep several ``[N, C]`` intermediates and run a chain of
``[N, C]`` kernels in backward (the gradients of a max, a gather, a relu, a norm, each added
into the logits' gradient). Each node here is a ``softmax_core.blocked`` node: per block of
rows (small enough to stay in cache) one softmax and a few in-place passes give the loss and
its gradient template ``H = dl_i/dz_i`` (the gradient of a per-row loss is linear in the
incoming ``g_i``); backward is one multiply.

The CE value is ``-log p_y`` from the softmax (``softmax_core.target_log_prob``: exact also
where ``p_y`` rounds to 1), without a separate ``exp``/``log_softmax`` pass. The largest logit's
column (where ``torch.max`` sends a max's gradient) comes from ``softmax_core.first_argmax``.
"""

from __future__ import annotations

import math

import torch

from losscli.losses.fused.far_rows import host_checks, worth_a_pass
from losscli.losses.fused.softmax_core import (argmax_and_count, blocked, first_argmax, log_normaliser,
                                               saturated_target, target_log_prob)


def _softmax_ce(x: torch.Tensor, idx: torch.Tensor):
    """``(p, ce)``: ``p = softmax(x)``, ``ce = -log p_y`` ``[B, 1]``."""
    p = torch.softmax(x, dim=1)
    return p, target_log_prob(x, p, idx)[0].neg_()


def _ce_into(z: torch.Tensor, idx: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
    """``-log p_y`` ``[B, 1]``, with ``p = softmax(z)`` written into the gradient template ``h`` when there
    is one (no fresh ``[B, C]`` tensor; the caller adds its own terms to it in place)."""
    if h is None:
        return _softmax_ce(z, idx)[1]
    p = torch.softmax(z, dim=1, out=h)
    return target_log_prob(z, p, idx)[0].neg_()


def _mbls_block(z, idx, h, margin, lam):
    """MbLS per row: ``CE + (lam / C) sum_k [max_j z_j - z_k - margin]_+`` (the max differentiated).

    Gradient: ``p - e_y``, ``-lam/C`` on each active hinge and ``+lam/C * #active`` on the argmax
    column ``torch.max`` returns (where autograd's ``max`` sends its gradient).
    """
    k = lam / z.shape[1]
    zmax = z.amax(dim=1, keepdim=True)
    top = zmax - margin
    neg_gap = torch.clamp(z, max=top).sub_(top)  # min(z - (max - margin), 0) = -[max - z - margin]_+
    penalty = neg_gap.sum(dim=1, keepdim=True).neg_()
    ce = _ce_into(z, idx, h)
    if h is not None:
        active = neg_gap.sign_()  # -1 where the hinge is active, 0 elsewhere
        neg_count = active.sum(dim=1, keepdim=True)
        h.add_(active, alpha=k)
        h.scatter_add_(1, first_argmax(z, zmax), neg_count * -k)
        h.scatter_add_(1, idx, torch.full_like(ce, -1.0))
    return (ce + k * penalty).squeeze(1)


def mbls(z: torch.Tensor, target: torch.Tensor, margin: float, lam: float) -> torch.Tensor:
    return blocked(z, lambda zb, hb, t: _mbls_block(zb, t.unsqueeze(1), hb, margin, lam), target)


def _acls_block(z, idx, h, lam_pos, lam_neg, alpha, margin):
    """ACLS per row: ``CE + alpha (lam_pos [z_max - m]_+^2 n_max + lam_neg/(C-1) sum_k [sg(z_max) - z_k - m]_+^2)``.

    ``n_max`` counts the tied maxima (a constant); the positive term's gradient goes to the argmax
    column ``torch.max`` returns; the negatives' max is detached.
    """
    c = z.shape[1]
    zmax = z.amax(dim=1, keepdim=True)
    if h is not None:  # the equality pass that finds the argmax column counts the maxima too
        col, n_max = argmax_and_count(z, zmax)
    else:
        n_max = torch.eq(z, zmax).sum(dim=1, keepdim=True, dtype=z.dtype)
    top = zmax - margin
    neg_gap = torch.clamp(z, max=top).sub_(top)  # -[max - z - m]_+, 0 at the maxima (m >= 0)
    neg = torch.linalg.vector_norm(neg_gap, dim=1, keepdim=True).square_()
    pos_gap = (zmax - margin).clamp_min_(0.0)
    reg = lam_pos * pos_gap.square() * n_max + (lam_neg / (c - 1)) * neg
    ce = _ce_into(z, idx, h)
    if h is not None:
        h.add_(neg_gap, alpha=2.0 * alpha * lam_neg / (c - 1))
        h.scatter_add_(1, col, (2.0 * alpha * lam_pos) * pos_gap * n_max)
        h.scatter_add_(1, idx, torch.full_like(ce, -1.0))
    return (ce + alpha * reg).squeeze(1)


def acls(z, target, lam_pos, lam_neg, alpha, margin):
    return blocked(z, lambda zb, hb, t: _acls_block(zb, t.unsqueeze(1), hb, lam_pos, lam_neg, alpha, margin), target)


def _circle_block(s, idx, h, gamma, m):
    """Class-level circle loss per row: CE of ``x_k = gamma a_k (s_k - delta_k)`` with the ``a_k`` detached.

    ``a_k = [s_k + m]_+`` (``delta = m``) off the target, ``a_y = [1 + m - s_y]_+`` (``delta = 1 - m``);
    the gradient is ``(p - e_y) gamma a``. With gamma = 256 most of ``x - max x`` lies far below
    ``log(tiny)``: those entries are set to ``-inf`` before the softmax (their ``exp`` is below float
    tiny: 0 instead of a subnormal, which some CPUs compute ~100x slower).
    """
    scale = torch.add(s, m).relu_().mul_(gamma)  # gamma a_n, constants
    x = torch.sub(s, m).mul_(scale)
    s_y = s.gather(1, idx)
    scale_y = gamma * (1.0 + m - s_y).clamp_min_(0.0)
    x_y = scale_y * (s_y - (1.0 - m))
    x.scatter_(1, idx, x_y)
    scale.scatter_(1, idx, scale_y)
    xmax = x.amax(dim=1, keepdim=True)
    shifted = torch.threshold_(x.sub_(xmax), math.log(torch.finfo(x.dtype).tiny), -math.inf)
    p = torch.softmax(shifted, dim=1)
    # CE = (max x - x_y) + log S (x_y may have been sent to -inf above), -log p_y where p_y > 1/2
    ce = (xmax - x_y) - p.amax(dim=1, keepdim=True).log_()
    sat = saturated_target(p, idx)
    if sat is not None:
        big, om_y = sat
        ce = torch.where(big, -torch.log1p(-om_y), ce)
    if h is not None:
        torch.mul(p, scale, out=h).scatter_add_(1, idx, -scale_y)
    return ce.squeeze(1)


def circle(s, target, gamma, m):
    return blocked(s, lambda sb, hb, t: _circle_block(sb, t.unsqueeze(1), hb, gamma, m), target)


def _over_t(x, inv_t, out=None):
    """``(x' / T, max_k x'_k / T)``: ``x' = x``, or ``x - max x`` in a block with a row far from zero
    (``|max x| / T > 16``: ``worth_a_pass``), whose maximum is then 0. ``x / T`` rounds to half an ulp of
    ``|x| / T``, more than a spread of 0.01 allows at logits near 1e4, and ``x - max x`` is exact for nearby
    floats (Sterbenz). Ordinary blocks pay one ``[B, 1]`` check: the scaled maximum is needed anyway
    (division by T > 0 is monotone in floating point too, so it is ``max(x) / T``)."""
    xt = torch.mul(x, inv_t, out=out)  # (a fresh tensor when out is None)
    xt_max = xt.amax(dim=1, keepdim=True)
    if not worth_a_pass(xt_max):
        return xt, xt_max
    return torch.sub(x, x.amax(dim=1, keepdim=True), out=xt).mul_(inv_t), 0.0


def _kd_block(z, teacher, idx, h, temperature, alpha):
    """Hinton KD per row: ``alpha T^2 KL(q || softmax(z/T)) [+ (1 - alpha) CE(z, y)]``, ``q = softmax(t/T)``.

    ``KL = sum_k q_k (t'_k - z'_k) + log(S_z/S_t) + (max z' - max t')`` (``sum_k q_k = 1``) for any
    row shifts of ``z' = z/T`` and ``t' = t/T`` (``_over_t``): with both shifted by their maxima the last
    term is 0 and the sum is of differences of the size of the rows' spreads, not of their offsets (a
    teacher near 0 and a student near 1e4 cancelled ``2500``: 9e-4 relative off before). The teacher is a
    constant. Gradient ``alpha T (s - q) + (1 - alpha)(p - e_y)``. ``idx`` is None for the distillation
    term alone.
    """
    inv_t = 1.0 / temperature
    tt, tmax = _over_t(teacher, inv_t)
    q = torch.softmax(tt, dim=1)
    log_st = q.amax(dim=1, keepdim=True).log_().neg_()
    # z / T, s and p go into buffers already at hand instead of fresh [B, C] tensors (on a CPU 2-3x
    # the cost of a pass over one in cache): z / T and then s (in place) into the gradient template,
    # p below into tt, read no more (kd 0.95-0.97x of the previous time in paired A/Bs)
    zt, zmax = _over_t(z, inv_t, out=h)
    cross = tt.sub_(zt).mul_(q).sum(dim=1, keepdim=True)  # sum_k q_k (t'_k - z'_k)
    # the CPU softmax reads each row before writing it, so out= its own input is exact there (the
    # same values as out of place, checked for float16 to float64); elsewhere out of place and copied
    s = torch.softmax(zt, dim=1, out=zt) if zt.device.type == "cpu" else zt.copy_(torch.softmax(zt, dim=1))
    s_max = s.amax(dim=1, keepdim=True)
    log_sz = s_max.log().neg_()
    value = (alpha * temperature * temperature) * (cross + (log_sz - log_st) + (zmax - tmax))
    if idx is not None:
        # a third softmax, not p = e^T / sum e^T from e = s / s_max (integer T): on an Intel Xeon the
        # division, the powers, the sum and the normalisation cost more than one fused softmax
        # (kd 0.94-0.95x of the previous time in a paired A/B)
        p = torch.softmax(z, dim=1, out=tt)
        # log p_y, exact when p_y saturates: log1p(-(1 - p_y)) (target_log_prob)
        lp, _ = target_log_prob(z, p, idx)
        value = value - (1.0 - alpha) * lp
    if h is not None:
        h.sub_(q).mul_(alpha * temperature)  # h holds s
        if idx is not None:
            h.add_(p, alpha=1.0 - alpha).scatter_add_(1, idx, torch.full_like(value, alpha - 1.0))
    return value.squeeze(1)


def kd(z, teacher, target, temperature, alpha):
    def kernel(zb, hb, tb, yb):
        return _kd_block(zb, tb, None if yb is None else yb.unsqueeze(1), hb, temperature, alpha)

    return blocked(z, kernel, teacher, target)


def _scaled_ce_block(z, idx, h, r, k):
    """``CE(r z, y)`` per row for a row scale ``r(||z||_2)`` given with ``k = r'(||z||) / ||z||`` (both ``[B, 1]``).

    ``d/dz (r z) = r I + k z z^T``, so with ``G = p - e_y`` (at ``x = r z``) the gradient is
    ``r G + k (G . z) z``, ``G . z = (p . x - x_y) / r``.
    """
    x = z * r
    x_y = x.gather(1, idx)
    p, ce = _softmax_ce(x, idx)
    if h is not None:
        gz = (x.mul_(p).sum(dim=1, keepdim=True) - x_y) / r  # x is not needed any more
        torch.mul(p, r, out=h).addcmul_(z, k * gz).scatter_add_(1, idx, -r)
    return ce.squeeze(1)


def scaled_ce(z, target, r, k):
    return blocked(z, lambda zb, hb, t, rb, kb: _scaled_ce_block(zb, t.unsqueeze(1), hb, rb, kb), target, r, k)


def off_target_sq(z: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``sum_{k != y} z_k^2`` ``[B, 1]``: the target is zeroed (not subtracted afterwards), exact when z_y dominates."""
    return torch.linalg.vector_norm(z.scatter(1, idx, 0.0), dim=1, keepdim=True).square_()


def _squentropy_block(z, idx, h):
    """``CE + (1/(C-1)) sum_{k != y} z_k^2`` per row; gradient ``p - e_y + 2 z / (C-1)`` off the target."""
    c = z.shape[1]
    off = off_target_sq(z, idx)
    p, ce = _softmax_ce(z, idx)
    if h is not None:
        p_y = p.gather(1, idx)
        torch.add(p, z, alpha=2.0 / (c - 1), out=h).scatter_(1, idx, p_y - 1.0)
    return (ce + off / (c - 1)).squeeze(1)


def squentropy(z, target):
    return blocked(z, lambda zb, hb, t: _squentropy_block(zb, t.unsqueeze(1), hb), target)


def _square_block(z, idx, h, k, m):
    """Rescaled square loss ``(k (z_y - m)^2 + sum_{k != y} z_k^2) / C``; gradient ``2 z / C``, ``2 k (z_y - m) / C`` at y."""
    c = z.shape[1]
    d = z.gather(1, idx) - m
    value = (off_target_sq(z, idx) + k * d * d) / c
    if h is not None:
        torch.mul(z, 2.0 / c, out=h).scatter_(1, idx, (2.0 * k / c) * d)
    return value.squeeze(1)


def square(z, target, k, m):
    return blocked(z, lambda zb, hb, t: _square_block(zb, t.unsqueeze(1), hb, k, m), target)


def _logz_block(z, idx, h, coef):
    """``CE + coef (log Z)^2`` per row, ``log Z = logsumexp(z)``; gradient ``(1 + 2 coef log Z) p - e_y``."""
    p, ce = _softmax_ce(z, idx)
    lse = z.gather(1, idx) + ce  # log Z = z_y - log p_y
    if h is not None:
        torch.mul(p, 1.0 + (2.0 * coef) * lse, out=h).scatter_add_(1, idx, torch.full_like(ce, -1.0))
    return (ce + coef * lse * lse).squeeze(1)


def logz_ce(z, target, coef):
    return blocked(z, lambda zb, hb, t: _logz_block(zb, t.unsqueeze(1), hb, coef), target)


def _standardised_block(z, idx, h, eps, correct):
    """``(z_hat_y, mu / sigma)`` per row, ``z_hat_y = (z_y - mu) / sqrt(var + eps)``.

    Population variance from the centred logits (two-pass): no ``E[z^2] - E[z]^2`` cancellation
    at |z| = 1e4. ``d z_hat_y / d z_j = rs (delta_jy - 1/C) - z_hat_y rs^2 (z_j - mu) / C``,
    ``rs = 1/sqrt(var + eps)``. With ``correct``, the rounded mean ``mu`` is corrected: it is off by
    ulps of ``|mu|``, and ``z_hat`` by that over ``sigma`` (spherical_z's value 7e-2 relative off at
    logits near 1e4 with spreads of 0.01). ``z_k - mu`` is exact for nearby floats (Sterbenz), so
    their mean ``err``, summed at the size of the spread, is the error (one more read pass).
    """
    c = z.shape[1]
    mu = z.mean(dim=1, keepdim=True)
    centred = z - mu
    var = torch.linalg.vector_norm(centred, dim=1, keepdim=True).square_() / c
    rs = torch.rsqrt(var + eps)
    mu_over_sigma = mu * rs
    centred_y = centred.gather(1, idx)
    err = centred.sum(dim=1, keepdim=True).div_(c) if correct else None
    if err is not None:  # the exact centred values are centred - err (their mean is 0)
        centred_y = centred_y - err
        # mean((centred - err)^2) = mean(centred^2) - err^2 (>= 0; a constant row may round below)
        rs = torch.rsqrt(var.sub_(err * err).clamp_min_(0.0) + eps)
    z_hat = centred_y * rs
    if h is not None:
        coef = z_hat * (rs * rs) * (-1.0 / c)
        const = rs / c if err is None else rs / c + err * coef  # h = coef (centred - err) - rs / C + rs e_y
        torch.mul(centred, coef, out=h).sub_(const).scatter_add_(1, idx, rs)
    return z_hat.squeeze(1), mu_over_sigma.squeeze(1)


def standardised_target(z, target, eps):
    """``z_hat_y`` ``[N]`` (``_standardised_block``), the mean corrected where some row has ``|mu| / sigma``
    above ``FAR_FROM_ZERO`` (below, the rounded mean moves ``z_hat`` by at most 8 eps, absolute: the same
    bound as the other losses' exact forms). On a CPU the batch is computed uncorrected and its rows'
    ``|mu| / sigma`` checked once (a check per block cost spherical_z ~5%), and computed again with the
    correction if one exceeds it; elsewhere (``host_checks``) with it at once."""
    def run(correct):
        return blocked(z, lambda zb, hb, t: _standardised_block(zb, t.unsqueeze(1), hb, eps, correct), target,
                       n_outputs=2)

    if not host_checks(z):
        return run(True)[0]
    z_hat, mu_over_sigma = run(False)
    return run(True)[0] if worth_a_pass(mu_over_sigma) else z_hat


def _logit_l2_ce_block(z, idx, h, coef, gamma):
    """Spectral decoupling per row: ``CE + coef sum_k (z_k - gamma)^2``; gradient ``p - e_y + 2 coef (z - gamma)``."""
    shifted = z if gamma == 0.0 else torch.sub(z, gamma)
    sq = torch.linalg.vector_norm(shifted, dim=1, keepdim=True).square_()
    p, ce = _softmax_ce(z, idx)
    if h is not None:
        torch.add(p, shifted, alpha=2.0 * coef, out=h)
        h.scatter_add_(1, idx, torch.full_like(ce, -1.0))
    return (ce + coef * sq).squeeze(1)


def logit_l2_ce(z, target, coef, gamma):
    """``CE(z, y) + coef * sum_k (z_k - gamma)^2`` per row, one node."""
    return blocked(z, lambda zb, hb, t: _logit_l2_ce_block(zb, t.unsqueeze(1), hb, coef, gamma), target)


def _soft_ce_block(z, q, h):
    """``-sum_k q_k log p_k`` per row; gradient ``p sum_k q_k - q``.

    ``log p_k = (z_k - max z) - log S`` with ``log S = -log p_max``: both parts are <= 0, so for
    ``q >= 0`` the loss is a sum of non-negative terms (no cancellation) and one softmax is the only
    transcendental pass.
    """
    p = torch.softmax(z, dim=1)
    zmax, log_s = log_normaliser(z, p)
    mass = q.sum(dim=1, keepdim=True)
    below_max = torch.sub(z, zmax).mul_(q).sum(dim=1, keepdim=True)
    if h is not None:
        torch.mul(p, mass, out=h).sub_(q)
    return (mass * log_s - below_max).squeeze(1)


def soft_ce(z: torch.Tensor, q: torch.Tensor, build=None) -> torch.Tensor:
    """Cross-entropy against probability (or weighted probability) targets, per row, one node.

    ``q`` is the ``[N, C]`` target, or, with ``build``, per-row data ``[N, ...]`` that ``build(q_block)``
    turns into the target's rows: a target computed from per-row data (HL-Gauss's histogram) is then
    built block by block while the block's logits are in cache, and never held whole.
    """
    if build is None:
        return blocked(z, lambda zb, hb, qb: _soft_ce_block(zb, qb, hb), q)
    return blocked(z, lambda zb, hb, qb: _soft_ce_block(zb, build(qb), hb), q)


def _sparse_soft_ce_block(z, cols, q, h):
    """``_soft_ce_block`` for a target that is zero outside ``cols`` ``[B, K]`` (values ``q`` ``[B, K]``;
    repeated columns allowed, their values add): the target's terms touch only ``K`` entries per row."""
    p = torch.softmax(z, dim=1)
    zmax, log_s = log_normaliser(z, p)
    mass = q.sum(dim=1, keepdim=True)
    below_max = z.gather(1, cols).sub_(zmax).mul_(q).sum(dim=1, keepdim=True)
    if h is not None:
        torch.mul(p, mass, out=h).scatter_add_(1, cols, q.neg())
    return (mass * log_s - below_max).squeeze(1)


def sparse_soft_ce(z: torch.Tensor, build, *row_inputs: torch.Tensor) -> torch.Tensor:
    """``soft_ce`` for targets with few non-zero entries per row: ``build(*row_input_blocks)`` returns
    ``(cols, values)`` ``[B, K]`` for a block's rows. Costs a softmax and two passes whatever ``K``."""
    return blocked(z, lambda zb, hb, *blocks: _sparse_soft_ce_block(zb, *build(*blocks), hb), *row_inputs)


def ce_block(z, idx, h):
    """Plain cross-entropy as a ``blocked`` kernel: ``-log p_y``, gradient ``p - e_y``."""
    ce = _ce_into(z, idx, h)  # (target_log_prob leaves p as it found it)
    if h is not None:
        h.scatter_add_(1, idx, torch.full_like(ce, -1.0))
    return ce.squeeze(1)
