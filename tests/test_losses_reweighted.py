"""class_balanced and power_law_weighted: weights, torch weighted mean, base validation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from losscli.errors import UsageError
from losscli.losses import build_loss

COUNTS = [1000.0, 100.0, 50.0, 10.0]


def rand(n=9, c=4, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
    return z, torch.randint(0, c, (n,), generator=g)


def ce_loop(row, t):
    m = max(row)
    return m + math.log(sum(math.exp(v - m) for v in row)) - row[t]


def weighted_mean(z, y, w, per=ce_loop):
    pairs = list(zip(z.tolist(), y.tolist()))
    return sum(w[t] * per(r, t) for r, t in pairs) / sum(w[t] for _, t in pairs)


@pytest.mark.parametrize("beta", [0.9, 0.999, 0.9999])
def test_class_balanced_weights_and_weighted_mean(beta):
    z, y = rand(seed=1)
    raw = [(1 - beta) / (1 - beta**n) for n in COUNTS]
    w = [v * len(raw) / sum(raw) for v in raw]
    fn = build_loss("class_balanced", class_counts=COUNTS, beta=beta)
    assert fn.weight.sum().item() == pytest.approx(4.0, rel=1e-6)
    torch.testing.assert_close(fn.weight.double(), torch.tensor(w, dtype=torch.float64), rtol=1e-6, atol=0)
    assert fn(z, y).item() == pytest.approx(weighted_mean(z, y, w), rel=1e-6)
    per = fn.__class__(class_counts=COUNTS, beta=beta, reduction="none")(z, y)
    ref = [w[t] * ce_loop(r, t) for r, t in zip(z.tolist(), y.tolist())]
    torch.testing.assert_close(per, torch.tensor(ref, dtype=torch.float64), rtol=1e-6, atol=1e-9)


def test_class_balanced_beta0_is_ce_and_base_spec():
    z, y = rand(seed=2)
    torch.testing.assert_close(build_loss("class_balanced", class_counts=COUNTS, beta=0.0)(z, y), F.cross_entropy(z, y))

    def focal1(r, t):
        m = max(r)
        lp = r[t] - m - math.log(sum(math.exp(v - m) for v in r))
        return -(1 - math.exp(lp)) * lp

    raw = [(1 - 0.99) / (1 - 0.99**n) for n in COUNTS]
    w = [v * 4 / sum(raw) for v in raw]
    got = build_loss("class_balanced", class_counts=COUNTS, beta=0.99, base="focal(gamma=1)")(z, y).item()
    assert got == pytest.approx(weighted_mean(z, y, w, focal1), rel=1e-6)


@pytest.mark.parametrize("name", ["class_balanced", "power_law_weighted"])
def test_base_validation_and_no_extra_weight(name):
    with pytest.raises(UsageError, match="Did you mean"):
        build_loss(name, class_counts=COUNTS, base="focl")
    with pytest.raises(UsageError, match="multi-label"):
        build_loss(name, class_counts=COUNTS, base="bce")
    with pytest.raises(UsageError, match="teacher_logits"):
        build_loss(name, class_counts=COUNTS, base="kd")
    with pytest.raises(UsageError, match="itself"):
        build_loss(name, class_counts=COUNTS, base=name)
    with pytest.raises(UsageError, match="weights"):
        build_loss(name, class_counts=COUNTS, weight=[1, 1, 1, 1])
    with pytest.raises(UsageError, match="class counts"):
        build_loss(name)


def test_base_that_needs_counts_gets_them():
    z, y = rand(seed=3)
    got = build_loss("class_balanced", class_counts=COUNTS, beta=0.0, base="balanced_softmax")(z, y)
    torch.testing.assert_close(got, build_loss("balanced_softmax", class_counts=COUNTS)(z, y))


@pytest.mark.parametrize("alpha, eps", [(1.0, 1e-7), (0.5, 1.0), (2.0, 1e-3)])
def test_power_law_weights_and_weighted_mean(alpha, eps):
    z, y = rand(seed=4)
    counts = [1000.0, 100.0, 0.0, 10.0]
    w = [1.0 / (n + eps) ** alpha for n in counts]
    fn = build_loss("power_law_weighted", class_counts=counts, alpha=alpha, eps=eps)
    torch.testing.assert_close(fn.weight.double(), torch.tensor(w, dtype=torch.float64), rtol=1e-6, atol=0)
    assert fn(z, y).item() == pytest.approx(weighted_mean(z, y, w), rel=1e-5)


def test_power_law_alpha0_is_ce():
    z, y = rand(seed=5)
    torch.testing.assert_close(build_loss("power_law_weighted", class_counts=COUNTS, alpha=0.0)(z, y), F.cross_entropy(z, y))
