"""logitclip (paper and code modes) and logitnorm."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from losscli.errors import UsageError
from losscli.losses import build_loss

Z = [[1.5, -0.3, 0.2, 2.1], [0.0, 3.0, -1.0, 0.5], [-2.0, 0.4, 1.1, 0.3]]
Y = [3, 0, 2]


def rand(n=8, c=5, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
    return z, torch.randint(0, c, (n,), generator=g)


def ce(row, t):
    m = max(row)
    return m + math.log(sum(math.exp(v - m) for v in row)) - row[t]


def pnorm(row, p):
    return sum(abs(v) ** p for v in row) ** (1 / p)


def test_logitnorm_golden():
    z, y = torch.tensor(Z, dtype=torch.float64), torch.tensor(Y)
    assert build_loss("logitnorm")(z, y).item() == pytest.approx(7.809990, abs=1e-6)


@pytest.mark.parametrize("tau", [0.04, 0.5, 1.0])
def test_logitnorm_matches_loop_and_bound(tau):
    z, y = rand(seed=1)
    got = build_loss("logitnorm", tau=tau, reduction="none")(z, y)
    ref = []
    for row, t in zip(z.tolist(), y.tolist()):
        norm = math.sqrt(sum(v * v for v in row)) + 1e-7
        ref.append(ce([v / (tau * norm) for v in row], t))
    torch.testing.assert_close(got, torch.tensor(ref, dtype=torch.float64))
    fn = build_loss("logitnorm", tau=tau)
    bound = fn.info.upper_bound(fn.params, 5)
    assert bound == pytest.approx(math.log(1 + 4 * math.exp(math.sqrt(2) / tau)), rel=1e-12)
    # nearly attained: target and one other logit opposite on the sphere, the rest equal... at most the bound
    worst = torch.tensor([[-1.0, 1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    assert build_loss("logitnorm", tau=tau)(worst, torch.tensor([0])).item() <= bound


@pytest.mark.parametrize("tau, p", [(1.5, 2.0), (0.5, 1.0), (0.2, 3.0)])
def test_logitclip_paper_mode_matches_loop(tau, p):
    z, y = rand(seed=2, scale=1.0)
    z[0] *= 0.01  # one row below the clip radius
    got = build_loss("logitclip", tau=tau, p=p, reduction="none")(z, y)
    ref = []
    for row, t in zip(z.tolist(), y.tolist()):
        nu, delta = pnorm(row, p), 1 / tau
        scale = delta / nu if nu >= delta else 1.0
        ref.append(ce([v * scale for v in row], t))
    torch.testing.assert_close(got, torch.tensor(ref, dtype=torch.float64))


@pytest.mark.parametrize("tau", [1.5, 0.5])
def test_logitclip_code_mode_matches_official_rule(tau):
    z, y = rand(seed=3, scale=1.0)
    z[:3] *= 0.05  # rows with norm below tau stay as they are
    got = build_loss("logitclip", tau=tau, mode="code", reduction="none")(z, y)
    ref = []
    for row, t in zip(z.tolist(), y.tolist()):
        nu = pnorm(row, 2.0) + 1e-7
        ref.append(ce([v / (tau * nu) for v in row] if nu > tau else row, t))
    torch.testing.assert_close(got, torch.tensor(ref, dtype=torch.float64))


def test_logitclip_paper_mode_is_continuous_code_mode_is_not():
    direction = torch.tensor([[0.6, -0.8, 0.0]], dtype=torch.float64)
    y = torch.tensor([1])
    tau = 1.5
    for mode, radius in (("paper", 1 / tau), ("code", tau)):
        fn = build_loss("logitclip", tau=tau, mode=mode)
        below = fn(direction * (radius - 1e-6), y).item()
        above = fn(direction * (radius + 1e-6), y).item()
        if mode == "paper":
            assert below == pytest.approx(above, abs=1e-5)
        else:
            assert abs(below - above) > 0.1


def test_logitclip_bounds_and_base():
    fn = build_loss("logitclip")
    c = 5
    bound = fn.info.upper_bound(fn.params, c)
    assert bound == pytest.approx(math.log(1 + (c - 1) * math.exp(math.sqrt(2) / 1.5)), rel=1e-12)
    code = build_loss("logitclip", mode="code", tau=0.5)
    assert code.info.upper_bound(code.params, c) == pytest.approx(math.log(1 + (c - 1) * math.exp(math.sqrt(2) * 2.0)))
    z, y = rand(seed=4, scale=100.0)
    assert (build_loss("logitclip", reduction="none")(z, y) <= bound + 1e-9).all()
    # another base is applied to the clipped logits
    got = build_loss("logitclip", base="focal", reduction="none")(z, y)
    clipped = z * (1 / 1.5) / z.norm(dim=-1, keepdim=True).clamp_min(1 / 1.5)
    torch.testing.assert_close(got, build_loss("focal", reduction="none")(clipped, y))
    with pytest.raises(UsageError, match="mode"):
        build_loss("logitclip", mode="other")
    with pytest.raises(UsageError, match="base"):
        build_loss("logitclip", base="bce")
    # soft targets through the ce base
    q = F.one_hot(y, 5).double()
    torch.testing.assert_close(build_loss("logitclip")(z, q), build_loss("logitclip")(z, y))
