"""spherical_z (de Brébisson & Vincent) and logz_penalty (PaLM z-loss)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from losscli.errors import UsageError
from losscli.losses import build_loss

Z = [[1.5, -0.3, 0.2, 2.1], [0.0, 3.0, -1.0, 0.5], [-2.0, 0.4, 1.1, 0.3]]
Y = [3, 0, 2]


def rand(n=7, c=5, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
    return z, torch.randint(0, c, (n,), generator=g)


def lse(row):
    m = max(row)
    return m + math.log(sum(math.exp(v - m) for v in row))


def spherical_ref(row, t, a, b):
    c = len(row)
    mu = sum(row) / c
    sigma = math.sqrt(sum((v - mu) ** 2 for v in row) / c)
    zhat = (row[t] - mu) / sigma
    return math.log1p(math.exp(a * (b - zhat))) / a


@pytest.mark.parametrize("a, b", [(1.0, 2.0), (0.5, 0.0), (3.0, 1.0)])
def test_spherical_z_matches_loop(a, b):
    z, y = rand(seed=1)
    got = build_loss("spherical_z", a=a, b=b, reduction="none")(z, y)
    ref = [spherical_ref(r, t, a, b) for r, t in zip(z.tolist(), y.tolist())]
    torch.testing.assert_close(got, torch.tensor(ref, dtype=torch.float64))


def test_spherical_z_shift_scale_invariant_and_bounded():
    z, y = rand(seed=2)
    fn = build_loss("spherical_z", reduction="none")
    torch.testing.assert_close(fn(3.7 * z - 11.0, y), fn(z, y))
    c = z.shape[1]
    bound = fn.info.upper_bound(fn.params, c)
    assert bound == pytest.approx(math.log1p(math.exp(2.0 + math.sqrt(c - 1))))
    # the bound is attained when the target logit is the single minimum and the rest are equal
    worst = torch.zeros(1, c, dtype=torch.float64)
    worst[0, 0] = -1.0
    assert fn(worst, torch.tensor([0])).item() == pytest.approx(bound, rel=1e-9)
    # constant logits: sigma = 0 -> z_hat = 0, finite
    const = torch.ones(2, c, requires_grad=True)
    out = fn(const, torch.tensor([0, 1]))
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(const.grad).all()
    assert out[0].item() == pytest.approx(math.log1p(math.exp(2.0)), rel=1e-6)


def test_spherical_z_defaults_documented_as_losscli_own():
    info = build_loss("spherical_z").info
    assert info.defaults() == {"a": 1.0, "b": 2.0}
    assert "losscli" in info.notes and "paper" in info.notes


def test_logz_golden():
    z, y = torch.tensor(Z, dtype=torch.float64), torch.tensor(Y)
    assert build_loss("logz_penalty")(z, y).item() == pytest.approx(1.470760, abs=1e-6)


@pytest.mark.parametrize("coef", [0.0, 1e-4, 0.5])
def test_logz_matches_loop(coef):
    z, y = rand(seed=3, scale=4.0)
    got = build_loss("logz_penalty", coef=coef, reduction="none")(z, y)
    ref = [lse(r) - r[t] + coef * lse(r) ** 2 for r, t in zip(z.tolist(), y.tolist())]
    torch.testing.assert_close(got, torch.tensor(ref, dtype=torch.float64))


def test_logz_other_base_and_soft_targets():
    z, y = rand(seed=4)
    lz = torch.logsumexp(z, -1)
    got = build_loss("logz_penalty", coef=0.1, base="focal", reduction="none")(z, y)
    torch.testing.assert_close(got, build_loss("focal", reduction="none")(z, y) + 0.1 * lz**2)
    q = torch.softmax(torch.randn(z.shape, dtype=torch.float64), -1)
    got = build_loss("logz_penalty", coef=0.1)(z, q)
    torch.testing.assert_close(got, F.cross_entropy(z, q) + 0.1 * (lz**2).mean())
    with pytest.raises(UsageError, match="base"):
        build_loss("logz_penalty", base="bce")
