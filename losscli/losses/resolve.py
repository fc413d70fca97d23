"""Canonical loss specs: one name, validated parameters, one label, however the user wrote it.

``focal``, ``focal(gamma=2)`` and ``FOCAL(gamma=2.0)`` are one configuration: the same
:class:`LossSpec` (full validated parameters, defaults included) with the label ``focal``
(the name plus the parameters that differ from the defaults, and those without a default).
``compare`` hashes and dedupes runs by this, so equal configurations are never trained twice.

A composite loss (a weighted sum, :mod:`losscli.losses.composite`) is a LossSpec with ``parts``:
``(weight, part spec)`` in the order given, each part canonical, weights as floats, so
``ce + 1*focal(gamma=2)`` and ``ce+focal`` are one configuration with the label ``ce + focal``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from losscli.errors import UsageError
from losscli.lossspec import EmptyValueError, format_composite, format_loss_spec, parse_loss_spec, split_composite

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
    #: a composite loss: ``((weight, LossSpec), ...)`` in the given order; its ``name`` is the sum
    #: without options (``ce + 0.5*focal``), ``params`` is empty and ``options`` apply to the whole sum
    parts: tuple = ()

    def __post_init__(self) -> None:
        if self.label:
            return
        if self.parts:
            label = format_composite([(w, p.label) for w, p in self.parts], self.options)
        else:  # the canonical label: name + the parameters that differ from the defaults
            from losscli.losses.meta import LOSSES

            info = LOSSES.get(self.name).info
            defaults = {p.name: _MISSING if p.required else p.default for p in info.params}
            shown = {k: v for k, v in self.params.items() if not _same(v, defaults.get(k, _MISSING))}
            label = format_loss_spec(self.name, {**shown, **self.options})
        object.__setattr__(self, "label", label)

    @property
    def is_composite(self) -> bool:
        return bool(self.parts)

    def info(self):
        """The loss's :class:`LossInfo` (a composite's is derived from its parts)."""
        from losscli.losses.meta import LOSSES

        if not self.parts:
            return LOSSES.get(self.name).info
        from losscli.losses.composite import composite_info

        return composite_info(self.name, [(w, p.info(), p.params) for w, p in self.parts])

    def kwargs(self) -> dict[str, Any]:
        """Everything ``build_loss(name, **kwargs)`` needs besides engine-supplied class counts."""
        return {**self.params, **self.options}

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "params": dict(self.params), "options": dict(self.options), "label": self.label}
        if self.parts:
            out["parts"] = [{"weight": w, **p.to_dict()} for w, p in self.parts]
        return out

    def resolved(self) -> dict[str, Any]:
        """Plain data that :func:`resolve_loss` reads back to this spec (a run's config.yaml; hashed
        into run keys, so everything that changes the loss is in it: every parameter, every weight)."""
        out = {"name": self.name, "params": dict(self.params), "options": dict(self.options)}
        if self.parts:
            out["parts"] = [{"weight": w, **p.resolved()} for w, p in self.parts]
        return out


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
    """Parse and validate ``spec`` (``"focal(gamma=2)"``, a name, a ``{name, params}`` dict, a
    composite ``"ce + 0.5*focal"`` or a LossSpec) merged with ``params`` (for a composite: keyword
    arguments of the whole sum). With ``for_engine`` the keyword arguments the engine sets itself
    (``reduction``, ``class_counts``) and losses it cannot train alone are refused, saying why."""
    if isinstance(spec, LossSpec):
        if spec.parts:
            return _resolve_composite(list(spec.parts), {**spec.options, **(params or {})}, for_engine)
        name, given = spec.name, {**spec.params, **spec.options}
    elif isinstance(spec, dict):
        if not isinstance(spec.get("name"), str):
            raise UsageError(f"a loss given as a mapping needs a string 'name', got {spec!r}")
        given = dict(spec.get("params") or {}) | dict(spec.get("options") or {}) | dict(params or {})
        if spec.get("parts") is not None:  # a run's config.yaml
            return _resolve_composite(_mapping_parts(spec["parts"]), given, for_engine)
        composite = split_composite(spec["name"])
        if composite is not None:  # a sum written as the name
            return _resolve_composite(composite[0], {**composite[1], **given}, for_engine)
        name = spec["name"]
    else:
        composite = split_composite(spec)
        if composite is not None:
            terms, options = composite
            return _resolve_composite(terms, {**options, **(params or {})}, for_engine)
        name, given = parse_spec(spec)
    given = {**given, **(params or {})}
    from losscli.losses.meta import LOSSES, validate_params

    cls = LOSSES.get(name)
    info = cls.info
    options = {k: given.pop(k) for k in list(given) if k in COMMON_KWARGS}
    if for_engine:
        _refuse_engine_owned(info.name, options)
    options = _check_common(info, options)
    validated = validate_params(info, given)
    for key, value in validated.items():
        _check_finite(info.name, key, value)
    if for_engine:
        check_trainable(info)
    return LossSpec(info.name, validated, options)


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """:func:`~losscli.lossspec.parse_loss_spec`, an empty parameter value (``focal(gamma=)``) named
    with the parameter's default."""
    try:
        return parse_loss_spec(spec)
    except EmptyValueError as exc:
        raise _with_default(exc) from None


