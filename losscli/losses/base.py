"""The loss base class.

Every loss is one small class: it declares its metadata with ``@register_loss`` (see
:mod:`losscli.losses.meta`) and implements ``per_sample(logits, target, **context) -> [N]``.
The base class does what every loss needs and nobody should write twice: input validation,
the float32 upcast of low-precision logits, ``ignore_index`` masking, per-class ``weight`` and
the reduction with torch's semantics (weighted mean = sum_i w_{y_i} l_i / sum_i w_{y_i}).
Batch-coupled losses (a batch-level metric such as Jaccard) implement ``batch_loss``.
Losses whose inputs are not ``[N, C]`` logits with class targets declare ``LossInfo.input`` /
``LossInfo.target`` (embeddings, sets of members, regression values); ``_check_inputs``
validates each kind, and the rest of the path (reduction, ignore_index) is shared.
"""

from __future__ import annotations

import operator
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from losscli.errors import UsageError
from losscli.losses.fused.transforms import can_inspect_values, vmap_active
from losscli.losses.meta import (  # noqa: F401  (re-exported: loss modules import them from here)
    CONTEXT_KEYS,
    FAMILIES,
    LOSSES,
    LossInfo,
    Param,
    Reference,
    register_loss,
    validate_params,
)

REDUCTIONS = ("mean", "sum", "none")


def check_ignore_index(name: str, value: Any) -> int:
    """``value`` as an ignore_index: an integer torch can compare with int64 targets (a larger one
    passed every check and then failed in the first step with "int too big to convert")."""
    try:  # int, numpy and 0-d torch integers; not bool, not float
        index = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        index = None
    if index is None or not -2**63 <= index < 2**63:
        raise UsageError(f"{name}: ignore_index must be an integer class index (64-bit, e.g. -100), got {value!r}")
    return index


class LossInputError(UsageError):
    """Wrong shapes, dtypes or values passed to a loss."""


# --------------------------------------------------------------------------- base class
class VmapUnsupported(LossInputError):
    """A loss called under ``torch.func.vmap`` that cannot run there (per-sample state, batch-dependent pairs)."""


def refuse_under_vmap(name: str, reason: str) -> None:
    """Raise :class:`VmapUnsupported` inside ``torch.func.vmap``; nothing elsewhere."""
    if vmap_active():
        raise VmapUnsupported(f"{name} cannot run under torch.func.vmap: {reason}; call it on each batch instead")


