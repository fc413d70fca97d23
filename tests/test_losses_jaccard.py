"""Batch-level soft Jaccard (JDT): loop references, golden value, soft labels."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from losscli.losses import LOSSES, LossInputError, build_loss

Z = [[1.5, -0.3, 0.2, 2.1], [0.0, 3.0, -1.0, 0.5], [-2.0, 0.4, 1.1, 0.3]]
Y = [3, 0, 2]


def softmax(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    return [v / sum(e) for v in e]


def jaccard_ref(z, t, smooth=1e-3, alpha=1.0, beta=1.0, gamma=1.0, present_only=True):
    """t: list of per-row target distributions."""
    c_n = len(z[0])
    probs = [softmax(row) for row in z]
    terms = []
    for c in range(c_n):
        if present_only and max(row[c] for row in t) <= 0.01:
            continue
        tp = sum(min(p[c], q[c]) for p, q in zip(probs, t))
        fp = sum(p[c] for p in probs) - tp
        fn = sum(q[c] for q in t) - tp
        j = (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)
        terms.append((1 - j) ** gamma)
    return sum(terms) / len(terms)


def _random(n=9, c=5, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=torch.float64) * scale, torch.randint(0, c, (n,), generator=g)


def onehot_rows(y, c):
    return [[1.0 if k == v else 0.0 for k in range(c)] for v in y]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_golden(dtype):
    v = build_loss("jaccard")(torch.tensor(Z, dtype=dtype), torch.tensor(Y))
    assert v.item() == pytest.approx(0.692680, abs=2e-6)


@pytest.mark.parametrize("params", [{}, {"alpha": 0.5, "beta": 0.5}, {"alpha": 0.3, "beta": 0.7, "gamma": 0.75, "smooth": 1.0}])
def test_hard_labels_match_loop_reference(params):
    z, y = _random(seed=1)
    y[0] = 1  # class 4 may be absent: the mean runs over present classes only
    y = torch.where(y == 4, torch.zeros_like(y), y)
    ours = build_loss("jaccard", **params)(z, y)
    expected = jaccard_ref(z.tolist(), onehot_rows(y.tolist(), 5), **params)
    assert ours.item() == pytest.approx(expected, rel=1e-10)


def test_soft_labels_match_loop_reference_over_all_classes():
    z, _ = _random(seed=2)
    g = torch.Generator().manual_seed(3)
    t = torch.softmax(torch.randn(9, 5, generator=g, dtype=torch.float64) * 2, dim=1)
    ours = build_loss("jaccard")(z, t)
    assert ours.item() == pytest.approx(jaccard_ref(z.tolist(), t.tolist(), present_only=False), rel=1e-10)
    assert LOSSES.get("jaccard").info.soft_targets


def test_dice_special_case_and_perfect_prediction():
    z, y = _random(seed=4)
    p = torch.softmax(z, 1)
    t = F.one_hot(y, 5).double()
    present = t.sum(0) > 0
    tp, fp, fn = (p * t).sum(0), (p * (1 - t)).sum(0), ((1 - p) * t).sum(0)
    dice = 1 - (2 * tp + 2e-3) / (2 * tp + fp + fn + 2e-3)  # alpha = beta = 1/2, smooth s: (TP+s)/(TP+(FP+FN)/2+s)
    torch.testing.assert_close(build_loss("jaccard", alpha=0.5, beta=0.5)(z, y), dice[present].mean())
    perfect = 60.0 * t
    assert build_loss("jaccard")(perfect, y).item() < 1e-12


def test_ignored_rows_are_dropped_and_only_mean_is_defined():
    z, y = _random(seed=5)
    y_ign = y.clone()
    y_ign[[2, 3]] = -100
    keep = [0, 1, 4, 5, 6, 7, 8]
    fn = build_loss("jaccard")
    torch.testing.assert_close(fn(z, y_ign), fn(z[keep], y[keep]))
    with pytest.raises(LossInputError, match="batch-level"):
        build_loss("jaccard", reduction="none")(z, y)
    assert LOSSES.get("jaccard").info.batch_coupled


def test_gradcheck_soft_targets():
    z, _ = _random(n=5, c=4, seed=6, scale=1.0)
    g = torch.Generator().manual_seed(7)
    t = torch.softmax(torch.randn(5, 4, generator=g, dtype=torch.float64), dim=1)
    z.requires_grad_(True)
    fn = build_loss("jaccard")
    assert torch.autograd.gradcheck(lambda x: fn(x, t), (z,), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("params", [{}, {"alpha": 0.5, "beta": 2.0, "gamma": 0.5}])
def test_gradcheck_hard_labels_with_ignored_rows(params):
    g = torch.Generator().manual_seed(4)
    z = torch.randn(8, 5, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 5, (8,), generator=g)
    y[1] = -100
    fn = build_loss("jaccard", **params)
    assert torch.autograd.gradcheck(lambda t: fn(t, y), (z,), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_saturated_logits_have_finite_gradients(dtype):
    z = torch.tensor([[1e4, -1e4, 0.0], [0.0, 1e4, -1e4], [-1e4, 0.0, 1e4]], dtype=dtype, requires_grad=True)
    loss = build_loss("jaccard")(z, torch.tensor([0, 2, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad.float()).all()


# ------------------------------------------------------------------ saturated softmax
def _jaccard_exact(z, y, gamma, smooth=1e-3):
    """Value and gradient at 50 digits (mpmath), FP/FN as sums of the (exact) off-target probabilities."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50

    def value(rows):
        probs = []
        for row in rows:
            e = [mp.e ** v for v in row]
            probs.append([v / sum(e) for v in e])
        terms = []
        for c in range(len(rows[0])):
            if c not in y:
                continue
            tp = sum(p[c] for p, t in zip(probs, y) if t == c)
            fp = sum(p[c] for p, t in zip(probs, y) if t != c)
            fn = sum(1 - p[c] for p, t in zip(probs, y) if t == c)
            terms.append((1 - (tp + smooth) / (tp + fp + fn + smooth)) ** gamma)
        return sum(terms) / len(terms)

    rows = [[mp.mpf(v) for v in row] for row in z]

    def partial(i, j):
        def f(u):
            w = [r[:] for r in rows]
            w[i][j] = u
            return value(w)
        return float(mp.diff(f, rows[i][j]))

    return float(value(rows)), [[partial(i, j) for j in range(len(z[0]))] for i in range(len(z))]


