"""Streaming plans for APL's losses whose value needs ``sum_k f(log p_k)`` for a nonlinear ``f`` (RCE's
clamp at 1e-7, NGCE's powers, NFL's focal terms): a second sweep over the vocabulary, once logsumexp
is known, accumulates the sums and the sums of ``f'`` (``SumTerm``), and backward adds ``d f'(log p)``
to each recomputed block (``losscli.losses.linear_stream``). Mixed losses (sce, nce_rce, nfl_rce)
are weighted sums of parts, each part seeing only its own sums.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from losscli.losses.apl import LOG_P_MIN, P_MIN, RCE_A
from losscli.losses.base import Loss
from losscli.losses.fused.powers import POW_FLOOR, focal_factor
from losscli.losses.stream_plan import RowStats, StreamPlan, SumTerm, Terms, nce_terms, of_log_p_y, separate_sum_term


@dataclass
class _Part:
    """One weighted part of a mixed loss: ``terms(s, sums, dsums)`` sees only its own sum terms."""

    terms: Callable[[RowStats, list, list], Terms]
    sums: tuple[SumTerm, ...] = ()
    needs_vsum: bool = False


def _through_sums(s: RowStats, value, lam, kappas, dsums) -> Terms:
    """Terms of a loss of ``log p_y`` (direct slope ``lam``) and of sums ``F_t = sum_k f_t(log p_k)``
    (slopes ``kappas``): with ``G_k = sum_t kappa_t f_t'(log p_k) + lam [k = y]`` the gradient is
    ``G - p sum_k G_k``, i.e. ``a = -(lam + sum_t kappa_t dsums_t)``, ``b = lam``, ``d = kappas``."""
    total = lam + sum(k * ds for k, ds in zip(kappas, dsums))
    return value, -total, lam, None, list(kappas)


def _mix(*parts: tuple[float, _Part]) -> StreamPlan:
    """``sum_j w_j part_j``: values and gradient coefficients add, sum terms are concatenated."""
    sums = tuple(t for _, part in parts for t in part.sums)

    def terms(s: RowStats) -> Terms:
        value = a = b = c = None
        d: list = []
        i = 0
        for w, part in parts:
            k = len(part.sums)
            pv, pa, pb, pc, *pd = part.terms(s, (s.sums or [])[i:i + k], (s.dsums or [])[i:i + k])
            i += k
            value, a, b, c = (_add(acc, w, x) for acc, x in ((value, pv), (a, pa), (b, pb), (c, pc)))
            d.extend(w * x for x in (pd[0] if pd else ()))
        return value, a, b, c, d

    return StreamPlan(terms, needs_vsum=any(part.needs_vsum for _, part in parts), sums=sums)


def _add(acc, w, x):
    if x is None:
        return acc
    return w * x if acc is None else acc + w * x


def _rce_part() -> _Part:
    """APL's RCE ``A sum_{k != y} max(p_k, 1e-7)``; ``d max(p, p_min) / d log p = p 1[p > p_min]``."""
    clamped = separate_sum_term(lambda lp: lp.exp().clamp_min_(P_MIN), lambda lp: torch.threshold(lp.exp(), P_MIN, 0.0))
    return _Part(lambda s, sums, dsums: _through_sums(s, RCE_A * sums[0], torch.zeros_like(s.lp), [RCE_A], dsums),
                 sums=(clamped,))


def _ngce_part(q: float) -> _Part:
    """APL's NGCE ``(1 - max(p_y, p_min)^q) / (C - sum_k max(p_k, p_min)^q)``."""
    powers = separate_sum_term(lambda lp: lp.clamp_min(LOG_P_MIN).mul_(q).exp_(),
                       lambda lp: torch.threshold(lp, LOG_P_MIN, -math.inf).mul_(q).exp_().mul_(q), skip_target=False)

    def terms(s, sums, dsums):
        denom = s.c - sums[0]
        lpc = s.lp.clamp_min(LOG_P_MIN)
        num = -torch.expm1(q * lpc)
        dnum = torch.where(s.lp > LOG_P_MIN, -q * torch.exp(q * lpc), torch.zeros_like(lpc))  # d num / d log p_y
        return _through_sums(s, num / denom, dnum / denom, [num / (denom * denom)], dsums)

    return _Part(terms, sums=(powers,))


def _focal_terms(lp: torch.Tensor, om: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``f = (1 - p)^gamma log p`` and ``df/dlog p = (1 - p)^gamma - gamma p log p (1 - p)^(gamma - 1)``."""
    fac, dfac = focal_factor(om, gamma, POW_FLOOR)
    p_lp = lp.exp().mul_(lp)
    return fac * lp, fac - gamma * (p_lp if dfac is None else p_lp.mul_(dfac))


def _nfl_part(gamma: float) -> _Part:
    """NFL ``f_y / sum_k f_k``; the target's ``f_y`` from the exact ``1 - p_y``, the others in the sweep."""
    if gamma == 0:
        return _Part(lambda s, sums, dsums: nce_terms(s, 1.0), needs_vsum=True)
    others = SumTerm(lambda lp: _focal_terms(lp, -torch.expm1(lp), gamma),
                     lambda lp: _focal_terms(lp, -torch.expm1(lp), gamma)[1])

    def terms(s, sums, dsums):
        f_y, df_y = _focal_terms(s.lp, s.om, gamma)
        total = f_y + sums[0]
        kappa = -f_y / (total * total)  # d(f_y / F) / dF, through every other class's f_k
        lam = df_y * sums[0] / (total * total)  # d(f_y / F) / dlog p_y, F including f_y
        return _through_sums(s, f_y / total, lam, [kappa], dsums)

    return _Part(terms, sums=(others,))


def _apl(*parts) -> Callable[[Loss], StreamPlan]:
    """A plan builder from ``(weight attribute or None, part builder)`` pairs."""
    def build(m: Loss) -> StreamPlan:
        return _mix(*((1.0 if attr is None else float(getattr(m, attr)), make(m)) for attr, make in parts))
    return build


def _ce_part() -> _Part:
    return _Part(lambda s, sums, dsums: of_log_p_y(-s.lp, torch.full_like(s.lp, -1.0)))


def _nce_part() -> _Part:
    return _Part(lambda s, sums, dsums: nce_terms(s, 1.0), needs_vsum=True)


#: canonical loss name -> plan builder
TWO_SWEEP_PLANS: dict[str, Callable[[Loss], StreamPlan]] = {
    "rce": _apl(("scale", lambda m: _rce_part())),
    "sce": _apl(("alpha", lambda m: _ce_part()), ("beta", lambda m: _rce_part())),
    "nce_rce": _apl(("alpha", lambda m: _nce_part()), ("beta", lambda m: _rce_part())),
    "ngce": _apl(("scale", lambda m: _ngce_part(m.q))),
    "nfl": _apl(("scale", lambda m: _nfl_part(m.gamma))),
    "nfl_rce": _apl(("alpha", lambda m: _nfl_part(m.gamma)), ("beta", lambda m: _rce_part())),
}
