"""dco: -log(1 - (1 - p_y)^N), checked against mpmath and CE."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch
import torch.nn.functional as F

from losscli.losses import build_loss

mpmath.mp.dps = 60


def dco_mp(row, y, n):
    """High-precision reference: -log(1 - (1 - p_y)^N) with p = softmax(row)."""
    z = [mpmath.mpf(v) for v in row]
    m = max(z)
    e = [mpmath.exp(v - m) for v in z]
    q = (sum(e) - e[y]) / sum(e)  # 1 - p_y, without cancellation
    return -mpmath.log1p(-(q**n))  # log1p: q^N can be far below the working precision's epsilon


def grad_mp(row, y, n):
    """d loss / d z by the paper's F(N, p) * (softmax - onehot), in high precision."""
    z = [mpmath.mpf(v) for v in row]
    m = max(z)
    e = [mpmath.exp(v - m) for v in z]
    s = sum(e)
    p = [v / s for v in e]
    q = (s - e[y]) / s
    f = n * q ** (n - 1) * p[y] / -mpmath.expm1(n * mpmath.log(q))
    return [f * (p[k] - (1 if k == y else 0)) for k in range(len(z))]


@pytest.mark.parametrize("n", [1, 2, 16, 256])
def test_matches_mpmath_values_and_gradients(n):
    g = torch.Generator().manual_seed(n)
    z = (torch.randn(6, 5, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    y = torch.randint(0, 5, (6,), generator=g)
    loss = build_loss("dco", n_samples=n, reduction="none")(z, y)
    loss.sum().backward()
    loss = loss.detach()
    for i in range(6):
        assert float(loss[i]) == pytest.approx(float(dco_mp(z[i].tolist(), int(y[i]), n)), rel=1e-12, abs=1e-300)
        ref = [float(v) for v in grad_mp(z[i].tolist(), int(y[i]), n)]
        torch.testing.assert_close(z.grad[i], torch.tensor(ref, dtype=torch.float64), rtol=1e-10, atol=1e-300)


def test_equals_ce_at_one_sample():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(50, 7, generator=g, dtype=torch.float64) * 10
    z[0] = torch.tensor([-1e4, 0, 0, 0, 0, 0, 1e4], dtype=torch.float64)  # p_y underflows
    y = torch.randint(0, 7, (50,), generator=g)
    y[0] = 0
    z.requires_grad_(True)
    ours = build_loss("dco", n_samples=1, reduction="none")(z, y)
    ce = F.cross_entropy(z, y, reduction="none")
    torch.testing.assert_close(ours, ce, rtol=1e-13, atol=1e-13)
    (g_ours,) = torch.autograd.grad(ours.sum(), z)
    (g_ce,) = torch.autograd.grad(ce.sum(), z)
    torch.testing.assert_close(g_ours, g_ce, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("target_value", [1e-30, 1e-138, 1e-250])
def test_exact_where_the_naive_form_underflows(target_value):
    # two classes: 1 - p_y = q with q^N = target_value, N = 256; the loss is -log(1 - q^N) ~ q^N
    n = 256
    q = mpmath.power(mpmath.mpf(target_value), mpmath.mpf(1) / n)
    d = float(mpmath.log(q / (1 - q)))  # z_other - z_y = logit(q)
    z = torch.tensor([[0.0, d]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0])
    loss = build_loss("dco", n_samples=n)(z, y)
    expected = float(dco_mp([0.0, d], 0, n))
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    assert loss.item() > 0
    naive = -torch.log(1 - (1 - torch.softmax(z.detach(), 1)[0, 0]) ** n)
    assert float(naive) == 0.0  # what the naive form returns (the reason for the stable form)
    loss.backward()
    assert torch.isfinite(z.grad).all() and (z.grad.abs() > 0).all()


def test_finite_when_p_underflows_and_limits():
    n = 64
    z = torch.tensor([[-1e4, 1e4, 0.0], [-200.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 0])
    loss = build_loss("dco", n_samples=n, reduction="none")(z, y)
    ce = F.cross_entropy(z.detach(), y, reduction="none")
    # p_y -> 0: 1 - (1-p)^N ~ N p, so the loss -> CE - log N
    torch.testing.assert_close(loss.detach(), ce - math.log(n), rtol=1e-12, atol=1e-9)
    loss.sum().backward()
    assert torch.isfinite(z.grad).all()
    # gradient factor F -> 1 as p -> 0: the gradient is CE's
    torch.testing.assert_close(z.grad[1], torch.softmax(z.detach()[1], 0) - torch.tensor([1.0, 0, 0], dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n", [1, 8, 10**6])
def test_no_nan_gradients_at_extremes(dtype, n):
    z = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [30.0, 0.0, 0.0], [0.0, 0.0, 0.0]]).to(dtype).requires_grad_(True)
    y = torch.tensor([0, 0, 0, 0])
    loss = build_loss("dco", n_samples=n)(z, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad.float()).all()


def test_confidence_limiting_gradient_fades():
    # the gradient weight F(N, p) falls towards 0 once p >~ 1/N: the per-sample gradient norm shrinks vs CE
    z = torch.tensor([[3.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)  # p_y ~ 0.91
    y = torch.tensor([0])
    (g16,) = torch.autograd.grad(build_loss("dco", n_samples=16)(z, y), z)
    (g1,) = torch.autograd.grad(build_loss("dco", n_samples=1)(z, y), z)
    assert g16.norm() < 1e-10 < g1.norm()


def test_default_and_range():
    assert build_loss("dco").n_samples == 16
    with pytest.raises(Exception, match="n_samples"):
        build_loss("dco", n_samples=0)
