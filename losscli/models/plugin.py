"""Models from plugins: ``--model pkg.module:factory`` and installed ``losscli.models`` entry points.

A plugin model is a factory (a function or an ``nn.Module`` class) called with the number of
outputs (classes, or a regression loss's bins) and the per-sample input shape: by keyword when it
names both ``num_classes`` and ``input_shape`` (so losscli's own ``(input_shape, num_classes)``
models work too), else positionally as ``factory(num_classes, input_shape)``. Its other keyword
arguments with defaults are the model's options (``--set model.options.NAME=VALUE``). It may
declare the data kinds it supports as a ``kinds`` attribute (default: every kind).

The model's ``forward(x)`` returns ``[N, C]`` logits. Losses that bring their own output layer
(cosine, distance heads) or take the penultimate features (a sum with an embedding loss) need the
:class:`~losscli.models.base.Classifier` contract too, ``features(x) -> [N, D]`` and a ``head``
``nn.Linear(D, C)``; the engine checks that, in one line, before training such a loss.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from torch import nn

from losscli.errors import UsageError
from losscli.plugins import PLUGIN_ERRORS, describe_exception

#: every data kind a model can be asked for (``losscli.models.base.AUTO``'s keys)
ALL_KINDS = ("sequence1d", "vector", "image", "tokens")
_SHAPE_ARGS = ("num_classes", "input_shape")


def adapt_model(name: str, obj: Any, origin: str) -> tuple[Callable[..., nn.Module], dict]:
    """``(builder(input_shape, num_classes, **options), registry metadata)`` for the plugin ``obj``."""
    if not callable(obj) or isinstance(obj, nn.Module):
        raise UsageError(f"model {origin} is not a factory: name a function or an nn.Module class called with "
                         "(num_classes, input_shape) that returns a fresh model")
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        raise UsageError(f"model {origin}: cannot read its signature") from None
    args = signature.parameters
    by_keyword = all(a in args for a in _SHAPE_ARGS)
    options = {k: p.default for k, p in args.items() if k not in _SHAPE_ARGS and p.default is not p.empty
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    kinds = getattr(obj, "kinds", ALL_KINDS)
    if isinstance(kinds, str) or not all(k in ALL_KINDS for k in kinds):
        raise UsageError(f"model {origin}: its kinds attribute must list data kinds among {', '.join(ALL_KINDS)}, "
                         f"got {kinds!r}")

    def build(input_shape: tuple[int, ...], num_classes: int, **opts: Any) -> nn.Module:
        try:
            model = obj(num_classes=num_classes, input_shape=input_shape, **opts) if by_keyword \
                else obj(num_classes, input_shape, **opts)
        except UsageError:
            raise
        except PLUGIN_ERRORS as exc:  # noqa: BLE001 - the plugin's own error, as one line
            raise UsageError(f"model {name}: building it failed: {describe_exception(exc)}") from exc
        if not isinstance(model, nn.Module):
            raise UsageError(f"model {name} returned a {type(model).__name__}, not a torch.nn.Module")
        return model

    doc = (inspect.getdoc(obj) or "").strip().split("\n")[0]
    return build, {"kinds": tuple(kinds), "doc": doc or f"plugin model {origin}", "options": options}
