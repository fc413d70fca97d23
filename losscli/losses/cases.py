"""Build any loss spec, with valid inputs of its kind, for the loss contract (:mod:`.contract`).

Registered losses, composites and plugins alike: inputs follow the loss's declared kinds
(``LossInfo.input`` / ``.target`` / ``.head``):

* logits + class targets: ``[N, C]`` logits, ``[N]`` labels with every class present;
* ``head="dual"`` (dhkd): the head's output is ``[N, 2C]`` (main and auxiliary logits);
* ``input="embeddings"``: ``[N, D]`` features (D = C here) with the same labels, so positives exist;
* ``input="sets"``: ``[N, k+2, C]`` member logits of N sets and ``[N, k+2]`` member labels, each
  set holding two members of one pair class and one of each of k other classes (OKO);
* ``target="regression"``: ``[N, C]`` logits over C bins and float ``[N]`` targets spread over
  ``[vmin, vmax]``, two of them outside it (the loss clamps them).

Losses are built with the class counts they need (10, 20, ... per class), ``num_bins = C`` for
regression losses and ``LossInfo.test_params`` for the hyperparameters the spec leaves at their
defaults (e.g. unit weights for a reweighted loss, so that mean = sum / N holds). A composite that
mixes logits and embedding parts gets ``embeddings`` ``[N, D]`` in its context.
"""

from __future__ import annotations

from typing import Any

import torch

from losscli.losses.resolve import LossSpec

EMBEDDING_DIM = 7


def case_params(spec: LossSpec) -> dict[str, Any]:
    """The hyperparameters a case builds ``spec`` with: its own, and the registry's test parameters
    for those it leaves at their defaults (a composite's parts carry their own: empty here)."""
    if spec.parts:
        return {}
    info = spec.info()
    defaults = info.defaults()
    test = {k: v for k, v in info.test_params.items() if spec.params.get(k, defaults.get(k)) == defaults.get(k)}
    return {**spec.params, **test}


def make_loss(spec: LossSpec, num_classes: int, **kwargs: Any):
    """A fresh loss of ``spec`` for ``num_classes`` classes (or bins); ``kwargs`` as for ``build_loss``
    (``reduction``, ``weight``, ``ignore_index``...)."""
    from losscli.losses import build_loss

    info = spec.info()
    extra: dict[str, Any] = {}
    if not spec.parts:
        extra = {k: v for k, v in case_params(spec).items() if k not in spec.params or spec.params[k] != v}
        if info.target == "regression":
            extra["num_bins"] = num_classes  # the logits' C columns are the bins
    if info.needs_class_counts:
        extra["class_counts"] = [float(10 * (k + 1)) for k in range(num_classes)]
    return build_loss(spec, **{**extra, **kwargs})


def make_context(info, logits: torch.Tensor, seed: int = 0, generator: torch.Generator | None = None,
                 teacher_scale: float = 1.0) -> dict[str, Any]:
    """Forward keyword arguments the loss needs (``info.needs``), matching ``logits``' rows: random
    teacher logits (``teacher_scale`` x standard normal; a dual head's teacher has half its columns),
    sample ids, epoch 0 and, for a composite with embedding parts, features of the same rows. Drawn
    from ``generator`` on the logits' device when given (profiling), else from CPU generators
    seeded with ``seed`` (the contract)."""
    def normal(shape: list[int], offset: int) -> torch.Tensor:
        if generator is not None:
            return torch.randn(shape, generator=generator, device=logits.device, dtype=torch.float32)
        return torch.randn(shape, generator=torch.Generator().manual_seed(seed + offset), dtype=torch.float64)

    ctx: dict[str, Any] = {}
    wanted = set(info.needs)
    if "teacher_logits" in wanted:
        shape = list(logits.shape)
        if info.head == "dual":  # the head outputs [N, 2C]; the teacher has C classes
            shape[-1] //= 2
        ctx["teacher_logits"] = (normal(shape, 7) * teacher_scale).to(dtype=logits.dtype, device=logits.device)
    if "index" in wanted:
        ctx["index"] = torch.arange(logits.shape[0], device=logits.device)
    if "epoch" in wanted:
        ctx["epoch"] = 0
    if "embeddings" in wanted:  # a composite with embedding parts: features of the same rows
        ctx["embeddings"] = normal([logits.shape[0], EMBEDDING_DIM], 11).to(dtype=logits.dtype, device=logits.device)
    return ctx


def make_target(info, params: dict, n: int, c: int, seed: int = 0) -> torch.Tensor:
    """Targets of the loss's kind: class labels (every class present when n >= c), set member
    labels, or regression values."""
    g = torch.Generator().manual_seed(seed)
    if info.input == "sets":
        return set_labels(n, c, int(params["k"]), g)
    if info.target == "regression":
        lo, hi = float(params["vmin"]), float(params["vmax"])
        y = lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)
        if n >= 2:  # out-of-range targets are clamped to the support by the loss
            y[0], y[1] = lo - 0.5 * (hi - lo), hi + 0.5 * (hi - lo)
        return y.float()
    return class_labels(n, c, g)


def class_labels(n: int, c: int, generator: torch.Generator, device: torch.device | None = None) -> torch.Tensor:
    """``[n]`` random class labels drawn from ``generator`` (on ``device``), every class present when
    ``n >= c`` (batch-level losses use the classes present in the batch)."""
    target = torch.randint(0, c, (n,), generator=generator, device=device)
    if n >= c:
        target[:c] = torch.arange(c, device=device)
    return target


def set_labels(n: int, c: int, k: int, g: torch.Generator) -> torch.Tensor:
    """``[n, k+2]`` member labels: a pair class twice and k distinct odd classes, shuffled."""
    rows = []
    for _ in range(n):
        classes = torch.randperm(c, generator=g)[: k + 1]
        members = torch.cat([classes[:1], classes])  # the pair class (first) appears twice
        rows.append(members[torch.randperm(k + 2, generator=g)])
    return torch.stack(rows)


def make_inputs(info, params: dict, n: int, c: int, seed: int = 0, dtype: torch.dtype = torch.float32,
                scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, target)`` of the loss's declared kind, ``n`` rows (or sets) over ``c`` classes (or bins)."""
    g = torch.Generator().manual_seed(seed)
    if info.input == "sets":
        shape: tuple[int, ...] = (n, int(params["k"]) + 2, c)
    elif info.head == "dual":
        shape = (n, 2 * c)
    else:
        shape = (n, c)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)
    return x, make_target(info, params, n, c, seed)
