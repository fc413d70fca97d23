"""squentropy and the rescaled square loss."""

from __future__ import annotations

import math

import pytest
import torch

from losscli.losses import build_loss

Z = [[1.5, -0.3, 0.2, 2.1], [0.0, 3.0, -1.0, 0.5], [-2.0, 0.4, 1.1, 0.3]]
Y = [3, 0, 2]


def rand(n=7, c=5, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
    return z, torch.randint(0, c, (n,), generator=g)


def squentropy_ref(row, t):
    m = max(row)
    ce = m + math.log(sum(math.exp(v - m) for v in row)) - row[t]
    return ce + sum(v * v for k, v in enumerate(row) if k != t) / (len(row) - 1)


def square_ref(row, t, k, big_m):
    return (k * (row[t] - big_m) ** 2 + sum(v * v for j, v in enumerate(row) if j != t)) / len(row)


def test_squentropy_golden():
    z, y = torch.tensor(Z, dtype=torch.float64), torch.tensor(Y)
    assert build_loss("squentropy")(z, y).item() == pytest.approx(3.345641, abs=1e-6)


def test_squentropy_matches_loop():
    z, y = rand(seed=1)
    got = build_loss("squentropy", reduction="none")(z, y)
    ref = [squentropy_ref(r, t) for r, t in zip(z.tolist(), y.tolist())]
    torch.testing.assert_close(got, torch.tensor(ref, dtype=torch.float64))


@pytest.mark.parametrize("k, m", [(1.0, 1.0), (15.0, 30.0), (2.0, 0.0)])
def test_square_matches_loop(k, m):
    z, y = rand(seed=2)
    got = build_loss("square", k=k, m=m, reduction="none")(z, y)
    ref = [square_ref(r, t, k, m) for r, t in zip(z.tolist(), y.tolist())]
    torch.testing.assert_close(got, torch.tensor(ref, dtype=torch.float64))


def test_square_is_mse_to_one_hot_for_k1_m1():
    z, y = rand(seed=3)
    onehot = torch.nn.functional.one_hot(y, z.shape[1]).double()
    torch.testing.assert_close(build_loss("square")(z, y), ((z - onehot) ** 2).mean())


@pytest.mark.parametrize("name", ["squentropy", "square"])
def test_off_target_sum_exact_when_target_logit_dominates(name):
    # z_y = 1e4 in float32: subtracting z_y^2 from the total would lose the small terms
    z = torch.tensor([[1e4, 0.5, -0.25, 1.0]])
    y = torch.tensor([0])
    got = build_loss(name, reduction="none")(z, y).item()
    row = [1e4, 0.5, -0.25, 1.0]
    ref = squentropy_ref(row, 0) if name == "squentropy" else square_ref(row, 0, 1.0, 1.0)
    assert got == pytest.approx(ref, rel=1e-6, abs=1e-6)
