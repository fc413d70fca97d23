"""EnsLoss: the gradient structure of the random derivatives, its own RNG, the margin extension."""

from __future__ import annotations

import math

import pytest
import torch

from losscli.losses import LOSSES, build_loss


def _inputs(n=64, c=4, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=torch.float64) * scale, torch.randint(0, c, (n,), generator=g)


def margins_ref(z, y):
    out = []
    for row, yi in zip(z.tolist(), y.tolist()):
        out.append(row[yi] - max(v for k, v in enumerate(row) if k != yi))
    return out


def derivatives_ref(margins, xi, lam):
    """LOSSES.md §26, one sample at a time."""
    if lam == 0:
        g = [-math.exp(x) for x in xi]
    else:
        # lam < 0: a zero base gives an infinite derivative, clipped to -1 below
        g = [-(b ** (1 / lam)) if (b := max(1 + lam * x, 0.0)) > 0 or lam > 0 else -math.inf for x in xi]
    g = sorted(max(v, -1.0) for v in g)
    order = sorted(range(len(margins)), key=lambda i: margins[i])
    out = [0.0] * len(margins)
    for rank, i in enumerate(order):
        v = g[rank]
        if margins[i] > 1:
            v = v / margins[i]
        out[i] = v - 1e-6
    return out


def _grad_wrt_margin(fn, z, y):
    """d(sum of losses)/d margin_i, read off the target logit's gradient."""
    z = z.clone().requires_grad_(True)
    fn(z, y).backward()
    return z.grad.gather(1, y[:, None]).squeeze(1)


@pytest.mark.parametrize("lam", [0.0, 0.5, -0.5])
def test_derivatives_match_the_reference_given_the_same_draws(lam):
    z, y = _inputs(seed=1)
    fn = build_loss("ensloss", lam=lam, reduction="sum").manual_seed(123)
    grad = _grad_wrt_margin(fn, z, y)
    xi = torch.randn(len(y), generator=torch.Generator().manual_seed(123), dtype=torch.float64).tolist()
    expected = derivatives_ref(margins_ref(z, y), xi, lam)
    torch.testing.assert_close(grad, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-15)


def test_gradient_structure():
    z, y = _inputs(n=200, seed=2, scale=2.0)
    fn = build_loss("ensloss", reduction="sum").manual_seed(7)
    g = _grad_wrt_margin(fn, z, y)
    s = torch.tensor(margins_ref(z, y), dtype=torch.float64)
    # derivative in [-1, 0), strictly negative (calibrated)
    assert (g <= -1e-6 + 1e-15).all() and (g >= -1 - 1e-6 - 1e-15).all()
    # monotone non-decreasing in the margin: a convex loss on this batch
    g_by_margin = g[torch.argsort(s)]
    assert (g_by_margin[1:] >= g_by_margin[:-1] - 1e-15).all()
    # superlinear tail: for s > 1 the derivative was divided by s, so |g + 1e-6| * s <= 1
    tail = s > 1
    assert tail.any()
    assert ((g[tail] + 1e-6).abs() * s[tail] <= 1 + 1e-12).all()
    # the non-target gradient of the runner-up logit is the opposite of the target one
    zz = z.clone().requires_grad_(True)
    fn.manual_seed(7)(zz, y).backward()
    assert torch.allclose(zz.grad.sum(1), torch.zeros(len(y), dtype=torch.float64), atol=1e-15)


def test_value_is_the_surrogate_and_mean_divides_by_n():
    z, y = _inputs(seed=3)
    s = torch.tensor(margins_ref(z, y), dtype=torch.float64)
    fn = build_loss("ensloss", reduction="none").manual_seed(5)
    per = fn(z, y)
    g = _grad_wrt_margin(build_loss("ensloss", reduction="sum").manual_seed(5), z, y)
    torch.testing.assert_close(per, g * s)
    assert build_loss("ensloss").manual_seed(5)(z, y).item() == pytest.approx(per.mean().item(), rel=1e-12)


def test_own_generator_never_the_global_rng():
    z, y = _inputs(seed=4)
    state = torch.get_rng_state()
    fn = build_loss("ensloss", reduction="none").manual_seed(11)
    a = fn(z, y)
    b = fn(z, y)  # the generator advances: a new random loss per batch
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.equal(a, b)
    torch.testing.assert_close(build_loss("ensloss", reduction="none").manual_seed(11)(z, y), a)


def test_binary_margin_is_the_papers_signed_logit():
    z, _ = _inputs(n=10, c=2, seed=5)
    y = torch.tensor([0, 1, 1, 0, 1, 1, 0, 0, 1, 0])
    f = z[:, 1] - z[:, 0]
    from losscli.losses.ensloss import margin

    torch.testing.assert_close(margin(z, y), (2 * y - 1).double() * f)
    assert LOSSES.get("ensloss").info.defaults() == {"lam": 0.0}


def test_finite_and_bf16():
    z, y = _inputs(n=16, seed=6)
    zz = (z.sign() * 1e4).float().requires_grad_(True)
    build_loss("ensloss")(zz, y).backward()
    assert torch.isfinite(zz.grad).all()
    zb = z.bfloat16().requires_grad_(True)
    build_loss("ensloss")(zb, y).backward()
    assert zb.grad.dtype == torch.bfloat16 and torch.isfinite(zb.grad.float()).all()
