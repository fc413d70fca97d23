"""PLD: Plackett-Luce distillation (Bassam, Zhu & Bian, NeurIPS 2025; LOSSES-2.md §1).

The teacher-optimal permutation puts the true label first, then the other classes in
descending teacher logit; each position k costs the Plackett-Luce choice loss
``LSE(s[pi_k..pi_C]) - s[pi_k]`` weighted by the teacher probability of the class placed there.

As in the paper's appendix listing, the work is done on the permutation reversed (the label
last): the suffix log-sum-exps become prefix ones, ``log(cumsum(exp(s - max)))``, with the
gradient computed in the same pass (``prefix_choice``), block of rows by block of rows
(``pld_per_sample``). On CPU the permutation comes from a
numpy sort of packed integer keys. Why: ``torch.logcumsumexp`` (forward and backward) and the
stable ``torch.sort`` were about 85% of the loss's time on CPU (N=4096, C=1000: 55x
cross-entropy, now about 9x).
"""

from __future__ import annotations

import numpy as np
import torch

from losscli.losses.base import Loss, LossInputError, Param, Reference, register_loss
from losscli.losses.fused.softmax_core import blocked
from losscli.losses.fused.transforms import can_inspect_values
from losscli.losses.eager import eager_under_compile

# The prefix sums P_k = sum_{j<=k} exp(r_j - max r) are formed directly, so the smallest, exp(r_0 - max r),
# must stay a normal float with margin (and 1 / P_0, which bounds the gradient's reversed sums, finite):
# rows whose spread max r - r_0 is below these bounds are computed in float32 (torch's CPU cumsum
# accumulates in double, so each prefix sum is exact to float32 rounding) or float64; the rare rows
# beyond the float64 bound take logcumsumexp.
_SPREAD_FLOAT32 = 60.0  # exp(-60) ~ 9e-27, exp(60) ~ 1e26
_SPREAD_FLOAT64 = 600.0  # exp(-600) ~ 3e-261
_PACKABLE = (torch.float32, torch.float16, torch.bfloat16)  # exactly representable as float32


