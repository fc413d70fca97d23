"""Memory-efficient final linear layer + loss for huge output spaces.

``linear_loss(hidden [N, D], weight [C, D], target [N], loss="ce")`` equals
``build_loss(loss)(hidden @ weight.T + bias, target)`` (value and gradients) but never
holds the full ``[N, C]`` logits or their gradient. Two ways:

- streamed over the vocabulary (:mod:`losscli.losses.linear_stream`), for the losses whose value
  is a function of block-accumulable row statistics (:mod:`losscli.losses.stream_terms` says which
  and why not): only one ``[row_block, vocab_block]`` block of logits exists at a time, so the
  extra memory does not grow with C;
- row chunking (here), for every other row-wise loss: rows are processed in chunks of
  ``chunk_size``, and one chunk's full ``[chunk, C]`` logits (plus the loss's own intermediates
  for that chunk) exist at a time.

Row chunking (a ``torch.autograd.Function`` returning the per-row losses ``[N]``):

- forward, per chunk: ``z = h_chunk @ W.T + b``; the registry loss with
  ``reduction="none"`` gives the chunk's per-row values. When gradients will be needed,
  the same pass also takes ``d l_i / d z`` for the chunk by autograd on that chunk alone
  and accumulates ``grad_hidden[chunk] = dz @ W``, ``grad_W += dz.T @ h_chunk``,
  ``grad_b += dz.sum(0)`` (so the logits are computed once, as in the materialised path);
- backward: the upstream gradient of the per-row values is, for ``sum`` and ``mean``
  reductions, the same scalar for every row, and the stored gradients are scaled by it.
  For any other upstream gradient (``reduction="none"`` used in a larger graph) the
  chunks' logits are recomputed and the gradients accumulated with that row weighting.

Both return per-row values; the reduction is ordinary autograd on the ``[N]`` vector, with the
base class's semantics: ``mean`` = ``sum_i w_{y_i} l_i / sum_i w_{y_i}`` over non-ignored rows
(``w`` = 1 without class weights), ``sum``, or ``none``.

Only row-wise losses qualify: a row's value must depend on that row's logits and target
alone. Batch-coupled, multi-label, context-needing (teacher logits, sample index) losses and
those with a distance or other non-linear head are rejected with a clear error. Losses with a
cosine head (ldam) are accepted: a cosine head is a linear layer of L2-normalised rows, so pass
normalised ``hidden`` and ``weight`` to get cosine logits.
"""

from __future__ import annotations

from typing import Any

import torch

from losscli.errors import UsageError
# the package's registry and base class, imported from their modules: importing the package
# itself from here would make an import cycle (the package's ``linear_loss`` imports this module)
from losscli.losses.base import LOSSES, Loss
from losscli.losses.fused.transforms import can_inspect_values, transforms_active
from losscli.losses.linear_stream import DEFAULT_ROW_BLOCK, DEFAULT_VOCAB_BLOCK, StreamedLinearLoss
from losscli.losses.stream_terms import check_classes, plan_for, unsupported_reason
from losscli.lossspec import parse_loss_spec

#: bytes of float32 logits per chunk the default chunk size aims at
DEFAULT_CHUNK_BYTES = 32 * 2**20


