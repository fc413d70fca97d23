"""What the loss contract's checks share: the batch a check builds its loss and inputs from
(:class:`Case`), a check's result, and the comparisons they make (see :mod:`losscli.losses.contract`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from losscli.losses import cases
from losscli.losses.resolve import LossSpec

N, C = 12, 5  # rows (at least C) and classes of the checks' batches
MAX_CLASSES = 1000
TOL = 1e-5


class Skip(Exception):
    """The check does not apply to this loss; the message says why."""


@dataclass
class Case:
    """A loss spec with everything the checks need to build it and feed it."""

    spec: LossSpec
    c: int = C
    n: int = N

    def __post_init__(self) -> None:
        self.info = self.spec.info()
        self.params = cases.case_params(self.spec)

    def loss(self, c: int | None = None, **kwargs: Any):
        return cases.make_loss(self.spec, c or self.c, **kwargs)

    def inputs(self, seed: int = 0, dtype: torch.dtype = torch.float32, scale: float = 3.0, n: int | None = None,
               c: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return cases.make_inputs(self.info, self.params, n or self.n, c or self.c, seed, dtype, scale)

    def context(self, logits: torch.Tensor, seed: int = 0) -> dict:
        return cases.make_context(self.info, logits, seed)

    def rows(self, ctx: dict, rows: torch.Tensor, n: int) -> dict:
        """``ctx`` restricted (or permuted) to ``rows``: tensors with one entry per row follow them."""
        return {k: v[rows] if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == n else v for k, v in ctx.items()}


def assert_close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    a, b = a.detach().double(), b.detach().double()
    if a.shape != b.shape:
        raise AssertionError(f"{what}: shapes {list(a.shape)} and {list(b.shape)} differ")
    if not torch.allclose(a, b, rtol=TOL, atol=TOL, equal_nan=False):
        diff = (a - b).abs().max().item()
        shown = f"{a.item():.6g} vs {b.item():.6g}" if a.dim() == 0 else f"max difference {diff:.3g}"
        raise AssertionError(f"{what}: {shown}")


def assert_finite(loss: torch.Tensor, grad: torch.Tensor | None, where: str) -> None:
    if not bool(torch.isfinite(loss.detach().float()).all()):
        raise AssertionError(f"loss is {loss.detach().float().tolist()} at {where}")
    if grad is None:
        raise AssertionError(f"no gradient reaches the logits at {where}")
    if not bool(torch.isfinite(grad.float()).all()):
        raise AssertionError(f"non-finite gradient at {where}")
