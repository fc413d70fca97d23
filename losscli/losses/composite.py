"""Composite losses: a weighted sum of registered losses, ``ce + 0.5*focal(gamma=3)``.

``l = sum_i w_i l_i``, each part a registered loss with its own parameters. One contract for the
common keyword arguments, the same as every loss's (so a sum behaves like one loss):

* ``reduction``: every part runs with the composite's reduction and the weighted sum is taken
  after it. ``none`` gives ``sum_i w_i l_i(n)`` per sample, ``sum`` its total, ``mean`` the sum of the
  parts' means; since the parts share one denominator (the number of rows, or the sum of the
  per-class ``weight`` of the valid rows), the mean of the sum is the sum of the means.
* ``weight`` and ``ignore_index`` go to every part (so every part must support them).
* ``class_counts`` go to every part (those that need them read them).

Metadata is derived from the parts (:func:`composite_info`): bounded only if every part is (the
bound is the weighted sum of the bounds), symmetric only if all are, batch-level if any is, context
needs are the union, stackable only if all are. Parts may take logits or embeddings: a sum that
mixes them takes the logits as its input and the embeddings as ``forward(..., embeddings=...)``.
Losses that need their own output layer, sets of examples or regression targets cannot be parts
(the others would not see what they expect); :func:`check_parts` says so in one line.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from losscli.errors import UsageError
from losscli.losses.base import Loss, LossInputError
from losscli.losses.meta import CONTEXT_KEYS, LOSSES, LossInfo, Reference

COMPOSITE_FAMILY = "composite"


def check_parts(label: str, infos: Sequence[LossInfo]) -> None:
    """UsageError (one line) when these losses cannot be summed into one composite loss."""
    if len(infos) < 2:
        raise UsageError(f"{label}: a composite loss sums at least two losses")
    for info in infos:
        if info.input == "sets":
            raise UsageError(f"{label}: {info.name} trains on sets of examples, not rows; it cannot be part of a sum")
        if info.target == "regression":
            raise UsageError(f"{label}: {info.name} is a regression loss; a sum combines classification losses")
        if info.head is not None:
            raise UsageError(f"{label}: {info.name} brings its own output layer ({info.head} head), which the other "
                             "parts would receive instead of logits; train it on its own")
    if len({info.multilabel for info in infos}) > 1:
        kinds = ", ".join(f"{i.name} ({'multi-label' if i.multilabel else 'single-label'})" for i in infos)
        raise UsageError(f"{label}: cannot sum multi-label and single-label losses ({kinds})")


def composite_info(label: str, parts: Sequence[tuple[float, LossInfo, dict]]) -> LossInfo:
    """The metadata of ``sum_i w_i l_i`` for ``parts = [(w_i, info_i, params_i)]`` (see the module doc)."""
    infos = [info for _, info, _ in parts]
    check_parts(label, infos)
    kinds = {info.input for info in infos}
    mixed = kinds == {"logits", "embeddings"}
    bounds = [info.upper_bound for info in infos]
    bounded = all(info.bounded for info in infos)
    if bounded and all(b is not None for b in bounds):
        def upper_bound(_params: dict, num_classes: int) -> float:
            return sum(w * info.upper_bound(p, num_classes) for w, info, p in parts)
    else:
        upper_bound = None
    needs = _union(info.needs for info in infos) + (("embeddings",) if mixed else ())
    convex = True if all(info.convex is True for info in infos) else None  # a sum with a non-convex part may still be convex
    years = [info.reference.year for info in infos]
    return LossInfo(
        name=label,
        family=COMPOSITE_FAMILY,
        reference=Reference("Weighted sum of " + ", ".join(info.name for info in infos),
                            "; ".join(info.reference.authors for info in infos), max(years)),
        formula="l = " + " + ".join(f"{w:g} * l_{info.name}" for w, info, _ in parts) + " (each part's formula: "
                "see its own entry)",
        bounded=bounded,
        symmetric=all(info.symmetric for info in infos),
        convex=convex,
        needs_class_counts=any(info.needs_class_counts for info in infos),
        multilabel=all(info.multilabel for info in infos),
        soft_targets=all(info.soft_targets for info in infos),
        supports_weight=all(info.supports_weight for info in infos),
        supports_ignore_index=all(info.supports_ignore_index for info in infos),
        batch_coupled=any(info.batch_coupled for info in infos),
        can_be_negative=any(info.can_be_negative for info in infos),
        needs=needs,
        uses=tuple(k for k in _union(info.uses for info in infos) if k not in needs),
        upper_bound=upper_bound,
        exact_gradient=all(info.exact_gradient for info in infos),
        deterministic=all(info.deterministic for info in infos),
        notes="Weighted sum of registered losses; every part runs with the sum's reduction, per-class weight and "
              "ignore_index (see losscli.losses.composite)." + (" Mixes logits and embedding parts: forward(logits, "
              "target, embeddings=features)." if mixed else ""),
        input="embeddings" if kinds == {"embeddings"} else "logits",
        stackable=all(info.stackable for info in infos) and not mixed,
    )


def _union(groups) -> tuple[str, ...]:
    out: list[str] = []
    for group in groups:
        out += [k for k in group if k not in out]
    return tuple(out)


class CompositeLoss(Loss):
    """``sum_i w_i l_i``; built by ``build_loss("ce + 0.5*focal")`` (or from a composite ``LossSpec``).

    ``parts`` are ``(weight, registered name, hyperparameters)``; ``label`` is the sum's canonical
    spec. Not a registry entry: its :class:`LossInfo` is derived from the parts, per instance.
    """

    def __init__(self, parts: Sequence[tuple[float, str, dict]], label: str, *, reduction: str = "mean",
                 weight: Sequence[float] | torch.Tensor | None = None, ignore_index: int = -100,
                 class_counts: Sequence[float] | torch.Tensor | None = None, **params: Any):
        classes = [LOSSES.get(name) for _, name, _ in parts]
        info = composite_info(label, [(float(w), cls.info, p) for (w, _, p), cls in zip(parts, classes)])
        if params:  # hyperparameters belong to the parts: (ce + focal)(gamma=3) is ambiguous
            raise UsageError(f"{label}: unknown parameter(s) {', '.join(map(repr, sorted(params)))} for the sum; "
                             "give a part's parameters inside it, e.g. focal(gamma=3)")
        object.__setattr__(self, "info", info)  # per instance: shadows the class-level registry metadata
        super().__init__(reduction=reduction, weight=weight, ignore_index=ignore_index, class_counts=class_counts)
        common: dict[str, Any] = {"reduction": reduction, "ignore_index": ignore_index}
        if weight is not None:
            common["weight"] = weight
        if class_counts is not None:
            common["class_counts"] = class_counts
        self.part_weights = tuple(float(w) for w, _, _ in parts)
        self.parts = nn.ModuleList([cls(**common, **dict(p)) for (_, _, p), cls in zip(parts, classes)])

    def forward(self, logits: torch.Tensor, target: torch.Tensor, **context: Any) -> torch.Tensor:
        unknown = set(context) - set(CONTEXT_KEYS)
        if unknown:
            raise LossInputError(f"{self.info.name}: unknown keyword argument(s) {sorted(unknown)}; "
                                 f"forward takes {', '.join(CONTEXT_KEYS)}")
        missing = [k for k in self.info.needs if context.get(k) is None]
        if missing:
            raise LossInputError(f"{self.info.name} needs forward(..., {missing[0]}=...)")
        mixed = "embeddings" in self.info.needs
        total = None
        for w, part in zip(self.part_weights, self.parts):
            # the parts take the reduction of this call (a copy of this loss may have changed it,
            # as the batched trainer does for losses it shares between runs)
            part.reduction = self.reduction
            x = context["embeddings"] if mixed and part.info.input == "embeddings" else logits
            wanted = set(part.info.needs) | set(part.info.uses)
            value = w * part(x, target, **{k: v for k, v in context.items() if k in wanted})
            total = value if total is None else total + value
        return total

    def on_epoch_end(self, epoch: int, val_accuracy: float) -> None:
        for part in self.parts:
            part.on_epoch_end(epoch, val_accuracy)

    @property
    def keeps_epoch_state(self) -> bool:
        return any(part.keeps_epoch_state for part in self.parts)

    def extra_repr(self) -> str:
        return repr(self.info.name) + (f", reduction={self.reduction!r}" if self.reduction != "mean" else "")
