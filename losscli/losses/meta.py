"""Loss metadata: hyperparameter specs with valid ranges, references, ``LossInfo`` and the
``LOSSES`` registry with its ``@register_loss`` decorator.

Everything here is plain data (torch is needed only to accept tensors as list values).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import torch

from losscli.errors import UsageError
from losscli.registry import Registry

#: keyword arguments of ``forward`` beyond (logits, target); the same names everywhere:
#: ``teacher_logits`` [N, C], ``index`` [N] dataset sample ids, ``epoch`` the 0-based epoch index,
#: ``embeddings`` [N, D] the model's features (a composite loss that mixes logits and embedding parts)
CONTEXT_KEYS = ("teacher_logits", "index", "epoch", "embeddings")
FAMILIES = (
    "standard",
    "noise-robust",
    "imbalance",
    "calibration",
    "efficiency",
    "metric-surrogate",
    "multi-label",
    "distillation",
    "metric-learning",  # embedding losses (input="embeddings")
    "regression",  # regression as classification (target="regression")
)
#: what a loss's forward takes (``LossInfo.input`` / ``LossInfo.target``), validated by ``Loss._check_inputs``
INPUT_KINDS = ("logits", "embeddings", "sets")
TARGET_KINDS = ("class", "regression")


# --------------------------------------------------------------------------- metadata
@dataclass(frozen=True)
class Param:
    """A hyperparameter: default, valid range and type. Bounds are inclusive unless stated."""

    name: str
    default: Any
    doc: str = ""
    kind: str = "float"  # float | int | str | bool | float_list
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: value must be > low (not >=)
    high_open: bool = False
    choices: tuple | None = None
    nullable: bool = False  # None is a valid value (e.g. "derive it")
    # what ``compare --tune`` searches: None = derived from the default and the valid range
    # (losscli.app.tuning.search_space); False = not a tuning knob (numerical guards, data facts);
    # (low, high) or (low, high, "log") = this interval; a list = these values
    search: Any = None
    # no default: the spec must give a value (a plugin constructor's argument without a default)
    required: bool = False

    def describe_range(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return " and ".join(parts) if parts else "any"

    def validate(self, value: Any, loss_name: str) -> Any:
        """Coerce ``value`` to this parameter's type and check its range."""
        where = f"{loss_name}: parameter {self.name!r}"
        if value is None:
            if self.nullable or (self.default is None and not self.required):
                return None
            raise UsageError(f"{where} cannot be None")
        try:
            if self.kind == "float":
                if isinstance(value, bool):
                    raise TypeError
                value = float(value)
            elif self.kind == "int":
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise TypeError
                value = int(value)
            elif self.kind == "bool":
                if isinstance(value, str):
                    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise TypeError
                    value = value.lower() in ("true", "1", "yes")
                elif not isinstance(value, bool):
                    raise TypeError
            elif self.kind == "str":
                if not isinstance(value, str):
                    raise TypeError
            elif self.kind == "float_list":
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    value = [float(value)]
                elif isinstance(value, torch.Tensor):
                    value = [float(v) for v in value.flatten().tolist()]
                else:
                    value = [float(v) for v in value]
            else:  # pragma: no cover - programming error
                raise AssertionError(f"unknown Param kind {self.kind}")
        except (TypeError, ValueError):
            raise UsageError(f"{where} must be a {self.kind.replace('_', ' ')}, got {value!r}") from None
        if self.choices is not None and value not in self.choices:
            raise UsageError(f"{where} must be {self.describe_range()}, got {value!r}")
        if self.kind in ("float", "int"):
            if isinstance(value, float) and math.isnan(value):
                raise UsageError(f"{where} must be a number, got nan")
            bad_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
            bad_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
            if bad_low or bad_high:
                raise UsageError(f"{where} must be {self.describe_range()}, got {value!r}")
        return value


@dataclass(frozen=True)
class Reference:
    title: str
    authors: str
    year: int
    venue: str = ""
    url: str = ""

    def short(self) -> str:
        return f"{self.authors} ({self.year}), {self.title}"