def default_chunk_size(n: int, c: int, target_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Rows per chunk so that one chunk's float32 logits take about ``target_bytes``."""
    rows = max(1, target_bytes // (4 * max(1, c)))
    if rows >= 16:
        rows -= rows % 8
    return int(max(1, min(n, rows)))


def rowwise_losses() -> list[str]:
    """Registered losses ``linear_loss`` accepts."""
    return [n for n in LOSSES.names() if unsupported_reason(LOSSES.get(n).info) is None]


def streams(loss: Any = "ce", **params: Any) -> bool:
    """Whether ``linear_loss`` streams this loss (with these parameters) over the vocabulary by default."""
    return not isinstance(plan_for(_per_row_loss(loss, dict(params))), str)


def _per_row_loss(loss: Any, params: dict[str, Any]):
    """A ``reduction="none"`` instance of the requested loss (it carries the weight/ignore settings)."""
    if isinstance(loss, Loss):
        if params:
            raise UsageError("linear_loss: pass hyperparameters either in the Loss instance or as keywords, not both")
        info = loss.info
        kwargs: dict[str, Any] = dict(loss.params)
        if loss.weight is not None and info.supports_weight:  # (class_balanced derives its weights from the counts)
            kwargs["weight"] = loss.weight
        if loss.class_counts is not None:
            kwargs["class_counts"] = loss.class_counts
        kwargs["ignore_index"] = loss.ignore_index
        name = info.name
    elif isinstance(loss, str):
        name, spec_params = parse_loss_spec(loss) if "(" in loss else (loss, {})
        info = LOSSES.get(name).info
        kwargs = {**spec_params, **params}
        if "class_weight" in kwargs:
            kwargs["weight"] = kwargs.pop("class_weight")
        name = info.name
    else:
        raise UsageError(f"linear_loss: loss must be a registered loss name or a Loss, got {type(loss).__name__}")
    reason = unsupported_reason(info)
    if reason is not None:
        raise UsageError(f"linear_loss does not support {info.name!r}: {reason}. Supported: {', '.join(rowwise_losses())}")
    kwargs.pop("reduction", None)
    return LOSSES.get(name)(reduction="none", **kwargs)


class _ChunkedLinearLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, target, loss_fn, chunk_size):
        n = hidden.shape[0]
        need = ctx.needs_input_grad
        acc_dtype = torch.float32 if weight.dtype in (torch.float16, torch.bfloat16) else weight.dtype
        out = None
        g_hidden = torch.empty_like(hidden) if need[0] else None
        g_weight = torch.zeros(weight.shape, dtype=acc_dtype, device=weight.device) if need[1] else None
        g_bias = torch.zeros(bias.shape, dtype=acc_dtype, device=bias.device) if (bias is not None and need[2]) else None
        for s in range(0, n, chunk_size):
            e = min(n, s + chunk_size)
            h = hidden[s:e]
            z = torch.nn.functional.linear(h, weight, bias)
            if any(need[:3]):
                with torch.enable_grad():
                    zl = z.detach().requires_grad_(True)
                    per = loss_fn(zl, target[s:e])
                    (dz,) = torch.autograd.grad(per.sum(), zl)
                _accumulate(dz, h, weight, s, e, g_hidden, g_weight, g_bias)
                del zl, dz
            else:
                per = loss_fn(z, target[s:e])
            per = per.detach()
            if out is None:
                out = torch.empty(n, dtype=per.dtype, device=per.device)
            out[s:e] = per
            del z, per
        if out is None:  # N == 0
            out = torch.empty(0, dtype=torch.float32 if acc_dtype != torch.float64 else acc_dtype, device=hidden.device)
        ctx.loss_fn = loss_fn
        ctx.chunk_size = chunk_size
        ctx.has_bias = bias is not None
        ctx.save_for_backward(hidden, weight, bias, target)
        # Gradients precomputed for a uniform upstream gradient: plain attributes (fresh
        # tensors owned by this call, scaled in place by the first backward).
        ctx.pre = (g_hidden, g_weight, g_bias)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        hidden, weight, bias, target = ctx.saved_tensors
        g_hidden, g_weight, g_bias = ctx.pre
        need = ctx.needs_input_grad
        n = hidden.shape[0]
        uniform = n == 0 or bool((grad_out == grad_out[0]).all())
        reusable = not getattr(ctx, "consumed", False) and any(
            g is not None for g in (g_hidden, g_weight, g_bias))
        if uniform and reusable:
            ctx.consumed = True  # a second backward (retain_graph=True) recomputes instead
            ctx.pre = (None, None, None)
            # The stored gradients belong to this call alone: scale them in place.
            scale = grad_out[0] if n else grad_out.new_zeros(())
            gh = g_hidden.mul_(scale.to(g_hidden.dtype)) if need[0] else None
            gw = g_weight.mul_(scale.to(g_weight.dtype)).to(weight.dtype) if need[1] else None
            gb = g_bias.mul_(scale.to(g_bias.dtype)).to(bias.dtype) if (ctx.has_bias and need[2]) else None
            return gh, gw, gb, None, None, None
        # General upstream gradient: recompute each chunk and weight its rows.
        acc_dtype = torch.float32 if weight.dtype in (torch.float16, torch.bfloat16) else weight.dtype
        gh = torch.empty_like(hidden) if need[0] else None
        gw = torch.zeros(weight.shape, dtype=acc_dtype, device=weight.device) if need[1] else None
        gb = torch.zeros(bias.shape, dtype=acc_dtype, device=bias.device) if (ctx.has_bias and need[2]) else None
        for s in range(0, n, ctx.chunk_size):
            e = min(n, s + ctx.chunk_size)
            h = hidden[s:e]
            with torch.enable_grad():
                zl = torch.nn.functional.linear(h, weight, bias).detach().requires_grad_(True)
                per = ctx.loss_fn(zl, target[s:e])
                (dz,) = torch.autograd.grad(per, zl, grad_out[s:e].to(per.dtype))
            _accumulate(dz, h, weight, s, e, gh, gw, gb)
        return (gh, gw.to(weight.dtype) if gw is not None else None,
                gb.to(bias.dtype) if gb is not None else None, None, None, None)


def _accumulate(dz, h, weight, s, e, g_hidden, g_weight, g_bias):
    dz = dz.to(h.dtype)
    if g_hidden is not None:
        torch.mm(dz, weight, out=g_hidden[s:e])
    if g_weight is not None:
        if g_weight.dtype == h.dtype:
            g_weight.addmm_(dz.t(), h)  # in place: no [C, D] temporary per chunk
        else:
            g_weight.add_((dz.t() @ h).to(g_weight.dtype))
    if g_bias is not None:
        g_bias.add_(dz.sum(0).to(g_bias.dtype))


def linear_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    loss: Any = "ce",
    bias: torch.Tensor | None = None,
    chunk_size: int | None = None,
    reduction: str = "mean",
    vocab_block: int | None = None,
    stream: bool | None = None,
    **params: Any,
) -> torch.Tensor:
    """Loss of ``hidden @ weight.T + bias`` against ``target`` without materialising the logits.

    ``loss``: a row-wise registered loss name (or ``"name(p=v)"`` spec, or a ``Loss``
    instance). ``params``: its hyperparameters and ``ignore_index``, ``class_counts``;
    per-class weights as ``class_weight=[...]`` (``weight`` is the classifier matrix).
    ``chunk_size``: rows per chunk (default: about 32 MB of float32 logits per chunk when row
    chunking, ``DEFAULT_ROW_BLOCK`` rows when streaming). ``vocab_block``: classes per block when
    streaming (default ``DEFAULT_VOCAB_BLOCK``). ``stream``: None (default) streams over the
    vocabulary when the loss can (``stream_terms.streaming_support``) and chunks rows otherwise;
    True requires streaming (an error for a loss that cannot); False always chunks rows.
    ``reduction``: ``mean`` (weighted mean over non-ignored rows, torch semantics), ``sum``
    or ``none`` (``[N]``).
    """
    if reduction not in ("mean", "sum", "none"):
        raise UsageError(f"linear_loss: reduction must be mean, sum or none, got {reduction!r}")
    if not isinstance(hidden, torch.Tensor) or hidden.dim() != 2:
        raise UsageError("linear_loss: hidden must be a [N, D] tensor")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.shape[1] != hidden.shape[1]:
        raise UsageError(f"linear_loss: weight must be [C, D] with D={hidden.shape[1]}, got {list(getattr(weight, 'shape', []))}")
    if not isinstance(target, torch.Tensor) or target.dim() != 1 or target.shape[0] != hidden.shape[0]:
        raise UsageError("linear_loss: target must be [N] class indices (soft or multi-label targets are not supported)")
    if target.is_floating_point():
        raise UsageError("linear_loss: target must be integer class indices")
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != weight.shape[0]):
        raise UsageError(f"linear_loss: bias must be [C] with C={weight.shape[0]}")
    n, c = hidden.shape[0], weight.shape[0]
    for what, value in (("chunk_size", chunk_size), ("vocab_block", vocab_block)):
        if value is not None and int(value) < 1:
            raise UsageError(f"linear_loss: {what} must be >= 1")
    loss_fn = _per_row_loss(loss, params).to(hidden.device)
    plan = plan_for(loss_fn) if stream is not False else None
    if stream and isinstance(plan, str):
        raise UsageError(f"linear_loss cannot stream {loss_fn.info.name!r} over the vocabulary: {plan}")
    target = target.long()
    ignore_index = loss_fn.ignore_index
    valid = target != ignore_index
    if n and can_inspect_values(hidden):
        bad = valid & ((target < 0) | (target >= c))
        if bad.any():
            raise UsageError(f"linear_loss: target values must be in [0, {c - 1}] (or ignore_index={ignore_index})")
    if transforms_active():
        # torch.func (grad, vmap, per-sample gradients): the chunked and streamed nodes keep Python
        # state between forward and backward that the transforms cannot carry, so the logits are
        # materialised here (same values; the loss's own nodes support the transforms)
        per = loss_fn(torch.nn.functional.linear(hidden, weight, bias), target)
    elif plan is not None and not isinstance(plan, str):
        check_classes(plan, loss_fn, c)
        rows = int(chunk_size) if chunk_size is not None else min(max(n, 1), DEFAULT_ROW_BLOCK)
        cols = int(vocab_block) if vocab_block is not None else DEFAULT_VOCAB_BLOCK
        safe_target = torch.where(valid, target, 0)  # ignored rows: any class in range; their values are masked
        per = StreamedLinearLoss.apply(hidden, weight, bias, safe_target, plan, valid, rows, cols)
    else:
        rows = int(chunk_size) if chunk_size is not None else default_chunk_size(n, c)
        per = _ChunkedLinearLoss.apply(hidden, weight, bias, target, loss_fn, rows)
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    if loss_fn.weight is not None:
        w = loss_fn.weight.to(device=per.device, dtype=per.dtype)[torch.where(valid, target, 0)]
        denom = torch.where(valid, w, torch.zeros_like(w)).sum()
    else:
        denom = valid.to(per.dtype).sum()
    return per.sum() / denom


def materialised_linear_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    loss: Any = "ce",
    bias: torch.Tensor | None = None,
    reduction: str = "mean",
    **params: Any,
) -> torch.Tensor:
    """The reference: full ``[N, C]`` logits, then the registry loss (same arguments)."""
    logits = torch.nn.functional.linear(hidden, weight, bias)
    if isinstance(loss, Loss):
        return loss(logits, target)
    name, spec_params = parse_loss_spec(loss) if "(" in loss else (loss, {})
    kwargs = {**spec_params, **params}
    if "class_weight" in kwargs:
        kwargs["weight"] = kwargs.pop("class_weight")
    return LOSSES.get(name)(reduction=reduction, **kwargs).to(hidden.device)(logits, target)
