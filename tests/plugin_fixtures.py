"""Plugin objects for the tests, named by import path (``tests.plugin_fixtures:Name``).

Well-formed plugins of each kind, malformed ones (each refused in one line), and deliberately
broken losses that each violate one clause of the loss contract (``BROKEN`` maps each to the check
that must catch it; a broken loss may fail other checks too). Metadata is set with ``info = LossInfo(...)`` rather than
``@register_loss`` so that importing this module registers nothing globally.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from losscli.calibrate import Calibrator
from losscli.losses import Loss, LossInfo, Param, Reference

REF = Reference("test fixture", "losscli tests", 2024)


# --------------------------------------------------------------------------- well-formed losses
class BatchMeanHinge(nn.Module):
    """Multi-class hinge, batch mean only (no reduction argument)."""

    def __init__(self, margin: float = 1.0, squared: bool = False):
        super().__init__()
        self.margin, self.squared = margin, squared

    def forward(self, logits, target):
        z_y = logits.gather(1, target[:, None])
        h = (self.margin - z_y + logits).clamp_min(0).scatter(1, target[:, None], 0.0).sum(1)
        return (h * h if self.squared else h).mean()


class EpochScaledCE(nn.Module):
    """Per-sample CE scaled by ``1 + epoch`` (takes the engine's epoch context)."""

    def __init__(self, reduction: str = "mean", width: int = 3, names: tuple = (0.5, 1.5), tag: str = "x",
                 optional: "float | None" = None):
        super().__init__()
        self.reduction = reduction

    def forward(self, logits, target, epoch):
        return F.cross_entropy(logits, target, reduction="none") * (1 + epoch)


class CountsCE(nn.Module):
    """CE with logit adjustment by the class prior (needs the training set's class counts)."""

    def __init__(self, class_counts, reduction: str = "mean", tau: float = 1.0):
        super().__init__()
        self.register_buffer("log_prior", torch.log(class_counts / class_counts.sum()).float())
        self.tau = tau

    def forward(self, logits, target):
        return F.cross_entropy(logits + self.tau * self.log_prior.to(logits.dtype), target, reduction="none")


class WithInfo(Loss):
    """A Loss subclass with hand-set metadata: kept (bounded 1, like MAE on probabilities)."""

    info = LossInfo(name="with_info", family="noise-robust", reference=REF, formula="l = 1 - p_y",
                    params=(Param("scale", 1.0, low=0.0, high=1.0, low_open=True),), bounded=True,
                    upper_bound=lambda params, c: params["scale"], symmetric=True, supports_weight=True)

    def per_sample(self, logits, target, **context):
        return self.scale * (1.0 - torch.softmax(logits, -1).gather(1, target[:, None]).squeeze(1))


class RequiredMargin(nn.Module):
    """Per-sample CE with the margin subtracted from the true logit; ``margin`` has no default."""

    def __init__(self, margin, reduction: str = "mean"):
        super().__init__()
        self.margin = margin

    def forward(self, logits, target):
        shifted = logits - self.margin * F.one_hot(target, logits.shape[1]).to(logits.dtype)
        return F.cross_entropy(shifted, target, reduction="none")


class RequiredNullable(nn.CrossEntropyLoss):
    """A loss module whose required argument may be None."""

    def __init__(self, x: "float | None", reduction: str = "mean"):
        super().__init__(reduction=reduction)


class RequiredTyped(nn.CrossEntropyLoss):
    """A loss module whose required arguments are typed by annotation."""

    def __init__(self, k: int, tag: str, scale: float = 1.0):
        super().__init__()


def factory_with_required(margin: float):
    """A factory function with a required argument: refused (a factory can be any function)."""
    return nn.CrossEntropyLoss()


# --------------------------------------------------------------------------- malformed plugins
class NeedsArgument(nn.Module):
    def __init__(self, k):
        super().__init__()

    def forward(self, logits, target):
        return logits.sum()


class PositionalOnly(nn.Module):
    def __init__(self, k=1.0, /):
        super().__init__()

    def forward(self, logits, target):
        return logits.sum()


class NoMetadata(Loss):
    def per_sample(self, logits, target, **context):
        return logits.sum(1)


class WrongForward(nn.Module):
    def forward(self, logits, target, temperature):
        return logits.sum()


class ClashingArgument(nn.Module):
    def __init__(self, eval: float = 1.0):  # noqa: A002 - clashes with nn.Module.eval on purpose
        super().__init__()


def failing_factory(scale: float = 1.0):
    raise ValueError("scale must be tuned first")


def returns_number(scale: float = 1.0):
    return 3


INSTANCE = nn.CrossEntropyLoss()
NOT_CALLABLE = 42


# --------------------------------------------------------------------------- broken losses
class MeanOverNPlusOne(Loss):
    """mean = sum / (N + 1): breaks ``mean``."""

    info = LossInfo(name="mean_off", family="standard", reference=REF, formula="CE")

    def per_sample(self, logits, target, **context):
        return F.cross_entropy(logits, target, reduction="none")

    def forward(self, logits, target, **context):
        out = super().forward(logits, target, **context)
        return out * target.shape[0] / (target.shape[0] + 1) if self.reduction == "mean" else out


class PositionWeighted(nn.Module):
    """Weights each row by its position: breaks ``permutation``."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()

    def forward(self, logits, target):
        n = logits.shape[0]
        return F.cross_entropy(logits, target, reduction="none") * (1 + torch.arange(n, device=logits.device) / n)


class ExpSum(nn.Module):
    """``sum_k exp(z_k) - z_y``: overflows at large logits, breaks ``finite_float32``."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()

    def forward(self, logits, target):
        return logits.exp().sum(1) - logits.gather(1, target[:, None]).squeeze(1)


class _HalfGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z):
        return z * z

    @staticmethod
    def backward(ctx, grad):
        return grad  # should be 2 z grad