def _with_default(exc: EmptyValueError) -> UsageError:
    """``focal(gamma=)``: the message shows the parameter's default (``focal(gamma=2.0)``) when the
    loss and parameter are known; an unknown loss is the error to report first."""
    from losscli.losses.meta import LOSSES

    info = LOSSES.get(exc.loss).info if exc.loss else None
    param = next((p for p in info.params if p.name == exc.key), None) if info else None
    if param is None or param.default is None:
        return exc
    example = format_loss_spec(exc.loss, {exc.key: param.default})
    return UsageError(f"{exc.where}: the value for {exc.key!r} is empty; write a value, as in {example} (its default)")


def _mapping_parts(parts: Any) -> list[tuple[Any, Any]]:
    """``(weight, part)`` of a composite's ``parts`` list of mappings (a run's config.yaml)."""
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        raise UsageError(f"a composite loss's 'parts' must be a list of mappings with weight, name and params, "
                         f"got {parts!r}")
    return [(p.get("weight", 1.0), {k: v for k, v in p.items() if k != "weight"}) for p in parts]


def _resolve_composite(terms: list[tuple[Any, Any]], options: dict[str, Any], for_engine: bool) -> LossSpec:
    """A composite LossSpec from ``(weight, part)`` terms (part: a spec string, mapping or LossSpec)
    and keyword arguments of the whole sum; each part canonical, weights positive finite floats."""
    parts: list[tuple[float, LossSpec]] = []
    for weight, term in terms:
        # parts carry no options (refused below), so the engine's checks apply to the sum only:
        # an embedding loss is trainable as a part of a sum with a classification loss
        part = resolve_loss(term)
        if part.parts:
            raise UsageError(f"{part.label}: a part of a sum cannot itself be a sum; write one flat sum")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
            raise UsageError(f"{part.label}: its weight in a sum must be a positive finite number, got {weight!r}")
        parts.append((float(weight), part))
    body = format_composite([(w, p.label) for w, p in parts])
    for _, part in parts:
        if part.options:  # one contract for the sum: per-class weight / ignore_index apply to every part
            key = next(iter(part.options))
            raise UsageError(f"{body}: {key} applies to the whole sum, not to one part; write "
                             f"({format_composite([(w, LossSpec(p.name, p.params).label) for w, p in parts])})"
                             f"({key}=...)")
    labels = [p.label for _, p in parts]
    twice = sorted({lab for lab in labels if labels.count(lab) > 1})
    if twice:
        raise UsageError(f"{body} lists {twice[0]} twice; list each loss once with one weight")
    from losscli.losses.composite import composite_info

    info = composite_info(body, [(w, p.info(), p.params) for w, p in parts])
    unknown = sorted(set(options) - set(COMMON_KWARGS))
    if unknown:
        raise UsageError(f"{body}: unknown parameter(s) {', '.join(map(repr, unknown))} for the sum; give a part's "
                         "parameters inside it, e.g. focal(gamma=3)")
    if for_engine:
        _refuse_engine_owned(body, options)
        check_trainable(info)
    return LossSpec(body, {}, _check_common(info, options), parts=tuple(parts))


def _refuse_engine_owned(label: str, options: dict[str, Any]) -> None:
    for key in options:
        if key in ENGINE_OWNED:
            what = "trains on the mean of the batch" if key == "reduction" else "passes the training set's class counts"
            raise UsageError(f"{label}: remove {key}={options[key]!r}; the engine {what} itself")


def check_trainable(info) -> None:
    """UsageError when the engine cannot train this loss on its own: a loss of embeddings alone
    trains no classifier, so a run of it would have no predictions to evaluate (its papers
    evaluate retrieval, not classification); summed with a classification loss it trains."""
    if info.input == "embeddings":
        example = info.name if info.family != "composite" else "multi_similarity"
        raise UsageError(f"{info.name} trains embeddings, not a classifier; sum it with a classification loss, "
                         f"e.g. --loss 'ce + 0.5*{example}'")


def _check_common(info, options: dict[str, Any]) -> dict[str, Any]:
    from losscli.losses.base import REDUCTIONS, check_ignore_index

    out = {}
    for key, value in options.items():
        where = f"{info.name}: {key}"
        if key == "reduction":
            if value not in REDUCTIONS:
                raise UsageError(f"{where} must be one of {', '.join(REDUCTIONS)}, got {value!r}")
        elif key == "ignore_index":
            check_ignore_index(info.name, value)
        elif key in ("weight", "class_counts"):
            if key == "weight" and not info.supports_weight:
                raise UsageError(f"{info.name} does not support per-class weights")
            values = value if isinstance(value, (list, tuple)) else None
            if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
                raise UsageError(f"{where} must be a non-empty list of numbers, got {value!r}")
            if any(not math.isfinite(v) or v < 0 for v in values):
                raise UsageError(f"{where} must hold finite non-negative numbers, got {value!r}")
            if key == "weight" and not any(v > 0 for v in values):  # the weighted mean would be 0/0: NaN
                raise UsageError(f"{where} needs at least one positive entry, got {value!r}")
            value = [float(v) for v in values]
        out[key] = value
    return out


def _check_finite(loss: str, key: str, value: Any) -> None:
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if isinstance(v, float) and not math.isfinite(v):
            raise UsageError(f"{loss}: parameter {key!r} must be finite, got {v!r}")
