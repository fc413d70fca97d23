"""Which losses ``linear_loss`` can stream over the vocabulary, and how: one small function per loss.

A loss streams when its per-row value depends on the row's logits only through statistics that
can be accumulated over blocks of classes (``losscli.losses.linear_stream`` does the
accumulation). The logits a loss sees are ``x = scale * z + offset + shift_y e_y`` (``z`` the
linear layer's output; a per-class ``offset`` for the prior-corrected losses, a margin ``shift``
on the target's logit for LDAM). The statistics of each row (``RowStats``) are:

- ``lp = log p_y`` and ``om = 1 - p_y``, both exact to rounding (``om`` is summed from the other
  classes, so a confident prediction keeps its tiny loss);
- ``lse = logsumexp_k x_k`` and ``log_s = lse - max_k x_k``;
- ``vsum = sum_k v_k (x_k - max x)`` and ``vtotal = sum_k v_k`` for a per-class vector ``v``
  (ones, or the class weights for weighted label smoothing), when the plan asks for it;
- for a plan with ``sums`` (``SumTerm``: APL's clamped RCE, NGCE, NFL), ``sums[t] = sum_k f_t(log p_k)``
  and ``dsums[t] = sum_k f_t'(log p_k)``, from a second sweep over the vocabulary.

Each ``_terms`` function maps them to the per-row value and to the coefficients of its gradient,
which for every loss here has the form

    d value_i / d x_ik = a_i p_ik + b_i [k == y_i] + c_i v_k

so the backward pass can form each block's gradient from ``p`` (recomputed) and three numbers per
row; plans with sum terms add ``d_t,i f_t'(log p_ik)`` (one more number per row and term). A loss of ``log p_y`` alone has ``a = -f'(lp)``, ``b = f'(lp)`` since
``d log p_y / d x = e_y - p``. Values follow each loss module's formulas (clamps included).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch

import math

from losscli.losses.apl import LOG_P_MIN, P_MIN, POW_FLOOR, RCE_A
from losscli.losses.base import LOSSES, Loss, LossInputError


@dataclass
class RowStats:
    """Per-row statistics of a block of rows ([R] tensors; ``vsum``/``vtotal`` only when asked for)."""

    y: torch.Tensor
    c: int  # number of classes
    lp: torch.Tensor
    om: torch.Tensor
    lse: torch.Tensor
    log_s: torch.Tensor
    vsum: torch.Tensor | None = None
    vtotal: torch.Tensor | None = None
    sums: list[torch.Tensor] | None = None  # sum_k f_t(log p_k), one per SumTerm of the plan
    dsums: list[torch.Tensor] | None = None  # sum_k f_t'(log p_k)


#: value, a, b, c (None: that coefficient is 0), and for plans with sum terms a fifth entry: the
#: coefficients d_t of each term's f_t'(log p_k) in the gradient
Terms = tuple


@dataclass(frozen=True)
class SumTerm:
    """``sum_k f(log p_k)`` of a row (without the target's entry when ``skip_target``), accumulated in a
    second sweep over the vocabulary. ``both`` maps a block of ``log p`` to ``(f, df/dlog p)`` and
    ``grad`` to ``df/dlog p`` alone (backward); both return new tensors and leave the argument as is."""

    both: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    grad: Callable[[torch.Tensor], torch.Tensor]
    skip_target: bool = True


def _separate(value: Callable, grad: Callable, skip_target: bool = True) -> SumTerm:
    """A ``SumTerm`` whose value and derivative share no work."""
    return SumTerm(lambda lp: (value(lp), grad(lp)), grad, skip_target)


@dataclass
class StreamPlan:
    """How one built loss streams: the logit transform, the statistics it needs and its terms."""

    terms: Callable[[RowStats], Terms]
    scale: float | None = None
    offset: torch.Tensor | None = None  # [C] added to every row
    shift: torch.Tensor | None = None  # [C]: row i's target logit gets shift[y_i]
    class_vector: torch.Tensor | None = None  # v in c_i v_k and in vsum (None: ones)
    needs_vsum: bool = False
    # the base class's per-class weighting: value and gradient of row i times row_weight[y_i]
    row_weight: torch.Tensor | None = None
    sums: tuple[SumTerm, ...] = ()  # second-sweep sums (see SumTerm)


def unsupported_reason(info) -> str | None:
    """Why a registered loss cannot be used by ``linear_loss`` at all (None if it can)."""
    if info.batch_coupled:
        return "it is batch-coupled (a row's value depends on the other rows)"
    if info.multilabel:
        return "it is a multi-label loss ([N, C] targets would defeat the purpose)"
    if info.input != "logits" or info.target != "class":
        return f"it takes {info.input} with {info.target} targets, not logits of a linear layer with class labels"
    if info.head is not None and info.head != "cosine":
        # a cosine head is a linear layer of L2-normalised rows: the caller normalises hidden and weight
        return f"it needs its own {info.head} head, not a plain linear layer"
    if info.needs:
        return f"it needs forward context ({', '.join(info.needs)})"
    return None


def _of_log_p_y(value: torch.Tensor, fprime: torch.Tensor) -> Terms:
    """A loss of ``log p_y`` alone: ``d/dx = f'(lp) (e_y - p)``."""
    return value, -fprime, fprime, None


def _p_y(s: RowStats) -> torch.Tensor:
    return s.lp.exp()


# --------------------------------------------------------------------------- one function per loss
def _ce(m: Loss) -> StreamPlan:
    return StreamPlan(lambda s: _of_log_p_y(-s.lp, torch.full_like(s.lp, -1.0)))


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
            du = torch.where(s.om >= tiny, -_p_y(s), torch.zeros_like(u))  # d u / d lp
            value = mod * nll
            fprime = gamma * u.pow(gamma - 1.0) * du * nll - mod
        if m.alpha_t is not None:
            alpha_y = m.alpha_t.to(value.dtype)[s.y]
            value, fprime = alpha_y * value, alpha_y * fprime
        return _of_log_p_y(value, fprime)

    return StreamPlan(terms)


def _poly1(m: Loss) -> StreamPlan:
    eps = m.epsilon
    return StreamPlan(lambda s: _of_log_p_y(-s.lp + eps * s.om, -1.0 - eps * _p_y(s)))


def _poly1_focal(m: Loss) -> StreamPlan:
    # (1-p)^g (-lp) + eps (1-p)^(g+1), 1-p clamped at tiny as focal.one_minus_p does
    eps, gamma = m.epsilon, m.gamma

    def terms(s: RowStats) -> Terms:
        tiny = torch.finfo(s.lp.dtype).tiny
        u = s.om.clamp_min(tiny)
        du = torch.where(s.om >= tiny, -_p_y(s), torch.zeros_like(u))
        mod = torch.ones_like(u) if gamma == 0 else u.pow(gamma)
        dmod = torch.zeros_like(u) if gamma == 0 else gamma * u.pow(gamma - 1.0) * du
        value = mod * (-s.lp) + eps * mod * u
        fprime = dmod * (-s.lp) - mod + eps * (dmod * u + mod * du)
        return _of_log_p_y(value, fprime)

    return StreamPlan(terms)


def _gce(m: Loss) -> StreamPlan:
    q = m.q

    def terms(s: RowStats) -> Terms:  # (1 - max(p_y, 1e-7)^q) / q, zero slope below the clamp
        lpc = s.lp.clamp_min(LOG_P_MIN)
        fprime = torch.where(s.lp >= LOG_P_MIN, -torch.exp(q * lpc), torch.zeros_like(lpc))
        return _of_log_p_y(-torch.expm1(q * lpc) / q, fprime)

    return StreamPlan(terms)


def _mae(m: Loss) -> StreamPlan:
    scale = m.scale
    return StreamPlan(lambda s: _of_log_p_y(scale * s.om, -scale * _p_y(s)))


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
        return _of_log_p_y(value, -dldu * _p_y(s))

    return StreamPlan(terms)


def _comp_sum(m: Loss) -> StreamPlan:
    tau = m.tau
    if tau == 1.0:
        return _ce(m)
    # expm1((tau-1) lp) / (1-tau);  d/dlp = -exp((tau-1) lp)
    return StreamPlan(lambda s: _of_log_p_y(torch.expm1((tau - 1.0) * s.lp) / (1.0 - tau),
                                            -torch.exp((tau - 1.0) * s.lp)))


def _nce_terms(s: RowStats, weight: float) -> Terms:
    """``weight * log p_y / sum_k log p_k`` (unclamped NCE). The denominator ``S = vsum - C log_s``
    (``v`` = ones) is a sum of terms <= 0: no cancellation. With ``a = log p_y``,
    ``dS/dx_j = 1 - C p_j``, so ``d(a/S)/dx = p (C a / S^2 - 1/S) + e_y / S - a / S^2``."""
    a, total = s.lp, s.vsum - s.c * s.log_s
    inv = 1.0 / total
    ratio = a * inv
    return weight * ratio, weight * inv * (s.c * ratio - 1.0), weight * inv, -weight * ratio * inv


def _nce(m: Loss) -> StreamPlan:
    return StreamPlan(lambda s: _nce_terms(s, m.scale), needs_vsum=True)


def _nce_mae(m: Loss) -> StreamPlan:
    alpha, beta = m.alpha, m.beta

    def terms(s: RowStats) -> Terms:  # alpha NCE + beta (1 - p_y); d(1 - p_y)/dlp = -p_y
        value, a, b, c = _nce_terms(s, alpha)
        mae, mae_a, mae_b, _ = _of_log_p_y(s.om, -_p_y(s))
        return value + beta * mae, a + beta * mae_a, b + beta * mae_b, c

    return StreamPlan(terms, needs_vsum=True)


# ----------------------------------------------------- APL losses with a second sweep (SumTerm)
@dataclass
class _Part:
    """One weighted part of a mixed loss: ``terms(s, sums, dsums)`` sees only its own sum terms."""

    terms: Callable[[RowStats, list, list], Terms]
    sums: tuple[SumTerm, ...] = ()
    needs_vsum: bool = False


def _plain_part(plan: StreamPlan) -> _Part:
    return _Part(lambda s, sums, dsums: plan.terms(s), needs_vsum=plan.needs_vsum)


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
    clamped = _separate(lambda lp: lp.exp().clamp_min_(P_MIN), lambda lp: torch.threshold(lp.exp(), P_MIN, 0.0))
    return _Part(lambda s, sums, dsums: _through_sums(s, RCE_A * sums[0], torch.zeros_like(s.lp), [RCE_A], dsums),
                 sums=(clamped,))


def _ngce_part(q: float) -> _Part:
    """APL's NGCE ``(1 - max(p_y, p_min)^q) / (C - sum_k max(p_k, p_min)^q)``."""
    powers = _separate(lambda lp: lp.clamp_min(LOG_P_MIN).mul_(q).exp_(),
                       lambda lp: torch.threshold(lp, LOG_P_MIN, -math.inf).mul_(q).exp_().mul_(q), skip_target=False)

    def terms(s, sums, dsums):
        denom = s.c - sums[0]
        lpc = s.lp.clamp_min(LOG_P_MIN)
        num = -torch.expm1(q * lpc)
        dnum = torch.where(s.lp > LOG_P_MIN, -q * torch.exp(q * lpc), torch.zeros_like(lpc))  # d num / d log p_y
        return _through_sums(s, num / denom, dnum / denom, [num / (denom * denom)], dsums)

    return _Part(terms, sums=(powers,))


def _focal_factor(om: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``((1 - p)^gamma, (1 - p)^(gamma - 1))`` as NFL's fused term computes them (the second is None for
    gamma = 1; for non-integer gamma the base is floored and the derivative is 0 below the floor)."""
    if gamma == int(gamma) and 1 <= gamma <= 16:
        dfac = None if gamma == 1 else om.pow(int(gamma) - 1)
        return (om.clone() if dfac is None else dfac * om), dfac
    fac = om.clamp_min(POW_FLOOR).log_().mul_(gamma).exp_()
    return fac, fac / torch.threshold(om, POW_FLOOR, math.inf)


def _focal_terms(lp: torch.Tensor, om: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``f = (1 - p)^gamma log p`` and ``df/dlog p = (1 - p)^gamma - gamma p log p (1 - p)^(gamma - 1)``."""
    fac, dfac = _focal_factor(om, gamma)
    p_lp = lp.exp().mul_(lp)
    return fac * lp, fac - gamma * (p_lp if dfac is None else p_lp.mul_(dfac))


def _nfl_part(gamma: float) -> _Part:
    """NFL ``f_y / sum_k f_k``; the target's ``f_y`` from the exact ``1 - p_y``, the others in the sweep."""
    if gamma == 0:
        return _Part(lambda s, sums, dsums: _nce_terms(s, 1.0), needs_vsum=True)
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
    # a second sweep over the vocabulary for APL's clamped and focal sums
    "rce": _apl(("scale", lambda m: _rce_part())),
    "sce": _apl(("alpha", lambda m: _plain_part(_ce(m))), ("beta", lambda m: _rce_part())),
    "nce_rce": _apl(("alpha", lambda m: _Part(lambda s, sums, dsums: _nce_terms(s, 1.0), needs_vsum=True)),
                    ("beta", lambda m: _rce_part())),
    "ngce": _apl(("scale", lambda m: _ngce_part(m.q))),
    "nfl": _apl(("scale", lambda m: _nfl_part(m.gamma))),
    "nfl_rce": _apl(("alpha", lambda m: _nfl_part(m.gamma)), ("beta", lambda m: _rce_part())),
}

_TWO_SWEEPS = ("rce", "sce", "nce_rce", "ngce", "nfl", "nfl_rce")

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
                 if info.name in _TWO_SWEEPS else "")
        return True, f"streamed over vocabulary blocks (memory independent of the number of classes){extra}"
    return False, f"row chunking: {FALLBACK_REASONS.get(info.name, _DEFAULT_FALLBACK)}"


def check_classes(plan: StreamPlan, module: Loss, c: int) -> None:
    """The per-class vectors of a plan must have one entry per class (as the loss itself checks)."""
    for what, vec in (("class_counts", plan.offset), ("class_counts", plan.shift), ("weight", plan.class_vector),
                      ("weight", plan.row_weight), ("alpha", getattr(module, "alpha_t", None))):
        if vec is not None and vec.numel() != c:
            raise LossInputError(f"{module.info.name}: {what} has {vec.numel()} entries but the classifier has C={c} classes")


