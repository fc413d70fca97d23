"""OKO: odd-k-out set learning (Muttenthaler et al., ICLR 2024; LOSSES-2.md §3).

Training examples are sets of k+2 members: two of a "pair" class and one of each of k other
("odd") classes. The model's ordinary head scores each member; the member logits are SUMMED,
``Z = sum_m z_m``, and the set is classified as its pair class:

* hard targets (all the paper's experiments): ``l = -log softmax(Z)[c_pair]``;
* soft targets: ``l = -sum_c t_c log softmax(Z)_c`` with ``t = (2 e_pair + sum_odd e_odd) / (k+2)``,
  the members' label histogram.

``sample_sets`` draws the sets as the official ``DataLoader`` does, from the whole training set.
At inference the same head scores single examples (``prediction_logits`` is the identity).
"""

from __future__ import annotations

import torch

from losscli.losses.base import Loss, LossInputError, Param, Reference, register_loss
from losscli.losses.fused.row_linear import sparse_soft_ce
from losscli.losses.fused.softmax_core import log_softmax_y
from losscli.losses.fused.transforms import can_inspect_values


def pair_class(members: torch.Tensor) -> torch.Tensor:
    """``[B]`` the label that appears twice in each set of member labels ``[B, m]``.

    A valid set has exactly one pair of equal labels among its ``m (m - 1) / 2`` member pairs (one
    label twice, the others once): checked with an ``[B, m, m]`` comparison (on CPU, where it does
    not synchronise a device), not a ``[B, C]`` label histogram.
    """
    same = members.unsqueeze(2) == members.unsqueeze(1)
    upper = torch.ones(same.shape[1:], dtype=torch.bool, device=members.device).triu_(1)
    pairs = same & upper  # each unordered pair of members once
    if can_inspect_values(members) and members.numel() and not bool((pairs.sum(dim=(1, 2)) == 1).all()):
        raise LossInputError("oko: every set needs exactly one label twice (the pair class) and the others once")
    first = pairs.any(dim=2).to(torch.uint8).argmax(dim=1, keepdim=True)  # the pair's first member
    return members.gather(1, first).squeeze(1)