@pytest.mark.parametrize("margin", [17.0, 30.0, 100.0])
@pytest.mark.parametrize("gamma", [1.0, 0.5, 0.01])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_saturated_softmax_matches_exact_values_and_gradients(margin, gamma, dtype):
    # every p_y rounds to 1 in float32: FP = sum p - TP and FN = count - TP cancelled to 0, and
    # (1 - J) floored at 1e-30 gave (1e-30)^gamma (0.5 at gamma = 0.01) with a zero gradient
    if dtype == torch.float32 and margin == 100.0:
        pytest.skip("the off-target probabilities exp(-100) are subnormal in float32")
    z = [[margin, 0.0, -1.0, 0.5], [0.3, margin, 0.0, -2.0], [1.0, 0.0, margin, 0.0], [0.0, 0.5, 0.0, margin]]
    y = [0, 1, 2, 3]
    value, grad = _jaccard_exact(z, y, gamma)
    zt = torch.tensor(z, dtype=dtype, requires_grad=True)
    v = build_loss("jaccard", gamma=gamma)(zt, torch.tensor(y))
    v.backward()
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    assert v.item() == pytest.approx(value, rel=tol)
    assert torch.isfinite(zt.grad).all() and (zt.grad != 0).all()
    torch.testing.assert_close(zt.grad.double(), torch.tensor(grad, dtype=torch.float64), rtol=10 * tol, atol=0.0)
