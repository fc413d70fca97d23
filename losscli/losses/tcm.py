"""TCM: threshold-consistent margin regulariser (Zhang et al., ICLR 2024; LOSSES-2.md §13).

On cosine similarities of the L2-normalised embeddings, over all ordered pairs i != j:

    L_TCM = lam_pos * mean_{positive pairs with s <= m_pos} (m_pos - s)
          + lam_neg * mean_{negative pairs with s >= m_neg} (s - m_neg)

each mean over the violating pairs only (0 when there are none). Hinge, not squared. The paper
adds it to a base metric-learning loss: ``base='multi_similarity'`` (default) adds the
``multi_similarity`` loss with its default parameters; ``base='none'`` is the regulariser alone.

Both terms, and the base loss, are computed on one ``S`` in one autograd node
(:mod:`losscli.losses.fused.gram`): positive pairs from the same-label pair list, negatives
from ``S`` with those pairs hidden, visiting only row blocks whose largest negative reaches m-.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from losscli.errors import UsageError
from losscli.losses.base import Loss, Param, Reference, refuse_under_vmap, register_loss
from losscli.losses.fused.gram import GramGradient, block_rows, cosine_gram_loss
from losscli.losses.multi_similarity import Pairs, hide_same_label_pairs, ms_terms

_MS_DEFAULTS = dict(alpha=2.0, beta=40.0, lam=0.5, epsilon=0.1)


class TcmGradient(NamedTuple):
    """``dL_TCM/dS``: ``-lam_pos / n+`` on the ``n+`` violating positive pairs (sparse) and ``lam_neg / n-``
    on the ``n-`` violating negative ones, kept as boolean masks of the row blocks that have any."""

    rows: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor
    masks: list  # [(first row, [rows, N] bool)]
    neg_scale: torch.Tensor

    def add_dense(self, dense: torch.Tensor) -> None:
        for lo, mask in self.masks:
            dense[lo:lo + mask.shape[0]].add_(mask * self.neg_scale)


def tcm_terms(sim, pairs: Pairs, need_grad, lam_pos, lam_neg, m_pos, m_neg):
    """``(L_TCM, TcmGradient | None)`` from ``sim`` as left by ``hide_same_label_pairs`` (read only)."""
    violating = (pairs.rows != pairs.cols) & (pairs.sims <= m_pos)  # positive pairs i != j (by index)
    rows, cols, sims = pairs.rows[violating], pairs.cols[violating], pairs.sims[violating]
    pos_count = sim.new_tensor(rows.numel()).clamp_min(1)
    loss = lam_pos * (m_pos - sims).sum() / pos_count
    step = block_rows(sim.shape[0])
    reach = (pairs.max_neg >= m_neg).tolist()  # only row blocks whose largest negative reaches m- are read
    total = sim.new_zeros((), dtype=torch.float64)
    masks = []
    for lo in range(0, sim.shape[0], step):
        if any(reach[lo:lo + step]):
            block = sim[lo:lo + step]
            masks.append((lo, torch.ge(block, m_neg)))  # hidden pairs are -inf
            total += torch.sub(block, m_neg).clamp_min_(0.0).sum(dtype=torch.float64)
    neg_count = sum((m.sum() for _, m in masks), sim.new_zeros((), dtype=torch.int64))
    neg_scale = lam_neg / neg_count.clamp_min(1).to(sim.dtype)
    loss = loss + total.to(sim.dtype) * neg_scale
    if not need_grad:
        return loss, None
    return loss, TcmGradient(rows, cols, (-lam_pos / pos_count).expand(rows.numel()), masks, neg_scale)


def tcm_loss(x, labels, lam_pos, lam_neg, m_pos, m_neg, base_ms: bool) -> torch.Tensor:
    """``L_TCM`` (plus the multi_similarity mean with its defaults when ``base_ms``) of embeddings ``x``."""

    def evaluate(sim, need_grad):
        pairs = hide_same_label_pairs(sim, labels, torch.ones_like(labels, dtype=torch.bool))
        loss, grad = tcm_terms(sim, pairs, need_grad, lam_pos, lam_neg, m_pos, m_neg)  # before sim is consumed
        if base_ms:
            per_anchor, ms_grad = ms_terms(sim, pairs, need_grad, scale=1.0 / sim.shape[0], **_MS_DEFAULTS)
            loss = per_anchor.mean() + loss
        if grad is None:
            return loss, None
        if base_ms:  # the two sparse parts may share a pair: backward accumulates
            dense = ms_grad.dense
            rows, cols = torch.cat([ms_grad.rows, grad.rows]), torch.cat([ms_grad.cols, grad.cols])
            values = torch.cat([ms_grad.values, grad.values])
        else:
            dense = sim.zero_() if grad.masks else None  # sim's values are no longer needed
            rows, cols, values = grad.rows, grad.cols, grad.values
        grad.add_dense(dense)
        return loss, GramGradient(dense, rows, cols, values)

    return cosine_gram_loss(x, evaluate)


@register_loss(
    "tcm",
    aliases=("threshold_consistent_margin",),
    family="metric-learning",
    reference=Reference(
        "Threshold-Consistent Margin Loss for Open-World Deep Metric Learning",
        "Zhang, Xu, Tang, Fang, Wu, Tighe & Xing", 2024, "ICLR", "https://arxiv.org/abs/2307.04047",
    ),
    formula="L = L_base + lam_pos sum_{S+} (m_pos - s) 1[s <= m_pos] / sum_{S+} 1[s <= m_pos] "
    "+ lam_neg sum_{S-} (s - m_neg) 1[s >= m_neg] / sum_{S-} 1[s >= m_neg]  (cosine similarities of pairs i != j)",
    params=(
        Param("lam_pos", 1.0, "weight lambda+ of the positive-pair term", low=0.0),
        Param("lam_neg", 1.0, "weight lambda- of the negative-pair term", low=0.0),
        Param("margin_pos", 0.9, "m+: positive pairs with similarity <= m+ are penalised (m- < m+ <= 1)",
              low=-1.0, high=1.0),
        Param("margin_neg", 0.5, "m-: negative pairs with similarity >= m- are penalised (-1 <= m- < m+)",
              low=-1.0, high=1.0),
        Param("base", "multi_similarity", "base metric-learning loss the regulariser is added to "
              "('multi_similarity' with its defaults) or 'none' (the TCM term alone)", kind="str",
              choices=("multi_similarity", "none")),
    ),
    convex=False,
    batch_coupled=True,
    input="embeddings",
    stackable=False,
    notes="Takes embeddings [N, D] (input kind 'embeddings'; normalised here) and integer labels. Batch-level "
    "(only reduction='mean'): each term averages over the batch's violating pairs only; a term with no violating "
    "pair (e.g. no positive pair at all) is 0. Ordered or unordered pairs give the same value. Rows with "
    "ignore_index are dropped. Margins (medium confidence): no official code was available; m+ = 0.9, m- = 0.5 "
    "and lam+ = lam- = 1 are pytorch-metric-learning's ThresholdConsistentMarginLoss defaults, consistent with "
    "the paper's rule (penalise hard pairs: positives less similar than a high threshold, negatives more similar "
    "than a lower one, with a gap between them so that one operating threshold separates both); the paper's "
    "per-dataset margins were not verified (PML's own test uses 0.9 / 0.4). The paper adds TCM to a base DML "
    "loss (PML requires one): base='multi_similarity' adds the multi_similarity loss (alpha 2, beta 40, lam 0.5, "
    "eps 0.1, mean over anchors); base='none' gives the regulariser alone.",
)
class TCM(Loss):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not self.margin_neg < self.margin_pos:
            raise UsageError(f"tcm: margin_neg must be < margin_pos, got {self.margin_neg!r} >= {self.margin_pos!r}")

    def batch_loss(self, logits, target, **context):
        refuse_under_vmap("tcm", "its pair lists depend on each batch's labels")
        valid = target != self.ignore_index
        if not bool(valid.all()):
            logits, target = logits[valid], target[valid]
        if target.numel() == 0:
            return logits.sum() * 0.0
        return tcm_loss(logits, target, self.lam_pos, self.lam_neg, self.margin_pos, self.margin_neg,
                        base_ms=self.base == "multi_similarity")
