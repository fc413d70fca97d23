"""Self-adjusting Dice (ShannonAI): loops over samples and classes, golden value, non-square mode."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from losscli.losses import LOSSES, build_loss

Z = [[1.5, -0.3, 0.2, 2.1], [0.0, 3.0, -1.0, 0.5], [-2.0, 0.4, 1.1, 0.3]]
Y = [3, 0, 2]


def adjusted(row, alpha):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    p = [v / sum(e) for v in e]
    return [(1 - v) ** alpha * v for v in p]


def dice_square_ref(z, y, alpha=0.01, smooth=1.0):
    out = []
    for row, yi in zip(z, y):
        pt = adjusted(row, alpha)
        total = 0.0
        for c, v in enumerate(pt):
            t = 1.0 if c == yi else 0.0
            total += 1 - (2 * v * t + smooth) / (v * v + t * t + smooth)
        out.append(total)
    return out


def dice_nonsquare_ref(z, y, alpha=0.01, smooth=1.0):
    pts = [adjusted(row, alpha) for row in z]
    c_n = len(z[0])
    den = [sum(pt[c] for pt in pts) + sum(1.0 for yi in y if yi == c) + smooth for c in range(c_n)]
    return [sum(1 - (2 * pt[c] * (c == yi) + smooth) / den[c] for c in range(c_n)) for pt, yi in zip(pts, y)]


def _random(n=7, c=5, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=torch.float64) * scale, torch.randint(0, c, (n,), generator=g)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_golden(dtype):
    assert build_loss("dice")(torch.tensor(Z, dtype=dtype), torch.tensor(Y)).item() == pytest.approx(0.427594, abs=2e-6)


@pytest.mark.parametrize("params", [{}, {"alpha": 0.5, "smooth": 0.1}, {"alpha": 0.0, "smooth": 1e-4}, {"alpha": 2.0}])
def test_square_matches_loop_reference(params):
    z, y = _random(seed=1)
    ours = build_loss("dice", reduction="none", **params)(z, y)
    expected = dice_square_ref(z.tolist(), y.tolist(), **params)
    torch.testing.assert_close(ours, torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=1e-12)


def test_square_closed_forms_for_smooth_1():
    # gamma = 1, hard targets: y = 0 gives p~^2/(1+p~^2), y = 1 gives (1-p~)^2/(p~^2+2)
    z = torch.tensor([[0.3, -1.2, 2.0]], dtype=torch.float64)
    pt = torch.tensor(adjusted(z[0].tolist(), 0.01), dtype=torch.float64)
    expected = (1 - pt[2]) ** 2 / (pt[2] ** 2 + 2) + sum(pt[k] ** 2 / (1 + pt[k] ** 2) for k in (0, 1))
    torch.testing.assert_close(build_loss("dice")(z, torch.tensor([2])), expected)


def test_nonsquare_mode_is_the_official_batch_formula():
    z, y = _random(seed=2)
    fn = build_loss("dice", square=False, alpha=0.3, smooth=0.5, reduction="none")
    per = fn(z, y)
    expected = dice_nonsquare_ref(z.tolist(), y.tolist(), alpha=0.3, smooth=0.5)
    torch.testing.assert_close(per, torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(build_loss("dice", square=False, alpha=0.3, smooth=0.5)(z, y), per.mean())


def test_nonsquare_ignored_rows_leave_the_denominator():
    z, y = _random(seed=3)
    y_ign = y.clone()
    y_ign[[1, 4]] = -100
    keep = [0, 2, 3, 5, 6]
    fn = build_loss("dice", square=False)
    torch.testing.assert_close(fn(z, y_ign), fn(z[keep], y[keep]))


def test_bounded_and_metadata():
    info = LOSSES.get("dice").info
    assert info.defaults() == {"alpha": 0.01, "smooth": 1.0, "square": True}
    z, y = _random(n=64, seed=4, scale=30.0)
    for square in (True, False):
        fn = build_loss("dice", square=square, reduction="none")
        assert (fn(z, y) <= info.upper_bound(fn.params, 5) + 1e-9).all()
        assert (fn(z, y) >= 0).all()


@pytest.mark.parametrize("alpha", [0.01, 0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_saturated_logits_have_finite_gradients(alpha, dtype):
    # integer alpha (the (1 - p)^alpha product path) divided by an underflowed 1 - p_max: NaN gradients
    z = torch.tensor([[1e4, -1e4, 0.0], [0.0, 200.0, -5.0], [800.0, 0.0, 1.0], [0.0, 90.0, 0.0]], dtype=dtype,
                     requires_grad=True)
    v = build_loss("dice", alpha=alpha)(z, torch.tensor([0, 1, 2, 1]))
    v.backward()
    assert torch.isfinite(v) and torch.isfinite(z.grad).all()


# ------------------------------------------------------------------ saturated softmax (exact 1 - p)
def _dice_exact(z, y, alpha=0.01, smooth=1.0):
    """Value and gradient at 60 digits (mpmath): ``1 - p_k = sum_{j != k} e_j / sum_j e_j``, no rounding."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 60
    a, s = mp.mpf(alpha), mp.mpf(smooth)

    def value(row):
        e = [mp.e ** v for v in row]
        total = sum(e)
        out = mp.mpf(0)
        for k, ek in enumerate(e):
            x = ((total - ek) / total) ** a * (ek / total)
            t = 1 if k == y else 0
            out += 1 - (2 * x * t + s) / (x * x + t + s)
        return out

    row = [mp.mpf(v) for v in z]
    grad = [mp.diff(lambda u, k=k: value(row[:k] + [u] + row[k + 1:]), row[k]) for k in range(len(row))]
    return float(value(row)), [float(g) for g in grad]


