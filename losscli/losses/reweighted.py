"""Class-reweighting wrappers: class-balanced (effective number) and power-law decay weights.

Both wrap a registered single-label ``base`` loss (default ``ce``) built through the
registry with ``reduction="none"``, and apply their per-class weights with torch's
weighted-mean semantics ``sum_i w_{y_i} l_i / sum_i w_{y_i}`` (the base class does the
reduction; the weights are installed as the loss's ``weight`` buffer).

Also home of two helpers the other wrappers share: ``build_base_loss`` and
``effective_number_weights`` (used by LDAM's DRW schedule).
"""

from __future__ import annotations

from typing import Any

import torch

from losscli.errors import UsageError
from losscli.losses.base import LOSSES, Loss, Param, Reference, register_loss


def build_base_loss(owner: str, spec: str, class_counts: Any = None) -> Loss:
    """Build the ``base`` loss of a wrapper: a registered single-label per-sample loss.

    ``spec`` is a registry name or alias, optionally with parameters
    (``"focal(gamma=1)"``). The base is built with ``reduction="none"`` and, when it
    needs them, the wrapper's class counts. Multi-label, batch-level and context-needing
    losses cannot be wrapped: that is a clear ``UsageError``.
    """
    from losscli.losses import build_loss  # the package is fully imported by call time
    from losscli.lossspec import parse_loss_spec

    name, params = parse_loss_spec(spec) if "(" in spec else (spec, {})
    try:
        cls = LOSSES.get(name)
    except UsageError as err:
        raise UsageError(f"{owner}: base={spec!r}: {err}") from None
    info = cls.info
    problem = None
    if info.name == owner:
        problem = "a loss cannot wrap itself"
    elif info.multilabel:
        problem = "it is a multi-label loss"
    elif info.batch_coupled:
        problem = "it is a batch-level loss with no per-sample values"
    elif info.input != "logits" or info.target != "class":
        problem = f"it takes {info.input} with {info.target} targets, not [N, C] logits with class labels"
    elif info.needs:
        problem = f"it needs forward context ({', '.join(info.needs)})"
    if problem:
        raise UsageError(f"{owner}: base={spec!r} is not allowed: {problem}; use a single-label per-sample loss such as 'ce'")
    kwargs: dict[str, Any] = {"reduction": "none"}
    if info.needs_class_counts:
        if class_counts is None:
            raise UsageError(f"{owner}: base={spec!r} needs class_counts=[...]")
        kwargs["class_counts"] = class_counts
    return build_loss(spec, **kwargs)


def effective_number_weights(counts: torch.Tensor, beta: float) -> torch.Tensor:
    """Cui et al.'s class-balanced weights ``(1-beta)/(1-beta^n_c)``, normalised to sum to C.

    ``beta=0`` gives all ones. Counts below 1 (absent classes) are treated as 1 so every
    weight stays finite (such a class never appears as a target anyway).
    """
    n = counts.double().clamp_min(1.0)
    if beta == 0.0:
        w = torch.ones_like(n)
    else:
        w = (1.0 - beta) / (-torch.expm1(n * torch.log(torch.tensor(beta, dtype=torch.float64))))
    w = w / w.sum() * n.numel()
    return w.float()


class _WrappedBase(Loss):
    """A loss that evaluates a registered ``base`` loss per sample."""

    def _build_base(self) -> None:
        self.base_loss = build_base_loss(self.info.name, self.base, self.class_counts)

    def per_sample(self, logits, target, **context):
        return self.base_loss(logits, target, **context)

    def make_head(self, in_features, num_classes):
        return self.base_loss.make_head(in_features, num_classes)

    def prediction_logits(self, logits):
        return self.base_loss.prediction_logits(logits)


_BASE = Param("base", "ce", "registered single-label loss to reweight (name or spec, e.g. 'focal(gamma=1)')", kind="str")


@register_loss(
    "class_balanced",
    aliases=("cb", "cb_loss"),
    family="imbalance",
    reference=Reference(
        "Class-Balanced Loss Based on Effective Number of Samples", "Cui, Jia, Lin, Song & Belongie", 2019, "CVPR",
        "https://arxiv.org/abs/1901.05555",
    ),
    formula="w_c = (1-beta)/(1-beta^n_c) normalised to sum_c w_c = C;  L = sum_i w_{y_i} base_i / sum_i w_{y_i}",
    params=(
        Param("beta", 0.9999, "effective-number hyperparameter; 0 gives unit weights", low=0.0, high=1.0, high_open=True,
              search=[0.9, 0.99, 0.999, 0.9999]),  # the paper's grid: a uniform range would waste trials
        _BASE,
    ),
    convex=None,
    needs_class_counts=True,
    # the registry-wide test checks mean == sum / N, which a weighted mean is not: test with unit weights
    test_params={"beta": 0.0},
    notes=(
        "Weights follow torch's weighted mean (normaliser sum_i w_{y_i}); the official TF code divides by N instead. "
        "The weights are the method, so an extra `weight` is not accepted. Convexity is that of the base loss. "
        "Counts of 0 are treated as 1."
    ),
)
class ClassBalancedLoss(_WrappedBase):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._build_base()
        self.weight = effective_number_weights(self.class_counts, self.beta)


@register_loss(
    "power_law_weighted",
    aliases=("pdl", "power_law_decay"),
    family="imbalance",
    reference=Reference(
        "Power-Law Decay Loss for Large Language Model Finetuning: Focusing on Information Sparsity to Enhance "
        "Generation Quality", "Shao et al.", 2025, "arXiv", "https://arxiv.org/abs/2505.16900",
    ),
    formula="w_c = 1/(n_c + eps)^alpha;  L = sum_i w_{y_i} base_i / sum_i w_{y_i}",
    params=(
        Param("alpha", 1.0, "decay exponent; 0 gives unit weights (plain base loss)", low=0.0),
        Param("eps", 1e-7, "smoothing added to the raw counts", low=0.0, low_open=True, search=False),
        _BASE,
    ),
    convex=None,
    needs_class_counts=True,
    test_params={"alpha": 0.0},  # unit weights for the registry-wide mean == sum / N check
    notes=(
        "Counts are raw frequencies (as in the code). A class with count 0 gets weight eps^-alpha (1e7 by default) "
        "and dominates any batch it appears in. The weights are the method, so an extra `weight` is not accepted."
    ),
)
class PowerLawWeightedLoss(_WrappedBase):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._build_base()
        w = (self.class_counts.double() + self.eps).pow(-self.alpha).float()
        if not (torch.isfinite(w).all() and (w > 0).all()):
            raise UsageError(
                "power_law_weighted: class weights over- or underflow float32; use a smaller alpha or a larger eps"
            )
        self.weight = w
