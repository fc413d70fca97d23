"""Build any registered loss with the extras the registry-wide tests need.

Shared by the test modules so that a newly registered loss is covered automatically.
"""

from __future__ import annotations

import torch

from losscli.losses import LOSSES, build_loss


def make_loss(name: str, num_classes: int, **kwargs):
    info = LOSSES.get(name).info
    params = dict(info.test_params)
    params.update(kwargs)
    if info.needs_class_counts and "class_counts" not in params:
        params["class_counts"] = [float(10 * (k + 1)) for k in range(num_classes)]
    return build_loss(name, **params)


def make_context(name: str, logits: torch.Tensor, seed: int = 0) -> dict:
    info = LOSSES.get(name).info
    ctx = {}
    wanted = set(info.needs)
    if "teacher_logits" in wanted:
        g = torch.Generator().manual_seed(seed + 7)
        ctx["teacher_logits"] = torch.randn(logits.shape, generator=g, dtype=logits.dtype).to(logits.device)
    if "index" in wanted:
        ctx["index"] = torch.arange(logits.shape[0], device=logits.device)
    if "epoch" in wanted:
        ctx["epoch"] = 0
    return ctx


def make_target(name: str, n: int, c: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, c, (n,), generator=g)
    # make sure every class appears when possible (batch-level losses use "present" classes)
    if n >= c:
        target[:c] = torch.arange(c)
    return target
