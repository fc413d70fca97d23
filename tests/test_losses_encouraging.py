"""encouraging loss (conservative bonus)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from losscli.losses import build_loss

Z = [[1.5, -0.3, 0.2, 2.1], [0.0, 3.0, -1.0, 0.5], [-2.0, 0.4, 1.1, 0.3]]
Y = [3, 0, 2]


def p_target(row, t):
    return 1.0 / sum(math.exp(v - row[t]) for v in row)


def el_ref(row, t, rho, le):
    p = p_target(row, t)
    if p <= le:
        bonus = math.log(max(1 - p, 1e-5))
    else:
        bonus = math.log(1 - le) - (p - le) / (1 - le)
    return -math.log(p) + rho * bonus


def test_golden():
    z, y = torch.tensor(Z, dtype=torch.float64), torch.tensor(Y)
    assert build_loss("encouraging")(z, y).item() == pytest.approx(0.949911, abs=1e-6)


@pytest.mark.parametrize("rho, le", [(1.0, 0.75), (0.5, 0.5), (2.0, 0.9), (1.0, 1.0)])
def test_matches_loop_on_both_branches(rho, le):
    g = torch.Generator().manual_seed(int(rho * 10 + le * 100))
    z = torch.randn(40, 5, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 5, (40,), generator=g)
    ps = [p_target(r, t) for r, t in zip(z.tolist(), y.tolist())]
    if le < 1:
        assert any(p > le for p in ps) and any(p <= le for p in ps)  # both branches exercised
    got = build_loss("encouraging", rho=rho, log_end=le, reduction="none")(z, y)
    ref = [el_ref(r, t, rho, le) for r, t in zip(z.tolist(), y.tolist())]
    torch.testing.assert_close(got, torch.tensor(ref, dtype=torch.float64))


def test_rho0_is_ce_and_can_be_negative():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (6,), generator=g)
    torch.testing.assert_close(build_loss("encouraging", rho=0.0)(z, y), F.cross_entropy(z, y))
    confident = torch.tensor([[10.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    value = build_loss("encouraging")(confident, torch.tensor([0])).item()
    assert value < 0 and value == pytest.approx(el_ref([10.0, 0, 0, 0], 0, 1.0, 0.75), rel=1e-9)
    assert build_loss("encouraging").info.can_be_negative


def test_gradient_continuous_at_log_end():
    # the conservative bonus is the tangent of log(1-p) at LE: the gradient is continuous there
    le = 0.75
    # a two-class logit gap with p_y = LE exactly: z = [log(LE/(1-LE)), 0]
    gap = math.log(le / (1 - le))
    grads = []
    for delta in (-1e-7, 1e-7):
        z = torch.tensor([[gap + delta, 0.0]], dtype=torch.float64, requires_grad=True)
        build_loss("encouraging", log_end=le)(z, torch.tensor([0])).backward()
        grads.append(z.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)
