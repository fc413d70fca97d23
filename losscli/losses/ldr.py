"""Label-distributionally robust losses: LDR-KL and adaptive ALDR-KL (Zhu, Ying & Yang, ICML 2023).

Maths from the official code (Optimization-AI/ICML2023_LDR, LOSSES.md §10):

* logits are normalised ``z~_k = s_k / ((1/C) sum_j s_j)`` with ``s = softplus(z)``;
* ``d_k = c 1[k != y] + z~_k - z~_y``;
* LDR-KL: ``l = lam * log((1/C) sum_k exp(d_k / lam))`` (the 1/C inside the log: can be < 0).

Both losses run as one row-blocked autograd node (``ldr_kl``: one softplus and one exp pass
per block, the gradient template built in the same pass). Rows whose every softplus would
underflow are shifted first (same normalised logits), so values and gradients stay finite.
"""

from __future__ import annotations

import math

import torch

from losscli.losses.base import Loss, LossInputError, Param, Reference, refuse_under_vmap, register_loss
from losscli.losses.fused.sigmoid_terms import softplus
from losscli.losses.fused.softmax_core import blocked

_LDR_REF = Reference(
    "Label Distributionally Robust Losses for Multi-class Classification: Consistency, Robustness and Adaptivity",
    "Zhu, Ying & Yang", 2023, "ICML", "https://github.com/Optimization-AI/ICML2023_LDR",
)
_MARGIN = Param("margin", 0.1, "margin c added to the non-target classes (official run scripts: 0.1)", low=0.0)
_LAM = Param("lam", 10.0, "KL regularisation strength lambda (official runs: 10)", low=0.0, low_open=True)
_LOG_SOFTPLUS_CUT = -20.0




def _exp_normal_(x: torch.Tensor) -> torch.Tensor:
    """``exp(x)`` in place, flushed to 0 where it is below ``e`` times the smallest normal number
    (denormal arithmetic is slow on some CPUs).

    torch's ``exp`` (MKL on x86) is ~2x faster than ``exp2`` of ``x log2(e)`` (the multiply is a pass
    of its own) but ~200x slower on ``-inf`` or on a result that underflows, so the argument is
    clamped to ``log(tiny) + 1`` (a normal result) and those entries are zeroed after the ``exp``."""
    floor = math.log(torch.finfo(x.dtype).tiny) + 1.0
    # exp(floor) rounds within an ulp of the double value: the 1e-4 margin zeroes every clamped entry
    return torch.threshold_(torch.clamp_min_(x, floor).exp_(), math.exp(floor) * (1.0 + 1e-4), 0.0)


