"""Build any registered loss, with valid inputs of its kind, for the registry-wide tests.

Shared by the test modules so that a newly registered loss is covered automatically. Inputs
follow the loss's declared kinds (``LossInfo.input`` / ``.target`` / ``.head``):

* logits + class targets: ``[N, C]`` logits, ``[N]`` labels with every class present;
* ``head="dual"`` (dhkd): the head's output is ``[N, 2C]`` (main and auxiliary logits);
* ``input="embeddings"``: ``[N, D]`` features (D = C here) with the same labels, so positives exist;
* ``input="sets"``: ``[N, k+2, C]`` member logits of N sets and ``[N, k+2]`` member labels, each
  set holding two members of one pair class and one of each of k other classes (OKO);
* ``target="regression"``: ``[N, C]`` logits over C bins and float ``[N]`` targets spread over
  ``[vmin, vmax]``, two of them outside it (the loss clamps them).

Composite losses (weighted sums, ``"ce + 0.5*focal(gamma=3)"``) are cases too: their metadata is
derived from the parts, and one that mixes logits and embedding parts gets ``embeddings`` [N, D]
in its context.
"""

from __future__ import annotations

import torch

from losscli.losses import LOSSES, build_loss, resolve_loss
from losscli.lossspec import split_composite

#: composite losses the registry-wide tests cover besides the registered losses: plain sums,
#: bounded + symmetric parts, logits mixed with embeddings, a batch-level part, a teacher, per-sample
#: state (index), multi-label parts
COMPOSITES = [
    "ce + 0.5*focal(gamma=3)", "mae + 0.5*rce", "ce + 0.1*logz_penalty", "ce + 0.5*multi_similarity",
    "ce + 0.2*tcm(base=none)", "pld + 0.1*logz_penalty", "ce + 0.5*aldr_kl", "bce + 0.5*sigmoid_focal",
]
EMBEDDING_DIM = 7


def info_of(name: str):
    """The LossInfo of a registered name or of a composite spec (derived from its parts)."""
    return resolve_loss(name).info() if split_composite(name) is not None else LOSSES.get(name).info


def _params(name: str, **kwargs) -> dict:
    info = LOSSES.get(name).info
    params = {**info.defaults(), **info.test_params}
    params.update(kwargs)
    return params


def make_loss(name: str, num_classes: int, **kwargs):
    if split_composite(name) is not None:
        if info_of(name).needs_class_counts and "class_counts" not in kwargs:
            kwargs["class_counts"] = [float(10 * (k + 1)) for k in range(num_classes)]
        return build_loss(name, **kwargs)
    info = LOSSES.get(name).info
    params = dict(info.test_params)
    params.update(kwargs)
    if info.needs_class_counts and "class_counts" not in params:
        params["class_counts"] = [float(10 * (k + 1)) for k in range(num_classes)]
    if info.target == "regression" and "num_bins" not in params:
        params["num_bins"] = num_classes  # the logits' C columns are the bins
    return build_loss(name, **params)


def make_context(name: str, logits: torch.Tensor, seed: int = 0) -> dict:
    info = info_of(name)
    ctx = {}
    wanted = set(info.needs)
    if "teacher_logits" in wanted:
        g = torch.Generator().manual_seed(seed + 7)
        shape = list(logits.shape)
        if info.head == "dual":  # the head outputs [N, 2C]; the teacher has C classes
            shape[-1] //= 2
        ctx["teacher_logits"] = torch.randn(shape, generator=g, dtype=logits.dtype).to(logits.device)
    if "index" in wanted:
        ctx["index"] = torch.arange(logits.shape[0], device=logits.device)
    if "epoch" in wanted:
        ctx["epoch"] = 0
    if "embeddings" in wanted:  # a composite with embedding parts: features of the same rows
        g = torch.Generator().manual_seed(seed + 11)
        emb = torch.randn(logits.shape[0], EMBEDDING_DIM, generator=g, dtype=torch.float64)
        ctx["embeddings"] = emb.to(dtype=logits.dtype, device=logits.device)
    return ctx


def make_target(name: str, n: int, c: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    info = info_of(name)
    if info.input == "sets":
        return set_labels(n, c, _params(name)["k"], g)
    if info.target == "regression":
        p = _params(name)
        lo, hi = float(p["vmin"]), float(p["vmax"])
        y = lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)
        if n >= 2:  # out-of-range targets are clamped to the support by the loss
            y[0], y[1] = lo - 0.5 * (hi - lo), hi + 0.5 * (hi - lo)
        return y.float()
    target = torch.randint(0, c, (n,), generator=g)
    # make sure every class appears when possible (batch-level losses use "present" classes)
    if n >= c:
        target[:c] = torch.arange(c)
    return target


def set_labels(n: int, c: int, k: int, g: torch.Generator) -> torch.Tensor:
    """``[n, k+2]`` member labels: a pair class twice and k distinct odd classes, shuffled."""
    rows = []
    for _ in range(n):
        classes = torch.randperm(c, generator=g)[: k + 1]
        members = torch.cat([classes[:1], classes])  # the pair class (first) appears twice
        rows.append(members[torch.randperm(k + 2, generator=g)])
    return torch.stack(rows)


def make_inputs(name: str, n: int, c: int, seed: int = 0, dtype: torch.dtype = torch.float32, scale: float = 3.0):
    """``(inputs, target)`` of the loss's declared kind, ``n`` rows (or sets) over ``c`` classes (or bins)."""
    info = info_of(name)
    g = torch.Generator().manual_seed(seed)
    if info.input == "sets":
        shape = (n, _params(name)["k"] + 2, c)
    elif info.head == "dual":
        shape = (n, 2 * c)
    else:
        shape = (n, c)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)
    return x, make_target(name, n, c, seed)