@register_loss(
    "oko",
    aliases=("odd_k_out",),
    family="calibration",
    reference=Reference(
        "Set Learning for Accurate and Calibrated Models",
        "Muttenthaler, Vandermeulen, Zhang, Unterthiner & Müller", 2024, "ICLR", "https://github.com/LukasMut/OKO",
    ),
    formula="Z = sum_{m in set} z_m;  hard: l = -log softmax(Z)[c_pair];  "
    "soft: l = -sum_c t_c log softmax(Z)_c, t = (2 e_pair + sum_odd e_odd) / (k + 2)",
    params=(
        Param("k", 1, "number of odd classes per set (every paper experiment: 1; the official CLI allows 0..9); "
              "sets have k + 2 members", kind="int", low=0, high=9),
        Param("targets", "hard", "'hard' (pair class, the paper's experiments) or 'soft' (label histogram; k >= 1)",
              kind="str", choices=("hard", "soft")),
    ),
    convex=True,
    input="sets",
    stackable=False,
    supports_ignore_index=False,
    notes="Takes set logits [B, k+2, C] (the ordinary head applied to every member) and member labels [B, k+2] "
    "(input kind 'sets'); the pair class is the label that appears twice. Per-set values, mean over sets. "
    "Summing (not averaging) the member logits is essential. Soft targets use CE against the label histogram; "
    "the official code's generalised KL is this CE minus the (constant) target entropy, same gradient. "
    "sample_sets(labels, generator, num_sets=None) -> [num_sets, k+2] training-set indices, drawn as the official "
    "DataLoader does: k+1 distinct classes uniformly (pair class uniform over classes), 2 distinct members of the "
    "pair class and 1 of each odd class (uniform within class, without replacement), member order permuted; "
    "num_sets defaults to N (the paper: one epoch = n_train sets). Classes with a single example cannot be the "
    "pair class (the official sampler would fail on them); they still serve as odd classes. The ViT variant's "
    "second head (odd-class classifier, discarded at test time) is not included. Not stackable: its batches are "
    "sets, not rows of the training set.",
)
class OKO(Loss):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.targets == "soft" and self.k < 1:
            from losscli.errors import UsageError

            raise UsageError("oko: soft targets need k >= 1 (with k = 0 a set is a pair of one class)")

    # -- the loss on set logits ---------------------------------------------------------
    def per_sample(self, logits, target, **context):
        b, m, c = logits.shape
        if m != self.k + 2:
            raise LossInputError(f"oko: sets must have k + 2 = {self.k + 2} members, got {m}")
        pair = pair_class(target)  # validated on CPU; member labels only, no [B, C] histogram
        z = logits.sum(dim=1)  # summed member logits
        if self.targets == "hard":
            return -log_softmax_y(z, pair)
        # CE against the label histogram counts / m: a sparse target on the members' own labels
        # (the pair class's two entries add)
        weights = torch.full(target.shape, 1.0 / m, dtype=z.dtype, device=z.device)
        return sparse_soft_ce(z, lambda tb, wb: (tb, wb), target, weights)

    # -- the official set sampler ---------------------------------------------------------
    def sample_sets(self, labels: torch.Tensor, generator: torch.Generator | None = None,
                    num_sets: int | None = None) -> torch.Tensor:
        """``[num_sets, k+2]`` indices into the training set (``labels`` [N]), one OKO set per row."""
        if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.is_floating_point():
            raise LossInputError("oko: sample_sets takes the training labels as an integer tensor [N]")
        labels = labels.long().cpu()
        num_sets = labels.shape[0] if num_sets is None else int(num_sets)
        if num_sets < 0:
            raise LossInputError(f"oko: num_sets must be >= 0, got {num_sets}")
        classes, counts = torch.unique(labels, return_counts=True)
        k = self.k
        pairable = counts >= 2
        if classes.numel() < k + 1 or not bool(pairable.any()):
            raise LossInputError(f"oko: sets need k + 1 = {k + 1} classes present and one with >= 2 examples; "
                                 f"the labels have {classes.numel()} classes, {int(pairable.sum())} with >= 2")
        order = torch.argsort(labels, stable=True)  # examples grouped by class
        starts = torch.cumsum(counts, 0) - counts
        g = generator
        n_cls = classes.numel()
        # pair class: uniform over the classes that have two examples
        pair_pos = torch.nonzero(pairable).squeeze(1)
        pair = pair_pos[torch.randint(0, pair_pos.numel(), (num_sets,), generator=g)]
        # odd classes: a uniform k-subset of the other classes (the k smallest of i.i.d. uniform keys)
        keys = torch.rand(num_sets, n_cls, generator=g)
        keys[torch.arange(num_sets), pair] = 2.0  # never picked
        odd = torch.topk(keys, k, dim=1, largest=False).indices if k else torch.empty(num_sets, 0, dtype=torch.long)
        # members: two distinct uniform examples of the pair class, one uniform example of each odd class
        n_pair = counts[pair]
        first = (torch.rand(num_sets, generator=g) * n_pair).long().clamp_max(n_pair - 1)
        second = (torch.rand(num_sets, generator=g) * (n_pair - 1)).long().clamp_max(n_pair - 2)
        second = second + (second >= first).long()  # uniform over the other n_pair - 1 examples
        n_odd = counts[odd]
        odd_pick = (torch.rand(num_sets, k, generator=g) * n_odd).long().clamp_max(n_odd - 1)
        pos = torch.cat([(starts[pair] + first).unsqueeze(1), (starts[pair] + second).unsqueeze(1),
                         starts[odd] + odd_pick], dim=1)
        members = order[pos]
        shuffle = torch.argsort(torch.rand(num_sets, k + 2, generator=g), dim=1)  # random member order
        return members.gather(1, shuffle)