def _softplus_sigmoid(z: torch.Tensor, out: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(softplus(z), scratch)`` (two new tensors) and, when ``out`` is given (the gradient's template),
    ``sigmoid(z)`` written into it; ``z`` is not modified. ``scratch`` is a ``[B, C]`` buffer for the
    caller's next ``[B, C]`` result (its content is garbage)."""
    if out is not None:
        torch.sigmoid(z, out=out)
    return softplus(z), torch.empty_like(z)


def _ldr_block(z, idx, h, margin, lam, prev, alpha):
    """LDR-KL of a block of rows: ``(loss, lam_i)`` and, into ``h``, ``dl/dz`` (see ``ldr_kl``)."""
    b, c = z.shape
    shift = (_LOG_SOFTPLUS_CUT - z.amax(dim=1, keepdim=True)).clamp_min_(0.0)
    # ordinary rows need no shift: on CPU, skip the [B, C] add then (no device sync there)
    zs = z if z.device.type == "cpu" and not bool(shift.any()) else z + shift
    # softplus in one pass and, for the gradient, sigmoid
    # the exps below go into ``scratch`` instead of fresh [B, C] tensors (on a CPU 2-3x the cost of a
    # pass over one in cache)
    s, scratch = _softplus_sigmoid(zs, out=h)  # sigmoid straight into h
    s_sum = s.sum(dim=1, keepdim=True)
    k = c / s_sum  # z~ = k s
    s_y = s.gather(1, idx)
    ref = s.scatter_(1, idx, 0.0).amax(dim=1, keepdim=True)  # max_{j != y} s_j (s >= 0, C >= 2)
    s.scatter_(1, idx, s_y)
    if prev is None:
        lam_i = torch.full((b, 1), lam, dtype=s.dtype, device=s.device)
    else:
        # q = normalise(softmax(z~ / prev) + 1e-5) = u / sum(u), KL(q || 1/C) = sum u log u / U + log(C / U)
        top = torch.maximum(ref, s_y)
        u = _exp_normal_(torch.sub(s, top, out=scratch).mul_(k / prev))
        u.mul_(1.0 / u.sum(dim=1, keepdim=True)).add_(1e-5)
        u_sum = u.sum(dim=1, keepdim=True)
        kl = torch.log(u).mul_(u).sum(dim=1, keepdim=True) / u_sum + torch.log(c / u_sum)
        lam_i = lam - lam * kl / (alpha * math.log(c))
    inv = 1.0 / lam_i
    e = _exp_normal_(torch.sub(s, ref, out=scratch).mul_(k * inv))  # (u, if any, is read no more)
    e.scatter_(1, idx, 0.0)  # the target's entry (it may have overflowed) is d_y = 0, handled in a
    big_e = e.sum(dim=1, keepdim=True)
    a = (margin + k * (ref - s_y)) * inv
    lse = torch.logaddexp(a + torch.log(big_e), torch.zeros_like(a))
    value = lam_i * (lse - math.log(c))
    if h is not None:
        # dl/dz~ = w - e_y (w = softmax(d / lam)), dl/dz = sigmoid(z) (C / S) (G - sum_j G_j s_j / S)
        w = torch.exp(a - lse) * k
        g = e.mul_(w).scatter_(1, idx, -(w * big_e))
        top = _dominant_entries(s, g, h, s_sum, torch.maximum(ref, s_y))
        mean = s.mul_(g).sum(dim=1, keepdim=True).mul_(k / c)  # sum_j g_j s_j / S (s is not needed after)
        h.mul_(g.sub_(mean))  # h holds sigmoid(z)
        if top is not None:
            rows, m, value_m = top
            h.index_put_((rows, m.squeeze(1)), value_m.squeeze(1))
    return value.squeeze(1), lam_i.squeeze(1)


def _dominant_entries(s, g, sig, s_sum, top):
    """``(rows, column, exact dl/dz)`` of the rows where one softplus holds more than 7/8 of the row's sum.

    There ``g_m - sum_j g_j s_j / S`` at the dominant entry ``m`` is the difference of two nearly equal
    numbers (their relative gap is ``(S - s_m) / S``): a float32 row like ``linspace(-110, 0)`` lost 1.5%
    of that gradient entry. It equals ``sum_j s_j (g_m - g_j) / S`` (the ``j = m`` term is 0), computed
    here from the differences, on those rows only. ``sig`` holds ``sigmoid(z)``; None when no row dominates.
    """
    if s.device.type == "cpu":
        dominant = (s_sum - top) < s_sum * 0.125  # (the subtraction only decides which rows)
        if not bool(dominant.any()):
            return None
        rows = dominant.squeeze(1).nonzero().squeeze(1)
    else:  # no host sync to choose rows: every row (the identity holds for any row and its largest entry)
        rows = torch.arange(s.shape[0], device=s.device)
    s_r, g_r = s[rows], g[rows]
    m = torch.eq(s_r, top[rows]).to(s.dtype).argmax(dim=1, keepdim=True)  # the one entry above S / 2
    diff = torch.sub(g_r.gather(1, m), g_r).mul_(s_r).sum(dim=1, keepdim=True)
    return rows, m, sig[rows].gather(1, m) * diff / s_sum[rows]


def ldr_kl(logits, target, margin, lam, adapt=None):
    """``(loss [N], lam_i [N])``: LDR-KL with ``lam``, or ALDR-KL's adaptive ``lam_i`` when ``adapt = (prev, alpha)``.

    One autograd node, row-blocked (``losscli.losses.fused.softmax_core.blocked``): per block one
    softplus and one exp (ALDR-KL: one more exp and its KL's log) and, for the gradient template,
    one sigmoid. With ``s = softplus(z)``, ``S = sum_k s_k`` and ``z~ = (C / S) s``, the sum over
    ``k != y`` is taken relative to ``r = max_{k != y} z~_k``: ``e_k = exp((z~_k - r) / lam)``,
    ``E = sum_{k != y} e_k >= 1`` and ``log sum_k exp(d_k / lam) = log(1 + exp(A) E)``,
    ``A = (c + r - z~_y) / lam`` (``d_y = 0``), so nothing overflows and nothing cancels. Gradient,
    with ``w = softmax(d / lam)``: ``dl/dz~ = w - e_y`` (``w_k = exp(A - lse) e_k`` off the target,
    ``w_y - 1 = -exp(A - lse) E``) and ``dl/dz_k = sigmoid(z_k) (C / S) (g_k - sum_j g_j s_j / S)``.

    Rows whose largest logit is below the cut are shifted up to it first: below the cut softplus
    is ``exp`` to < 1e-9 (LOSSES.md: ``log softplus(z) = z`` there, the normalisation being
    ``C softmax(log softplus(z))``), so the shift changes nothing but keeps softplus from
    underflowing. ALDR-KL's per-row ``lam_i`` (detached) is computed from ``softmax(z~ / prev)``.
    """
    prev, alpha = adapt if adapt is not None else (None, None)

    def kernel(zb, hb, tb, pb):
        return _ldr_block(zb, tb.unsqueeze(1), hb, margin, lam, None if pb is None else pb.unsqueeze(1), alpha)

    return blocked(logits, kernel, target, prev, n_outputs=2)


@register_loss(
    "ldr_kl",
    family="noise-robust",
    reference=_LDR_REF,
    formula="l = lam * log((1/C) sum_k exp(d_k / lam)), d_k = c 1[k!=y] + z~_k - z~_y, "
    "z~ = softplus(z) / mean_k softplus(z_k)",
    params=(_MARGIN, _LAM),
    bounded=True,
    convex=False,
    can_be_negative=True,
    supports_weight=True,
    # z~ >= 0 and sum_k z~_k = C, so every d_k <= c + C and l <= max_k d_k
    upper_bound=lambda params, c: params["margin"] + c,
    notes="LDRLoss_V1 of the official code with its run-script defaults (margin 0.1, lambda 10; the class "
    "defaults are threshold=2, Lambda=1). The 1/C inside the log makes the loss negative for confident "
    "correct predictions (lower bound -lam log C + mean_k d_k).",
)
class LDRKL(Loss):
    def per_sample(self, logits, target, **context):
        return ldr_kl(logits, target, self.margin, self.lam)[0]


@register_loss(
    "aldr_kl",
    family="noise-robust",
    reference=_LDR_REF,
    formula="l_i = lam_i * log((1/C) sum_k exp(d_k / lam_i)) - (alpha log C / (2 lam)) (lam_i - lam)^2, "
    "lam_i = sg(lam - lam * KL(softmax(z~/lam_i_prev) || uniform) / (alpha log C))",
    params=(
        _MARGIN,
        _LAM,
        Param("alpha", 2.0, "adaptivity: lam_i ranges over [lam (1 - 1/alpha), lam]", low=1.0, low_open=True),
    ),
    bounded=True,
    convex=False,
    can_be_negative=True,
    supports_weight=True,
    needs=("index",),
    upper_bound=lambda params, c: params["margin"] + c,
    notes="Per-sample state lam_i keyed by the sample ids passed as forward(..., index=ids): a buffer that "
    "grows to the largest id seen; a sample's first visit uses lam_prev = lam. lam_i is detached (as in "
    "ALDRLoss_V1) and written back only in training mode (module.train()); in eval mode the state is read, "
    "not changed. losscli always applies the softplus normalisation of ldr_kl (the official code applies it "
    "only for CIFAR-100 and otherwise divides raw logits by their mean absolute value). "
    "Gradient: lam_i is a stop-gradient (as in the method), so autograd's gradient omits d lam_i/dz; "
    "the omitted part is tiny (~1e-6 of a ~0.1 gradient at the defaults) because lam_i nearly maximises "
    "the objective in lam.",
)
class ALDRKL(Loss):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # NaN = never visited; grows on demand, follows .to(device); float64 so that a stored
        # lambda is exactly the one used (one number per training sample). Persistent: the
        # state is part of a training checkpoint (model.pt), so a reloaded run resumes it.
        self.register_buffer("lam_state", torch.empty(0, dtype=torch.float64))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "lam_state")
        if saved is not None:  # the state's size is the number of sample ids seen: adopt the saved one
            self.lam_state = torch.empty_like(saved, dtype=self.lam_state.dtype, device=self.lam_state.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def reset_state(self) -> None:
        self.lam_state = torch.empty(0, dtype=self.lam_state.dtype, device=self.lam_state.device)

    def _state_for(self, index: torch.Tensor, n: int) -> torch.Tensor:
        refuse_under_vmap("aldr_kl", "it keeps per-sample state (indexed by index=) that each call reads and updates")
        if not isinstance(index, torch.Tensor):
            index = torch.as_tensor(index)
        if index.dim() != 1 or index.shape[0] != n:
            raise LossInputError(f"aldr_kl: index must be [N] sample ids matching the logits' N={n}")
        if index.is_floating_point() or index.dtype == torch.bool:
            raise LossInputError(f"aldr_kl: index must hold integer sample ids, got {index.dtype}")
        index = index.to(self.lam_state.device).long()
        if n == 0:
            return index
        lo, hi = int(index.min()), int(index.max())
        if lo < 0:
            raise LossInputError(f"aldr_kl: sample ids must be non-negative, got {lo}")
        if hi >= self.lam_state.numel():
            grown = torch.full((max(hi + 1, 2 * self.lam_state.numel()),), float("nan"),
                               dtype=self.lam_state.dtype, device=self.lam_state.device)
            grown[: self.lam_state.numel()] = self.lam_state
            self.lam_state = grown
        return index

    def per_sample(self, logits, target, index=None, **context):
        n, c = logits.shape
        idx = self._state_for(index, n)
        with torch.no_grad():
            prev = self.lam_state[idx].to(device=logits.device, dtype=logits.dtype)
            prev = torch.where(torch.isnan(prev), torch.full_like(prev, self.lam), prev)
        value, lam_i = ldr_kl(logits, target, self.margin, self.lam, (prev, self.alpha))
        if self.training:
            self.lam_state[idx] = lam_i.to(self.lam_state.dtype).to(self.lam_state.device)
        penalty = (self.alpha * math.log(c) / (2.0 * self.lam)) * (lam_i - self.lam) ** 2
        return value - penalty
