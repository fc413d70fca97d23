"""ce and label_smoothing against torch, and the fused log p_y node the CE-family losses share."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from losscli.losses import build_loss
from losscli.losses.fused.softmax_core import log_softmax_y, log_softmax_y_and_sum


def _data(n=7, c=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=dtype) * 2
    q = torch.softmax(torch.randn(n, c, generator=g, dtype=dtype), dim=1)
    y = torch.randint(0, c, (n,), generator=g)
    w = torch.rand(c, generator=g, dtype=dtype) + 0.5
    return z, q, y, w


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("context", [{}, {"epoch": 0}])  # with context: the base class's per_sample path
def test_weighted_soft_targets_match_torch(reduction, context):
    # F.cross_entropy defines class weights with probability targets: -sum_c w_c q_c log p_c per
    # sample, mean over N without weight normalisation; ce used to raise here
    z, q, _, w = _data()
    z.requires_grad_(True)
    ours = build_loss("ce", weight=w, reduction=reduction)(z, q, **context)
    ref = F.cross_entropy(z, q, weight=w, reduction=reduction)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    (g_ours,) = torch.autograd.grad(ours.sum(), z)
    (g_ref,) = torch.autograd.grad(ref.sum(), z)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_weighted_class_indices_through_the_base_class_match_torch(reduction):
    z, _, y, w = _data(seed=1)
    y[2] = -100
    ours = build_loss("ce", weight=w, reduction=reduction)(z, y, epoch=0)
    torch.testing.assert_close(ours, F.cross_entropy(z, y, weight=w, reduction=reduction), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(7, 5), (1100, 1000)])  # torch's kernel; the fused node (>= 2^20 entries, C >= 256)
def test_label_smoothing_matches_torch(reduction, shape):
    z, _, y, _ = _data(*shape, seed=2)
    y[3] = -100
    z.requires_grad_(True)
    ours = build_loss("label_smoothing", epsilon=0.2, reduction=reduction)(z, y)
    ref = F.cross_entropy(z, y, label_smoothing=0.2, reduction=reduction)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    (g_ours,) = torch.autograd.grad(ours.sum(), z)
    (g_ref,) = torch.autograd.grad(ref.sum(), z)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-12, atol=1e-12)


def test_log_softmax_y_and_its_gradient_match_autograd():
    z, _, y, _ = _data(n=9, c=6, seed=3)
    z[0, 2] = 40.0  # a saturated row
    z.requires_grad_(True)
    lp = log_softmax_y(z, y, scale=1.5, offset=torch.linspace(-1, 1, 6, dtype=z.dtype), shift=torch.full((9,), -0.3, dtype=z.dtype))
    x = 1.5 * z + torch.linspace(-1, 1, 6, dtype=z.dtype)
    x = x.scatter_add(1, y.unsqueeze(1), -0.3 * torch.ones(9, 1, dtype=z.dtype))
    ref = F.log_softmax(x, dim=1).gather(1, y.unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(lp, ref, rtol=1e-12, atol=1e-14)
    g = torch.randn(9, dtype=z.dtype)
    torch.testing.assert_close(torch.autograd.grad(lp, z, g)[0], torch.autograd.grad(ref, z, g)[0], rtol=1e-10, atol=1e-14)
    lp2, total = log_softmax_y_and_sum(z, y)
    ls = F.log_softmax(z, dim=1)
    torch.testing.assert_close(total, ls.sum(dim=1), rtol=1e-12, atol=1e-12)
    g2 = torch.randn(9, dtype=z.dtype)
    got = torch.autograd.grad((lp2, total), z, (g, g2))[0]
    want = torch.autograd.grad((ls.gather(1, y.unsqueeze(1)).squeeze(1), ls.sum(dim=1)), z, (g, g2))[0]
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("margin", [17.0, 30.0, 80.0])
def test_confident_predictions_keep_their_tiny_exact_loss_in_float32(margin):
    # p_y rounds to 1 in float32: -log(round(p_y)) is 0, the exact CE is log1p(3 exp(-margin))
    z = torch.tensor([[margin, 0.0, 0.0, 0.0]], requires_grad=True)
    y = torch.tensor([0])
    exact = math.log1p(3.0 * math.exp(-margin))
    for name, value in [("poly1", exact + (1.0 - math.exp(-exact))), ("mae", -math.expm1(-exact)),
                        ("focal", (-math.expm1(-exact)) ** 2 * exact)]:
        v = build_loss(name)(z, y)
        assert v.item() == pytest.approx(value, rel=1e-5), name
    v = build_loss("poly1")(z, y)
    (g,) = torch.autograd.grad(v, z)
    # d(CE + (1 - p_y))/dz_y = -(1 - p_y)(1 + p_y): tiny but not 0
    assert g[0, 0].item() == pytest.approx(-(1.0 - math.exp(-exact)) * (1.0 + math.exp(-exact)), rel=1e-4)
