"""Multi-Similarity loss with pair mining (Wang et al., CVPR 2019; LOSSES-2.md §12).

Input: embeddings ``[B, D]`` (the model's features), L2-normalised here, and labels ``[B]``.
Per anchor i, on cosine similarities ``S = e e^T`` (official ``MultiSimilarityLoss``):

* positives ``P_i = {S_ij : y_j = y_i, S_ij < 1 - 1e-5}`` (self removed by value), negatives
  ``N_i = {S_ij : y_j != y_i}``;
* mining: ``N_i' = {S in N_i : S + eps > min P_i}``, ``P_i' = {S in P_i : S - eps < max N_i}``;
* ``l_i = (1/alpha) log(1 + sum_{P_i'} e^{-alpha (S - lam)}) + (1/beta) log(1 + sum_{N_i'} e^{beta (S - lam)})``,
  or 0 when either mined set is empty (also when the anchor has no positive at all, where the
  official code raises);
* ``L = sum_i l_i / B`` (skipped anchors count in B).

Computed as one autograd node on ``S`` (:mod:`losscli.losses.fused.gram`): the same-label pairs
(positives) are read into a list and hidden from ``S`` (set to -inf), so that what stays finite
in ``S`` are the negatives; each log(1 + sum exp) is ``softplus(LSE)`` with the LSE shifted by
its set's extreme similarity (the hardest pair is always mined when any is): no overflow at
beta = 40 or beyond, and the gradient comes with the value.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from losscli.losses.base import Loss, Param, Reference, refuse_under_vmap, register_loss
from losscli.losses.fused.gram import GramGradient, block_rows, cosine_gram_loss, same_label_pairs

_SELF_SIM = 1.0 - 1e-5  # the official value-based self-removal threshold

MS_REFERENCE = Reference(
    "Multi-Similarity Loss with General Pair Weighting for Deep Metric Learning",
    "Wang, Han, Huang, Dong & Scott", 2019, "CVPR", "https://github.com/msight-tech/research-ms-loss",
)


class Pairs(NamedTuple):
    """The same-label pairs of a batch, read from ``S`` before ``hide_same_label_pairs`` hid them."""

    rows: torch.Tensor
    cols: torch.Tensor
    sims: torch.Tensor
    max_neg: torch.Tensor  # [N] each row's largest negative similarity (-inf: none)


def hide_same_label_pairs(sim: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> Pairs:
    """Read the same-label pairs of valid rows (``i == j`` included) from ``sim``, then set ``sim`` to
    -inf there and in the columns of rows not in ``valid`` (nobody's partner), in place: the
    finite entries left are the negative pairs."""
    rows, cols = same_label_pairs(labels, valid)
    sims = sim[rows, cols]
    sim[rows, cols] = float("-inf")
    if not bool(valid.all()):
        sim[:, ~valid] = float("-inf")
    return Pairs(rows, cols, sims, sim.amax(dim=1))


def ms_terms(sim, pairs: Pairs, need_grad, alpha, beta, lam, epsilon, scale=1.0):
    """``(l [N], GramGradient | None)``: the anchor losses and ``scale * dl_i/dS`` from ``sim`` as left
    by ``hide_same_label_pairs``. ``sim`` is consumed: the gradient's dense part is written over it.

    For an active anchor, with ``z+ = sum_{P'} e^{-alpha (S - min P)}`` and ``z- = sum_{N'} e^{beta (S - max N)}``
    (the hardest pair of each mined set is its extreme: ``z >= 1``), the log-sum-exps are
    ``L+ = -alpha (min P - lam) + log z+`` and ``L- = beta (max N - lam) + log z-``;
    ``dl/dS_ij = sigmoid(L-) e^{beta (S_ij - max N)} / z-`` on ``N'`` and
    ``-sigmoid(L+) e^{-alpha (S_ij - min P)} / z+`` on ``P'``.
    """
    rows, cols, sims, max_neg = pairs
    n = sim.shape[0]
    keep = sims < _SELF_SIM  # positives: the anchor itself (and exact duplicates) removed by value
    rows, cols, sims = rows[keep], cols[keep], sims[keep]
    min_pos = sim.new_full((n,), float("inf")).scatter_reduce_(0, rows, sims, "amin")
    mined = sims - epsilon < max_neg[rows]  # P' (the official test, same float operations)
    rows, cols, sims = rows[mined], cols[mined], sims[mined]
    pos_w = torch.exp(-alpha * (sims - min_pos[rows]))
    pos_z = sim.new_zeros(n).index_add_(0, rows, pos_w)
    pos_lse = -alpha * (min_pos - lam) + torch.log(pos_z)
    neg_z = _negative_pass(sim, min_pos, max_neg, pos_z > 0, beta, lam, epsilon, scale if need_grad else None)
    neg_lse = beta * (max_neg - lam) + torch.log(neg_z)
    active = (pos_z > 0) & (neg_z > 0)
    zero = sim.new_zeros(())
    loss = torch.where(active, F.softplus(pos_lse) / alpha + F.softplus(neg_lse) / beta, zero)
    if not need_grad:
        return loss, None
    pos_coef = torch.where(active, torch.sigmoid(pos_lse) / pos_z, zero) * scale
    return loss, GramGradient(sim, rows, cols, -pos_coef[rows] * pos_w)


def _negative_pass(sim, min_pos, max_neg, has_pos, beta, lam, epsilon, scale):
    """``z-`` per anchor, overwriting ``sim`` with ``e^{beta (S - max N)}`` on ``N'`` (0 elsewhere), or with
    ``scale * dl_i/dS_ij`` unless ``scale`` is None.

    Row blocks of ``sim`` (cache-sized), a few in-place passes each, the mask as float 0/1 (on CPU,
    ``torch.where`` / ``masked_fill_`` with a bool mask measured 5-10x slower than a multiply).
    """
    n = sim.shape[0]
    step = block_rows(n)
    shift = torch.where(torch.isfinite(max_neg), max_neg, 0.0).unsqueeze(1)  # every finite entry <= its row max
    neg_z = sim.new_empty(n)
    mined = sim.new_empty(min(step, n), n)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        s, m = sim[lo:hi], mined[: hi - lo]
        torch.add(s, epsilon, out=m).gt_(min_pos[lo:hi].unsqueeze(1))  # N': S + eps > min P, as officially
        s.sub_(shift[lo:hi]).mul_(beta).exp_().mul_(m)  # hidden pairs: exp(-inf) = 0
        z = s.sum(dim=1)
        neg_z[lo:hi] = z
        if scale is not None:
            neg_lse = beta * (max_neg[lo:hi] - lam) + torch.log(z)
            active = has_pos[lo:hi] & (z > 0)
            s.mul_((torch.where(active, torch.sigmoid(neg_lse) / z, torch.zeros_like(z)) * scale).unsqueeze(1))
    return neg_z


def multi_similarity_per_anchor(x, labels, valid, alpha, beta, lam, epsilon) -> torch.Tensor:
    """``[B]`` anchor losses ``l_i`` (0 for anchors with no mined pair and for rows not in ``valid``)."""

    def evaluate(sim, need_grad):
        pairs = hide_same_label_pairs(sim, labels, valid)
        return ms_terms(sim, pairs, need_grad, alpha, beta, lam, epsilon)

    return cosine_gram_loss(x, evaluate)


@register_loss(
    "multi_similarity",
    aliases=("ms_loss",),
    family="metric-learning",
    reference=MS_REFERENCE,
    formula="S = e e^T (e = x / ||x||);  l_i = (1/alpha) log(1 + sum_{P_i'} exp(-alpha (S_ij - lam))) "
    "+ (1/beta) log(1 + sum_{N_i'} exp(beta (S_ij - lam))), mined P_i' = {S_ij - eps < max N_i}, "
    "N_i' = {S_ij + eps > min P_i};  L = sum_i l_i / B",
    params=(
        Param("alpha", 2.0, "positive scale (official SCALE_POS 2; the paper 2)", low=0.0, low_open=True),
        Param("beta", 40.0, "negative scale (official SCALE_NEG 40; the paper 50)", low=0.0, low_open=True),
        Param("lam", 0.5, "similarity threshold lambda (official, hard-coded 0.5; the paper 1)", low=-1.0, high=1.0),
        Param("epsilon", 0.1, "mining margin (official, hard-coded 0.1)", low=0.0),
    ),
    convex=False,
    input="embeddings",
    stackable=False,
    notes="Takes embeddings [N, D] (the model's features, input kind 'embeddings'; normalised here) and integer "
    "labels, not logits. Defaults are the official code's (the paper used beta=50, lam=1). reduction='none' "
    "gives the [B] anchor values l_i, mean is their sum / B (anchors without a mined pair count as 0, as in the "
    "code), but each value depends on the rest of the batch. An anchor with no positive pair contributes 0 (the "
    "official code raises there). Positives are removed from the anchor's own row by value (S >= 1 - 1e-5), so "
    "exact duplicates of the anchor are dropped too. Rows with ignore_index are neither anchors nor partners "
    "(mean over the valid rows). Batches need >= 2 samples per class (P x K sampling) for the loss to act.",
)
class MultiSimilarity(Loss):
    _valid: torch.Tensor | None = None

    def forward(self, logits, target, **context):
        # ignored rows must not be pair partners: per_sample only sees them relabelled as class 0
        self._valid = target != self.ignore_index if isinstance(target, torch.Tensor) else None
        try:
            return super().forward(logits, target, **context)
        finally:
            self._valid = None

    def per_sample(self, logits, target, **context):
        refuse_under_vmap("multi_similarity", "its pair lists depend on each batch's labels")
        valid = self._valid if self._valid is not None else torch.ones_like(target, dtype=torch.bool)
        return multi_similarity_per_anchor(logits, target, valid, self.alpha, self.beta, self.lam, self.epsilon)
