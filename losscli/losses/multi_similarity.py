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

Each log(1 + sum exp) is ``softplus(logsumexp(.))``: no overflow at beta = 40.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from losscli.losses.base import Loss, Param, Reference, register_loss

_SELF_SIM = 1.0 - 1e-5  # the official value-based self-removal threshold

MS_REFERENCE = Reference(
    "Multi-Similarity Loss with General Pair Weighting for Deep Metric Learning",
    "Wang, Han, Huang, Dong & Scott", 2019, "CVPR", "https://github.com/msight-tech/research-ms-loss",
)


def cosine_similarities(x: torch.Tensor) -> torch.Tensor:
    e = F.normalize(x, dim=1, eps=1e-12)
    return e @ e.t()


def _softplus_lse(values: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``log(1 + sum_{j in mask_i} exp(values_ij))`` for the rows in ``rows`` (each has a masked entry), 0 elsewhere.

    Rows outside ``rows`` are replaced by zeros before the logsumexp, so no all -inf row reaches it
    (its gradient would be NaN even when the row is discarded afterwards).
    """
    arg = torch.where(mask, values, torch.full_like(values, float("-inf")))
    arg = torch.where(rows.unsqueeze(1), arg, torch.zeros_like(arg))
    return torch.where(rows, F.softplus(torch.logsumexp(arg, dim=1)), torch.zeros_like(arg[:, 0]))


def multi_similarity_per_anchor(x, labels, valid, alpha, beta, lam, epsilon) -> torch.Tensor:
    """``[B]`` anchor losses ``l_i`` (0 for anchors with no mined pair and for rows not in ``valid``)."""
    sim = cosine_similarities(x)
    with torch.no_grad():  # pair selection only
        same = labels.unsqueeze(1) == labels.unsqueeze(0)
        partner = valid.unsqueeze(0) & valid.unsqueeze(1)
        pos = same & (sim < _SELF_SIM) & partner
        neg = ~same & partner
        inf = torch.tensor(float("inf"), dtype=sim.dtype, device=sim.device)
        min_pos = torch.where(pos, sim, inf).amin(dim=1, keepdim=True)
        max_neg = torch.where(neg, sim, -inf).amax(dim=1, keepdim=True)
        neg_mined = neg & (sim + epsilon > min_pos)
        pos_mined = pos & (sim - epsilon < max_neg)
        active = pos_mined.any(dim=1) & neg_mined.any(dim=1)
    pos_term = _softplus_lse(-alpha * (sim - lam), pos_mined, active) / alpha
    neg_term = _softplus_lse(beta * (sim - lam), neg_mined, active) / beta
    return pos_term + neg_term


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
        valid = self._valid if self._valid is not None else torch.ones_like(target, dtype=torch.bool)
        return multi_similarity_per_anchor(logits, target, valid, self.alpha, self.beta, self.lam, self.epsilon)
