"""Canonical loss specs: one name, validated parameters, one label, however the user wrote it.

``focal``, ``focal(gamma=2)`` and ``FOCAL(gamma=2.0)`` are one configuration: the same
:class:`LossSpec` (full validated parameters, defaults included) with the label ``focal``
(the name plus the parameters that differ from the defaults). ``compare`` hashes and dedupes
runs by this, so equal configurations are never trained twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from losscli.errors import UsageError
from losscli.lossspec import format_loss_spec, parse_loss_spec

#: keyword arguments every loss accepts besides its hyperparameters
COMMON_KWARGS = ("reduction", "weight", "ignore_index", "class_counts")
#: the engine decides these itself (a run trains on the mean; counts come from the data)
ENGINE_OWNED = ("reduction", "class_counts")


@dataclass(frozen=True)
class LossSpec:
    """A validated loss: registered ``name``, every hyperparameter (``params``), common keyword
    arguments the user set (``options``: ``weight``, ``ignore_index``) and the canonical ``label``."""

    name: str
    params: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)

    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.label:  # the canonical label: name + the parameters that differ from the defaults
            from losscli.losses.meta import LOSSES

            defaults = LOSSES.get(self.name).info.defaults()
            shown = {k: v for k, v in self.params.items() if not _same(v, defaults.get(k, _MISSING))}
            object.__setattr__(self, "label", format_loss_spec(self.name, {**shown, **self.options}))

    def kwargs(self) -> dict[str, Any]:
        """Everything ``build_loss(name, **kwargs)`` needs besides engine-supplied class counts."""
        return {**self.params, **self.options}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params), "options": dict(self.options), "label": self.label}


_MISSING = object()


def _same(a: Any, b: Any) -> bool:
    if b is _MISSING:
        return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def resolve_loss(spec: "str | LossSpec | dict[str, Any]", params: dict[str, Any] | None = None, *,
                 for_engine: bool = False) -> LossSpec:
    """Parse and validate ``spec`` (``"focal(gamma=2)"``, a name, a ``{name, params}`` dict or a
    LossSpec) merged with ``params``. With ``for_engine`` the keyword arguments the engine sets
    itself (``reduction``, ``class_counts``) are refused with a message saying why."""
    if isinstance(spec, LossSpec):
        name, given = spec.name, {**spec.params, **spec.options}
    elif isinstance(spec, dict):
        if not isinstance(spec.get("name"), str):
            raise UsageError(f"a loss given as a mapping needs a string 'name', got {spec!r}")
        name, given = spec["name"], dict(spec.get("params") or {}) | dict(spec.get("options") or {})
    else:
        name, given = parse_loss_spec(spec)
    given = {**given, **(params or {})}
    from losscli.losses.meta import LOSSES, validate_params

    cls = LOSSES.get(name)
    info = cls.info
    options = {k: given.pop(k) for k in list(given) if k in COMMON_KWARGS}
    for key in options:
        if for_engine and key in ENGINE_OWNED:
            what = "trains on the mean of the batch" if key == "reduction" else "passes the training set's class counts"
            raise UsageError(f"{info.name}: remove {key}={options[key]!r}; the engine {what} itself")
    options = _check_common(info, options)
    validated = validate_params(info, given)
    for key, value in validated.items():
        _check_finite(info.name, key, value)
    return LossSpec(info.name, validated, options)


def _check_common(info, options: dict[str, Any]) -> dict[str, Any]:
    from losscli.losses.base import REDUCTIONS

    out = {}
    for key, value in options.items():
        where = f"{info.name}: {key}"
        if key == "reduction":
            if value not in REDUCTIONS:
                raise UsageError(f"{where} must be one of {', '.join(REDUCTIONS)}, got {value!r}")
        elif key == "ignore_index":
            if isinstance(value, bool) or not isinstance(value, int):
                raise UsageError(f"{where} must be an integer class index, got {value!r}")
        elif key in ("weight", "class_counts"):
            if key == "weight" and not info.supports_weight:
                raise UsageError(f"{info.name} does not support per-class weights")
            values = value if isinstance(value, (list, tuple)) else None
            if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
                raise UsageError(f"{where} must be a non-empty list of numbers, got {value!r}")
            if any(not math.isfinite(v) or v < 0 for v in values):
                raise UsageError(f"{where} must hold finite non-negative numbers, got {value!r}")
            value = [float(v) for v in values]
        out[key] = value
    return out


def _check_finite(loss: str, key: str, value: Any) -> None:
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if isinstance(v, float) and not math.isfinite(v):
            raise UsageError(f"{loss}: parameter {key!r} must be finite, got {v!r}")
