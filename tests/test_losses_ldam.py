"""ldam (+ DRW option) and the CosineHead."""

from __future__ import annotations

import math

import pytest
import torch

from losscli.errors import UsageError
from losscli.losses import LossInputError, build_loss
from losscli.losses.heads import CosineHead

Z = [[1.5, -0.3, 0.2, 2.1], [0.0, 3.0, -1.0, 0.5], [-2.0, 0.4, 1.1, 0.3]]
Y = [3, 0, 2]
COUNTS = [1000.0, 100.0, 50.0, 10.0]


def rand(n=8, c=4, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
    return z, torch.randint(0, c, (n,), generator=g)


def ldam_ref(z, y, counts, max_m=0.5, s=30.0):
    """Per-sample LDAM values with explicit loops."""
    inv = [n ** -0.25 for n in counts]
    margins = [max_m * v / max(inv) for v in inv]
    out = []
    for row, t in zip(z.tolist(), y.tolist()):
        mod = [s * (v - (margins[t] if k == t else 0.0)) for k, v in enumerate(row)]
        m = max(mod)
        out.append(m + math.log(sum(math.exp(v - m) for v in mod)) - mod[t])
    return out


def cb_weights(counts, beta):
    w = [(1 - beta) / (1 - beta**n) for n in counts]
    return [v * len(w) / sum(w) for v in w]


def test_golden_on_raw_logits():
    z, y = torch.tensor(Z, dtype=torch.float64), torch.tensor(Y)
    assert build_loss("ldam", class_counts=COUNTS)(z, y).item() == pytest.approx(31.597341, abs=1e-6)


@pytest.mark.parametrize("max_m, s", [(0.5, 30.0), (0.3, 10.0), (1.0, 1.0)])
def test_matches_loop(max_m, s):
    z, y = rand(seed=1)
    counts = [500.0, 40.0, 7.0, 120.0]
    got = build_loss("ldam", class_counts=counts, max_m=max_m, s=s, reduction="none")(z, y)
    torch.testing.assert_close(got, torch.tensor(ldam_ref(z, y, counts, max_m, s), dtype=torch.float64))


def test_weighted_mean_follows_torch():
    z, y = rand(seed=2)
    w = [0.5, 2.0, 1.0, 4.0]
    ref = ldam_ref(z, y, COUNTS)
    num = sum(w[t] * v for v, t in zip(ref, y.tolist()))
    den = sum(w[t] for t in y.tolist())
    assert build_loss("ldam", class_counts=COUNTS, weight=w)(z, y).item() == pytest.approx(num / den, rel=1e-6)


def test_drw_switches_to_class_balanced_weights_at_drw_epoch():
    z, y = rand(seed=3)
    fn = build_loss("ldam", class_counts=COUNTS, drw_epoch=2)
    plain = build_loss("ldam", class_counts=COUNTS)(z, y)
    torch.testing.assert_close(fn(z, y), plain)  # no epoch given: unweighted
    torch.testing.assert_close(fn(z, y, epoch=1), plain)
    w = cb_weights(COUNTS, 0.9999)
    ref = ldam_ref(z, y, COUNTS)
    num = sum(w[t] * v for v, t in zip(ref, y.tolist()))
    den = sum(w[t] for t in y.tolist())
    assert fn(z, y, epoch=2).item() == pytest.approx(num / den, rel=1e-6)
    assert fn(z, y, epoch=5).item() == pytest.approx(num / den, rel=1e-6)
    assert fn.weight is None  # restored after the call
    with pytest.raises(UsageError, match="drw_epoch"):
        build_loss("ldam", class_counts=COUNTS, drw_epoch=2, weight=[1, 1, 1, 1])


def test_needs_counts_and_matching_classes():
    with pytest.raises(UsageError, match="class counts"):
        build_loss("ldam")
    z, y = rand(c=4)
    with pytest.raises(LossInputError, match="class_counts has 3"):
        build_loss("ldam", class_counts=[1, 2, 3])(z, y)


def test_zero_count_gets_the_largest_margin_and_stays_finite():
    z, y = rand(seed=4)
    fn = build_loss("ldam", class_counts=[100.0, 0.0, 10.0, 1.0])
    assert fn.margins[1].item() == pytest.approx(0.5)
    assert torch.isfinite(fn(z, y))


def test_cosine_head_and_prediction_logits():
    torch.manual_seed(0)
    fn = build_loss("ldam", class_counts=COUNTS)
    head = fn.make_head(6, 4)
    assert isinstance(head, CosineHead)
    x = torch.randn(5, 6, dtype=torch.float64)
    head = head.double()
    out = head(x)
    w = head.weight.detach()
    for i in range(5):
        for k in range(4):
            xi, wk = x[i].tolist(), w[k].tolist()
            dot = sum(a * b for a, b in zip(xi, wk))
            cos = dot / math.sqrt(sum(a * a for a in xi)) / math.sqrt(sum(b * b for b in wk))
            assert out[i, k].item() == pytest.approx(cos, rel=1e-10)
    assert (out.abs() <= 1 + 1e-12).all()
    torch.testing.assert_close(fn.prediction_logits(out), 30.0 * out)
    # end to end: the loss trains the head's weights
    loss = fn(out, torch.tensor([0, 1, 2, 3, 0]))
    loss.backward()
    assert head.weight.grad is not None and torch.isfinite(head.weight.grad).all()
