"""Which losses ``linear_loss`` can stream over the vocabulary, and how: one small function per loss.

A loss streams when its per-row value depends on the row's logits only through statistics that
can be accumulated over blocks of classes (``losscli.losses.linear_stream`` does the
accumulation; ``losscli.losses.stream_plan`` defines the statistics and the form of a plan).
Single-sweep plans are here; APL's losses that need a second sweep are in
``losscli.losses.stream_sweeps``. A loss of ``log p_y`` alone has ``a = -f'(lp)``, ``b = f'(lp)``
since ``d log p_y / d x = e_y - p``. Values follow each loss module's formulas (clamps included).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch

from losscli.losses.apl import LOG_P_MIN
from losscli.losses.base import LOSSES, Loss, LossInputError
from losscli.losses.stream_plan import RowStats, StreamPlan, Terms, nce_terms, of_log_p_y, p_y, unsupported_reason
from losscli.losses.stream_sweeps import TWO_SWEEP_PLANS

__all__ = ["PLANS", "RowStats", "StreamPlan", "plan_for", "streaming_support", "check_classes", "unsupported_reason"]


# --------------------------------------------------------------------------- one function per loss
def _ce(m: Loss) -> StreamPlan:
    return StreamPlan(lambda s: of_log_p_y(-s.lp, torch.full_like(s.lp, -1.0)))


def _label_smoothing(m: Loss) -> StreamPlan:
    # (1-eps) w_y (-lp_y) + (eps/C) sum_k w_k (-lp_k)  (torch semantics, w = 1 unweighted), with
    # sum_k w_k (-lp_k) = W log_s - sum_k w_k (x_k - max): both terms >= 0, no cancellation.
    # Its gradient: (1-eps) w_y (p - e_y) + (eps/C) (W p - w).
    eps = m.epsilon

    def terms(s: RowStats) -> Terms:
        wy = 1.0 if m.weight is None else m.weight.to(s.lp.dtype)[s.y]
        smooth = s.vtotal * s.log_s - s.vsum
        value = (1.0 - eps) * wy * (-s.lp) + (eps / s.c) * smooth
        a = (1.0 - eps) * wy + (eps / s.c) * s.vtotal
        return value, a, torch.full_like(value, -(1.0 - eps)) * wy, torch.full_like(value, -eps / s.c)

    return StreamPlan(terms, class_vector=m.weight, needs_vsum=True)


def _logz_penalty(m: Loss) -> StreamPlan | str:
    base = plan_for(m.base_loss)
    if isinstance(base, str):
        return f"its base loss {m.base_loss.info.name!r} does not stream ({base})"
    if base.scale is not None or base.offset is not None or base.shift is not None:
        return f"its base loss {m.base_loss.info.name!r} transforms the logits, and the penalty needs log Z of the raw ones"
    coef = m.coef
    base_terms = base.terms

    def terms(s: RowStats) -> Terms:  # base + coef (log Z)^2; d/dx (log Z)^2 = 2 log Z p
        value, a, b, c, *d = base_terms(s)
        extra = 2.0 * coef * s.lse
        return (value + coef * s.lse * s.lse, extra if a is None else a + extra, b, c, *d)

    return replace(base, terms=terms, row_weight=m.weight)


def _focal(m: Loss) -> StreamPlan:
    gamma = m.gamma

    def terms(s: RowStats) -> Terms:
        tiny = torch.finfo(s.lp.dtype).tiny
        u = s.om.clamp_min(tiny)  # focal.one_minus_p: 1 - p_y, clamped (zero slope below)
        nll = -s.lp
        if gamma == 0:
            value, fprime = nll, torch.full_like(nll, -1.0)
        else:
            mod = u.pow(gamma)
            du = torch.where(s.om >= tiny, -p_y(s), torch.zeros_like(u))  # d u / d lp
            value = mod * nll
            fprime = gamma * u.pow(gamma - 1.0) * du * nll - mod
        if m.alpha_t is not None:
            alpha_y = m.alpha_t.to(value.dtype)[s.y]
            value, fprime = alpha_y * value, alpha_y * fprime
        return of_log_p_y(value, fprime)

    return StreamPlan(terms)


def _poly1(m: Loss) -> StreamPlan:
    eps = m.epsilon
    return StreamPlan(lambda s: of_log_p_y(-s.lp + eps * s.om, -1.0 - eps * p_y(s)))


def _poly1_focal(m: Loss) -> StreamPlan:
    # (1-p)^g (-lp) + eps (1-p)^(g+1), 1-p clamped at tiny as focal.one_minus_p does
    eps, gamma = m.epsilon, m.gamma

    def terms(s: RowStats) -> Terms:
        tiny = torch.finfo(s.lp.dtype).tiny
        u = s.om.clamp_min(tiny)
        du = torch.where(s.om >= tiny, -p_y(s), torch.zeros_like(u))
        mod = torch.ones_like(u) if gamma == 0 else u.pow(gamma)
        dmod = torch.zeros_like(u) if gamma == 0 else gamma * u.pow(gamma - 1.0) * du
        value = mod * (-s.lp) + eps * mod * u
        fprime = dmod * (-s.lp) - mod + eps * (dmod * u + mod * du)
        return of_log_p_y(value, fprime)

    return StreamPlan(terms)


def _gce(m: Loss) -> StreamPlan:
    q = m.q

    def terms(s: RowStats) -> Terms:  # (1 - max(p_y, 1e-7)^q) / q, zero slope below the clamp
        lpc = s.lp.clamp_min(LOG_P_MIN)
        fprime = torch.where(s.lp >= LOG_P_MIN, -torch.exp(q * lpc), torch.zeros_like(lpc))
        return of_log_p_y(-torch.expm1(q * lpc) / q, fprime)

    return StreamPlan(terms)


def _mae(m: Loss) -> StreamPlan:
    scale = m.scale
    return StreamPlan(lambda s: of_log_p_y(scale * s.om, -scale * p_y(s)))


def _taylor_ce(m: Loss) -> StreamPlan:
    order = m.order

    def terms(s: RowStats) -> Terms:  # sum_{k<=t} u^k / k, u = 1 - p_y; dl/du = sum_{k<t} u^k
        u = s.om
        if order == 1:
            value, dldu = u, torch.ones_like(u)
        elif order == 2:
            value, dldu = u + 0.5 * u * u, 1.0 + u
        else:
            k = torch.arange(1, order + 1, device=u.device, dtype=u.dtype)
            powers = u.unsqueeze(-1).pow(k)
            value = (powers / k).sum(dim=-1)
            dldu = 1.0 + powers[:, :-1].sum(dim=-1)
        return of_log_p_y(value, -dldu * p_y(s))

    return StreamPlan(terms)


def _comp_sum(m: Loss) -> StreamPlan:
    tau = m.tau
    if tau == 1.0:
        return _ce(m)
    # expm1((tau-1) lp) / (1-tau);  d/dlp = -exp((tau-1) lp)
    return StreamPlan(lambda s: of_log_p_y(torch.expm1((tau - 1.0) * s.lp) / (1.0 - tau),
                                            -torch.exp((tau - 1.0) * s.lp)))


def _nce(m: Loss) -> StreamPlan:
    return StreamPlan(lambda s: nce_terms(s, m.scale), needs_vsum=True)


def _nce_mae(m: Loss) -> StreamPlan:
    alpha, beta = m.alpha, m.beta

    def terms(s: RowStats) -> Terms:  # alpha NCE + beta (1 - p_y); d(1 - p_y)/dlp = -p_y
        value, a, b, c = nce_terms(s, alpha)
        mae, mae_a, mae_b, _ = of_log_p_y(s.om, -p_y(s))
        return value + beta * mae, a + beta * mae_a, b + beta * mae_b, c

    return StreamPlan(terms, needs_vsum=True)


def _offset_ce(m: Loss) -> StreamPlan:
    return replace(_ce(m), offset=m.offset)  # CE(z + offset_c)


def _ldam(m: Loss) -> StreamPlan:
    # DRW needs forward's `epoch`, which linear_loss never passes: without it ldam is unweighted
    # (as the row-chunked path computes it too)
    return replace(_ce(m), scale=m.s, shift=-m.s * m.margins)  # CE(s z - s m_y e_y)


def _class_balanced(m: Loss) -> StreamPlan | str:
    base = plan_for(m.base_loss)
    if isinstance(base, str):
        return f"its base loss {m.base_loss.info.name!r} does not stream ({base})"
    return replace(base, row_weight=m.weight)


#: canonical loss name -> plan builder (a plan, or a string saying why this instance cannot stream)
PLANS: dict[str, Callable[[Loss], "StreamPlan | str"]] = {
    "ce": _ce, "label_smoothing": _label_smoothing, "logz_penalty": _logz_penalty, "focal": _focal,
    "poly1": _poly1, "poly1_focal": _poly1_focal, "gce": _gce, "mae": _mae, "taylor_ce": _taylor_ce,
    "comp_sum": _comp_sum, "logit_adjusted": _offset_ce, "balanced_softmax": _offset_ce, "ldam": _ldam,
    "class_balanced": _class_balanced, "power_law_weighted": _class_balanced, "nce": _nce, "nce_mae": _nce_mae,
    **TWO_SWEEP_PLANS,  # a second sweep over the vocabulary for APL's clamped and focal sums
}

#: why the other row-wise losses fall back to row chunking
_NONLINEAR_SUM = ("its value needs a sum over classes of a nonlinear function of the logits or of p_k, which no "
                  "streamed sweep implements yet")
FALLBACK_REASONS: dict[str, str] = {
    **{n: _NONLINEAR_SUM for n in ("acls",
                                   "asl_single", "dice", "encouraging", "ldr_kl", "mbls", "squentropy", "square",
                                   "ovr", "dco", "ensloss")},
    "logitnorm": "it normalises the logit vector by its norm (every logit's gradient depends on all of them)",
    "logitclip": "it clips the logit vector by its norm (every logit's gradient depends on all of them)",
    "spherical_z": "it standardises the logits by their mean and variance (not implemented as block statistics)",
    "spectral_decoupling": "it penalises the squared logits of every class (not implemented as block statistics)",
}
_DEFAULT_FALLBACK = "its value is not a function of block-accumulable row statistics (not implemented)"


def plan_for(module: Loss) -> StreamPlan | str:
    """The streaming plan of a built loss, or why it falls back to row chunking."""
    name = module.info.name
    builder = PLANS.get(name)
    if builder is None or LOSSES.get(name) is not type(module):  # a plugin's subclass may change the formula
        return FALLBACK_REASONS.get(name, _DEFAULT_FALLBACK)
    plan = builder(module)
    if isinstance(plan, StreamPlan) and builder is not _label_smoothing and plan.row_weight is None:
        plan.row_weight = module.weight  # the base class's w_y (label smoothing weights every class itself)
    return plan


def streaming_support(name: str) -> tuple[bool, str]:
    """Whether ``linear_loss`` streams loss ``name`` over vocabulary blocks (with its default
    parameters), and how or why not."""
    info = LOSSES.get(name).info
    reason = unsupported_reason(info)
    if reason is not None:
        return False, f"linear_loss does not take it: {reason}"
    if info.name in ("logz_penalty", "class_balanced", "power_law_weighted"):
        return True, "streamed over vocabulary blocks when its base loss streams (the default, ce, does)"
    if info.name in PLANS:
        extra = (" (two sweeps: the second sums a nonlinear function of log p_k once logsumexp is known; "
                 "1.5-1.8x the materialised time on CPU where one sweep is ~1.05x: stream=False chunks rows instead)"
                 if info.name in TWO_SWEEP_PLANS else "")
        return True, f"streamed over vocabulary blocks (memory independent of the number of classes){extra}"
    return False, f"row chunking: {FALLBACK_REASONS.get(info.name, _DEFAULT_FALLBACK)}"


def check_classes(plan: StreamPlan, module: Loss, c: int) -> None:
    """The per-class vectors of a plan must have one entry per class (as the loss itself checks)."""
    for what, vec in (("class_counts", plan.offset), ("class_counts", plan.shift), ("weight", plan.class_vector),
                      ("weight", plan.row_weight), ("alpha", getattr(module, "alpha_t", None))):
        if vec is not None and vec.numel() != c:
            raise LossInputError(f"{module.info.name}: {what} has {vec.numel()} entries but the classifier has C={c} classes")