@dataclass(frozen=True)
class LossInfo:
    """Everything the registry, the docs and the engine know about a loss."""

    name: str
    family: str
    reference: Reference
    formula: str
    params: tuple[Param, ...] = ()
    bounded: bool = False
    symmetric: bool = False
    convex: bool | None = None
    needs_class_counts: bool = False
    multilabel: bool = False
    soft_targets: bool = False
    supports_weight: bool = False
    supports_ignore_index: bool = True
    batch_coupled: bool = False
    can_be_negative: bool = False
    head: str | None = None  # "cosine" | "distance" | "dual" | "legendre": the engine installs ``make_head``
    needs: tuple[str, ...] = ()  # context the engine must pass to forward (CONTEXT_KEYS)
    # forward context that is optional: used when given (e.g. ``epoch`` for a schedule)
    uses: tuple[str, ...] = ()
    # upper bound of the per-sample loss as a function of (params, num_classes), if bounded
    upper_bound: Callable[[dict, int], float] | None = None
    # False when the method defines its gradient with stop-gradients or random derivatives
    # (circle's alphas, ACLS's detached max, EnsLoss): finite differences of the value do not
    # equal the gradient by design, so gradcheck does not apply (each module tests its gradient)
    exact_gradient: bool = True
    # False when the value is random by design (EnsLoss): no permutation-invariance check
    deterministic: bool = True
    # extra constructor arguments the registry-wide tests need (e.g. a harmonic ``n``)
    test_params: dict = field(default_factory=dict)
    notes: str = ""
    aliases: tuple[str, ...] = ()
    # -- input kinds: what forward(x, target) receives; Loss._check_inputs validates each kind
    # input "logits": x is [N, C] (the head's output; a loss with its own head may define a wider
    #   output, e.g. dhkd's [N, 2C]); "embeddings": x is [N, D] features (metric learning; the loss
    #   normalises them itself); "sets": x is [B, m, C], the logits of the m members of B sets.
    input: str = "logits"
    # target "class": [N] int labels or [N, C] probabilities ([B, m] member labels for "sets");
    # "regression": float [N] values (regression as classification: the C columns are bins).
    target: str = "class"
    # False when the engine cannot train this loss stacked with other runs (engine/batched.py),
    # e.g. because its batches are not rows of the training set (OKO's sets)
    stackable: bool = True

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON/YAML (stable keys: name, family, params, reference)."""
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "family": self.family,
            "params": {p.name: p.default for p in self.params},
            "param_ranges": {p.name: f"required, a {p.kind.replace('_', ' ')}" if p.required else p.describe_range()
                             for p in self.params},
            "param_docs": {p.name: p.doc for p in self.params},
            "formula": self.formula,
            "properties": {
                "bounded": self.bounded,
                "symmetric": self.symmetric,
                "convex": self.convex,
                "can_be_negative": self.can_be_negative,
                "needs_class_counts": self.needs_class_counts,
                "multilabel": self.multilabel,
                "soft_targets": self.soft_targets,
                "supports_weight": self.supports_weight,
                "batch_coupled": self.batch_coupled,
                "head": self.head,
                "needs": list(self.needs),
                "input": self.input,
                "target": self.target,
                "stackable": self.stackable,
            },
            "reference": asdict(self.reference),
            "notes": self.notes,
        }


LOSSES: Registry[type] = Registry("loss")


def register_loss(
    name: str,
    *,
    family: str,
    reference: Reference,
    formula: str,
    params: Sequence[Param] = (),
    aliases: Sequence[str] = (),
    **props: Any,
) -> Callable[[type], type]:
    """Class decorator: attach a ``LossInfo`` and add the class to ``LOSSES``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown loss family {family!r}; use one of {FAMILIES}")

    if props.get("input", "logits") not in INPUT_KINDS or props.get("target", "class") not in TARGET_KINDS:
        raise ValueError(f"{name}: input must be one of {INPUT_KINDS} and target one of {TARGET_KINDS}")

    def decorator(cls: type) -> type:
        info = LossInfo(
            name=name, family=family, reference=reference, formula=formula,
            params=tuple(params), aliases=tuple(aliases), **props,
        )
        cls.info = info
        LOSSES.add(name, cls, aliases=aliases, family=family, info=info)
        return cls

    return decorator


def validate_params(info: LossInfo, params: dict[str, Any]) -> dict[str, Any]:
    """Defaults merged with ``params``; unknown names and bad values raise UsageError."""
    known = {p.name: p for p in info.params}
    unknown = sorted(set(params) - set(known))
    if unknown:
        valid = ", ".join(f"{p.name}={p.default!r}" for p in info.params) or "(none)"
        raise UsageError(
            f"{info.name}: unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"valid parameters: {valid}"
        )
    missing = [p for p in info.params if p.required and p.name not in params]
    if missing:
        from losscli.lossspec import format_loss_spec

        example = format_loss_spec(info.name, {**params, **{p.name: "VALUE" for p in missing}})
        names = ", ".join(repr(p.name) for p in missing)
        which = f"parameters {names} have" if len(missing) > 1 else f"parameter {names} has"
        raise UsageError(f"{info.name}: {which} no default (the plugin's constructor requires a value); give "
                         f"{'them' if len(missing) > 1 else 'it'} in the spec, as in {example!r}")
    return {name: p.validate(params.get(name, p.default), info.name) for name, p in known.items()}