@pytest.mark.parametrize("margin", [17.0, 30.0, 100.0])
@pytest.mark.parametrize("target", [0, 1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("alpha", [0.01, 1.0, 2.0])
def test_saturated_softmax_matches_exact_values_and_gradients(margin, target, dtype, alpha):
    # p_0 rounds to 1 (float32 from margin ~17): 1 - p_0 floored at 1e-30 gave (1e-30)^0.01 = 0.5 and a
    # zero gradient (loss 0.11 instead of 0.008 at margin 17); 1 - p is now the sum of the other
    # probabilities (and, below the subnormal range, logsumexp of the other logits minus logsumexp)
    z = [margin, 0.5, -1.0, 0.0]
    value, grad = _dice_exact(z, target, alpha=alpha)
    zt = torch.tensor([z], dtype=dtype, requires_grad=True)
    v = build_loss("dice", reduction="sum", alpha=alpha)(zt, torch.tensor([target]))
    v.backward()
    tol = 2e-6 if dtype == torch.float32 else 1e-12
    assert v.item() == pytest.approx(value, rel=tol)
    assert torch.isfinite(zt.grad).all()
    if alpha < 1 or margin < 100 or dtype == torch.float64:  # (float32 entries of size e^-200 underflow to 0)
        assert (zt.grad != 0).all()
    torch.testing.assert_close(zt.grad[0].double(), torch.tensor(grad, dtype=torch.float64),
                               rtol=50 * tol, atol=1e-30)


def test_gradient_matches_autograd_of_the_exact_formula_in_saturating_rows():
    g = torch.Generator().manual_seed(5)
    z = torch.randn(6, 5, generator=g, dtype=torch.float64)
    z[:3, 1] += torch.tensor([3.0, 8.0, 25.0], dtype=torch.float64)  # p_max from ~0.7 to 1 - 1e-11
    y = torch.tensor([1, 0, 1, 2, 3, 4])
    zr = z.clone().requires_grad_(True)
    # reference: 1 - p_k = exp(logsumexp_{j != k} z_j - logsumexp z) in float64 autograd
    lse = torch.logsumexp(zr, dim=1, keepdim=True)
    others = torch.stack([torch.logsumexp(torch.cat([zr[:, :k], zr[:, k + 1:]], 1), 1) for k in range(5)], 1)
    x = (0.01 * (others - lse)).exp() * (zr - lse).exp()
    t = F.one_hot(y, 5).double()
    ref = (1 - (2 * x * t + 1.0) / (x * x + t + 1.0)).sum(1)
    for params in ({}, {"alpha": 0.5}, {"alpha": 2.0}):
        if params:
            a = params["alpha"]
            x = ((others - lse) * a).exp() * (zr - lse).exp()
            ref = (1 - (2 * x * t + 1.0) / (x * x + t + 1.0)).sum(1)
        zz = z.clone().requires_grad_(True)
        ours = build_loss("dice", reduction="none", **params)(zz, y)
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)
        w = torch.rand(6, generator=g, dtype=torch.float64)
        torch.testing.assert_close(torch.autograd.grad(ours, zz, w)[0], torch.autograd.grad(ref, zr, w, retain_graph=True)[0],
                                   rtol=1e-9, atol=1e-14)
