"""focal, poly1, poly1_focal: golden values, loop references, identities, true gradient."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from losscli.errors import UsageError
from losscli.losses import LossInputError, build_loss

Z = [[1.5, -0.3, 0.2, 2.1], [0.0, 3.0, -1.0, 0.5], [-2.0, 0.4, 1.1, 0.3]]
Y = [3, 0, 2]


def golden():
    return torch.tensor(Z, dtype=torch.float64), torch.tensor(Y)


def rand(n=7, c=5, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
    return z, torch.randint(0, c, (n,), generator=g)


def probs(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    s = sum(e)
    return [v / s for v in e]


def loop_mean(fn, z, y):
    return sum(fn(probs(row), t) for row, t in zip(z.tolist(), y.tolist())) / len(y)


def focal_ref(p, t, gamma, alpha=None):
    a = 1.0 if alpha is None else alpha[t]
    return -a * (1 - p[t]) ** gamma * math.log(p[t])


def poly1_ref(p, t, eps):
    return -math.log(p[t]) + eps * (1 - p[t])


def poly1_focal_ref(p, t, eps, gamma):
    return -((1 - p[t]) ** gamma) * math.log(p[t]) + eps * (1 - p[t]) ** (gamma + 1)


@pytest.mark.parametrize(
    "name, expected",
    [("focal", 1.052579), ("poly1", 2.101920), ("poly1_focal", 1.414175)],
)
def test_golden_values(name, expected):
    z, y = golden()
    assert build_loss(name)(z, y).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.0])
def test_focal_matches_loop(gamma):
    z, y = rand(seed=1)
    got = build_loss("focal", gamma=gamma)(z, y).item()
    assert got == pytest.approx(loop_mean(lambda p, t: focal_ref(p, t, gamma), z, y), rel=1e-10)


def test_focal_alpha_is_plain_mean_and_weight_is_weighted_mean():
    z, y = rand(seed=2)
    alpha = [0.25, 0.5, 1.0, 2.0, 0.1]
    got = build_loss("focal", alpha=alpha)(z, y).item()
    assert got == pytest.approx(loop_mean(lambda p, t: focal_ref(p, t, 2.0, alpha), z, y), rel=1e-10)
    w = [0.5, 1.0, 2.0, 3.0, 0.25]  # exact in float32 (the base class stores weights as float32)
    num = sum(w[t] * focal_ref(probs(r), t, 2.0) for r, t in zip(z.tolist(), y.tolist()))
    den = sum(w[t] for t in y.tolist())
    assert build_loss("focal", weight=w)(z, y).item() == pytest.approx(num / den, rel=1e-10)


def test_focal_alpha_validation():
    z, y = rand(c=5)
    with pytest.raises(LossInputError, match="alpha has 3 entries"):
        build_loss("focal", alpha=[1, 2, 3])(z, y)
    with pytest.raises(UsageError, match="alpha"):
        build_loss("focal", alpha=[1, -2, 3])


def test_focal_gamma0_is_ce_including_soft_targets():
    z, y = rand(seed=3)
    torch.testing.assert_close(build_loss("focal", gamma=0.0)(z, y), F.cross_entropy(z, y))
    q = torch.softmax(torch.randn(z.shape, dtype=torch.float64), -1)
    torch.testing.assert_close(build_loss("focal", gamma=0.0)(z, q), F.cross_entropy(z, q))


def test_focal_soft_targets_loop_and_one_hot():
    z, y = rand(seed=4)
    q = torch.softmax(torch.randn(z.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9)), -1)
    alpha = [0.3, 1.0, 2.0, 0.5, 1.5]
    ref = 0.0
    for row, qrow in zip(z.tolist(), q.tolist()):
        p = probs(row)
        ref += -sum(qk * a * (1 - pk) ** 2 * math.log(pk) for qk, a, pk in zip(qrow, alpha, p))
    assert build_loss("focal", alpha=alpha)(z, q).item() == pytest.approx(ref / len(y), rel=1e-10)
    onehot = F.one_hot(y, z.shape[1]).double()
    torch.testing.assert_close(build_loss("focal")(z, onehot), build_loss("focal")(z, y))


def test_focal_has_the_true_gradient_not_the_detached_one():
    z, y = rand(seed=5)
    gamma = 2.0
    z1 = z.clone().requires_grad_(True)
    build_loss("focal", gamma=gamma, reduction="sum")(z1, y).backward()
    # analytic gradient of f(p_y) = -(1-p)^g log p:  f'(p) p (e_y - p)
    true = torch.zeros_like(z)
    detached = torch.zeros_like(z)
    for i, (row, t) in enumerate(zip(z.tolist(), y.tolist())):
        p = probs(row)
        pt = p[t]
        fprime = gamma * (1 - pt) ** (gamma - 1) * math.log(pt) - (1 - pt) ** gamma / pt
        for k in range(len(row)):
            true[i, k] = fprime * pt * ((k == t) - p[k])
            detached[i, k] = (1 - pt) ** gamma * (p[k] - (k == t))
    torch.testing.assert_close(z1.grad, true, rtol=1e-9, atol=1e-12)
    assert (z1.grad - detached).abs().max() > 1e-2


@pytest.mark.parametrize("name", ["focal", "poly1_focal"])
def test_small_gamma_finite_at_saturation(name):
    z = torch.tensor([[1e4, -1e4, 0.0], [0.0, 5.0, -3.0]], requires_grad=True)
    y = torch.tensor([0, 1])
    loss = build_loss(name, gamma=0.3)(z, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


@pytest.mark.parametrize("eps", [-1.0, 0.0, 1.0, 2.5])
def test_poly1_matches_loop(eps):
    z, y = rand(seed=6)
    got = build_loss("poly1", epsilon=eps)(z, y).item()
    assert got == pytest.approx(loop_mean(lambda p, t: poly1_ref(p, t, eps), z, y), rel=1e-10)


def test_poly1_epsilon0_is_ce_and_range():
    z, y = rand(seed=7)
    torch.testing.assert_close(build_loss("poly1", epsilon=0.0)(z, y), F.cross_entropy(z, y))
    with pytest.raises(UsageError, match="epsilon"):
        build_loss("poly1", epsilon=-1.5)


def test_poly1_soft_targets_use_pt_sum_q_p():
    z, y = rand(seed=8)
    q = torch.softmax(torch.randn(z.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)), -1)
    ref = 0.0
    for row, qrow in zip(z.tolist(), q.tolist()):
        p = probs(row)
        pt = sum(a * b for a, b in zip(qrow, p))
        ref += -sum(a * math.log(b) for a, b in zip(qrow, p)) + 2.0 * (1 - pt)
    assert build_loss("poly1", epsilon=2.0)(z, q).item() == pytest.approx(ref / len(y), rel=1e-10)


@pytest.mark.parametrize("eps, gamma", [(1.0, 2.0), (-1.0, 1.0), (2.0, 0.5)])
def test_poly1_focal_matches_loop(eps, gamma):
    z, y = rand(seed=9)
    got = build_loss("poly1_focal", epsilon=eps, gamma=gamma)(z, y).item()
    assert got == pytest.approx(loop_mean(lambda p, t: poly1_focal_ref(p, t, eps, gamma), z, y), rel=1e-10)


def test_poly1_focal_reductions_to_focal_and_poly1():
    z, y = rand(seed=10)
    torch.testing.assert_close(build_loss("poly1_focal", epsilon=0.0)(z, y), build_loss("focal")(z, y))
    torch.testing.assert_close(build_loss("poly1_focal", gamma=0.0)(z, y), build_loss("poly1")(z, y))
    onehot = F.one_hot(y, z.shape[1]).double()
    torch.testing.assert_close(build_loss("poly1_focal")(z, onehot), build_loss("poly1_focal")(z, y))
