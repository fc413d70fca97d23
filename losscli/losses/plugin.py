"""Losses from plugins: ``--loss pkg.module:Name`` and installed ``losscli.losses`` entry points.

A plugin loss is one of:

* a subclass of :class:`~losscli.losses.base.Loss` with metadata (``@register_loss`` or an
  ``info = LossInfo(...)`` class attribute): it keeps its metadata and claimed properties;
* a plain ``torch.nn.Module`` subclass whose ``forward(logits, target)`` returns the loss;
* a factory (a function) returning such a module.

Its name is the import path (or the entry point's name): runs, reports and ``compare`` record and
hash that, so a run is rebuilt from its ``config.yaml`` in any process that can import the plugin
(``compare``'s worker processes, ``eval``), and two plugins never share an identity. A ``Loss``
subclass is renamed through a subclass that carries the renamed metadata.

A plain module (or factory) is wrapped in :class:`ModuleLoss`, which gives it the loss contract
(input validation, the float32 upcast of low-precision logits, reductions, ``ignore_index``) and
derived metadata: family ``plugin``, no paper, no claimed properties, and as hyperparameters the
constructor's keyword arguments with their defaults (types from the defaults; values are checked
for type only). An nn.Module subclass's argument without a default is a required hyperparameter:
the spec must give it (``pkg.mod:Loss(margin=0.5)``; type from its annotation, a number when it has
none), and the canonical label always shows it. A factory function's arguments need defaults: it
can be any function, and a spec's values must not reach one (``os:system(command=...)``). Reduction follows the constructor:

* it takes ``reduction`` (torch's convention): built with ``reduction="none"``, it must return one
  loss per row ``[N]``; the wrapper then gives reductions mean / sum / none, per-class ``weight``
  (``sum_i w_{y_i} l_i / sum_i w_{y_i}``, as torch) and ``ignore_index`` like every registered loss;
* it does not: its output is the batch mean (a scalar), so only ``reduction="mean"``, no per-class
  weight, and rows whose target is ``ignore_index`` are dropped before the call.

``weight`` and ``ignore_index`` are never passed to the module (the wrapper applies them); a
``class_counts`` argument receives the training set's class counts (float64 ``[C]``, required when
it has no default). A module class's ``forward`` arguments named like the engine's context
(``epoch``, ``index``, ``teacher_logits``, ``embeddings``) receive it: required when they have no
default. (A factory's module is known only once built: it gets the logits and targets only.)
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from losscli.errors import UsageError
from losscli.losses.base import Loss, LossInputError
from losscli.losses.meta import CONTEXT_KEYS, LossInfo, Param, Reference
from losscli.plugins import PLUGIN_ERRORS, describe_exception

PLUGIN_FAMILY = "plugin"
#: keyword arguments the wrapper handles itself: never hyperparameters of a plugin
_HANDLED = ("reduction", "weight", "ignore_index", "class_counts")
_KINDS = {bool: "bool", int: "int", float: "float", str: "str"}
#: attributes every loss instance has: a constructor argument of the same name would overwrite one
_RESERVED = {"info", "params", "inner", "training"}


def adapt_loss(name: str, obj: Any, origin: str) -> tuple[type, dict]:
    """``(Loss subclass named name, registry metadata)`` for the plugin object ``obj``."""
    if inspect.isclass(obj) and issubclass(obj, Loss):
        info = obj.__dict__.get("info", getattr(obj, "info", None))
        if not isinstance(info, LossInfo):
            raise UsageError(f"loss {origin} subclasses losscli.losses.Loss but has no metadata: decorate it with "
                             "@register_loss(...) or set info = LossInfo(...), or subclass torch.nn.Module instead")
        if info.name != name:
            info = dataclasses.replace(info, name=name, aliases=())
            obj = type(obj.__name__, (obj,), {"info": info, "__module__": obj.__module__, "__doc__": obj.__doc__})
        return obj, {"family": info.family, "info": info}
    if inspect.isclass(obj) and not issubclass(obj, nn.Module):
        raise UsageError(f"loss {origin} is a class but not a torch.nn.Module subclass; a plugin loss is an "
                         "nn.Module subclass (forward(logits, target) -> loss) or a factory function returning one")
    if isinstance(obj, nn.Module) or not callable(obj):
        what = "an nn.Module instance" if isinstance(obj, nn.Module) else f"a {type(obj).__name__}"
        raise UsageError(f"loss {origin} is {what}; name an nn.Module subclass or a factory function returning one "
                         "(losscli builds a fresh one for every run)")
    cls = _module_loss_class(name, obj, origin)
    return cls, {"family": cls.info.family, "info": cls.info}


def _module_loss_class(name: str, obj: Any, origin: str) -> type:
    """A :class:`ModuleLoss` subclass whose metadata is derived from ``obj``'s signatures."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        raise UsageError(f"loss {origin}: cannot read its constructor's signature") from None
    params, takes = [], set()
    counts_required = False
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name in _HANDLED:
            takes.add(p.name)
            counts_required |= p.name == "class_counts" and p.default is p.empty
            continue
        if p.kind == p.POSITIONAL_ONLY:
            raise UsageError(f"loss {origin}: constructor argument {p.name!r} is positional-only; losscli builds the "
                             "loss from keyword arguments (remove the '/' from its signature)")
        if p.default is p.empty and not inspect.isclass(obj):
            # a factory can be any function: values from a spec (a shared preset, a config.yaml) must not reach
            # one, or `os:system(command=...)` would run a shell; an nn.Module subclass may require arguments
            raise UsageError(f"loss {origin}: factory argument {p.name!r} has no default; a factory function takes "
                             "only arguments with defaults (give it one), while an nn.Module subclass may require "
                             "arguments that the spec gives")
        if p.name in _RESERVED or p.name in dir(ModuleLoss):
            raise UsageError(f"loss {origin}: constructor argument {p.name!r} clashes with an attribute of the loss "
                             "module; rename it")
        param = _param(p)
        if param is not None:
            params.append(param)
    needs, uses = _forward_context(obj, origin)
    doc = (inspect.getdoc(obj) or "").strip().split("\n")[0]
    info = LossInfo(
        name=name, family=PLUGIN_FAMILY, reference=Reference(title=doc or f"plugin loss {origin}", authors="", year=0),
        formula=f"defined by the plugin's code ({obj.__module__}.{obj.__qualname__})",
        params=tuple(params), can_be_negative=True, needs_class_counts=counts_required,
        batch_coupled="reduction" not in takes, supports_weight="reduction" in takes, needs=needs, uses=uses,
        notes="Plugin loss; properties are not claimed (subclass losscli.losses.Loss with @register_loss to "
              "declare them). " + ("Per-sample: built with reduction='none'." if "reduction" in takes else
                                   "Its output is the batch mean: reduction 'mean' only, no per-class weight."),
    )
    attrs = {"info": info, "make": staticmethod(obj), "takes_reduction": "reduction" in takes,
             "takes_counts": "class_counts" in takes, "forward_keys": needs + uses, "__module__": __name__}
    return type(f"ModuleLoss[{name}]", (ModuleLoss,), attrs)


