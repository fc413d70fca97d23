"""The dataset registry and option handling shared by every source.

A source is a function ``load(*, data_dir, download, val_fraction, split_seed, options)
-> DataBundle`` registered with ``@register_dataset(name, options={...defaults})``.
``options`` declares the accepted options and their defaults; unknown options are a
``UsageError`` naming the valid ones, and string values (from ``--set``) are coerced to
the type of the default.
"""

from __future__ import annotations

import math

from typing import Any, Callable

from losscli.errors import UsageError
from losscli.registry import Registry

DATASETS: Registry[Callable[..., Any]] = Registry("dataset")


def _adapt_plugin(name: str, obj: Any, origin: str):
    """``--dataset pkg.module:function`` and ``losscli.datasets`` entry points (see :mod:`losscli.data.plugin`)."""
    from losscli.data.plugin import adapt_dataset

    return adapt_dataset(name, obj, origin)


DATASETS.enable_plugins("losscli.datasets", _adapt_plugin)


def register_dataset(name: str, *, options: dict[str, Any] | None = None, kind: str = "", doc: str = "",
                     aliases: tuple[str, ...] = ()) -> Callable:
    def decorator(fn: Callable) -> Callable:
        DATASETS.add(name, fn, aliases=aliases, options=dict(options or {}), kind=kind, doc=doc)
        return fn

    return decorator


def _coerce(value: Any, default: Any, where: str) -> Any:
    if default is None or value is None or not isinstance(value, str) or isinstance(default, str):
        return value
    try:
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return value.lower() in ("true", "1", "yes")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise UsageError(f"{where} must be a {type(default).__name__}, got {value!r}") from None
    return value


def resolve_options(dataset: str, declared: dict[str, Any], given: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults merged with ``given``; unknown keys raise ``UsageError``."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        valid = ", ".join(f"{k}={v!r}" for k, v in declared.items()) or "(none)"
        raise UsageError(f"{dataset}: unknown option{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))}; valid options: {valid}")
    return {k: _coerce(given.get(k, d), d, f"{dataset}: option {k!r}") for k, d in declared.items()}


def positive_int(value: Any, where: str, minimum: int = 1) -> int:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or int(value) != value or value < minimum):
        raise UsageError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return int(value)
