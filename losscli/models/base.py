"""Model registry, the ``Classifier`` contract and ``build_model`` / ``auto_model``.

Every model is a :class:`Classifier`: ``features(x) -> [N, D]`` and a final ``nn.Linear``
named ``head``; ``forward(x) = head(features(x))``. The engine may replace ``model.head``
with a loss-provided head (cosine / distance) that maps ``[N, D]`` to logits.
Models avoid in-place operations on parameters, data-dependent Python control flow and
(unless asked for) BatchNorm, so ``torch.func.functional_call`` + ``vmap`` over stacked
parameters works.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable

import torch
from torch import nn

from losscli.errors import UsageError
from losscli.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def _adapt_plugin(name: str, obj: Any, origin: str):
    """``--model pkg.module:factory`` and ``losscli.models`` entry points (see :mod:`losscli.models.plugin`)."""
    from losscli.models.plugin import adapt_model

    return adapt_model(name, obj, origin)


MODELS.enable_plugins("losscli.models", _adapt_plugin)

#: the model ``--model auto`` picks for each data kind
AUTO = {"sequence1d": "cnn1d", "vector": "mlp", "image": "resnet", "tokens": "bow"}


class Classifier(nn.Module):
    head: nn.Module

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def feature_dim(self) -> int:
        return int(self.head.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def register_model(name: str, *, kinds: tuple[str, ...], doc: str = "", aliases: tuple[str, ...] = ()) -> Callable:
    """Class decorator: ``@register_model("mlp", kinds=("vector", ...))``."""

    def decorator(cls):
        MODELS.add(name, cls, aliases=aliases, kinds=tuple(kinds), doc=doc or (cls.__doc__ or "").strip().split("\n")[0])
        return cls

    return decorator


def auto_model(kind: str) -> str:
    """The default model name for a data kind."""
    if kind not in AUTO:
        raise UsageError(f"no automatic model for data kind {kind!r}; known kinds: {', '.join(AUTO)}")
    return AUTO[kind]


def model_options(name: str) -> dict[str, Any]:
    """The options a model accepts, with defaults."""
    entry = MODELS.entry(name)
    if "options" in entry.meta:  # a plugin's, read from its signature when it was loaded
        return dict(entry.meta["options"])
    cls = entry.obj
    sig = inspect.signature(cls.__init__)
    return {k: p.default for k, p in sig.parameters.items()
            if p.kind == p.KEYWORD_ONLY and p.default is not inspect.Parameter.empty}


def build_model(name: str, input_shape, num_classes: int, kind: str | None = None, **options: Any) -> nn.Module:
    """Instantiate model ``name`` (or ``"auto"``, which needs ``kind``) for ``input_shape`` -> ``num_classes``."""
    if name is None or str(name).lower() == "auto":
        if kind is None:
            raise UsageError("model 'auto' needs the data kind (vector, sequence1d, image or tokens)")
        name = auto_model(kind)
    entry = MODELS.entry(name)
    if kind is not None and kind not in entry.meta["kinds"]:
        raise UsageError(f"model {entry.name!r} does not support {kind} data; use one of "
                         f"{', '.join(n for n in MODELS.names() if kind in MODELS.entry(n).meta['kinds'])}")
    valid = model_options(entry.name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        shown = ", ".join(f"{k}={v!r}" for k, v in valid.items()) or "(none)"
        raise UsageError(f"model {entry.name!r}: unknown option{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))}; valid options: {shown}")
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
        raise UsageError(f"num_classes must be a positive integer, got {num_classes!r}")
    shape = tuple(int(s) for s in (input_shape if isinstance(input_shape, (tuple, list, torch.Size)) else (input_shape,)))
    if not shape or any(s < 1 for s in shape):
        raise UsageError(f"model {entry.name!r}: bad input_shape {input_shape!r}")
    return entry.obj(shape, int(num_classes), **options)


def weight_bytes(name: str, input_shape, num_classes: int, kind: str | None = None, **options: Any) -> int | None:
    """Bytes of a built-in model's parameters and buffers, counted on the meta device (no memory, no
    RNG), with :func:`build_model`'s checks; None for a plugin's model (its factory may not build there).
    ``name`` is a resolved model name (not ``auto``)."""
    if not MODELS.entry(name).obj.__module__.startswith("losscli."):
        return None
    with torch.device("meta"):
        model = build_model(name, input_shape, num_classes, kind=kind, **options)
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


#: layers or blocks per stage: deeper cannot be meant (the mlp with depth=10**6 took minutes just to build)
MAX_DEPTH = 1000


def flat_dim(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def positive(value: Any, what: str, most: int | None = None) -> int:
    # text or a list ('abc', [1]) raised int()'s own ValueError/TypeError: exit 1 with raw text
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not number or int(value) != value or value < 1:
        raise UsageError(f"{what} must be a positive integer, got {value!r}")
    if most is not None and value > most:
        raise UsageError(f"{what} must be at most {most}, got {value!r}")
    return int(value)