def _param(p: inspect.Parameter) -> Param | None:
    """A hyperparameter for constructor argument ``p`` (type from its default); None when its default
    is not a number, text, bool or list of numbers (losscli cannot set it: the default is used).
    Without a default it is required: the spec must give it (type from the annotation, else a number)."""
    default = p.default
    if default is p.empty:
        text = str(p.annotation) if p.annotation is not p.empty else ""
        kind = next((k for t, k in (("list", "float_list"), ("tuple", "float_list"),
                                    ("Sequence", "float_list"), ("bool", "bool"), ("int", "int"), ("str", "str")) if t in text), "float")
        return Param(p.name, None, doc="plugin argument (required)", kind=kind, search=False, required=True,
                     nullable="None" in text or "Optional" in text)
    if isinstance(default, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                  for v in default):
        return Param(p.name, [float(v) for v in default], doc="plugin argument", kind="float_list", search=False)
    if default is None:  # the type from the annotation when it names one; a number otherwise
        text = str(p.annotation)
        kind = next((k for t, k in (("bool", "bool"), ("int", "int"), ("str", "str")) if t in text), "float")
        return Param(p.name, None, doc="plugin argument", kind=kind, nullable=True, search=False)
    kind = _KINDS.get(type(default))
    return Param(p.name, default, doc="plugin argument", kind=kind, search=False) if kind else None


