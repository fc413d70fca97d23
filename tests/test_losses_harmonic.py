"""harmonic loss and its DistanceHead."""

from __future__ import annotations

import math

import pytest
import torch

from losscli.errors import UsageError
from losscli.losses import build_loss
from losscli.losses.heads import DistanceHead


def features(n=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(0, 4, (n,), generator=g)


def harmax_ref(x, w, y, n, eps):
    """The official DistLayer + harmonic loss, with explicit loops:
    d2_k = ||w_k - x||^2 + eps, r_k = d2_k / min d2, p_k = r_k^-n / sum_j r_j^-n, l = -log p_y."""
    losses, probs = [], []
    for xi, t in zip(x.tolist(), y.tolist()):
        d2 = [sum((a - b) ** 2 for a, b in zip(xi, wk)) + eps for wk in w.tolist()]
        r = [v / min(d2) for v in d2]
        s = [v ** (-n) for v in r]
        p = [v / sum(s) for v in s]
        probs.append(p)
        losses.append(-math.log(p[t]))
    return losses, probs


def test_distance_head_outputs_minus_log_squared_distance():
    x, _ = features()
    head = DistanceHead(5, 4, eps=1e-4).double()
    out = head(x)
    w = head.weight.detach()
    for i in range(x.shape[0]):
        for k in range(4):
            d2 = sum((a - b) ** 2 for a, b in zip(x[i].tolist(), w[k].tolist())) + 1e-4
            assert out[i, k].item() == pytest.approx(-math.log(d2), rel=1e-9)
    # a feature on a prototype: distance 0 -> -log(eps), finite gradient
    x0 = w[1:2].clone().requires_grad_(True)
    o = head(x0)
    assert o[0, 1].item() == pytest.approx(-math.log(1e-4), rel=1e-6)
    o.sum().backward()
    assert torch.isfinite(x0.grad).all()


@pytest.mark.parametrize("n", [1.0, 3.0, 28.0])
def test_loss_on_head_equals_harmax_reference(n):
    x, y = features(seed=1)
    fn = build_loss("harmonic", n=n, reduction="none")
    head = fn.make_head(5, 4).double()
    assert isinstance(head, DistanceHead)
    out = head(x)
    ref, probs = harmax_ref(x, head.weight.detach(), y, n, 1e-4)
    torch.testing.assert_close(fn(out, y), torch.tensor(ref, dtype=torch.float64))
    torch.testing.assert_close(torch.softmax(fn.prediction_logits(out), -1), torch.tensor(probs, dtype=torch.float64))


def test_n_none_uses_the_embedding_dimension_of_the_head():
    x, y = features(seed=2, d=5)
    fn = build_loss("harmonic")
    with pytest.raises(UsageError, match="n=None"):
        fn(torch.randn(6, 4, dtype=torch.float64), y)
    head = fn.make_head(5, 4).double()
    out = head(x)
    ref, _ = harmax_ref(x, head.weight.detach(), y, 5.0, 1e-4)
    assert fn(out, y).item() == pytest.approx(sum(ref) / len(ref), rel=1e-10)
    torch.testing.assert_close(fn.prediction_logits(out), 5.0 * out)


def test_large_n_is_stable():
    x, y = features(seed=3)
    fn = build_loss("harmonic", n=768.0)
    head = fn.make_head(5, 4)
    loss = fn(head(x.float()), y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(head.weight.grad).all()


def test_metadata():
    info = build_loss("harmonic", n=2.0).info
    assert info.head == "distance" and info.test_params.get("n")
