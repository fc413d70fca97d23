"""taylor_ce and comp_sum: golden value, loop references, the comp-sum identities."""

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


def p_target(row, t):
    return 1.0 / sum(math.exp(v - row[t]) for v in row)


def test_taylor_golden():
    z, y = torch.tensor(Z, dtype=torch.float64), torch.tensor(Y)
    assert build_loss("taylor_ce")(z, y).item() == pytest.approx(0.858096, abs=1e-6)


@pytest.mark.parametrize("order", [1, 2, 3, 7])
def test_taylor_matches_loop(order):
    z, y = rand(seed=order)
    ref = 0.0
    for row, t in zip(z.tolist(), y.tolist()):
        u = 1 - p_target(row, t)
        ref += sum(u**k / k for k in range(1, order + 1))
    assert build_loss("taylor_ce", order=order)(z, y).item() == pytest.approx(ref / len(y), rel=1e-10)


def test_taylor_bound_and_order1_is_one_minus_p():
    info = build_loss("taylor_ce").info
    assert info.upper_bound({"order": 3}, 10) == pytest.approx(1 + 1 / 2 + 1 / 3)
    z, y = rand(seed=11, scale=40.0)
    per = build_loss("taylor_ce", order=3, reduction="none")(z, y)
    assert (per <= 1 + 1 / 2 + 1 / 3 + 1e-12).all()
    p = torch.softmax(z, -1).gather(1, y[:, None]).squeeze(1)
    torch.testing.assert_close(build_loss("taylor_ce", order=1, reduction="none")(z, y), 1 - p)
    with pytest.raises(UsageError, match="order"):
        build_loss("taylor_ce", order=0)
    with pytest.raises(UsageError, match="order"):
        build_loss("taylor_ce", order=2.5)


def test_comp_sum_tau1_is_ce():
    z, y = rand(seed=1)
    torch.testing.assert_close(build_loss("comp_sum", tau=1.0)(z, y), F.cross_entropy(z, y))


def test_comp_sum_tau2_is_one_minus_p():
    z, y = rand(seed=2)
    ref = sum(1 - p_target(r, t) for r, t in zip(z.tolist(), y.tolist())) / len(y)
    assert build_loss("comp_sum", tau=2.0)(z, y).item() == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("tau", [1.3, 1.7])
def test_comp_sum_between_1_and_2_is_gce(tau):
    z, y = rand(seed=3)
    q = tau - 1
    ref = sum((1 - p_target(r, t) ** q) / q for r, t in zip(z.tolist(), y.tolist())) / len(y)
    assert build_loss("comp_sum", tau=tau)(z, y).item() == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.5, 3.0])
def test_comp_sum_matches_phi_of_u(tau):
    # Phi^tau(u) with u = sum_{k != y} exp(z_k - z_y), evaluated directly from the logits
    z, y = rand(seed=4, scale=1.0)
    ref = 0.0
    for row, t in zip(z.tolist(), y.tolist()):
        u = sum(math.exp(v - row[t]) for k, v in enumerate(row) if k != t)
        ref += ((1 + u) ** (1 - tau) - 1) / (1 - tau)
    assert build_loss("comp_sum", tau=tau)(z, y).item() == pytest.approx(ref / len(y), rel=1e-10)


def test_comp_sum_tau0_is_sum_exponential_and_continuous_at_1():
    z, y = rand(seed=5, scale=1.0)
    ref = sum(
        sum(math.exp(v - r[t]) for k, v in enumerate(r) if k != t) for r, t in zip(z.tolist(), y.tolist())
    ) / len(y)
    assert build_loss("comp_sum", tau=0.0)(z, y).item() == pytest.approx(ref, rel=1e-10)
    near = build_loss("comp_sum", tau=1.0 + 1e-9)(z, y).item()
    assert near == pytest.approx(F.cross_entropy(z, y).item(), rel=1e-6)
    with pytest.raises(UsageError, match="tau"):
        build_loss("comp_sum", tau=-0.1)
