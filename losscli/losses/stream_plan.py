"""The data of a streamed loss: per-row statistics (``RowStats``), a loss's plan (``StreamPlan``),
second-sweep sums (``SumTerm``), and the small term helpers several plans share.

The statistics of each row of ``x = scale * z + offset + shift_y e_y`` (``z`` the linear layer's
output; a per-class ``offset`` for the prior-corrected losses, a margin ``shift`` on the target's
logit for LDAM) are:

- ``lp = log p_y`` and ``om = 1 - p_y``, both exact to rounding (``om`` is summed from the other
  classes, so a confident prediction keeps its tiny loss);
- ``lse = logsumexp_k x_k`` and ``log_s = lse - max_k x_k``;
- ``vsum = sum_k v_k (x_k - max x)`` and ``vtotal = sum_k v_k`` for a per-class vector ``v``
  (ones, or the class weights for weighted label smoothing), when the plan asks for it;
- for a plan with ``sums`` (``SumTerm``: APL's clamped RCE, NGCE, NFL), ``sums[t] = sum_k f_t(log p_k)``
  and ``dsums[t] = sum_k f_t'(log p_k)``, from a second sweep over the vocabulary.

A plan's ``terms`` maps them to the per-row value and to the coefficients of its gradient, which
for every loss here has the form

    d value_i / d x_ik = a_i p_ik + b_i [k == y_i] + c_i v_k  (+ sum_t d_t,i f_t'(log p_ik))

so the backward pass forms each block's gradient from ``p`` (recomputed) and a few numbers per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


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


def separate_sum_term(value: Callable, grad: Callable, skip_target: bool = True) -> SumTerm:
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


def of_log_p_y(value: torch.Tensor, fprime: torch.Tensor) -> Terms:
    """A loss of ``log p_y`` alone: ``d/dx = f'(lp) (e_y - p)``."""
    return value, -fprime, fprime, None


def p_y(s: RowStats) -> torch.Tensor:
    return s.lp.exp()


def nce_terms(s: RowStats, weight: float) -> Terms:
    """``weight * log p_y / sum_k log p_k`` (unclamped NCE). The denominator ``S = vsum - C log_s``
    (``v`` = ones) is a sum of terms <= 0: no cancellation. With ``a = log p_y``,
    ``dS/dx_j = 1 - C p_j``, so ``d(a/S)/dx = p (C a / S^2 - 1/S) + e_y / S - a / S^2``."""
    a, total = s.lp, s.vsum - s.c * s.log_s
    inv = 1.0 / total
    ratio = a * inv
    return weight * ratio, weight * inv * (s.c * ratio - 1.0), weight * inv, -weight * ratio * inv
