"""``torch.func`` support for the fused autograd nodes: ``grad``, ``vjp``, ``jacrev``, ``vmap`` and
per-sample gradients (``vmap(grad(...))``).

The fused nodes are ``torch.autograd.Function``s in the ``setup_context`` style, so ``torch.func``'s
reverse-mode transforms can run them. Their forwards take data-dependent branches (saturation
checks, row blocking, pair lists), which ``vmap`` cannot trace, so torch's generated vmap rule
does not apply. Each node declares one of two rules instead, both of which run the node itself on
the un-batched tensors:

- ``rowwise_vmap``: every output row depends only on the same row of the row-indexed inputs
  (per-sample losses). The vmapped dimension is folded into the rows: one call on
  ``[V * N, ...]``, outputs unfolded to ``[V, N, ...]``.
- ``looped_vmap``: anything else (batch-level sums). One call per vmapped index, outputs stacked.

Forward-mode transforms (``jvp``, ``jacfwd``) are not supported: the nodes have no ``jvp`` rule.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch


def transforms_active() -> bool:
    """True while a ``torch.func`` transform (grad, vmap, ...) is running."""
    return bool(torch._C._are_functorch_transforms_active())


def _unbatch(args: Sequence, in_dims: Sequence, index: int) -> list:
    return [a.select(d, index) if d is not None else a for a, d in zip(args, in_dims)]


def _stack(results: list):
    """Stack per-index outputs (a tensor, or a tuple of tensors / Nones) along a new dim 0."""
    first = results[0]
    if not isinstance(first, tuple):
        return torch.stack(results), 0
    outs, dims = [], []
    for parts in zip(*results):
        if parts[0] is None:
            outs.append(None)
            dims.append(None)
        else:
            outs.append(torch.stack(parts))
            dims.append(0)
    return tuple(outs), tuple(dims)


def _looped_rule(fn, info, in_dims, *args):
    return _stack([fn.apply(*_unbatch(args, in_dims, i)) for i in range(info.batch_size)])


def _fold(x: torch.Tensor, dim: int | None, size: int) -> torch.Tensor:
    """``[..., V at dim, ...]`` (or unbatched ``[N, ...]``) -> ``[V * N, ...]``."""
    x = x.movedim(dim, 0) if dim is not None else x.unsqueeze(0).expand(size, *x.shape)
    return x.reshape(size * x.shape[1], *x.shape[2:])


def _unfold(out, size: int):
    if out is None:
        return None, None
    if isinstance(out, tuple):
        pairs = [_unfold(o, size) for o in out]
        return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
    return out.reshape(size, out.shape[0] // size, *out.shape[1:]), 0


def _rowwise_rule(fn, rows: tuple[int, ...], info, in_dims, *args):
    if any(d is not None and i not in rows for i, d in enumerate(in_dims)):
        return _looped_rule(fn, info, in_dims, *args)  # a batched non-row input: no folding
    size = info.batch_size
    folded = list(args)
    for i in rows:
        if i < len(args) and isinstance(args[i], torch.Tensor):
            folded[i] = _fold(args[i], in_dims[i], size)
    return _unfold(fn.apply(*folded), size)


class _Bound:
    """What ``inspect.BoundArguments`` gives ``torch.autograd.Function.apply`` for a call that passes
    every parameter positionally: the arguments as they are, no keywords, no defaults to apply."""

    __slots__ = ("args",)
    kwargs: dict = {}

    def __init__(self, args: tuple):
        self.args = args

    def apply_defaults(self) -> None:
        pass


class _PositionalSignature(inspect.Signature):
    """A forward's signature whose ``bind`` returns the positional arguments unchanged when the call
    names every fixed parameter positionally and passes no keywords (how losscli calls its nodes);
    any other call takes ``inspect.Signature.bind``, which walks the parameters in Python on every
    ``apply``: 11.1 us against 0.7 us for ``_LogSoftmaxAt``'s five arguments (paired, thread time)."""

    __slots__ = ("_fixed", "_variadic")

    def __init__(self, sig: inspect.Signature):
        super().__init__(list(sig.parameters.values()), return_annotation=sig.return_annotation)
        kinds = [p.kind for p in sig.parameters.values()]
        self._variadic = bool(kinds) and kinds[-1] == inspect.Parameter.VAR_POSITIONAL
        fixed = kinds[:-1] if self._variadic else kinds
        plain = all(k == inspect.Parameter.POSITIONAL_OR_KEYWORD for k in fixed)
        self._fixed = len(fixed) if plain else -1  # -1: always the general bind

    def bind(self, /, *args, **kwargs):
        n = len(args)
        if not kwargs and self._fixed >= 0 and (n == self._fixed or (self._variadic and n > self._fixed)):
            return _Bound(args)
        return super().bind(*args, **kwargs)