class WrongGradient(nn.Module):
    """A custom autograd function with the wrong derivative: breaks ``gradcheck``."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()

    def forward(self, logits, target):
        return _HalfGradient.apply(logits).sum(1)


class FalselyBounded(Loss):
    """Claims CE is bounded by 1: breaks ``bounded``."""

    info = LossInfo(name="false_bound", family="standard", reference=REF, formula="CE", bounded=True,
                    upper_bound=lambda params, c: 1.0)

    def per_sample(self, logits, target, **context):
        return F.cross_entropy(logits, target, reduction="none")


class FalselySymmetric(FalselyBounded):
    """Claims CE is symmetric: breaks ``symmetric``."""

    info = LossInfo(name="false_symmetric", family="standard", reference=REF, formula="CE", symmetric=True)


class SoftLiar(Loss):
    """Claims soft targets but reads them as if every class were the target: breaks ``soft_targets``."""

    info = LossInfo(name="soft_liar", family="standard", reference=REF, formula="CE", soft_targets=True)

    def per_sample(self, logits, target, **context):
        if target.dim() == 2:
            return -F.log_softmax(logits, -1).sum(1)
        return F.cross_entropy(logits, target, reduction="none")


class CountsIgnored(Loss):
    """Treats ignored rows as class 0: breaks ``ignore_index``."""

    info = LossInfo(name="counts_ignored", family="standard", reference=REF, formula="CE")

    def forward(self, logits, target, **context):
        logits, target, _ = self._check_inputs(logits, target)
        per = F.cross_entropy(logits, target.clamp_min(0), reduction="none")
        return per if self.reduction == "none" else (per.sum() if self.reduction == "sum" else per.mean())


class WeightOverN(Loss):
    """Weighted mean divided by N instead of the sum of weights: breaks ``weight``."""

    info = LossInfo(name="weight_over_n", family="standard", reference=REF, formula="CE", supports_weight=True)

    def per_sample(self, logits, target, **context):
        return F.cross_entropy(logits, target, reduction="none")

    def forward(self, logits, target, **context):
        out = super().forward(logits, target, **context)
        if self.reduction == "mean" and self.weight is not None:
            return out * self.weight.to(out.dtype)[target].sum() / target.shape[0]
        return out


class Unchecked(Loss):
    """Skips the input validation (torch's errors instead of one clear line): breaks ``bad_inputs``."""

    info = LossInfo(name="unchecked", family="standard", reference=REF, formula="CE")

    def forward(self, logits, target, **context):
        return F.cross_entropy(logits, target, reduction=self.reduction, ignore_index=self.ignore_index)


def not_building(reduction: str = "mean"):
    """A factory that always fails: ``builds`` fails and every other check is skipped."""
    raise RuntimeError("cannot build")


BROKEN = {
    "MeanOverNPlusOne": "mean", "PositionWeighted": "permutation", "ExpSum": "finite_float32",
    "WrongGradient": "gradcheck", "FalselyBounded": "bounded", "FalselySymmetric": "symmetric",
    "SoftLiar": "soft_targets", "CountsIgnored": "ignore_index", "WeightOverN": "weight", "Unchecked": "bad_inputs",
    "not_building": "builds",
}


# --------------------------------------------------------------------------- models, data, calibrators
class Headless(nn.Module):
    """A plugin model with only forward(x) -> logits (no features, no head)."""

    def __init__(self, num_classes: int, input_shape: tuple, hidden: int = 16):
        super().__init__()
        d = 1
        for s in input_shape:
            d *= s
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.net(x)


def positional_model(num_classes, input_shape):
    """Called positionally: (num_classes, input_shape)."""
    return Headless(num_classes, input_shape, hidden=4)


def model_returns_number(num_classes, input_shape):
    return 3


def blobs(n: int = 240, num_classes: int = 3, spread: float = 0.5, split_seed: int = 0):
    """Gaussian blobs in 4-D, deterministic given the arguments (records split_seed it was given)."""
    g = torch.Generator().manual_seed(1234)
    centres = torch.randn(num_classes, 4, generator=g) * 3

    def draw(m):
        y = torch.arange(m) % num_classes
        return centres[y] + spread * torch.randn(m, 4, generator=g), y

    xtr, ytr = draw(n)
    xte, yte = draw(n // 2)
    return {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte}


def blobs_bad_key(n: int = 10):
    return {"x_train": torch.zeros(n, 2), "y_train": torch.zeros(n), "x_test": torch.zeros(2, 2),
            "y_test": torch.zeros(2), "labels": None}


class Shift(Calibrator):
    """Subtracts the mean logit of each class (an 'accuracy-changing' toy calibrator)."""

    name = "shift"

    def _fit(self, z, y):
        self.offset = z.mean(0)

    def _transform(self, z):
        return z - self.offset.to(z.dtype)

    def _state(self):
        return {"offset": self.offset}

    def _load_state(self, tensors):
        self.offset = tensors["offset"]
