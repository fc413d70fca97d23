"""Any registered loss (or composite spec) by name, with valid inputs of its kind, for tests.

A thin layer over the library's :mod:`losscli.losses.cases` (which the loss contract,
``losscli check-loss``, uses too), so a newly registered loss is covered automatically; see that
module for the inputs each kind gets.

Composite losses (weighted sums, ``"ce + 0.5*focal(gamma=3)"``) are cases too: their metadata is
derived from the parts, and one that mixes logits and embedding parts gets ``embeddings`` [N, D]
in its context.
"""

from __future__ import annotations

import torch

from losscli.losses import cases, resolve_loss

#: composite losses the registry-wide tests cover besides the registered losses: plain sums,
#: bounded + symmetric parts, logits mixed with embeddings, a batch-level part, a teacher, per-sample
#: state (index), multi-label parts
COMPOSITES = [
    "ce + 0.5*focal(gamma=3)", "mae + 0.5*rce", "ce + 0.1*logz_penalty", "ce + 0.5*multi_similarity",
    "ce + 0.2*tcm(base=none)", "pld + 0.1*logz_penalty", "ce + 0.5*aldr_kl", "bce + 0.5*sigmoid_focal",
]


def info_of(name: str):
    """The LossInfo of a registered name or of a composite spec (derived from its parts)."""
    return resolve_loss(name).info()


def make_loss(name: str, num_classes: int, **kwargs):
    return cases.make_loss(resolve_loss(name), num_classes, **kwargs)


def make_context(name: str, logits: torch.Tensor, seed: int = 0) -> dict:
    return cases.make_context(info_of(name), logits, seed)


def make_target(name: str, n: int, c: int, seed: int = 0) -> torch.Tensor:
    spec = resolve_loss(name)
    return cases.make_target(spec.info(), cases.case_params(spec), n, c, seed)


def make_inputs(name: str, n: int, c: int, seed: int = 0, dtype: torch.dtype = torch.float32, scale: float = 3.0):
    """``(inputs, target)`` of the loss's declared kind, ``n`` rows (or sets) over ``c`` classes (or bins)."""
    spec = resolve_loss(name)
    return cases.make_inputs(spec.info(), cases.case_params(spec), n, c, seed, dtype, scale)
