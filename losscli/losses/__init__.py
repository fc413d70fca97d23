"""The loss registry: every loss of the literature losscli knows, exact to its paper.

Usage as a library::

    from losscli.losses import build_loss, LOSSES
    loss_fn = build_loss("focal", gamma=2.0)          # or build_loss("focal(gamma=2)")
    loss = loss_fn(logits, target)
    LOSSES.names(family="noise-robust"); LOSSES.info("gce")

Each loss lives in one small module of this package; importing the package imports them
all (adding a loss is one file plus one ``@register_loss`` decorator). Losses from plugins
(``build_loss("my_package.losses:MyLoss")``, installed ``losscli.losses`` entry points) resolve
through the same registry: see :mod:`losscli.losses.plugin`.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from losscli.losses.base import (  # noqa: F401  (public API)
    LOSSES,
    Loss,
    LossInfo,
    LossInputError,
    Param,
    Reference,
    register_loss,
)
from losscli.losses.resolve import COMMON_KWARGS, LossSpec, resolve_loss  # noqa: F401  (public API)
from losscli.lossspec import parse_loss_spec, split_composite

_NON_LOSS_MODULES = {"base", "meta", "resolve", "heads", "fused", "linear", "composite", "plugin", "contract", "cases"}


def _import_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if mod.name not in _NON_LOSS_MODULES and not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


_import_all()

from losscli.losses.plugin import adapt_loss  # noqa: E402

LOSSES.enable_plugins("losscli.losses", adapt_loss)


def build_loss(name: "str | LossSpec", **params: Any) -> Loss:
    """Build a registered loss by name (or alias, or ``"name(param=value)"`` spec, or a LossSpec),
    or a composite loss: ``build_loss("ce + 0.1*logz_penalty")`` (see :mod:`losscli.losses.composite`).

    ``reduction``, ``weight``, ``ignore_index`` and ``class_counts`` are common keyword
    arguments; everything else must be a hyperparameter of that loss (of a composite: of its
    parts, written inside them).
    """
    if isinstance(name, str) and split_composite(name) is not None:
        name = resolve_loss(name)
    if isinstance(name, LossSpec):
        if name.parts:
            from losscli.losses.composite import CompositeLoss

            parts = [(w, p.name, p.params) for w, p in name.parts]
            return CompositeLoss(parts, name.name, **{**name.options, **params})
        return LOSSES.get(name.name)(**{**name.kwargs(), **params})
    if "(" in name:
        name, spec_params = parse_loss_spec(name)
        params = {**spec_params, **params}
    return LOSSES.get(name)(**params)


def check_loss_spec(name: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Validate a loss name, its hyperparameters and common keyword arguments without building it
    (no class counts needed); returns the canonical name and the full validated hyperparameters."""
    spec = resolve_loss(name, params)
    return spec.name, spec.params


def loss_info(name: str) -> LossInfo:
    return LOSSES.get(name).info


def list_losses(family: str | None = None, **properties: Any) -> list[str]:
    """Registered loss names, optionally filtered by family and metadata properties."""
    names = LOSSES.names(family=family)
    if properties:
        names = [n for n in names if all(getattr(LOSSES.get(n).info, k) == v for k, v in properties.items())]
    return names


def linear_loss(*args: Any, **kwargs: Any):
    """Memory-efficient final linear layer + loss (see ``losscli.losses.linear``)."""
    from losscli.losses.linear import linear_loss as _linear_loss

    return _linear_loss(*args, **kwargs)


__all__ = [
    "COMMON_KWARGS", "LOSSES", "Loss", "LossInfo", "LossInputError", "LossSpec", "Param", "Reference",
    "build_loss", "check_loss_spec", "linear_loss", "list_losses", "loss_info", "register_loss", "resolve_loss",
]