def _forward_context(obj: Any, origin: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(needs, uses)``: engine context the module's ``forward`` takes (required / optional)."""
    forward = getattr(obj, "forward", None) if inspect.isclass(obj) else None
    if forward is None:  # a factory: the module it returns is known only when built
        return (), ()
    needs, uses = [], []
    for i, p in enumerate(inspect.signature(forward).parameters.values()):
        if i < 3 or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):  # self, logits, target
            continue
        if p.name in CONTEXT_KEYS:
            (needs if p.default is p.empty else uses).append(p.name)
        elif p.default is p.empty:
            raise UsageError(f"loss {origin}: forward argument {p.name!r} is not one losscli passes "
                             f"({', '.join(CONTEXT_KEYS)}); give it a default")
    return tuple(needs), tuple(uses)


class ModuleLoss(Loss):
    """The loss contract around a plugin's plain module (see the module docstring)."""

    make: ClassVar[Callable[..., Any]]
    takes_reduction: ClassVar[bool]
    takes_counts: ClassVar[bool]
    forward_keys: ClassVar[tuple[str, ...]]

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        build = dict(self.params)
        if self.takes_reduction:
            build["reduction"] = "none"
        if self.takes_counts:
            build["class_counts"] = self.class_counts
        try:
            inner = self.make(**build)
        except UsageError:
            raise
        except PLUGIN_ERRORS as exc:  # noqa: BLE001 - the plugin's constructor refused its arguments: one line
            raise UsageError(f"{self.info.name}: building it failed: {describe_exception(exc)}") from exc
        if not callable(inner):
            raise UsageError(f"{self.info.name}: the factory returned a {type(inner).__name__}, not a loss module")
        self.inner = inner  # an nn.Module is a submodule: its parameters (if any) train like any loss's

    def _call(self, logits: torch.Tensor, target: torch.Tensor, context: dict) -> torch.Tensor:
        try:
            out = self.inner(logits, target, **{k: v for k, v in context.items() if k in self.forward_keys})
        except SystemExit as exc:  # it ended losscli silently with its own code, mid-run: a failure like any other
            raise RuntimeError(f"{self.info.name} called sys.exit({exc.code!r}) in its forward") from None
        if not isinstance(out, torch.Tensor):
            raise LossInputError(f"{self.info.name} returned a {type(out).__name__}, not a tensor")
        return out

    def per_sample(self, logits: torch.Tensor, target: torch.Tensor, **context: Any) -> torch.Tensor:
        out = self._call(logits, target, context)
        if tuple(out.shape) != (logits.shape[0],):
            raise LossInputError(f"{self.info.name}: built with reduction='none' it must return one loss per row, "
                                 f"shape [{logits.shape[0]}], got {list(out.shape)}")
        return out

    def batch_loss(self, logits: torch.Tensor, target: torch.Tensor, **context: Any) -> torch.Tensor:
        valid = target != self.ignore_index
        if not bool(valid.all()):  # ignored rows are left out of the batch mean
            n = target.shape[0]
            logits, target = logits[valid], target[valid]
            context = {k: v[valid] if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == n else v
                       for k, v in context.items()}
        out = self._call(logits, target, context)
        if out.dim() != 0:
            raise LossInputError(f"{self.info.name} returned shape {list(out.shape)}: a plugin loss whose constructor "
                                 "takes no `reduction` must return the batch mean (a scalar); accept reduction= and "
                                 "return one loss per row for reduction none/sum and per-class weights")
        return out

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.params.items())