def bind_once(cls):
    """Class decorator for a ``setup_context``-style node: its ``forward`` signature computed once.

    ``torch.autograd.Function.apply`` binds the call's arguments with ``inspect.signature(forward)``
    on every call for such nodes; ``inspect`` returns a function's ``__signature__`` when it has one,
    instead of rebuilding it (0.90-0.92x the whole forward+backward of label_smoothing, gce, focal
    and nce_rce on a 128 x 10 batch). The cached signature also binds an all-positional call without
    walking its parameters (``_PositionalSignature``)."""
    cls.forward.__signature__ = _PositionalSignature(inspect.signature(cls.forward))
    return cls


def rowwise_vmap(*rows: int, variadic_from: int | None = None):
    """Class decorator: a vmap rule for a per-row node whose row-indexed inputs are at positions
    ``rows`` (and every position from ``variadic_from`` on, for ``*row_inputs``)."""

    def decorate(cls):
        def rule(info, in_dims, *args):
            positions = rows if variadic_from is None else rows + tuple(range(variadic_from, len(args)))
            return _rowwise_rule(cls, positions, info, in_dims, *args)

        cls.vmap = staticmethod(rule)
        return bind_once(cls)

    return decorate


def looped_vmap(cls):
    """Class decorator: a vmap rule that runs the node once per vmapped index."""
    cls.vmap = staticmethod(lambda info, in_dims, *args: _looped_rule(cls, info, in_dims, *args))
    return bind_once(cls)


def needs_grad(x: torch.Tensor) -> bool:
    """Whether a node taking ``x`` must prepare a backward (decided by the caller: a
    ``setup_context`` forward has no ``ctx.needs_input_grad``)."""
    return torch.is_grad_enabled() and x.requires_grad


def vmap_active() -> bool:
    """True inside ``torch.func.vmap`` (at any depth of nested transforms)."""
    if not transforms_active():
        return False
    stack = getattr(torch._C._functorch, "get_interpreter_stack", None)
    if stack is None:  # private API gone: assume the most restrictive transform
        return True
    return any(i.key() == torch._C._functorch.TransformType.Vmap for i in (stack() or ()))


def can_inspect_values(x: torch.Tensor) -> bool:
    """Whether code may branch on ``x``'s values (input checks, shortcuts for rare rows): a CPU
    tensor outside ``torch.func.vmap``. On a GPU reading a value synchronises with the host, and
    under ``vmap`` there is no single value to read; both take the branch-free path."""
    return x.device.type == "cpu" and not vmap_active()


def keep_for_backward(ctx, *outputs: torch.Tensor | None) -> None:
    """Declare a node's extra outputs (tensors it returns only so that ``setup_context`` can save
    them) non-differentiable, and stop autograd from materialising zero gradients for them: an
    ``[N, C]`` zero tensor per backward would cost as much as the backward itself."""
    ctx.mark_non_differentiable(*(t for t in outputs if isinstance(t, torch.Tensor)))
    ctx.set_materialize_grads(False)


def own_output(r, n: int, z: torch.Tensor, h: torch.Tensor | None, inputs: tuple) -> torch.Tensor:
    """A one-block kernel output as ``softmax_core._Blocked``'s own ``[N]`` output: itself (detached from a
    view such as ``squeeze``'s: a view output of a custom Function may not be modified in place) when it is
    of ``z``'s dtype and device and no input shares its storage, else a copy as the row-block loop makes."""
    if isinstance(r, torch.Tensor) and r.shape == (n,) and r.dtype == z.dtype and r.device == z.device:
        root = r if r._base is None else r._base
        if all(root is not x and root is not getattr(x, "_base", None) for x in (z, z._base, h, *inputs)):
            return r.detach() if r._base is not None else r
    out = z.new_empty(n)
    out[:] = r
    return out
