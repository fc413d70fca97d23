"""TCM: threshold-consistent margin regulariser (Zhang et al., ICLR 2024; LOSSES-2.md §13).

On cosine similarities of the L2-normalised embeddings, over all ordered pairs i != j:

    L_TCM = lam_pos * mean_{positive pairs with s <= m_pos} (m_pos - s)
          + lam_neg * mean_{negative pairs with s >= m_neg} (s - m_neg)

each mean over the violating pairs only (0 when there are none). Hinge, not squared. The paper
adds it to a base metric-learning loss: ``base='multi_similarity'`` (default) adds the
``multi_similarity`` loss with its default parameters; ``base='none'`` is the regulariser alone.
"""

from __future__ import annotations

import torch

from losscli.errors import UsageError
from losscli.losses.base import Loss, Param, Reference, register_loss
from losscli.losses.multi_similarity import cosine_similarities, multi_similarity_per_anchor

_MS_DEFAULTS = dict(alpha=2.0, beta=40.0, lam=0.5, epsilon=0.1)


def _violation_mean(values: torch.Tensor, violating: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``violating`` entries, 0 (attached to the graph) when there are none."""
    count = violating.sum()
    total = torch.where(violating, values, torch.zeros_like(values)).sum()
    return total / count.clamp_min(1).to(values.dtype)


def tcm_term(x, labels, lam_pos, lam_neg, m_pos, m_neg) -> torch.Tensor:
    sim = cosine_similarities(x)
    with torch.no_grad():
        same = labels.unsqueeze(1) == labels.unsqueeze(0)
        off_diag = ~torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
        pos, neg = same & off_diag, ~same
        pos_v = pos & (sim <= m_pos)
        neg_v = neg & (sim >= m_neg)
    return lam_pos * _violation_mean(m_pos - sim, pos_v) + lam_neg * _violation_mean(sim - m_neg, neg_v)


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
        valid = target != self.ignore_index
        if not bool(valid.all()):
            logits, target = logits[valid], target[valid]
        if target.numel() == 0:
            return logits.sum() * 0.0
        loss = tcm_term(logits, target, self.lam_pos, self.lam_neg, self.margin_pos, self.margin_neg)
        if self.base == "multi_similarity":
            keep = torch.ones_like(target, dtype=torch.bool)
            loss = loss + multi_similarity_per_anchor(logits, target, keep, **_MS_DEFAULTS).mean()
        return loss