def one_hot_targets(target: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """``[N, C]`` 0/1 targets from ``[N]`` class indices in range (a multi-label loss on single-label data)."""
    # a comparison, not F.one_hot (which reads the values: not under torch.func.vmap)
    classes = torch.arange(num_classes, device=target.device)
    return torch.eq(target.unsqueeze(1), classes).to(dtype)


class Loss(nn.Module):
    """Base of every registered loss.

    Subclasses implement ``per_sample`` (returns the unweighted, unreduced ``[N]`` loss)
    or, when ``info.batch_coupled``, ``batch_loss``. Hyperparameters are available as
    attributes (``self.gamma``) and in ``self.params``.
    """

    info: ClassVar[LossInfo]
    #: True when ``per_sample`` applies ``self.weight`` itself (e.g. label smoothing,
    #: whose smoothing term weights every class by its own weight)
    handles_weight: ClassVar[bool] = False
    #: multi-label losses only: True when ``per_sample`` also takes ``[N]`` class indices (each row's
    #: one positive label, ignored rows already mapped to class 0) and so never needs the ``[N, C]``
    #: one-hot matrix; ``one_hot_targets`` makes it for the paths that do
    takes_class_indices: ClassVar[bool] = False

    def __init__(
        self,
        *,
        reduction: str = "mean",
        weight: Sequence[float] | torch.Tensor | None = None,
        ignore_index: int = -100,
        class_counts: Sequence[float] | torch.Tensor | None = None,
        **params: Any,
    ):
        super().__init__()
        info = self.info
        if reduction not in REDUCTIONS:
            raise UsageError(f"{info.name}: reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        self.reduction = reduction
        self.params = validate_params(info, params)
        for key, value in self.params.items():
            setattr(self, key, value)
        self.ignore_index = check_ignore_index(info.name, ignore_index)
        if weight is not None and not info.supports_weight:
            raise UsageError(f"{info.name} does not support per-class weights")
        self.register_buffer("weight", _as_float_tensor(weight, "weight") if weight is not None else None, persistent=False)
        if class_counts is not None:
            counts = _as_float_tensor(class_counts, "class_counts")
            if (counts < 0).any():
                raise UsageError(f"{info.name}: class_counts must be non-negative")
            self.register_buffer("class_counts", counts, persistent=False)
        elif info.needs_class_counts:
            raise UsageError(
                f"{info.name} needs the training set's class counts: build_loss({info.name!r}, class_counts=[...]) "
                "(the engine passes them automatically)"
            )
        else:
            self.class_counts = None

    # -- hooks for subclasses ---------------------------------------------------------
    def per_sample(self, logits: torch.Tensor, target: torch.Tensor, **context: Any) -> torch.Tensor:
        raise NotImplementedError

    def batch_loss(self, logits: torch.Tensor, target: torch.Tensor, **context: Any) -> torch.Tensor:
        raise NotImplementedError

    def make_head(self, in_features: int, num_classes: int) -> nn.Module | None:
        """A learnable output layer this loss needs (cosine or distance head), or None."""
        return None

    def prediction_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Map the head's output to logits whose softmax is the model's prediction.

        Identity for ordinary heads; a cosine head's similarities are scaled by ``s``.
        """
        return logits

    def on_epoch_end(self, epoch: int, val_accuracy: float) -> None:
        """Called by the trainer after each epoch's evaluation (0-based ``epoch``, validation
        accuracy in [0, 1]). No-op; losses with epoch-level state (ASLP) override it."""

    @property
    def keeps_epoch_state(self) -> bool:
        """True when ``on_epoch_end`` does something (the loss adapts to each epoch's validation)."""
        return type(self).on_epoch_end is not Loss.on_epoch_end

    def extra_repr(self) -> str:
        items = [f"{k}={v!r}" for k, v in self.params.items()]
        if self.reduction != "mean":
            items.append(f"reduction={self.reduction!r}")
        return ", ".join(items)

    # -- the shared path --------------------------------------------------------------
    def forward(self, logits: torch.Tensor, target: torch.Tensor, **context: Any) -> torch.Tensor:
        unknown = set(context) - set(CONTEXT_KEYS) if context else None
        if unknown:
            raise LossInputError(
                f"{self.info.name}: unknown keyword argument(s) {sorted(unknown)}; forward takes {', '.join(CONTEXT_KEYS)}"
            )
        missing = [k for k in self.info.needs if context.get(k) is None]
        if missing:
            raise LossInputError(f"{self.info.name} needs forward(..., {missing[0]}=...)")
        # multi-label losses take 1-D class indices too (one-hot); remember ignored rows first
        row_mask = (target != self.ignore_index) if (self.info.multilabel and isinstance(target, torch.Tensor)
                                                     and target.dim() == 1 and not target.is_floating_point()) else None
        logits, target, kind = self._check_inputs(logits, target)
        x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits

        if self.info.batch_coupled:
            if self.reduction != "mean":
                raise LossInputError(
                    f"{self.info.name} is a batch-level loss: only reduction='mean' is defined "
                    "(it has no per-sample decomposition)"
                )
            return self.batch_loss(x, target, **context)

        if kind == "index, every row":  # no row is ignored (checked): the masks would change nothing
            return self._reduce_index(self.per_sample(x, target, **context), target, None)
        if kind != "index":  # soft or multi-label targets: no ignore_index, mean over rows
            if self.weight is not None and not self.handles_weight:
                raise LossInputError(f"{self.info.name}: per-class weight is not supported with [N, C] targets")
            per = self.per_sample(x, target, **context)
            if row_mask is not None:
                per = torch.where(row_mask, per, torch.zeros_like(per))
                if self.reduction == "mean":
                    return per.sum() / row_mask.sum().to(per.dtype)
            return per if self.reduction == "none" else (per.sum() if self.reduction == "sum" else per.mean())

        valid = target != self.ignore_index
        # Ignored rows get a harmless class 0 so indexing stays in range; masked below.
        safe_target = torch.where(valid, target, torch.zeros_like(target))
        return self._reduce_index(self.per_sample(x, safe_target, **context), safe_target, valid)

    def _reduce_index(self, per: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        """Per-class weights and the reduction of the class-index path. ``valid`` masks ignored rows;
        None when every row counts: the masks (``where``, ``zeros_like``, a count) are then skipped, a
        few small ops and autograd nodes that on a small batch (128 x 10) were a sizeable part of a fused
        loss's cost. The numbers are the same either way."""
        w = None
        if self.weight is not None:
            w = self.weight.to(per.dtype)[target]
            if not self.handles_weight:
                per = per * w
        if valid is not None:
            per = torch.where(valid, per, torch.zeros_like(per))
        if self.reduction == "none":
            return per
        if self.reduction == "sum":
            return per.sum()
        if valid is None:  # mean(): one op and autograd node fewer; on a CPU bitwise sum / N (float32/64, tested)
            return per.mean() if w is None else per.sum() / w.sum()
        denominator = valid.to(per.dtype) if w is None else torch.where(valid, w, torch.zeros_like(w))
        return per.sum() / denominator.sum()

    def _check_inputs(self, logits: torch.Tensor, target: torch.Tensor):
        name = self.info.name
        if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
            raise LossInputError(f"{name}: logits and target must be torch tensors")
        # input kinds other than logits + class targets (LossInfo.input / .target): one check each
        if self.info.input == "embeddings":
            return self._check_embeddings(logits, target)
        if self.info.input == "sets":
            return self._check_sets(logits, target)
        if self.info.target == "regression":
            return self._check_regression(logits, target)
        if logits.dim() != 2:
            raise LossInputError(f"{name}: logits must be [N, C], got shape {list(logits.shape)}")
        if not logits.is_floating_point():
            raise LossInputError(f"{name}: logits must be floating point, got {logits.dtype}")
        n, c = logits.shape
        if c < 2:
            raise LossInputError(f"{name}: logits need at least 2 classes, got C={c}")
        if target.dim() == 1:
            if target.shape[0] != n:
                raise LossInputError(f"{name}: target has {target.shape[0]} entries but logits have N={n} rows")
            if target.is_floating_point() or target.dtype == torch.bool:
                raise LossInputError(f"{name}: class-index targets must be integers, got {target.dtype}")
            target = target.long()
            every_row_counts = False
            if n and can_inspect_values(target):  # a range check would synchronise a GPU (see can_inspect_values)
                # the range from the extremes: one op and one read (was <, >=, |, any: _check_inputs on a
                # 128-row batch 15.9 -> 7.3 us, paired, thread time); the per-row check only when some target is out
                lo, hi = map(int, torch.aminmax(target))
                if lo < 0 or hi >= c:
                    outside = (target < 0) | (target >= c)
                    bad = outside & (target != self.ignore_index)
                    if bad.any():
                        raise LossInputError(
                            f"{name}: target values must be in [0, {c - 1}] (or ignore_index={self.ignore_index}), "
                            f"got {int(target[bad][0])}"
                        )
                else:  # every target is a class; none is ignore_index unless that is a class too
                    every_row_counts = not 0 <= self.ignore_index < c
            if self.info.multilabel:  # a single-label dataset used with a multi-label loss
                safe = torch.where(target != self.ignore_index, target, 0)
                if self.takes_class_indices:
                    return logits, safe, "multilabel"
                return logits, one_hot_targets(safe, c, logits.dtype), "multilabel"
            return logits, target, "index" if not every_row_counts else "index, every row"
        if target.dim() == 2:
            if tuple(target.shape) != (n, c):
                raise LossInputError(f"{name}: [N, C] targets must match logits {list(logits.shape)}, got {list(target.shape)}")
            if self.info.multilabel:
                return logits, target.to(logits.dtype if logits.dtype == torch.float64 else torch.float32), "multilabel"
            if not self.info.soft_targets:
                raise LossInputError(f"{name} takes class-index targets [N] (int64), not [N, C] probabilities")
            if not target.is_floating_point():
                raise LossInputError(f"{name}: probability targets must be floating point, got {target.dtype}")
            return logits, target.to(logits.dtype if logits.dtype == torch.float64 else torch.float32), "soft"
        raise LossInputError(f"{name}: target must be [N] class indices or [N, C], got shape {list(target.shape)}")

    def _check_embeddings(self, x: torch.Tensor, target: torch.Tensor):
        """``[N, D]`` float features and ``[N]`` integer labels (>= 0 or ignore_index); kind "index"."""
        name = self.info.name
        if x.dim() != 2 or not x.is_floating_point():
            raise LossInputError(f"{name}: embeddings must be floating point [N, D], got {x.dtype} {list(x.shape)}")
        if target.dim() != 1 or target.shape[0] != x.shape[0] or target.is_floating_point() or target.dtype == torch.bool:
            raise LossInputError(f"{name}: target must be [N={x.shape[0]}] integer labels, got {target.dtype} {list(target.shape)}")
        target = target.long()
        if can_inspect_values(target) and ((target < 0) & (target != self.ignore_index)).any():
            raise LossInputError(f"{name}: labels must be >= 0 (or ignore_index={self.ignore_index})")
        return x, target, "index"

    def _check_sets(self, x: torch.Tensor, target: torch.Tensor):
        """``[B, m, C]`` member logits and ``[B, m]`` member labels in [0, C); kind "sets" (no ignore_index)."""
        name = self.info.name
        if x.dim() != 3 or not x.is_floating_point() or x.shape[2] < 2:
            raise LossInputError(f"{name}: set logits must be floating point [B, m, C] with C >= 2, got {x.dtype} {list(x.shape)}")
        if tuple(target.shape) != tuple(x.shape[:2]) or target.is_floating_point() or target.dtype == torch.bool:
            raise LossInputError(f"{name}: target must be [B, m] = {list(x.shape[:2])} integer member labels, "
                                 f"got {target.dtype} {list(target.shape)}")
        target = target.long()
        if can_inspect_values(target) and target.numel() and ((target < 0) | (target >= x.shape[2])).any():
            raise LossInputError(f"{name}: member labels must be in [0, {x.shape[2] - 1}]")
        return x, target, "sets"

    def _check_regression(self, x: torch.Tensor, target: torch.Tensor):
        """``[N, C]`` float logits (C bins) and ``[N]`` float targets; kind "regression"."""
        name = self.info.name
        if x.dim() != 2 or not x.is_floating_point() or x.shape[1] < 2:
            raise LossInputError(f"{name}: logits must be floating point [N, C] with C >= 2 bins, got {x.dtype} {list(x.shape)}")
        if target.dim() != 1 or target.shape[0] != x.shape[0] or not target.is_floating_point():
            raise LossInputError(f"{name}: target must be [N={x.shape[0]}] floating-point regression values, "
                                 f"got {target.dtype} {list(target.shape)}")
        if can_inspect_values(target) and not torch.isfinite(target).all():
            raise LossInputError(f"{name}: regression targets must be finite")
        return x, target.to(torch.float64 if x.dtype == torch.float64 else torch.float32), "regression"


def _as_float_tensor(values: Any, what: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(values, dtype=torch.float64 if not isinstance(values, torch.Tensor) else None)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a list of numbers") from None
    if t.dim() != 1:
        raise UsageError(f"{what} must be a 1-D list of numbers, got shape {list(t.shape)}")
    # float64: exact for large counts (token frequencies > 2**24); cast to the logits' dtype at use
    return t.to(torch.float64)
