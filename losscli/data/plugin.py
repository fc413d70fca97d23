"""Datasets from plugins: ``--dataset pkg.module:function`` and installed ``losscli.datasets`` entry points.

The callable returns either a :class:`~losscli.data.bundle.DataBundle` (full control), or a mapping
with the keyword arguments of :func:`~losscli.data.bundle.make_bundle`: ``x_train``, ``y_train``,
``x_test``, ``y_test`` (arrays or tensors) and optionally ``x_val``/``y_val`` (else the validation
split is carved from train with ``val_fraction`` and ``split_seed``, as for every dataset), ``kind``
(default: ``vector`` for ``[N, D]`` inputs, ``image`` for ``[N, C, H, W]``), ``num_classes``,
``class_names`` and ``task`` (default: ``regression`` for float targets with a non-integer value).

Its keyword arguments with defaults are the dataset's options (``--set dataset.options.NAME=VALUE``;
strings from the command line are converted to the default's type). Arguments named ``data_dir``,
``download``, ``val_fraction`` or ``split_seed`` receive the run's values instead. The callable must
be deterministic given its arguments: runs are identified by the dataset's name and options.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

import numpy as np

from losscli.data.bundle import DataBundle, is_regression_target, make_bundle
from losscli.errors import UsageError
from losscli.plugins import PLUGIN_ERRORS, describe_exception

#: arguments that receive the run's settings, not options
SOURCE_ARGS = ("data_dir", "download", "val_fraction", "split_seed")
_KEYS = ("x_train", "y_train", "x_test", "y_test", "x_val", "y_val", "kind", "num_classes", "class_names", "task")


def adapt_dataset(name: str, obj: Any, origin: str) -> tuple[Callable[..., DataBundle], dict]:
    """``(source loader, registry metadata)`` for the plugin callable ``obj`` (see the module docstring)."""
    if not callable(obj) or inspect.isclass(obj):
        raise UsageError(f"dataset {origin} is not a function; name a function that returns a DataBundle or a "
                         "mapping with x_train, y_train, x_test, y_test")
    try:
        args = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        raise UsageError(f"dataset {origin}: cannot read its signature") from None
    options = {}
    for k, p in args.items():
        if k in SOURCE_ARGS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty or p.kind == p.POSITIONAL_ONLY:
            raise UsageError(f"dataset {origin}: argument {k!r} needs a default (options are keyword arguments)")
        options[k] = p.default
    wanted = [k for k in SOURCE_ARGS if k in args]

    def load(*, data_dir: str | None = None, download: bool = False, val_fraction: float = 0.1, split_seed: int = 0,
             options: dict[str, Any] | None = None) -> DataBundle:
        run = {"data_dir": data_dir, "download": download, "val_fraction": val_fraction, "split_seed": split_seed}
        try:
            result = obj(**{k: run[k] for k in wanted}, **(options or {}))
        except UsageError:
            raise
        except PLUGIN_ERRORS as exc:  # noqa: BLE001 - the plugin's own error, as one line
            raise UsageError(f"dataset {name}: loading it failed: {describe_exception(exc)}") from exc
        if isinstance(result, DataBundle):
            return result
        return _bundle(name, result, val_fraction, split_seed)

    doc = (inspect.getdoc(obj) or "").strip().split("\n")[0]
    return load, {"options": options, "kind": "", "doc": doc or f"plugin dataset {origin}"}


def _bundle(name: str, data: Any, val_fraction: float, split_seed: int) -> DataBundle:
    if not isinstance(data, Mapping):
        raise UsageError(f"dataset {name} returned a {type(data).__name__}; return a DataBundle or a mapping with "
                         "x_train, y_train, x_test, y_test")
    unknown = sorted(set(data) - set(_KEYS))
    missing = [k for k in _KEYS[:4] if k not in data]
    if unknown or missing:
        what = f"unknown key(s) {', '.join(map(repr, unknown))}" if unknown else f"no {', '.join(missing)}"
        raise UsageError(f"dataset {name} returned a mapping with {what}; its keys are {', '.join(_KEYS)} "
                         "(the first four required)")
    kwargs = dict(data)
    if "kind" not in kwargs:
        x = kwargs["x_train"]
        rank = (x.ndim if hasattr(x, "ndim") else np.ndim(x)) - 1
        if rank not in (1, 3):
            raise UsageError(f"dataset {name}: cannot tell the data kind of per-sample rank {rank}; return kind "
                             "(vector, sequence1d, image or tokens) with the arrays")
        kwargs["kind"] = "vector" if rank == 1 else "image"
    if "task" not in kwargs:
        kwargs["task"] = "regression" if is_regression_target(kwargs["y_train"]) else "classification"
    return make_bundle(name, val_fraction=val_fraction, split_seed=split_seed,
                       info={"source": f"python function {name}"}, **kwargs)
