"""One-vs-rest: per-sample loop reference and the BCE identity."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from losscli.losses import LOSSES, build_loss


def softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def test_matches_loop_reference():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(9, 6, generator=g, dtype=torch.float64) * 4
    y = torch.randint(0, 6, (9,), generator=g)
    ours = build_loss("ovr", reduction="none")(z, y)
    expected = [
        sum(softplus(-(1.0 if k == int(y[i]) else -1.0) * z[i, k].item()) for k in range(6)) for i in range(9)
    ]
    torch.testing.assert_close(ours, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_sum_equals_bce_with_logits_on_one_hot():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 4, (7,), generator=g)
    ours = build_loss("ovr", reduction="sum")(z, y)
    ref = F.binary_cross_entropy_with_logits(z, F.one_hot(y, 4).double(), reduction="sum")
    torch.testing.assert_close(ours, ref)
    (g1,) = torch.autograd.grad(ours, z)
    (g2,) = torch.autograd.grad(ref, z)
    torch.testing.assert_close(g1, g2)


def test_tiny_losses_keep_relative_precision():
    # z_y = 30, others -30: each of the C terms is softplus(-30) ~ 9.4e-14 (no cancellation against z_y)
    z = torch.tensor([[30.0, -30.0, -30.0], [-30.0, -30.0, 30.0]])
    v = build_loss("ovr", reduction="none")(z, torch.tensor([0, 2]))
    torch.testing.assert_close(v, torch.full((2,), 3 * math.log1p(math.exp(-30.0))), rtol=1e-5, atol=0)


def test_metadata():
    info = LOSSES.get("ovr").info
    assert info.convex and not info.bounded and not info.multilabel and info.params == ()
