"""logit_adjusted and balanced_softmax."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from losscli.losses import LossInputError, build_loss

Z = [[1.5, -0.3, 0.2, 2.1], [0.0, 3.0, -1.0, 0.5], [-2.0, 0.4, 1.1, 0.3]]
Y = [3, 0, 2]
COUNTS = [1000.0, 100.0, 50.0, 10.0]


def rand(n=8, c=4, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
    return z, torch.randint(0, c, (n,), generator=g)


def shifted_ce_loop(z, y, offsets):
    total = 0.0
    for row, t in zip(z.tolist(), y.tolist()):
        a = [v + o for v, o in zip(row, offsets)]
        m = max(a)
        total += m + math.log(sum(math.exp(v - m) for v in a)) - a[t]
    return total / len(y)


def test_balanced_softmax_golden():
    z, y = torch.tensor(Z, dtype=torch.float64), torch.tensor(Y)
    assert build_loss("balanced_softmax", class_counts=COUNTS)(z, y).item() == pytest.approx(2.086224, abs=1e-6)


def test_balanced_softmax_matches_loop_and_equals_la_tau1():
    z, y = rand(seed=1)
    counts = [300.0, 20.0, 5.0, 77.0]
    ref = shifted_ce_loop(z, y, [math.log(n) for n in counts])
    assert build_loss("balanced_softmax", class_counts=counts)(z, y).item() == pytest.approx(ref, rel=1e-10)
    la = build_loss("logit_adjusted", class_counts=counts, tau=1.0)(z, y)
    torch.testing.assert_close(la, torch.tensor(ref, dtype=torch.float64), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0])
def test_logit_adjusted_matches_loop(tau):
    z, y = rand(seed=2)
    total = sum(COUNTS)
    ref = shifted_ce_loop(z, y, [math.log((n / total) ** tau + 1e-12) for n in COUNTS])
    assert build_loss("logit_adjusted", class_counts=COUNTS, tau=tau)(z, y).item() == pytest.approx(ref, rel=1e-10)


def test_logit_adjusted_tau0_is_ce_and_predictions_use_raw_logits():
    z, y = rand(seed=3)
    fn = build_loss("logit_adjusted", class_counts=COUNTS, tau=0.0)
    torch.testing.assert_close(fn(z, y), F.cross_entropy(z, y), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fn.prediction_logits(z), z)


def test_soft_targets_and_zero_counts():
    z, y = rand(seed=4)
    onehot = F.one_hot(y, 4).double()
    fn = build_loss("balanced_softmax", class_counts=COUNTS)
    torch.testing.assert_close(fn(z, onehot), fn(z, y))
    for name in ("balanced_softmax", "logit_adjusted"):
        loss = build_loss(name, class_counts=[10.0, 0.0, 5.0, 1.0])(z, torch.tensor([1, 0, 1, 2, 3, 1, 0, 0]))
        assert torch.isfinite(loss)
    with pytest.raises(LossInputError, match="class_counts has 3"):
        build_loss("logit_adjusted", class_counts=[1, 2, 3])(z, y)