def teacher_optimal_order(teacher: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``[N, C]`` class indices: the label first, then the rest by descending teacher logit.

    A stable order: teacher ties keep the lower class index first (``torch.sort`` is not stable by
    default, which would make the order, and the loss, depend on the backend).
    """
    return reversed_teacher_order(teacher, target).flip(1)


def reversed_teacher_order(teacher: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``teacher_optimal_order`` last position first: ascending teacher logit, ties by descending
    class index, the label last."""
    if can_inspect_values(teacher) and teacher.dtype in _PACKABLE and teacher.shape[1] > 1:
        order = _packed_reversed_order(teacher.detach().float().numpy(), target.cpu().numpy())
        return torch.from_numpy(order)
    keyed = teacher.scatter(1, target.unsqueeze(1), float("inf"))
    return torch.sort(keyed, dim=1, descending=True, stable=True).indices.flip(1)


def _packed_reversed_order(teacher: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``reversed_teacher_order`` of a float32 ``[N, C]`` array, from one sort of unique int64 keys.

    Key = (the float's bits mapped to an order-preserving int32) * 2^32 + (C - 1 - class): ascending
    value, ties by descending class, so every key is unique and any sort gives the stable order.
    numpy sorts int64 rows with SIMD quicksort, several times faster than a stable ``torch.sort``.
    """
    n, c = teacher.shape
    if n and (target.min() < 0 or target.max() >= c):  # numpy would wrap negative indices
        raise IndexError(f"pld: target out of range [0, {c})")
    values = teacher + np.float32(0.0)  # a copy, with -0.0 -> +0.0: the two zeros compare equal, so tie
    nan = np.isnan(values)
    if nan.any():  # torch.sort puts every NaN above +inf, whatever its sign bit
        values[nan] = np.float32(np.nan)
    values[np.arange(n), target] = np.float32(np.inf)  # the label last (ties with a +inf teacher by class)
    bits = values.view(np.int32)
    bits ^= (bits >> 31) & np.int32(0x7FFFFFFF)  # negative floats: reverse the order of their magnitudes
    keys = bits.astype(np.int64)
    keys <<= 32
    keys |= np.arange(c - 1, -1, -1, dtype=np.int64)
    keys.sort(axis=1)
    keys &= 0xFFFFFFFF
    return np.subtract(c - 1, keys, out=keys)


def prefix_choice(r: torch.Tensor, w: torch.Tensor, work: torch.dtype,
                  need_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``l = sum_k w_k (LSE(r_0..r_k) - r_k)`` per row ``[N]`` and ``dl/dr`` (or None), computed in ``work``
    dtype, for rows whose spread ``max r - r_0`` is within that dtype's bound (``_SPREAD_FLOAT32`` /
    ``_SPREAD_FLOAT64``). ``w`` (probabilities) is a fixed target.

    With ``P_k = sum_{j<=k} exp(r_j - m)`` (``m`` the row max), ``LSE_k - r_k = log P_k - (r_k - m)``,
    and the gradient is ``dl/dr_j = exp(r_j - m) sum_{k>=j} w_k / P_k - w_j``: a reversed cumulative
    sum (summed from the end, not as a total minus a prefix, which could cancel).
    """
    dtype, r = r.dtype, r.to(work)
    x = r - r.amax(dim=1, keepdim=True)
    p = torch.exp(x)
    prefix = torch.cumsum(p, dim=1)
    w = w.to(work)
    out = torch.log(prefix).sub_(x).mul_(w).sum(dim=1)
    grad = None
    if need_grad:
        ratio = torch.div(w, prefix).flip(1)
        grad = torch.cumsum(ratio, dim=1).flip(1).mul_(p).sub_(w).to(dtype)
    return out.to(dtype), grad


def _reference_choice(r: torch.Tensor, w: torch.Tensor, need_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``prefix_choice`` through ``logcumsumexp`` (any spread), the gradient by autograd: for the rare
    rows spread beyond float64's bound."""
    with torch.enable_grad():
        r = r.detach().requires_grad_(need_grad)
        out = (w * (torch.logcumsumexp(r, dim=1) - r)).sum(dim=1)
        grad = torch.autograd.grad(out.sum(), r)[0] if need_grad else None
    return out.detach(), grad


def choice_losses(r: torch.Tensor, w: torch.Tensor, need_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``prefix_choice`` in float32 where every row's spread allows it, else float64; rows spread beyond
    float64's bound take ``_reference_choice``."""
    if r.shape[1] == 0:
        return r.sum(dim=1), (torch.zeros_like(r) if need_grad else None)
    spread = r.amax(dim=1).float() - r[:, 0].float() if r.dtype != torch.float64 else r.amax(dim=1) - r[:, 0]
    slow = spread > _SPREAD_FLOAT64
    wide = r.dtype == torch.float64 or bool((spread > _SPREAD_FLOAT32).any())
    work = torch.float64 if wide else torch.float32
    if not wide or not bool(slow.any()):
        return prefix_choice(r, w, work, need_grad)
    rows_slow, rows_fast = slow.nonzero().squeeze(1), (~slow).nonzero().squeeze(1)
    out = r.new_empty(r.shape[0])
    grad = torch.empty_like(r) if need_grad else None
    for rows, (v, g) in ((rows_fast, prefix_choice(r[rows_fast], w[rows_fast], work, need_grad)),
                         (rows_slow, _reference_choice(r[rows_slow], w[rows_slow], need_grad))):
        out[rows] = v
        if need_grad:
            grad[rows] = g
    return out, grad


def _pld_block(z: torch.Tensor, h: torch.Tensor | None, teacher: torch.Tensor, target: torch.Tensor,
               temperature: float) -> torch.Tensor:
    """One row block of PLD (``softmax_core.blocked``): the order, the permuted student logits and teacher
    weights and the gradient (scattered back to class order in ``h``) exist for this block only."""
    order = reversed_teacher_order(teacher, target).to(z.device)
    r = z.gather(1, order)
    w = torch.softmax(teacher / temperature, dim=1).gather(1, order)  # tau touches the teacher only
    out, grad = choice_losses(r, w, h is not None)
    if h is not None:
        h.scatter_(1, order, grad)  # a permutation: every entry of the row written once
    return out


@eager_under_compile  # a numpy sort and a data-dependent row split: runs eagerly under torch.compile
def pld_per_sample(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """``[N]`` PLD losses, one autograd node computed block by block (``softmax_core.blocked``). Why: over
    the whole batch, the int64 order (twice the logits' bytes), the permuted logits, weights and their
    temporaries and autograd's gather made the peak memory 2.5x cross-entropy's at N=4096, C=1000."""
    return blocked(student, lambda zb, hb, tb, yb: _pld_block(zb, hb, tb, yb, temperature), teacher, target)


@register_loss(
    "pld",
    aliases=("plackett_luce",),
    family="distillation",
    reference=Reference(
        "PLD: A Choice-Theoretic List-Wise Knowledge Distillation", "Bassam, Zhu & Bian", 2025, "NeurIPS",
        "https://arxiv.org/abs/2506.12542",
    ),
    formula="pi = (y, other classes by descending t);  q = softmax(t / T);  "
    "l = sum_k q[pi_k] (LSE(s[pi_k], ..., s[pi_C]) - s[pi_k])",
    params=(
        Param("temperature", 1.0, "teacher temperature T (ImageNet best 1.0; the paper's CIFAR-100 runs use 4.0); "
              "applied to the teacher only", low=0.0, low_open=True),
    ),
    convex=True,
    needs=("teacher_logits",),
    notes="Reproduces the paper's Appendix C listing (create_adjusted_ranking, plackett_luce_loss): the weight of "
    "position k is the teacher probability of the class placed at k (at k = 1 the label's, not the teacher's "
    "maximum); the k = C term is 0. No CE term and no mixing weight: PLD replaces CE + KD. With q = one-hot(y) it "
    "is CE; with uniform q it is ListMLE / C. The teacher (forward(..., teacher_logits=[N, C])) is a fixed target "
    "(detached); teacher ties are ordered by class index (stable sort). Convex in the student logits "
    "(a non-negative sum of log-sum-exps minus linear terms).",
)
class PLD(Loss):
    def per_sample(self, logits, target, teacher_logits=None, **context):
        if not isinstance(teacher_logits, torch.Tensor) or teacher_logits.shape != logits.shape:
            shape = list(teacher_logits.shape) if isinstance(teacher_logits, torch.Tensor) else type(teacher_logits).__name__
            raise LossInputError(f"pld: teacher_logits must be a tensor shaped like the logits {list(logits.shape)}, got {shape}")
        teacher = teacher_logits.detach().to(device=logits.device, dtype=logits.dtype)
        return pld_per_sample(logits, teacher, target, self.temperature)
