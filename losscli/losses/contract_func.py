"""The loss contract's ``torch.func`` checks: ``grad`` equals autograd, ``vmap`` over stacked
batches equals one call per batch, and per-sample gradients (``vmap(grad(...))``) equal the rows
of the batch gradient. Losses run under the transforms through their own nodes' rules
(:mod:`losscli.losses.fused.transforms`); a loss that cannot run under ``vmap`` says so with
:class:`~losscli.losses.base.VmapUnsupported`, which these checks report as a skip."""

from __future__ import annotations

import torch
from torch.func import grad, vmap

from losscli.losses.base import VmapUnsupported
from losscli.losses.contract_case import Case, Skip, assert_close


def _deterministic(case: Case) -> None:
    if not case.info.deterministic:
        raise Skip("random by design (deterministic=False): two calls differ")


def check_func_grad(case: Case) -> str:
    _deterministic(case)
    logits, target = case.inputs(dtype=torch.float64, seed=5, scale=1.5)
    ctx = case.context(logits)
    leaf = logits.clone().requires_grad_(True)
    case.loss()(leaf, target, **ctx).backward()
    got = grad(lambda z: case.loss()(z, target, **ctx))(logits)
    assert_close(got, leaf.grad, "torch.func.grad vs autograd")
    return "float64"


def check_func_vmap(case: Case) -> str:
    _deterministic(case)
    (z1, t1), (z2, t2) = case.inputs(dtype=torch.float64, seed=5), case.inputs(dtype=torch.float64, seed=6)
    ctx = case.context(z1)
    reduction = "mean" if case.info.batch_coupled else "none"
    fn = case.loss(reduction=reduction)
    try:
        stacked = vmap(lambda z, t: fn(z, t, **ctx))(torch.stack([z1, z2]), torch.stack([t1, t2]))
    except VmapUnsupported as exc:
        raise Skip(str(exc)) from None
    expected = torch.stack([case.loss(reduction=reduction)(z, t, **ctx) for z, t in ((z1, t1), (z2, t2))])
    assert_close(stacked, expected, f"vmap over two batches vs one call each (reduction={reduction!r})")
    if case.info.batch_coupled:
        return "two stacked batches (batch-level loss: no per-sample gradients)"
    n = z1.shape[0]
    # context with one entry per row (teacher logits, sample ids) is vmapped with its rows
    dims = {k: 0 if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == n else None for k, v in ctx.items()}
    one = case.loss(reduction="sum")

    def row_loss(z, t, c):
        return one(z.unsqueeze(0), t.unsqueeze(0), **{k: v.unsqueeze(0) if dims[k] == 0 else v for k, v in c.items()})

    per_sample = vmap(grad(row_loss), in_dims=(0, 0, dims))(z1, t1, ctx)
    leaf = z1.clone().requires_grad_(True)
    case.loss(reduction="sum")(leaf, t1, **ctx).backward()
    assert_close(per_sample, leaf.grad, "per-sample gradients (vmap(grad)) vs rows of the batch gradient")
    return "two stacked batches; per-sample gradients"
